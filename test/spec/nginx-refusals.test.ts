/**
 * build refuses what nginx would refuse, with the spec path and line, and
 * the real nginx (and OpenResty) refuses the same output when it is written
 * anyway (rendered with the schema only, skipping gen-lb's checks).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { buildFileSet } from "../../src/pipeline/index.js";
import { formatDiagnostic } from "../../src/pipeline/load.js";
import { specSchema } from "../../src/spec/schema.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { writeFileSet } from "../../src/util/files.js";
import { tempDir } from "../support/nginx.js";

const BINS = { nginx: "/usr/sbin/nginx", openresty: "/opt/openresty/bin/openresty" } as const;
type Target = keyof typeof BINS;

function base(target: Target, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    target,
    upstreams: { web: { service: "web" } },
    servers: [{ listen: 18080, locations: [{ path: "/", upstream: "web", directives: [] }], directives: [] }],
    status: { enabled: false },
    ...extra,
  };
}

function errorsOf(spec: Record<string, unknown>): string[] {
  const r = validateSpecText(stringify(spec), "gen-lb.yaml");
  expect(r.spec, "gen-lb accepted a spec nginx refuses").toBeUndefined();
  return r.errors.map(formatDiagnostic);
}

/** The config gen-lb would write without its own checks, judged by the real binary. */
async function realBinaryOutput(spec: Record<string, unknown>, target: Target): Promise<{ ok: boolean; output: string }> {
  const bin = BINS[target];
  expect(existsSync(bin), `${bin} is missing (install ${target === "nginx" ? "nginx libnginx-mod-http-lua" : "OpenResty at /opt/openresty"})`).toBe(true);
  const parsed = specSchema.parse(spec);
  const dir = tempDir("gen-lb-refuse-");
  await writeFileSet(dir, buildFileSet(parsed, "spec.yaml"));
  const r = spawnSync(bin, ["-t", "-p", `${dir}/`, "-c", "conf/nginx.conf"], { encoding: "utf8" });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

const withLocationDirectives = (target: Target, directives: unknown[]) =>
  base(target, { servers: [{ listen: 18080, locations: [{ path: "/", upstream: "web", directives }] }] });

for (const target of ["nginx", "openresty"] as const) {
  describe(`target ${target}: refused as nginx refuses`, () => {
    it("a directive in the wrong context", async () => {
      const spec = base(target, { nginx: { http: { directives: [{ name: "proxy_pass", args: ["http://web"] }] } } });
      const [e] = errorsOf(spec);
      expect(e).toMatch(/^nginx\.http\.directives\[0\]\.name \(gen-lb\.yaml:\d+:\d+\): "proxy_pass" is not allowed in http \{\}; nginx allows it in location \{\}/);
      const real = await realBinaryOutput(spec, target);
      expect(real.ok).toBe(false);
      expect(real.output).toMatch(/"proxy_pass" directive is not allowed here/);
    });

    it("a wrong number of arguments", async () => {
      const spec = withLocationDirectives(target, [{ name: "add_header", args: ["X-One"] }]);
      const [e] = errorsOf(spec);
      expect(e).toMatch(/^servers\[0\]\.locations\[0\]\.directives\[0\]\.args \(gen-lb\.yaml:\d+:\d+\): invalid number of arguments in "add_header": got 1, nginx takes 2 or 3 arguments/);
      const real = await realBinaryOutput(spec, target);
      expect(real.output).toMatch(/invalid number of arguments in "add_header" directive/);
    });

    it("a non-repeatable directive twice in one block", async () => {
      const spec = withLocationDirectives(target, [
        { name: "client_max_body_size", args: ["1m"] },
        { name: "client_max_body_size", args: ["2m"] },
      ]);
      const [e] = errorsOf(spec);
      expect(e).toMatch(/^servers\[0\]\.locations\[0\]\.directives\[1\]\.name \(gen-lb\.yaml:\d+:\d+\): "client_max_body_size" directive is duplicate.*also at servers\[0\]\.locations\[0\]\.directives\[0\]/);
      const real = await realBinaryOutput(spec, target);
      expect(real.output).toMatch(/"client_max_body_size" directive is duplicate/);
    });

    it("limit_req with the same zone twice (nginx refuses only the same zone)", async () => {
      const zones = { nginx: { http: { directives: [{ name: "limit_req_zone", args: ["$binary_remote_addr", "zone=flood:1m", "rate=10r/s"] }] } } };
      const spec = { ...withLocationDirectives(target, [
        { name: "limit_req", args: ["zone=flood", "burst=5"] },
        { name: "limit_req", args: ["zone=flood", "burst=9", "nodelay"] },
      ]), ...zones };
      expect(errorsOf(spec)[0]).toMatch(/^servers\[0\]\.locations\[0\]\.directives\[1\]\.name .*"limit_req" directive is duplicate/);
      expect((await realBinaryOutput(spec, target)).output).toMatch(/"limit_req" directive is duplicate/);
    });

    it("one gen-lb emits itself, given again (lua_socket_log_errors at http level)", async () => {
      const spec = base(target, { nginx: { http: { directives: [{ name: "lua_socket_log_errors", args: ["on"] }] } } });
      const [e] = errorsOf(spec);
      expect(e).toMatch(/^nginx\.http\.directives\[0\]\.name \(gen-lb\.yaml:\d+:\d+\): "lua_socket_log_errors" directive is duplicate.*gen-lb already emits it here/);
      const real = await realBinaryOutput(spec, target);
      expect(real.output).toMatch(/"lua_socket_log_errors" directive is duplicate/);
    });

    it("a block directive without its block, and a block on one that takes none", async () => {
      const spec = withLocationDirectives(target, [{ name: "limit_except", args: ["GET"] }]);
      expect(errorsOf(spec)[0]).toMatch(/directives\[0\]\.name .*"limit_except" takes a block/);
      expect((await realBinaryOutput(spec, target)).output).toMatch(/directive "limit_except" has no opening "\{"/);
      const spec2 = withLocationDirectives(target, [{ name: "expires", args: ["1h"], block: [] }]);
      expect(errorsOf(spec2)[0]).toMatch(/directives\[0\]\.block .*"expires" takes no block/);
      expect((await realBinaryOutput(spec2, target)).output).toMatch(/directive "expires" is not terminated by ";"/);
    });

    it("inside an escape-hatch block, its own context is checked (if {} in a location)", async () => {
      const spec = withLocationDirectives(target, [{ name: "if", args: ["($uri", "=", "/x)"], block: [{ name: "server_tokens", args: ["off"] }] }]);
      expect(errorsOf(spec)[0]).toMatch(/^servers\[0\]\.locations\[0\]\.directives\[0\]\.block\[0\]\.name .*"server_tokens" is not allowed in if \{\} in a location/);
      expect((await realBinaryOutput(spec, target)).output).toMatch(/"server_tokens" directive is not allowed here/);
    });

    it('nginx.user "a b c" (user takes 1 or 2)', async () => {
      const spec = base(target, { nginx: { user: "a b c" } });
      expect(errorsOf(spec)[0]).toMatch(/^nginx\.user \(gen-lb\.yaml:\d+:\d+\): invalid number of arguments in "user": got 3, nginx takes 1 or 2 arguments/);
      expect((await realBinaryOutput(spec, target)).output).toMatch(/invalid number of arguments in "user" directive/);
    });

    it("two upstreams whose names differ only in case", async () => {
      const spec = base(target, {
        upstreams: { web: { service: "web" }, WEB: { service: "web2" } },
        servers: [{ listen: 18080, locations: [{ path: "/", upstream: "web" }, { path: "/b", upstream: "WEB" }] }],
      });
      expect(errorsOf(spec)[0]).toMatch(/^upstreams\.WEB \(gen-lb\.yaml:\d+:\d+\): duplicate upstream "WEB": nginx compares upstream names case-insensitively and "web" is already defined/);
      expect((await realBinaryOutput(spec, target)).output).toMatch(/duplicate upstream "WEB"/i);
    });
  });
}

describe("refused by one target, accepted by the other", () => {
  it("a directive the target's sources lack: `ssl` (removed in nginx 1.25.1) is unknown to OpenResty 1.31", async () => {
    const spec = base("openresty", { nginx: { http: { directives: [{ name: "ssl", args: ["off"] }] } } });
    expect(errorsOf(spec)[0]).toMatch(/^nginx\.http\.directives\[0\]\.name .*unknown directive "ssl": openresty 1\.31\.1\.1 has no such directive/);
    expect((await realBinaryOutput(spec, "openresty")).output).toMatch(/unknown directive "ssl"/);
  });

  it("a directive of a module OpenResty's sources have but its reference build leaves out (geoip_country) is a warning naming the flag, not a refusal; the reference binary itself refuses it", async () => {
    const spec = base("openresty", { nginx: { http: { directives: [{ name: "geoip_country", args: ["/usr/share/GeoIP/GeoIP.dat"] }] } } });
    const r = validateSpecText(stringify(spec), "gen-lb.yaml");
    expect(r.errors.map(formatDiagnostic)).toEqual([]);
    expect(r.warnings.map(formatDiagnostic)).toEqual([
      expect.stringMatching(/^nginx\.http\.directives\[0\]\.name \(gen-lb\.yaml:\d+:\d+\): "geoip_country" comes from ngx_http_geoip_module, which openresty has only when built with --with-http_geoip_module .*`gen-lb check --bin BINARY` tells/),
    ]);
    // why it is a warning: the binary the table was generated from is built without it
    expect((await realBinaryOutput(spec, "openresty")).output).toMatch(/unknown directive "geoip_country"/);
  });

  it("a Debian dynamic module's directive without its load_module", async () => {
    const spec = base("nginx", { nginx: { http: { directives: [{ name: "geoip_country", args: ["/usr/share/GeoIP/GeoIP.dat"] }] } } });
    expect(errorsOf(spec)[0]).toMatch(/"geoip_country" comes from ngx_http_geoip_module, which nginx 1\.22\.1 builds as a dynamic module: add load_module modules\/ngx_http_geoip_module\.so/);
    expect((await realBinaryOutput(spec, "nginx")).output).toMatch(/unknown directive "geoip_country"/);
  });

  it("the same directive with its load_module is accepted", () => {
    const spec = base("nginx", {
      nginx: {
        directives: [{ name: "load_module", args: ["/usr/lib/nginx/modules/ngx_http_geoip_module.so"] }],
        http: { directives: [{ name: "geoip_country", args: ["/usr/share/GeoIP/GeoIP.dat"] }] },
      },
    });
    const r = validateSpecText(stringify(spec), "gen-lb.yaml");
    expect(r.errors.map(formatDiagnostic)).toEqual([]);
  });
});

describe("accepted and emitted", () => {
  it('empty-string arguments (add_header X-Empty "")', async () => {
    for (const target of ["nginx", "openresty"] as const) {
      const spec = withLocationDirectives(target, [{ name: "add_header", args: ["X-Empty", ""] }]);
      const r = validateSpecText(stringify(spec), "gen-lb.yaml");
      expect(r.errors.map(formatDiagnostic)).toEqual([]);
      const conf = buildFileSet(r.spec!, "spec.yaml").files.find((f) => f.path === "conf/nginx.conf")!.contents;
      expect(conf).toMatch(/add_header "X-Empty" "";|add_header X-Empty "";|add_header X-Empty '';/);
      const real = await realBinaryOutput(spec, target);
      expect(real.output).toMatch(/test is successful/);
    }
  });
});

describe("repeats nginx takes although the table marks the directive unrepeatable", () => {
  it("limit_req and limit_conn with two zones in one location (Discourse's flood and bot limits)", async () => {
    for (const target of ["nginx", "openresty"] as const) {
      const spec = {
        ...withLocationDirectives(target, [
          { name: "limit_conn", args: ["perip", "20"] },
          { name: "limit_conn", args: ["perserver", "100"] },
          { name: "limit_req", args: ["zone=flood", "burst=12", "nodelay"] },
          { name: "limit_req", args: ["zone=bot", "burst=100", "nodelay"] },
        ]),
        nginx: {
          http: {
            directives: [
              { name: "limit_req_zone", args: ["$binary_remote_addr", "zone=flood:1m", "rate=12r/s"] },
              { name: "limit_req_zone", args: ["$binary_remote_addr", "zone=bot:1m", "rate=200r/m"] },
              { name: "limit_conn_zone", args: ["$binary_remote_addr", "zone=perip:1m"] },
              { name: "limit_conn_zone", args: ["$server_name", "zone=perserver:1m"] },
            ],
          },
        },
      };
      const r = validateSpecText(stringify(spec), "gen-lb.yaml");
      expect(r.errors.map(formatDiagnostic)).toEqual([]);
      expect((await realBinaryOutput(spec, target)).output).toMatch(/test is successful/);
    }
  });
});

describe("control characters in a map", () => {
  it("a map value with a control character is refused with its path", () => {
    const spec = base("openresty", { nginx: { http: { maps: [{ source: "$uri", variable: "$x", entries: [{ match: "a", value: "b\u0001c" }] }] } } });
    expect(errorsOf(spec)[0]).toMatch(/^nginx\.http\.maps\[0\]\.entries\[0\]\.value \(gen-lb\.yaml:\d+:\d+\): .*control characters/);
  });
});
