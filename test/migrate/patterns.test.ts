/**
 * Patterns seen in setups the project did not write (issue 14), each in a
 * fixture of our own under fixtures/migrate/real/: migrated, the spec
 * validated, built for the distro nginx and checked with the real `nginx -t`.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { parseBinInfo } from "../../src/migrate/bin.js";
import { moduleLink } from "../../src/target/modules.js";
import { migrate, type Migration } from "../../src/migrate/index.js";
import { fsLoader } from "../../src/nginx/load.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { formatDiagnostic } from "../../src/pipeline/load.js";
import type { SpecInput } from "../../src/spec/schema.js";
import { buildPrefix, NGINX_BIN, nginxTest } from "../support/nginx.js";
import { fixtures } from "./helpers.js";
import path from "node:path";

const real = path.join(fixtures, "real");
// nginx -V writes to stderr.
function binInfoOf(bin: string) {
  try {
    return parseBinInfo(bin, execFileSync("sh", ["-c", `"$0" -V 2>&1`, bin], { encoding: "utf8" }));
  } catch (e) {
    throw new Error(`${bin} -V failed: install Debian's nginx (or set GEN_LB_TEST_BIN): ${(e as Error).message}`);
  }
}
/** The matrix binary (test/support/target.ts): what the new config runs on. */
const binInfo = binInfoOf(NGINX_BIN);
/** Debian's nginx, for tests whose subject is its layout. */
const DEBIAN_NGINX = "/usr/sbin/nginx";

export function migrateReal(name: string, luaPath: string[] = [], bin = binInfo): Migration {
  return migrate(`${name}/nginx.conf`, { loader: fsLoader(real), cwd: real, bin, luaPath: luaPath.map((p) => path.join(real, p)) });
}

/** Validate, build for target nginx, and run the real nginx -t. */
export async function buildAndTest(m: Migration): Promise<{ dir: string; ok: boolean; output: string }> {
  const v = validateSpecText(JSON.stringify(m.spec), "spec.json");
  expect(v.errors.map(formatDiagnostic)).toEqual([]);
  const { dir } = await buildPrefix(m.spec as SpecInput);
  return { dir, ...nginxTest(dir) };
}

/** The migrated spec validates, builds for the matrix target and passes the real binary's -t with no warning. */
function itBuildsAndPasses(m: () => Migration): void {
  it("builds and passes nginx -t", async () => {
    const r = await buildAndTest(m());
    expect(r.output).not.toMatch(/\[(emerg|warn|alert)\]/);
    expect(r.ok).toBe(true);
  });
}

const find = (m: Migration, kind: string, re: RegExp) => m.findings.filter((f) => f.kind === kind && re.test(f.message));

describe("sizes, empty arguments, duplicates (fixtures/migrate/real/values)", () => {
  const m = migrateReal("values");
  it("gzip_min_length 1k is 1024 bytes, not null", () => {
    expect((m.spec.nginx as { http: { gzip: Record<string, unknown> } }).http.gzip).toMatchObject({ enabled: true, min_length: 1024, comp_level: 5 });
  });
  it("empty header values are carried: Proxy \"\" in the header map, add_header ETag \"\" in the escape hatch", () => {
    const [app, other] = m.spec.servers as Array<{ locations: Array<Record<string, unknown>>; server_name: string[] }>;
    expect(app!.locations[0]!.proxy_set_header).toEqual({ Host: "$host", Proxy: "" });
    expect(app!.locations[1]!.directives).toEqual([{ name: "add_header", args: ["ETag", ""] }]);
    expect(other!.server_name).toEqual(["other.example.test"]);
  });
  it('return 200 "ok\\n" is carried with its newline (nginx\'s \\n escape)', () => {
    const other = (m.spec.servers as Array<{ locations: Array<Record<string, unknown>> }>)[1]!;
    expect(other.locations[1]).toMatchObject({ path: "/healthz", match: "exact", return: { code: 200, text: "ok\n" } });
  });
  it("lua_socket_log_errors, which gen-lb writes itself, is not duplicated and says so", () => {
    const http = (m.spec.nginx as { http: { directives?: Array<{ name: string }> } }).http;
    expect((http.directives ?? []).map((d) => d.name)).not.toContain("lua_socket_log_errors");
    expect(find(m, "dropped", /^lua_socket_log_errors off: gen-lb sets lua_socket_log_errors off itself/)).toHaveLength(1);
  });
  it("each server has its own label in the report", () => {
    expect(m.findings.filter((f) => f.directive === "server" && f.to?.startsWith("servers[")).map((f) => f.to)).toEqual(["servers[0]", "servers[1]"]);
  });
  itBuildsAndPasses(() => m);
});

