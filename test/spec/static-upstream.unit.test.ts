/**
 * Validation of static upstreams and fallback peers: every refusal names the
 * spec path and line:column and says how to fix it.
 */
import { describe, expect, it } from "vitest";
import { formatDiagnostic } from "../../src/pipeline/load.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { planBuild } from "../../src/pipeline/plan.js";

function errorsOf(text: string): string[] {
  const r = validateSpecText(text, "gen-lb.yaml");
  expect(r.spec).toBeUndefined();
  return r.errors.map(formatDiagnostic);
}

const ok = (text: string) => {
  const r = validateSpecText(text, "gen-lb.yaml");
  expect(r.errors.map(formatDiagnostic)).toEqual([]);
  return r.spec!;
};

describe("static upstreams: validation", () => {
  it("accepts every entry form", () => {
    const spec = ok(
      'upstreams:\n  app:\n    servers:\n      - "localhost:8080"\n      - "unix:/run/app.sock"\n      - "[::1]:8081"\n      - {address: "10.0.0.1:80", weight: 2, max_fails: 3, fail_timeout: 5s, max_conns: 10, backup: true, down: false}\n',
    );
    expect(spec.upstreams.app?.servers).toHaveLength(4);
  });

  it("refuses a bad address, with the entry's path and line", () => {
    expect(errorsOf('upstreams:\n  app:\n    servers:\n      - "10.0.0.1"\n      - {address: "::1:80"}\n      - "unix:run.sock"\n')).toEqual([
      expect.stringMatching(/^upstreams\.app\.servers\[0\] \(gen-lb\.yaml:4:9\): a peer needs a port/),
      expect.stringMatching(/^upstreams\.app\.servers\[1\]\.address \(gen-lb\.yaml:5:\d+\): an IPv6 peer is written in brackets/),
      expect.stringMatching(/^upstreams\.app\.servers\[2\] \(gen-lb\.yaml:6:9\): a unix socket path is absolute/),
    ]);
  });

  it("refuses unknown and out-of-range server fields", () => {
    expect(errorsOf('upstreams:\n  app:\n    servers:\n      - {address: "10.0.0.1:80", wieght: 2}\n')).toEqual([
      expect.stringMatching(/^upstreams\.app\.servers\[0\]/),
    ]);
    expect(errorsOf('upstreams:\n  app:\n    servers:\n      - {address: "10.0.0.1:80", weight: 0}\n')[0]).toMatch(/^upstreams\.app\.servers\[0\]/);
    expect(errorsOf("upstreams:\n  app:\n    servers: []\n")[0]).toMatch(/^upstreams\.app\.servers \(gen-lb\.yaml:3:5\)/);
  });

  it("refuses an upstream with neither service nor servers, or both", () => {
    expect(errorsOf("upstreams:\n  app:\n    balance: least_conn\n")).toEqual([expect.stringMatching(/^upstreams\.app \(gen-lb\.yaml:2:3\): an upstream needs `service`.*or `servers`/)]);
    expect(errorsOf('upstreams:\n  app:\n    service: app\n    servers: ["10.0.0.1:80"]\n')).toEqual([
      expect.stringMatching(/^upstreams\.app\.servers \(gen-lb\.yaml:4:5\): give either `service`.*not both.*fallback/),
    ]);
  });

  it("refuses Consul-only keys on a static upstream, saying what to use instead", () => {
    const errors = errorsOf(
      'upstreams:\n  app:\n    servers: ["10.0.0.1:80"]\n    tags: [a]\n    fallback: ["10.0.0.2:80"]\n    fail_open: false\n    healthcheck: {passive: {}}\n    datacenter: dc2\n',
    );
    expect(errors).toEqual([
      expect.stringMatching(/^upstreams\.app\.tags \(gen-lb\.yaml:4:5\): tags applies to Consul upstreams/),
      expect.stringMatching(/^upstreams\.app\.fallback \(gen-lb\.yaml:5:5\): .*list every server under servers/),
      expect.stringMatching(/^upstreams\.app\.fail_open \(gen-lb\.yaml:6:5\): .*backup server/),
      expect.stringMatching(/^upstreams\.app\.healthcheck \(gen-lb\.yaml:7:5\): .*max_fails and fail_timeout/),
      expect.stringMatching(/^upstreams\.app\.datacenter \(gen-lb\.yaml:8:5\): /),
    ]);
  });

  it("refuses the same server twice, compared normalised", () => {
    expect(errorsOf('upstreams:\n  app:\n    servers: ["127.0.0.1:80", "127.000.000.001:80"]\n')).toEqual([
      expect.stringMatching(/^upstreams\.app\.servers\[1\] \(gen-lb\.yaml:3:31\): 127\.0\.0\.1:80 is already servers\[0\].*raise its weight/),
    ]);
    expect(errorsOf('upstreams:\n  app:\n    servers: ["127.0.0.1:80", "[::ffff:127.0.0.1]:80"]\n')).toEqual([
      expect.stringMatching(/^upstreams\.app\.servers\[1\] \(gen-lb\.yaml:3:31\): 127\.0\.0\.1:80 is already servers\[0\]/),
    ]);
  });

  it("refuses backup with hash or random, and an upstream with no serving server", () => {
    expect(errorsOf('upstreams:\n  app:\n    balance: random\n    servers: ["10.0.0.1:80", {address: "10.0.0.2:80", backup: true}]\n')).toEqual([
      expect.stringMatching(/^upstreams\.app\.servers\[1\]\.backup \(gen-lb\.yaml:4:\d+\): nginx's random method has no backup servers/),
    ]);
    expect(errorsOf('upstreams:\n  app:\n    servers: [{address: "10.0.0.1:80", down: true}, {address: "10.0.0.2:80", backup: true}]\n')).toEqual([
      expect.stringMatching(/^upstreams\.app\.servers \(gen-lb\.yaml:3:5\): .*at least one server that is neither backup nor down/),
    ]);
    expect(errorsOf('upstreams:\n  app:\n    balance: chash\n    servers: ["10.0.0.1:80"]\n')).toEqual([expect.stringMatching(/^upstreams\.app\.balance .*needs a hash_key/)]);
  });

  it("refuses resolve where the target's nginx lacks it, without a resolver, or with nothing to resolve", () => {
    expect(errorsOf('target: nginx\nnginx: {http: {resolver: ["127.0.0.53"]}}\nupstreams:\n  app:\n    servers: ["app.internal:80"]\n    resolve: true\n')).toEqual([
      expect.stringMatching(/^upstreams\.app\.resolve \(gen-lb\.yaml:6:5\): target "nginx" is nginx 1\.22\.1.*needs nginx 1\.27\.3 or later/),
    ]);
    expect(errorsOf('target: openresty\nupstreams:\n  app:\n    servers: ["app.internal:80"]\n    resolve: true\n')).toEqual([
      expect.stringMatching(/^upstreams\.app\.resolve \(gen-lb\.yaml:5:5\): .*set nginx\.http\.resolver/),
    ]);
    expect(errorsOf('target: openresty\nnginx: {http: {resolver: ["127.0.0.53"]}}\nupstreams:\n  app:\n    servers: ["10.0.0.1:80"]\n    resolve: true\n')).toEqual([
      expect.stringMatching(/^upstreams\.app\.resolve .*no server of this upstream is a host name/),
    ]);
    expect(errorsOf('upstreams:\n  app:\n    service: app\n    resolve: true\n')).toEqual([expect.stringMatching(/^upstreams\.app\.resolve .*applies to static upstreams/)]);
  });

  it("renders resolve as zone + server ... resolve on OpenResty, on host names only", () => {
    const spec = ok('target: openresty\nnginx: {http: {resolver: ["127.0.0.53"]}}\nupstreams:\n  app:\n    servers: ["app.internal:80", "10.0.0.1:80"]\n    resolve: true\n');
    const up = planBuild(spec, { specFile: "gen-lb.yaml", generator: "test" }).upstreams[0]!;
    expect(up.block!.map((d) => [d.name, ...d.args].join(" "))).toEqual(["zone gen_lb_static_app 64k", "server app.internal:80 resolve", "server 10.0.0.1:80", "keepalive 32"]);
  });
});

describe("static upstreams: rendering", () => {
  const lines = (yaml: string) => {
    const up = planBuild(ok(yaml), { specFile: "gen-lb.yaml", generator: "test" }).upstreams[0]!;
    return up.block!.map((d) => [d.name, ...d.args].join(" "));
  };
  it("maps balance to nginx's methods, ahead of keepalive", () => {
    const servers = 'servers: ["10.0.0.1:80", "10.0.0.2:80"]';
    expect(lines(`upstreams:\n  a: {${servers}}\n`)).toEqual(["server 10.0.0.1:80", "server 10.0.0.2:80", "keepalive 32"]);
    expect(lines(`upstreams:\n  a: {balance: least_conn, ${servers}}\n`)[0]).toBe("least_conn");
    expect(lines(`upstreams:\n  a: {balance: random, ${servers}}\n`)[0]).toBe("random two");
    expect(lines(`upstreams:\n  a: {balance: chash, hash_key: $cookie_user, ${servers}}\n`)[0]).toBe("hash $cookie_user consistent");
    expect(lines(`upstreams:\n  a: {keepalive: 0, ${servers}}\n`)).toEqual(["server 10.0.0.1:80", "server 10.0.0.2:80"]);
    expect(lines(`upstreams:\n  a: {keepalive_timeout: 30s, keepalive_requests: 500, ${servers}}\n`).slice(2)).toEqual(["keepalive 32", "keepalive_timeout 30s", "keepalive_requests 500"]);
  });

  it("writes every server parameter, normalised", () => {
    expect(
      lines('upstreams:\n  a:\n    servers:\n      - {address: "010.0.0.1:0080", weight: 3, max_fails: 0, fail_timeout: 1m, max_conns: 5, backup: true}\n      - {address: "[0::2]:80", down: true}\n      - "unix:/run/a.sock"\n'),
    ).toEqual(["server 10.0.0.1:80 weight=3 max_fails=0 fail_timeout=60s max_conns=5 backup", "server [::2]:80 down", "server unix:/run/a.sock", "keepalive 32"]);
  });
});

describe("static upstreams: no gen-lb log phase", () => {
  const spec = (locations: string) =>
    `upstreams:\n  st: {servers: ["10.0.0.1:80"]}\n  co: {service: co, counters: true}\nservers:\n  - listen: 8080\n    directives: [{name: log_by_lua, args: ["ngx.log(ngx.INFO, 1)"]}]\n    locations: [${locations}]\n`;
  it("a server proxying only to static upstreams gets none, and may have its own log_by_lua", () => {
    const model = planBuild(ok(spec("{path: /, upstream: st}")), { specFile: "gen-lb.yaml", generator: "test" });
    expect(JSON.stringify(model.servers[0])).not.toContain("gen_lb.balancer");
  });
  it("a server that also proxies to a Consul upstream keeps gen-lb's, and refuses another", () => {
    expect(errorsOf(spec("{path: /, upstream: st}, {path: /c, upstream: co}"))).toEqual([
      expect.stringMatching(/^servers\[0\]\.directives\[0\]\.name .*log_by_lua cannot be used where gen-lb proxies/),
    ]);
  });
});

describe("fallback peers: validation and normalisation", () => {
  it("refuses a host name on target nginx (no lua-resty-dns), even with nginx.http.resolver, and says why and how to fix it", () => {
    expect(errorsOf('target: nginx\nupstreams:\n  web:\n    service: web\n    fallback: ["localhost:8080"]\n')).toEqual([
      expect.stringMatching(
        /^upstreams\.web\.fallback\[0\] \(gen-lb\.yaml:5:16\): fallback peer "localhost:8080" is a host name, and target "nginx" has no lua-resty-dns .*takes only IP addresses: write its IP \("127\.0\.0\.1:8080" for localhost\), or make the upstream static/,
      ),
    ]);
    expect(errorsOf('target: nginx\nupstreams:\n  web:\n    service: web\n    fallback: [{address: "db.internal:80"}]\n')[0]).toMatch(/^upstreams\.web\.fallback\[0\]\.address \(gen-lb\.yaml:5:\d+\): .*no lua-resty-dns/);
    expect(errorsOf('target: nginx\nnginx: {http: {resolver: ["127.0.0.53"]}}\nupstreams:\n  web:\n    service: web\n    fallback: ["localhost:8080"]\n')).toEqual([
      expect.stringMatching(/^upstreams\.web\.fallback\[0\] \(gen-lb\.yaml:6:16\): .*target "nginx" has no lua-resty-dns \(Debian's nginx packages ship none; OpenResty does\).*write its IP/),
    ]);
  });

  it("refuses a host name on target openresty without nginx.http.resolver, saying to set one", () => {
    expect(errorsOf('target: openresty\nupstreams:\n  web:\n    service: web\n    fallback: ["10.0.0.1:80", {address: "localhost:8080", weight: 2}]\n')).toEqual([
      expect.stringMatching(
        /^upstreams\.web\.fallback\[1\]\.address \(gen-lb\.yaml:5:\d+\): fallback peer "localhost:8080" is a host name, .*only through nginx\.http\.resolver, which is not set: set nginx\.http\.resolver \(e\.g\. \["127\.0\.0\.53"\]\), write its IP/,
      ),
    ]);
  });

  it("accepts a host name on target openresty with nginx.http.resolver: the runtime resolves it, and holds requests until it has", () => {
    const spec = ok('target: openresty\nnginx: {http: {resolver: ["127.0.0.53"]}}\nupstreams:\n  web:\n    service: web\n    fallback: ["localhost:8080", "10.0.0.1:80"]\n  ips:\n    service: ips\n    fallback: ["10.0.0.1:80"]\nservers:\n  - listen: 8000\n    locations: [{path: /, upstream: web}, {path: /ips, upstream: ips}]\n');
    const built = planBuild(spec, { specFile: "gen-lb.yaml", generator: "test" });
    const lua = built.luaConfig as { upstreams: Record<string, { fallback: unknown }>; resolver: unknown };
    expect(lua.upstreams.web!.fallback).toEqual([
      { host: "localhost", port: 8080, weight: 1 },
      { host: "10.0.0.1", port: 80, weight: 1 },
    ]);
    expect(lua.resolver).toEqual([{ host: "127.0.0.53", port: 53 }]);
    const holds = JSON.stringify(built).match(/discovery_hold[^)]*\)\.wait\([^)]*\)/g) ?? [];
    expect(holds.map((h) => h.replace(/\\/g, ""))).toEqual(['discovery_hold").wait("web")']);
  });

  it("refuses an IPv6 literal without brackets, a unix socket, and a peer listed twice after normalising", () => {
    expect(errorsOf('upstreams:\n  web:\n    service: web\n    fallback: ["::1:8080", "unix:/x.sock"]\n')).toEqual([
      expect.stringMatching(/^upstreams\.web\.fallback\[0\] .*in brackets/),
      expect.stringMatching(/^upstreams\.web\.fallback\[1\] .*unix socket.*cannot be used here/),
    ]);
    expect(errorsOf('upstreams:\n  web:\n    service: web\n    fallback: ["127.0.0.1:80", "127.000.000.001:80"]\n')).toEqual([
      expect.stringMatching(/^upstreams\.web\.fallback\[1\] .*127\.0\.0\.1:80 is already fallback\[0\]/),
    ]);
  });

  it("hands the runtime normalised peers: 127.000.000.001 is 127.0.0.1, [0::1] is ::1", () => {
    const spec = ok('upstreams:\n  web:\n    service: web\n    fallback: ["127.000.000.001:80", {address: "[0:0::1]:81", weight: 2}]\n');
    const lua = planBuild(spec, { specFile: "gen-lb.yaml", generator: "test" }).luaConfig as { upstreams: Record<string, { fallback: unknown }> };
    expect(lua.upstreams.web!.fallback).toEqual([
      { host: "127.0.0.1", port: 80, weight: 1 },
      { host: "::1", port: 81, weight: 2 },
    ]);
  });
});
