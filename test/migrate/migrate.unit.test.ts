import path from "node:path";
import { describe, expect, it } from "vitest";
import { migrate, MigrateError, specYaml } from "../../src/migrate/index.js";
import { memoryLoader } from "../../src/nginx/load.js";
import { specSchema } from "../../src/spec/schema.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { CASES, fixtureLoader, fixtures, migrateFixture } from "./helpers.js";

const defectsOf = (rel: string) =>
  migrateFixture(rel)
    .findings.filter((f) => f.kind === "defect")
    .map((f) => `${f.defect} ${f.file}:${f.line}:${f.column}`);

describe("the hand-built Consul + Lua setup", () => {
  const m = migrateFixture(CASES["consul-lua"]);

  it("detects all eleven defects, each at its file:line:column", () => {
    expect(defectsOf(CASES["consul-lua"]).sort()).toEqual(
      [
        "1 consul-lua/lua/discovery.lua:27:10",
        "2 consul-lua/lua/discovery.lua:3:14",
        "3 consul-lua/lua/discovery.lua:28:25",
        "3 consul-lua/conf/nginx.conf:56:52",
        "3 consul-lua/lua/discovery.lua:34:46",
        "4 consul-lua/lua/discovery.lua:9:16",
        "5 consul-lua/lua/discovery.lua:37:5",
        "6 consul-lua/conf/nginx.conf:54:23",
        "6 consul-lua/conf/nginx.conf:56:21",
        "7 consul-lua/conf/nginx.conf:31:28",
        "7 consul-lua/conf/nginx.conf:31:28",
        "7 consul-lua/conf/nginx.conf:44:13",
        "8 consul-lua/conf/nginx.conf:49:5",
        "9 consul-lua/lua/discovery.lua:42:5",
        "10 consul-lua/lua/discovery.lua:14:21",
        "11 consul-lua/conf/nginx.conf:23:5",
      ].sort(),
    );
    const messages = m.findings.filter((f) => f.kind === "defect").map((f) => f.message).join("\n");
    expect(messages).toMatch(/http\.request` is assigned a table/);
    expect(messages).toMatch(/shm "healthcheck" is not declared/);
    expect(messages).toMatch(/TODO: only one worker should poll Consul" at line 40/);
    expect(messages).toMatch(/no datacenter is given; no ACL token is sent/);
  });

  it("turns the pattern into a Consul-discovered upstream with the checker's options", () => {
    expect(m.spec.target).toBe("nginx");
    expect(m.spec.consul).toEqual({ addresses: ["http://127.0.0.1:8500"] });
    expect(m.spec.upstreams).toEqual({
      app: {
        service: "app",
        balance: "random",
        keepalive: 0,
        retries: 1,
        healthcheck: {
          active: {
            type: "http",
            path: "/health",
            host: "app.internal",
            interval: "2s",
            timeout: "1s",
            fall: 3,
            rise: 2,
            valid_statuses: [200, 302],
            concurrency: 10,
          },
        },
      },
    });
    expect(m.spec.servers).toEqual([
      {
        listen: 80,
        server_name: ["app.example.com"],
        locations: [{ path: "/", upstream: "app", proxy_set_header: { Host: "$host", "X-Real-IP": "$remote_addr" } }],
      },
    ]);
    expect(m.spec.status).toEqual({ listen: "127.0.0.1:8081", enabled: true, path: "/status", allow: ["127.0.0.1"] });
  });

  it("drops what only served the pattern, saying why, with positions", () => {
    const dropped = m.findings.filter((f) => f.kind === "dropped").map((f) => `${f.line} ${f.directive}`);
    expect(dropped).toEqual([
      "2 load_module",
      "3 load_module",
      "21 lua_shared_dict",
      "23 init_by_lua_block",
      "27 init_worker_by_lua_block",
      "51 balancer_by_lua_block",
      "50 server",
      "76 access_log",
      "77 allow",
      "78 deny",
      "79 default_type",
      "80 content_by_lua_block",
    ]);
  });

  it("a Lua module it cannot find is reported with the require's file:line and the rest migrated, unless --lua-path finds it", () => {
    const conf = "consul-lua/conf/nginx.conf";
    const text = fixtureLoader("consul-lua").readFile(conf).toString().replace('"$prefix/lua/?.lua;;"', '"/nowhere/?.lua;;"');
    const loader = fixtureLoader("consul-lua", { [conf]: text });
    const partial = migrate(conf, { loader });
    const todo = partial.findings.find((f) => f.kind === "todo" && f.message.startsWith('require "discovery"'));
    expect(`${todo?.file}:${todo?.line}:${todo?.column}`).toBe("consul-lua/conf/nginx.conf:24:9");
    expect(todo?.message).toMatch(/module not found \(tried \/nowhere\/discovery\.lua\)/);
    expect((partial.spec.servers as unknown[]).length).toBeGreaterThan(0);
    const ok = migrate(conf, { loader, luaPath: ["consul-lua/lua"] });
    expect(ok.findings.filter((f) => f.kind === "defect")).toHaveLength(16);
  });

  it("a Lua module that does not lex is a clear error with file:line:column", () => {
    const loader = fixtureLoader("consul-lua", { "consul-lua/lua/discovery.lua": 'local x = 1\nlocal s = [[ never closed\n' });
    expect(() => migrate("consul-lua/conf/nginx.conf", { loader })).toThrow(MigrateError);
    try {
      migrate("consul-lua/conf/nginx.conf", { loader });
    } catch (e) {
      expect((e as MigrateError).details).toEqual(['consul-lua/lua/discovery.lua:2:11: unterminated Lua long string (expecting "]]")']);
    }
  });
});

describe("static upstreams", () => {
  const m = migrateFixture(CASES.static);

  it("stay static upstreams with their balancing, keepalive, retries and every server parameter", () => {
    expect(m.spec.upstreams).toEqual({
      api: {
        balance: "least_conn",
        keepalive: 16,
        servers: [
          { address: "10.0.0.11:8080", weight: 3, max_fails: 2, fail_timeout: "20s" },
          { address: "10.0.0.12:8080", max_fails: 2, fail_timeout: "20s" },
          { address: "10.0.0.13:8080", backup: true },
        ],
        retry_statuses: [502],
        retries: 2,
      },
      // nginx's default proxy_next_upstream (error timeout): no status retries.
      sessions: { balance: "chash", hash_key: "$cookie_sid", keepalive: 0, servers: ["10.0.1.21:9000", "10.0.1.22:80"], retry_statuses: [], retries: 1 },
    });
  });

  it("keeps per-server settings (backup included) and asks for no Consul service", () => {
    const lost = m.findings.filter((f) => f.kind === "lost").map((f) => `${f.line}: ${f.message}`);
    expect(lost.filter((l) => /^3[5-7]: /.test(l))).toEqual([]);
    expect(m.findings.find((f) => f.line === 37 && f.kind === "converted")?.to).toBe("upstreams.api.servers");
    // return 200 "ok\n": the newline is carried (written back as nginx's \n escape).
    expect(m.findings.find((f) => f.line === 65 && f.directive === "return")).toMatchObject({ kind: "converted", to: "servers[].locations[].return" });
    // The only to-do: the fixture's mime.types maps .js differently from gen-lb's.
    expect(m.findings.filter((f) => f.kind === "todo").map((f) => f.message)).toEqual([expect.stringMatching(/^mime\.types: 1 extension .*\.js: application\/javascript -> text\/javascript/)]);
    expect(m.findings.some((f) => f.kind === "defect")).toBe(false);
  });

  it("keeps http settings typed and carries the rest unchanged", () => {
    const http = (m.spec.nginx as { http: Record<string, unknown> }).http;
    expect(http.keepalive_timeout).toBe("65s");
    expect(http.proxy_read_timeout).toBe(90);
    expect(http.log_formats).toEqual({ main: '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer"' });
    expect(http.access_log).toEqual([{ path: "logs/access.log", format: "main", buffer: "32k", flush: "5s" }]);
    expect(http.gzip).toEqual({ enabled: true, comp_level: 5, types: ["text/plain", "application/json"] });
    expect(http.directives).toEqual([
      { name: "proxy_set_header", args: ["Host", "$host"] },
      { name: "proxy_set_header", args: ["X-Forwarded-For", "$proxy_add_x_forwarded_for"] },
    ]);
    // A location that sets none inherits the http-level headers; gen-lb makes them explicit.
    const session = (m.spec.servers as Array<{ locations: Array<Record<string, unknown>> }>)[0]!.locations[1]!;
    expect(session.proxy_set_header).toEqual({ Host: "$host", "X-Forwarded-For": "$proxy_add_x_forwarded_for" });
  });
});

describe("consul-template rendered upstreams", () => {
  const m = migrateFixture(CASES["consul-template"]);
  it("are read through the glob include and get the service from the header", () => {
    expect(m.spec.upstreams).toEqual({
      web: { service: "web", keepalive: 0, fallback: ["10.1.0.5:31001", "10.1.0.6:31007", "10.1.0.7:31002", "10.1.0.8:31010"], retry_statuses: [], retries: 3 },
    });
    const todo = m.findings.find((f) => f.kind === "todo" && f.file.endsWith("upstreams.conf"));
    expect(todo?.line).toBe(3);
    expect(todo?.message).toMatch(/rendered by consul-template: service "web" \(from its header/);
    expect(m.findings[0]!.message).toBe("include conf.d/*.conf: inlined 1 file (consul-template/conf.d/upstreams.conf)");
    // The status server moves off the port the old server uses.
    expect(m.spec.status).toEqual({ listen: "127.0.0.1:8082", enabled: false });
  });
});

describe("map, if, regex locations and ssl", () => {
  const m = migrateFixture(CASES.mixed);
  const servers = m.spec.servers as Array<Record<string, unknown>>;

  it("splits a server whose listens differ in ssl/http2 into one server per kind", () => {
    expect(servers.map((s) => [s.listen, s.http2 ?? false, s.ssl !== undefined])).toEqual([
      ["127.0.0.1:8443", true, true],
      ["127.0.0.1:8080", false, false],
    ]);
    expect(servers[0]!.ssl).toEqual({
      certificate: path.join(fixtures, "mixed/certs/test.crt"),
      certificate_key: path.join(fixtures, "mixed/certs/test.key"),
      protocols: ["TLSv1.2", "TLSv1.3"],
      // nginx's own defaults, written out: gen-lb's intermediate profile would change them.
      ciphers: "HIGH:!aNULL:!MD5",
      prefer_server_ciphers: false,
    });
    expect(servers[1]!.directives).toEqual([{ name: "if", args: ["($legacy)"], block: [{ name: "return", args: ["301", "/new$request_uri"] }] }]);
  });

  it("keeps maps typed, regex locations with their modifiers, and nested blocks in the escape hatch", () => {
    const http = (m.spec.nginx as { http: Record<string, unknown> }).http;
    expect(http.upgrade_map).toBe(true);
    expect(http.maps).toEqual([
      { source: "$uri", variable: "$legacy", hostnames: true, default: "0", entries: [{ match: "~^/old/", value: "1" }, { match: "/exact", value: "2" }] },
    ]);
    const locs = servers[0]!.locations as Array<Record<string, unknown>>;
    expect(locs.map((l) => [l.match ?? "prefix", l.path])).toEqual([
      ["regex", "^/v[0-9]{1,2}/"],
      ["regex_case_insensitive", "\\.(png|jpe?g|gif)$"],
      ["prefix_no_regex", "/admin/"],
      ["prefix", "@fallback"],
    ]);
    expect(locs[0]).toMatchObject({ upstream: "backend", websocket: true });
    expect(locs[2]!.directives).toEqual([
      { name: "if", args: ["($request_method", "!~", "^(GET|HEAD)$)"], block: [{ name: "return", args: ["405"] }] },
      { name: "location", args: ["/admin/reports/"], block: [{ name: "return", args: ["403"] }] },
      { name: "proxy_pass", args: ["http://127.0.0.1:9100"] },
    ]);
    expect(locs[3]!.return).toEqual({ code: 502, text: "backend down" });
  });
});

describe("every legacy fixture", () => {
  for (const [name, rel] of Object.entries(CASES)) {
    it(`${name}: the spec is valid YAML for the schema, and every directive has a disposition`, () => {
      const m = migrateFixture(rel);
      const yaml = specYaml(m, rel);
      const v = validateSpecText(yaml, "gen-lb.yaml");
      expect(v.errors).toEqual([]);
      expect(specSchema.safeParse(m.spec).success).toBe(true);
      const seen = new Set(m.findings.map((f) => `${f.file}:${f.line}:${f.column}`));
      const missing: string[] = [];
      const visit = (nodes: typeof m.tree, inDropped: boolean) => {
        for (const d of nodes) {
          if (d.directive === "#") continue;
          const here = seen.has(`${d.file}:${d.line}:${d.column}`);
          if (!here && !inDropped) missing.push(`${d.file}:${d.line} ${d.directive}`);
          // The insides of carried blocks (if, nested location...) travel with them.
          if (d.block && !["if", "location", "limit_except", "types", "map"].includes(d.directive)) visit(d.block, false);
          else if (d.block && d.directive === "location" && !m.findings.some((f) => f.file === d.file && f.line === d.line && f.kind === "carried")) visit(d.block, false);
        }
      };
      visit(m.tree.filter((d) => !["events", "http"].includes(d.directive)), false);
      for (const top of m.tree.filter((d) => ["events", "http"].includes(d.directive))) visit(top.block ?? [], false);
      expect(missing).toEqual([]);
    });
  }
});

describe("bad input", () => {
  it("a binary file, garbage, or an include cycle: MigrateError with file:line", () => {
    const cases: Array<[Record<string, string | Uint8Array>, RegExp]> = [
      [{ "x/nginx.conf": new Uint8Array([0x75, 0x0a, 0x00, 0xff]) }, /^x\/nginx\.conf:2:1: not a text file/],
      [{ "x/nginx.conf": "this is not nginx\n" }, /^x\/nginx\.conf:1:1: unexpected end of file: the directive "this" is not terminated by ";"$/],
      [{ "x/nginx.conf": "include a.conf;\n", "x/a.conf": "include nginx.conf;\n" }, /^x\/a\.conf:1:1: include cycle: x\/nginx\.conf -> x\/a\.conf -> x\/nginx\.conf$/],
    ];
    for (const [files, detail] of cases) {
      try {
        migrate("x/nginx.conf", { loader: memoryLoader(files) });
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(MigrateError);
        expect((e as MigrateError).message).toMatch(/^x\/nginx\.conf did not parse as an nginx config/);
        expect((e as MigrateError).details[0]).toMatch(detail);
      }
    }
  });

  it("directives gen-lb has no converter for are carried; those the target's nginx does not know are reported lost, not dropped silently", () => {
    const m = migrate("n.conf", {
      loader: memoryLoader({ "n.conf": "some_module_directive a b;\nevents {}\nhttp { more_set_headers \"X-A: b\"; server { listen 8080; frobnicate on; } }\n" }),
    });
    // OpenResty (the target without --bin) bundles headers-more.
    expect((m.spec.nginx as { http: Record<string, unknown> }).http.directives).toEqual([{ name: "more_set_headers", args: ["X-A: b"] }]);
    expect((m.spec.nginx as Record<string, unknown>).directives).toEqual([]);
    expect((m.spec.servers as Array<Record<string, unknown>>)[0]!.directives).toEqual([]);
    expect(m.findings.filter((f) => f.kind === "lost" && f.directive !== undefined).map((f) => `${f.line} ${f.message}`)).toEqual([
      '1 some_module_directive a b: the target\'s nginx refuses it (unknown directive "some_module_directive": openresty 1.31.1.1 has no such directive)',
      '3 frobnicate on: the target\'s nginx refuses it (unknown directive "frobnicate": openresty 1.31.1.1 has no such directive)',
    ]);
  });

  it("Lua that is not the discovery pattern is reported as not carried, and its dict is kept", () => {
    const m = migrate("n.conf", {
      loader: memoryLoader({
        "n.conf": [
          "events {}",
          "http {",
          "  lua_shared_dict limits 1m;",
          "  server {",
          "    listen 8080;",
          "    location /x {",
          "      access_by_lua_block { local n = ngx.shared.limits:incr('k', 1, 0) }",
          "      content_by_lua_block { ngx.status = 404; ngx.say('status: gone') }",
          "    }",
          "  }",
          "}",
          "",
        ].join("\n"),
      }),
    });
    expect((m.spec.nginx as { http: Record<string, unknown> }).http.directives).toEqual([{ name: "lua_shared_dict", args: ["limits", "1m"] }]);
    expect(m.findings.filter((f) => f.kind === "lost" && f.directive !== undefined).map((f) => `${f.line}:${f.column} ${f.directive}`)).toEqual([
      "7:7 access_by_lua_block",
      "8:7 content_by_lua_block",
    ]);
    expect((m.spec.status as Record<string, unknown>).enabled).toBe(false);
    expect(m.findings.some((f) => f.kind === "defect")).toBe(false);
  });

  it("a log_by_lua where gen-lb proxies to an upstream is reported as lost, and the spec validates", () => {
    const m = migrate("n.conf", {
      loader: memoryLoader({
        "n.conf": [
          "events {}",
          "http {",
          "  upstream app { server 10.0.0.1:8080; server 10.0.0.2:8080; }",
          "  log_by_lua_file lua/http_log.lua;",
          "  server {",
          "    listen 8080;",
          "    location / { proxy_pass http://app; log_by_lua_file lua/metrics.lua; }",
          "  }",
          "}",
          "",
        ].join("\n"),
        "lua/http_log.lua": "ngx.log(ngx.INFO, ngx.var.request_uri)\n",
        "lua/metrics.lua": "ngx.shared.metrics:incr(ngx.var.status, 1, 0)\n",
      }),
    });
    const lost = m.findings.filter((f) => f.kind === "lost" && f.directive === "log_by_lua_file");
    expect(lost.map((f) => `${f.line}:${f.column}`)).toEqual(["4:3", "7:41"]);
    expect(lost[1]!.message).toMatch(/gen-lb runs its own log_by_lua in every server that proxies to an upstream/);
    const v = validateSpecText(specYaml(m, "n.conf"), "gen-lb.yaml");
    expect(v.errors).toEqual([]);
  });

  it("listen parameters become reuseport and listen_options; a server whose listens differ in them is split", () => {
    const m = migrate("n.conf", {
      loader: memoryLoader({
        "n.conf": [
          "events {}",
          "http {",
          "  server {",
          "    listen 127.0.0.1:8080 reuseport backlog=4096 proxy_protocol;",
          "    listen 8081 fastopen=256 quic;",
          "    location / { return 200 ok; }",
          "  }",
          "}",
          "",
        ].join("\n"),
      }),
    });
    const servers = (m.spec.servers as Array<Record<string, unknown>>).map(({ listen, reuseport, listen_options }) => ({ listen, reuseport, listen_options }));
    expect(servers).toEqual([
      { listen: "127.0.0.1:8080", reuseport: true, listen_options: ["backlog=4096", "proxy_protocol"] },
      { listen: 8081, reuseport: undefined, listen_options: ["fastopen=256"] },
    ]);
    expect(m.findings.find((f) => f.kind === "lost" && f.line === 5)?.message).toMatch(/quic cannot be expressed \(the listen itself is kept\)/);
    expect(validateSpecText(specYaml(m, "n.conf"), "gen-lb.yaml").errors).toEqual([]);
  });

  it("an http-level types {} becomes nginx.http.types", () => {
    const m = migrate("n.conf", {
      loader: memoryLoader({
        "n.conf": [
          "events {}",
          "http {",
          "  include mime.types;",
          "  types { application/wasm wasm; text/x-lua lua luac; }",
          "  server { listen 8080; location / { root html; } }",
          "}",
          "",
        ].join("\n"),
        "mime.types": "types { text/html html; }\n",
      }),
    });
    const http = (m.spec.nginx as { http: Record<string, unknown> }).http;
    expect(http.types).toEqual({ "application/wasm": ["wasm"], "text/x-lua": ["lua", "luac"] });
    expect(m.findings.find((f) => f.line === 4)).toMatchObject({ kind: "converted", to: "nginx.http.types" });
    expect(validateSpecText(specYaml(m, "n.conf"), "gen-lb.yaml").errors).toEqual([]);
  });

  it("a static server marked down stays in the static upstream, marked down", () => {
    const m = migrate("n.conf", {
      loader: memoryLoader({
        "n.conf": [
          "events {}",
          "http {",
          "  upstream app { server 10.0.0.1:8080 weight=2; server 10.0.0.2:8080 down; }",
          "  server { listen 8080; location / { proxy_pass http://app; } }",
          "}",
          "",
        ].join("\n"),
      }),
    });
    expect((m.spec.upstreams as Record<string, Record<string, unknown>>).app!.servers).toEqual([
      { address: "10.0.0.1:8080", weight: 2 },
      { address: "10.0.0.2:8080", down: true },
    ]);
    expect(m.findings.find((f) => f.directive === "server" && f.line === 3 && f.column === 49)).toMatchObject({ kind: "converted", to: "upstreams.app.servers" });
  });

});

describe("the balance a Lua balancer used", () => {
  const conf = (balancer: string) => `events {}
http {
    init_worker_by_lua_block { require("sync").start() }
    upstream app {
        server 0.0.0.1;
        balancer_by_lua_block { ${balancer} }
    }
    server { listen 8080; location / { proxy_pass http://app; } }
}
`;
  const sync = 'local http = require "resty.http"\nlocal M = {}\nfunction M.start() local c = http.new(); c:request_uri("http://127.0.0.1:8500/v1/health/service/app?passing") end\nreturn M\n';
  const run = (balancer: string) =>
    migrate("conf/nginx.conf", { loader: memoryLoader({ "conf/nginx.conf": conf(balancer), "lua/sync.lua": sync }), luaPath: ["lua"] });
  it("lua-resty-balancer's resty.roundrobin is round_robin, math.random is random; the report says which code showed it", () => {
    const rr = run('local rr = require("resty.roundrobin"):new({ ["127.0.0.1:1"] = 1 }); require("ngx.balancer").set_current_peer(rr:find())');
    expect((rr.spec.upstreams as Record<string, { balance: string }>).app!.balance).toBe("round_robin");
    expect(rr.findings.find((f) => f.to === "upstreams.app.balance" && f.kind === "converted")!.message).toMatch(/balance round_robin, as its old Lua balancer picks \(require "resty.roundrobin"\)/);
    const random = run('local p = peers[math.random(#peers)]; require("ngx.balancer").set_current_peer(p.host, p.port)');
    expect((random.spec.upstreams as Record<string, { balance: string }>).app!.balance).toBe("random");
  });
  it("resty.chash on ngx.var.NAME is chash on $NAME; on a key migrate cannot read, a to-do (the stickiness would be lost)", () => {
    const ch = run('local c = require("resty.chash"):new({ ["127.0.0.1:1"] = 1 }); require("ngx.balancer").set_current_peer(c:find(ngx.var.remote_addr))');
    expect((ch.spec.upstreams as Record<string, Record<string, unknown>>).app).toMatchObject({ balance: "chash", hash_key: "$remote_addr" });
    expect(validateSpecText(JSON.stringify(ch.spec), "spec.json").errors).toEqual([]);
    const unknown = run('local c = require("resty.chash"):new({ ["127.0.0.1:1"] = 1 }); require("ngx.balancer").set_current_peer(c:find(key_of(ngx)))');
    expect(unknown.findings.filter((f) => f.kind === "todo" && f.to === "upstreams.app.hash_key").map((f) => f.message)).toEqual([expect.stringMatching(/hashed \(require "resty.chash"\) on a key migrate cannot read/)]);
  });
});