describe("TLS set at http level (fixtures/migrate/real/http-tls)", () => {
  const m = migrateReal("http-tls");
  it("keeps the old TLS and server_tokens behaviour, and reports gen-lb's secure defaults as suggestions", () => {
    const servers = m.spec.servers as Array<{ ssl: Record<string, unknown> }>;
    // ssl_protocols from http level, nginx's default ciphers and prefer_server_ciphers written out.
    for (const s of servers) expect(s.ssl).toMatchObject({ protocols: ["TLSv1.2", "TLSv1.3"], ciphers: "HIGH:!aNULL:!MD5", prefer_server_ciphers: false });
    expect((m.spec.nginx as { http: { server_tokens: boolean } }).http.server_tokens).toBe(true);
    const suggestions = m.findings.filter((f) => f.kind === "suggestion").map((f) => f.to);
    expect(suggestions).toEqual(["nginx.http.server_tokens", "servers[0].ssl.profile", "servers[0].security_headers", "servers[1].ssl.profile", "servers[1].security_headers"]);
    // The session settings gen-lb always writes are the one change the spec cannot undo: reported, and explained to --verify.
    const changed = m.findings.filter((f) => f.kind === "changed");
    expect(changed.map((f) => f.explains?.map((e) => e[0]))).toEqual([
      ["ssl_session_timeout", "ssl_session_cache", "ssl_session_tickets"],
      ["ssl_session_timeout", "ssl_session_cache", "ssl_session_tickets"],
    ]);
    expect(m.findings.filter((f) => f.kind === "lint").map((f) => f.message)).toEqual([expect.stringMatching(/\] server_tokens: /)]);
  });
  it("both servers are kept, with the inherited certificate made absolute", () => {
    const servers = m.spec.servers as Array<{ ssl?: { certificate: string; certificate_key: string } }>;
    expect(servers).toHaveLength(2);
    for (const s of servers) {
      expect(s.ssl).toMatchObject({ certificate: path.join(real, "http-tls/certs/site.crt"), certificate_key: path.join(real, "http-tls/certs/site.key") });
    }
    expect(m.findings.filter((f) => f.blocking)).toEqual([]);
  });
  itBuildsAndPasses(() => m);
});

describe("a server that cannot be kept is named and blocks", () => {
  it("an ssl listen with no certificate anywhere: the server is LEFT OUT, blocking", async () => {
    const { memoryLoader } = await import("../../src/nginx/load.js");
    const m = migrate("n.conf", {
      loader: memoryLoader({ "n.conf": "events {}\nhttp {\n  server { listen 8443 ssl; location / { return 204; } }\n  server { listen 8081; }\n}\n" }),
    });
    expect(m.spec.servers).toEqual([{ listen: 8081 }]);
    // Only the server that was kept is labelled servers[0].
    expect(m.findings.filter((f) => f.directive === "server" && f.to !== undefined).map((f) => `${f.line} ${f.to}`)).toEqual(["4 servers[0]"]);
    const blocking = m.findings.filter((f) => f.blocking);
    expect(blocking.map((f) => `${f.line} ${f.kind}`)).toEqual(["3 lost", "3 lost"]);
    expect(m.findings.some((f) => f.kind === "converted" && f.directive === "server" && f.line === 3)).toBe(false);
  });
});

describe("static upstreams (fixtures/migrate/real/static-peers)", () => {
  const m = migrateReal("static-peers");
  it("a unix socket and a host name stay static, every parameter kept", () => {
    expect(m.spec.upstreams).toMatchObject({
      puma: { servers: [{ address: "unix:/run/app/puma.sock", fail_timeout: 0 }] },
      search: {
        keepalive: 8,
        servers: [
          { address: "localhost:9201", weight: 3, max_fails: 2, fail_timeout: "20s" },
          { address: "127.0.0.1:9202", max_conns: 100 },
          { address: "127.0.0.1:9203", backup: true },
          { address: "127.0.0.1:9204", down: true },
        ],
        retries: 0,
      },
    });
    const ups = m.spec.upstreams as Record<string, Record<string, unknown>>;
    expect(ups.puma!.service).toBeUndefined();
    expect(m.findings.filter((f) => f.kind === "todo")).toEqual([]);
  });
  itBuildsAndPasses(() => m);
});

describe("relative load_module (fixtures/migrate/real/relative-modules)", () => {
  const m = migrateReal("relative-modules");
  it("on Debian's nginx, is resolved against its --prefix and taken from its modules directory, and the target comes from -V", () => {
    const debian = binInfoOf(DEBIAN_NGINX);
    const d = migrateReal("relative-modules", [], debian);
    expect(d.spec.target).toBe("nginx");
    expect(debian.modulesPath).toBe("/usr/lib/nginx/modules");
    expect((d.spec.nginx as { directives: unknown }).directives).toEqual([{ name: "load_module", args: ["/usr/lib/nginx/modules/ngx_stream_module.so"] }]);
    expect(find(d, "carried", /^load_module modules\/ngx_stream_module.so \(relative to the old prefix \/usr\/share\/nginx, the target's own module: /)).toHaveLength(1);
  });
  it("on the matrix binary, no relative path is copied and nothing is lost: each module is what that binary has", () => {
    expect(m.spec.target).toBe(binInfo.target);
    const loads = ((m.spec.nginx as { directives?: Array<{ args: string[] }> }).directives ?? []).map((d) => d.args[0]!);
    expect(loads.filter((f) => !path.isAbsolute(f))).toEqual([]);
    const findings = m.findings.filter((f) => f.directive === "load_module");
    expect(findings.map((f) => f.kind).filter((k) => k !== "dropped" && k !== "carried")).toEqual([]);
    expect(findings).toHaveLength(3);
  });
  it("without the binary it is reported, not copied", () => {
    const bare = migrate("relative-modules/nginx.conf", { loader: fsLoader(real), cwd: real });
    expect(find(bare, "lost", /^load_module modules\/ngx_stream_module.so: a path relative to the old nginx's prefix/)).toHaveLength(1);
  });
  itBuildsAndPasses(() => m);
});

describe("Consul over https with a token and a module that is not installed (fixtures/migrate/real/consul-https)", () => {
  const m = migrateReal("consul-https");
  it("keeps both https addresses, the datacenter, the tag and the token's variable; the missing module is a to-do", () => {
    expect(m.spec.consul).toEqual({ addresses: ["https://consul-a.example.test:8501", "https://consul-b.example.test:8501"], datacenter: "eu-west-1", token_env: "CONSUL_HTTP_TOKEN" });
    expect(m.spec.upstreams).toMatchObject({ payments: { service: "payments", tags: ["primary"] } });
    const todo = m.findings.filter((f) => f.kind === "todo");
    expect(todo.map((f) => `${f.file}:${f.line}:${f.column}`)).toEqual(["consul-https/lua/consul_discovery.lua:3:14"]);
    expect(todo[0]!.message).toMatch(/^require "lunajson": module not found/);
    // gen-lb writes `env CONSUL_HTTP_TOKEN;` itself for token_env.
    expect((m.spec.nginx as { directives?: unknown }).directives).toBeUndefined();
  });
  itBuildsAndPasses(() => m);
});

describe("a library's watch(address, services) (fixtures/migrate/real/watch-lib)", () => {
  const m = migrateReal("watch-lib", ["watch-lib/lib"]);
  it("takes the address and each upstream's service, tag and datacenter from the call", () => {
    expect((m.spec.consul as { addresses: string[] }).addresses).toEqual(["http://consul.internal.test:8500"]);
    expect(m.spec.upstreams).toMatchObject({
      users_up: { service: "users" },
      orders_up: { service: "orders", tags: ["v2"], datacenter: "dc2" },
    });
    expect(m.findings.filter((f) => f.kind === "todo").map((f) => f.to)).toEqual(["consul.token_env"]);
  });
  itBuildsAndPasses(() => m);
});

describe("consul-template's own nginx example, rendered (fixtures/migrate/real/ct-example)", () => {
  const m = migrateReal("ct-example");
  it("is recognised (zone upstream-NAME, the 127.0.0.1:65535 placeholder) and the missing Consul address is a to-do", () => {
    expect(m.spec.upstreams).toMatchObject({
      web: { service: "web", fallback: ["127.0.0.1:9301", "127.0.0.1:9302"] },
      billing: { service: "billing" },
    });
    expect((m.spec.upstreams as Record<string, { fallback?: unknown }>).billing!.fallback).toBeUndefined();
    expect(m.findings.some((f) => f.kind === "todo" && f.to === "consul.addresses")).toBe(true);
  });
  it("stub_status is carried where the binary has it, and reported with the reason where it was built without it", () => {
    const f = m.findings.find((x) => x.directive === "stub_status")!;
    if (moduleLink(binInfo.configure ?? [], "ngx_http_stub_status_module") === "absent") {
      expect(f).toMatchObject({ kind: "lost", message: expect.stringMatching(/is built without ngx_http_stub_status_module/) });
    } else {
      expect(f).toMatchObject({ kind: "carried" });
    }
  });
  itBuildsAndPasses(() => m);
});

describe("spawn_checker on a static upstream (fixtures/migrate/real/checker-static)", () => {
  const m = migrateReal("checker-static");
  it("is not carried as a refused healthcheck: passive checks from the checker, the active check a to-do with the options", () => {
    const up = (m.spec.upstreams as Record<string, Record<string, unknown>>).backend!;
    expect(up.healthcheck).toBeUndefined();
    expect(up.servers).toEqual([
      { address: "127.0.0.1:9401", max_fails: 3, fail_timeout: "6s" },
      { address: "127.0.0.1:9402", max_fails: 3, fail_timeout: "6s" },
    ]);
    const todo = m.findings.filter((f) => f.kind === "todo" && f.to === "upstreams.backend.servers");
    expect(todo).toHaveLength(1);
    expect(todo[0]!.message).toMatch(/http GET \/healthz \(Host backend\) every 2s, down after 3 failures, up after 2 successes, valid 200 302/);
    expect(todo[0]!.message).toMatch(/max_fails=3 fail_timeout=6s/);
    expect(todo[0]!.message).toMatch(/Consul service/);
  });
  itBuildsAndPasses(() => m);
});

describe("--verify false alarms (fixtures/migrate/real/verify-alarms)", () => {
  it("access_log /dev/stdout passes nginx -t, and reordered listen flags and gzip off are no difference", async () => {
    const { runCli } = await import("../support/cli.js");
    const { mkdtempSync } = await import("node:fs");
    const os = await import("node:os");
    const out = path.join(mkdtempSync(path.join(os.tmpdir(), "gen-lb-va-")), "spec.yaml");
    const r = runCli(["migrate", path.join(real, "verify-alarms/nginx.conf"), "--out", out, "--verify", "--bin", NGINX_BIN]);
    expect(r.stdout).toContain(`${NGINX_BIN} -t: ok`);
    expect(r.stdout).toContain("differences not explained by the report: 0");
    expect(r.status).toBe(0);
  });
});

describe("the old setup's own mime.types (fixtures/migrate/real/mime-own)", () => {
  const m = migrateReal("mime-own");
  it("keeps what only the old file maps, and reports what gen-lb's file maps differently", () => {
    const http = (m.spec.nginx as { http: { include_mime_types: boolean; types?: Record<string, string[]> } }).http;
    expect(http.include_mime_types).toBe(true);
    expect(http.types).toEqual({ "text/x-vcard": ["vcf"] });
    const todo = m.findings.filter((f) => f.kind === "todo" && f.message.startsWith("mime.types:"));
    expect(todo.map((f) => f.message)).toEqual([expect.stringContaining(".xml: application/xml -> text/xml")]);
  });
  itBuildsAndPasses(() => m);
});

describe("migrate --verify on every pattern fixture", async () => {
  const { readdirSync, mkdtempSync } = await import("node:fs");
  const os = await import("node:os");
  const { runCli } = await import("../support/cli.js");
  const LUA_PATH: Record<string, string> = { "watch-lib": "watch-lib/lib" };
  for (const name of readdirSync(real).sort()) {
    it(`${name}: nginx -t ok, no difference the report does not explain, exit 0`, () => {
      const out = path.join(mkdtempSync(path.join(os.tmpdir(), "gen-lb-pv-")), "spec.yaml");
      const lua = LUA_PATH[name] ? ["--lua-path", path.join(real, LUA_PATH[name])] : [];
      const r = runCli(["migrate", path.join(real, name, "nginx.conf"), "--out", out, "--verify", "--bin", NGINX_BIN, ...lua]);
      expect(r.stdout + r.stderr).toContain(`${NGINX_BIN} -t: ok`);
      expect(r.stdout + r.stderr).toContain("differences not explained by the report: 0");
      expect(r.status).toBe(0);
    });
  }
});

describe("prefix-relative cache and temp directories", () => {
  it("are made absolute against the old prefix (the new prefix is elsewhere), and the report says so", async () => {
    const { memoryLoader } = await import("../../src/nginx/load.js");
    const conf = "events {}\nhttp {\n    proxy_cache_path cache/app keys_zone=C:1m;\n    proxy_temp_path /var/tmp/proxy;\n}\n";
    const m = migrate("/srv/old/conf/nginx.conf", { loader: memoryLoader({ "/srv/old/conf/nginx.conf": conf }), cwd: "/" });
    const http = (m.spec.nginx as { http: { directives: Array<{ name: string; args: string[] }> } }).http;
    expect(http.directives).toEqual([
      { name: "proxy_cache_path", args: ["/srv/old/cache/app", "keys_zone=C:1m"] },
      { name: "proxy_temp_path", args: ["/var/tmp/proxy"] },
    ]);
    expect(m.findings.find((f) => f.directive === "proxy_cache_path")).toMatchObject({ kind: "carried", newArgs: ["/srv/old/cache/app", "keys_zone=C:1m"] });
  });
});

describe("a GitLab omnibus front (fixtures/migrate/real/gitlab)", () => {
  const m = migrateReal("gitlab");
  it("workhorse's unix socket stays a static upstream; the server-level proxy settings reach every proxied location", () => {
    expect(m.spec.upstreams).toMatchObject({ "gitlab-workhorse": { servers: [{ address: "unix:/var/opt/gitlab/gitlab-workhorse/sockets/socket", fail_timeout: 0 }] } });
    const locs = (m.spec.servers as Array<{ locations: Array<Record<string, unknown>> }>)[0]!.locations;
    for (const l of locs.filter((x) => x.upstream !== undefined)) {
      expect(l).toMatchObject({ upstream: "gitlab-workhorse", websocket: true, proxy_set_header: { Host: "$http_host_with_default", "X-Forwarded-Proto": "http" } });
    }
    // This OpenResty is built without http_gzip_static_module: the one directive its nginx refuses, named with the reason.
    const lost = m.findings.filter((f) => f.kind === "lost" && f.directive !== undefined).map((f) => f.message);
    expect(lost).toEqual(binInfo.target === "openresty" ? [expect.stringMatching(/^gzip_static on: .* is built without ngx_http_gzip_static_module/)] : []);
  });
  it('if ($http_host != "") keeps its empty operand (it was printed as `if ($http_host != )`, which nginx refuses)', () => {
    const server = (m.spec.servers as Array<{ directives: Array<{ name: string; args: string[] }> }>)[0]!;
    expect(server.directives.find((d) => d.name === "if")).toMatchObject({ args: ["($http_host", "!=", "", ")"] });
  });
  itBuildsAndPasses(() => m);
});

describe("a Discourse front (fixtures/migrate/real/discourse)", () => {
  const m = migrateReal("discourse");
  const locs = () => (m.spec.servers as Array<{ locations: Array<Record<string, unknown>> }>)[0]!.locations;
  it("the named location keeps X-Request-Start t=${msec} (as t=$msec), the emptied X-Accel headers and both limit_req zones", () => {
    const named = locs().find((l) => l.path === "@discourse")!;
    expect(named).toMatchObject({
      upstream: "discourse",
      proxy_set_header: { "X-Request-Start": "t=$msec", "X-Sendfile-Type": "", "X-Accel-Mapping": "", "X-Forwarded-Proto": "$thescheme" },
    });
    expect(named.directives).toEqual([
      { name: "limit_conn", args: ["connperip", "20"] },
      { name: "limit_req", args: ["zone=flood", "burst=12", "nodelay"] },
      { name: "limit_req", args: ["zone=bot", "burst=100", "nodelay"] },
    ]);
    expect(locs().find((l) => l.path === "/")).toMatchObject({ root: "$public", try_files: ["$uri", "@discourse"] });
  });
  it("a location with root before its proxy_pass proxies to the upstream with its own headers; root is carried for what is nested", () => {
    const secure = locs().find((l) => l.path === "^/secure-uploads/")!;
    expect(secure).toMatchObject({ upstream: "discourse", proxy_set_header: { Host: "$http_host" } });
    expect(secure.root).toBeUndefined();
    expect((secure.directives as Array<{ name: string }>).map((d) => d.name)).toEqual(["root", "location", "break"]);
  });
  it("nothing is lost but the comments; the upstream stays a static unix socket", () => {
    expect(m.findings.filter((f) => f.kind === "lost" && f.directive !== undefined)).toEqual([]);
    expect(m.findings.filter((f) => f.blocking)).toEqual([]);
    expect(m.spec.upstreams).toMatchObject({ discourse: { servers: ["unix:/var/www/discourse/tmp/sockets/nginx.http.sock"] } });
  });
  itBuildsAndPasses(() => m);
});

describe("the ASP.NET Core docs' Kestrel front (fixtures/migrate/real/aspnetcore)", () => {
  const m = migrateReal("aspnetcore");
  const servers = () => m.spec.servers as Array<{ ssl?: Record<string, unknown>; locations?: Array<Record<string, unknown>>; directives?: Array<{ name: string; args: string[] }> }>;
  it("a location with proxy_set_header of its own inherits none of proxy.conf's, as nginx does: Host is $proxy_host there", () => {
    const root = servers()[1]!.locations!.find((l) => l.path === "/")!;
    expect(root).toMatchObject({ upstream: "helloapp", websocket: true, proxy_set_header: { Host: "$proxy_host" } });
    expect(root.directives).toEqual([
      { name: "limit_req", args: ["zone=one", "burst=10", "nodelay"] },
      { name: "proxy_cache_bypass", args: ["$http_upgrade"] },
    ]);
  });
  it("http-level TLS reaches the ssl server; ssl_session_timeout 1d and tickets off are gen-lb's own, and say so", () => {
    expect(servers()[1]!.ssl).toMatchObject({ protocols: ["TLSv1.2", "TLSv1.3"], prefer_server_ciphers: false, certificate: path.join(real, "aspnetcore/certs/site.crt") });
    const dropped = m.findings.filter((f) => f.kind === "dropped" && /^ssl_session_(timeout|tickets)/.test(f.directive ?? ""));
    expect(dropped.map((f) => f.explains)).toEqual([[["ssl_session_timeout", "1d"]], [["ssl_session_tickets", "off"]]]);
  });
  itBuildsAndPasses(() => m);
});

describe("consul-template rendering every service (fixtures/migrate/real/ct-services)", () => {
  const m = migrateReal("ct-services");
  it("each zone upstream-NAME upstream follows service NAME, least_conn and the per-server weights kept; the 65535 placeholder dropped", () => {
    expect(m.spec.upstreams).toEqual({
      api: expect.objectContaining({ service: "api", balance: "least_conn", fallback: ["127.0.0.1:9311", "127.0.0.1:9312", "127.0.0.1:9313"], healthcheck: { passive: { max_fails: 3, fail_timeout: 60 } } }),
      search: expect.objectContaining({ service: "search", balance: "least_conn" }),
      "static-assets": expect.objectContaining({ service: "static-assets", fallback: [{ address: "127.0.0.1:9321", weight: 2 }, "127.0.0.1:9322"] }),
    });
    expect((m.spec.upstreams as Record<string, { fallback?: unknown }>).search!.fallback).toBeUndefined();
    expect(m.findings.filter((f) => f.kind === "todo").map((f) => f.to)).toEqual(["upstreams.api.service", "upstreams.search.service", "upstreams.static-assets.service", "consul.addresses"]);
  });
  itBuildsAndPasses(() => m);
});

describe("a Lua balancer over a shared dict filled by blocking queries (fixtures/migrate/real/lua-dict)", () => {
  const m = migrateReal("lua-dict");
  it("each upstream follows the service its balancer names, round robin as the old balancer picked", () => {
    expect(m.spec.consul).toEqual({ addresses: ["http://127.0.0.1:8500"] });
    expect(m.spec.upstreams).toMatchObject({
      orders_backend: { service: "orders", balance: "round_robin", keepalive: 16 },
      billing_backend: { service: "billing", balance: "round_robin", retry_statuses: [502] },
    });
  });
  it("Service.Address with the node's as fallback is not reported as the node-address defect; the defects it has are", () => {
    const defects = m.findings.filter((f) => f.kind === "defect").map((f) => f.defect);
    expect(defects).not.toContain(3);
    expect(defects).toEqual(expect.arrayContaining([8, 9]));
  });
  itBuildsAndPasses(() => m);
});

describe("a balancer on the lua-resty-consul client (fixtures/migrate/real/resty-consul)", () => {
  const m = migrateReal("resty-consul");
  it("reads host, port and ssl given apart, the datacenter and the token's variable from the library's tables, and the service its balancer names", () => {
    expect(m.spec.consul).toEqual({ addresses: ["https://consul.service.internal.test:8501"], datacenter: "west", token_env: "CONSUL_HTTP_TOKEN" });
    expect(m.spec.upstreams).toMatchObject({ catalog: { service: "catalog-api", balance: "random" } });
    // The poller is the pattern (replaced by gen-lb's runtime), not Lua the spec cannot carry.
    expect(m.findings.filter((f) => f.kind === "lost" && f.directive !== undefined)).toEqual([]);
    expect(m.findings.filter((f) => f.kind === "todo")).toEqual([]);
  });
  itBuildsAndPasses(() => m);
});

describe("Consul asked through a subrequest (fixtures/migrate/real/lua-capture)", () => {
  const m = migrateReal("lua-capture");
  it("the address is the internal location's proxy_pass target, the datacenter the query's", () => {
    expect(m.spec.consul).toEqual({ addresses: ["http://10.0.0.5:8500"], datacenter: "dc1" });
    expect(m.spec.upstreams).toMatchObject({ inventory: { service: "inventory", balance: "random" } });
    expect(m.findings.filter((f) => f.kind === "todo").map((f) => f.to)).toEqual(["consul.token_env"]);
  });
  itBuildsAndPasses(() => m);
});
