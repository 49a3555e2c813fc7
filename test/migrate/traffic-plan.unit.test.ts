/**
 * The pure half of `migrate --verify=traffic`: the request set, regex
 * samples, the rewrite onto scratch ports and echo backends, and the
 * comparison of two answers.
 */
import { describe, expect, it } from "vitest";
import { memoryLoader } from "../../src/nginx/load.js";
import { parseConfig } from "../../src/nginx/parse.js";
import { compareAnswers, explainDifference, regexSample, requestSet, rewriteTree, showRequest } from "../../src/migrate/traffic-plan.js";
import type { Finding } from "../../src/migrate/types.js";

const conf = `events {}
http {
    proxy_cache_path /var/cache/nginx levels=1:2 keys_zone=CACHE:10m;
    upstream app { server 10.0.0.1:8080 weight=2; server app.internal resolve; }
    server {
        listen 80 default_server reuseport;
        listen 443 ssl http2;
        server_name _ www.example.test;
        ssl_certificate certs/site.crt;
        access_log /var/log/nginx/access.log main buffer=32k;
        location / { proxy_pass http://app; }
        location = /healthz { return 200 "ok\\n"; }
        location ~* \\.(png|jpg)$ { root /srv; }
        location @named { return 404; }
        location /direct/ { proxy_pass http://127.0.0.1:9000/x/; }
        location /named/ { proxy_pass https://api.example.test/; }
    }
}
`;
const tree = parseConfig("conf/nginx.conf", memoryLoader({ "conf/nginx.conf": conf }), { comments: false }).config[0]!.parsed;

describe("the request set", () => {
  const reqs = requestSet(tree);
  it("covers every location's path, a sample under prefix and regex locations, a body, methods and a WebSocket upgrade where proxied", () => {
    expect(reqs.map(showRequest)).toEqual([
      "GET http://www.example.test/ (listen *:80)",
      "POST http://www.example.test/ (listen *:80)",
      "GET http://www.example.test/verify-sample (listen *:80)",
      "POST http://www.example.test/verify-sample (listen *:80)",
      "GET (WebSocket upgrade) http://www.example.test/ (listen *:80)",
      "HEAD http://www.example.test/ (listen *:80)",
      "PUT http://www.example.test/ (listen *:80)",
      "DELETE http://www.example.test/ (listen *:80)",
      "OPTIONS http://www.example.test/ (listen *:80)",
      "GET http://www.example.test/healthz (listen *:80)",
      "POST http://www.example.test/healthz (listen *:80)",
      "GET http://www.example.test/x.png (listen *:80)",
      "POST http://www.example.test/x.png (listen *:80)",
      "GET http://www.example.test/direct/ (listen *:80)",
      "POST http://www.example.test/direct/ (listen *:80)",
      "GET http://www.example.test/direct/verify-sample (listen *:80)",
      "POST http://www.example.test/direct/verify-sample (listen *:80)",
      "GET (WebSocket upgrade) http://www.example.test/direct/ (listen *:80)",
      "GET http://www.example.test/named/ (listen *:80)",
      "POST http://www.example.test/named/ (listen *:80)",
      "GET http://www.example.test/named/verify-sample (listen *:80)",
      "POST http://www.example.test/named/verify-sample (listen *:80)",
      "GET (WebSocket upgrade) http://www.example.test/named/ (listen *:80)",
    ]);
    expect(reqs.filter((r) => r.body !== undefined).map((r) => r.method)).toContain("POST");
  });
  it("finds a path a regex location matches, or none", () => {
    expect(regexSample("\\.(png|jpg)$", true)).toBe("/x.png");
    expect(regexSample("^/api/v[0-9]+/", false)).toBe("/api/v0/");
    expect(regexSample("^/user/(\\d+)$", false)).toBe("/user/1");
    expect(regexSample("(", false)).toBeUndefined();
  });
});

describe("the rewrite onto scratch ports and echo backends", () => {
  const listens = new Map([["*:80", 20080], ["*:443", 20443]]);
  const backends = new Map([["app", "127.0.0.1:30001"], ["direct:127.0.0.1:9000", "127.0.0.1:30002"], ["direct:api.example.test", "127.0.0.1:30003"]]);
  const out = rewriteTree(tree, { listens, backends }, { logDir: "/scratch/logs", confDir: "/old/conf", keepLuaUpstreams: false });
  const http = out.find((d) => d.directive === "http")!.block!;
  const server = http.find((d) => d.directive === "server")!.block!;
  it("moves listens to 127.0.0.1, keeping ssl, http2 and default_server only", () => {
    expect(server.filter((d) => d.directive === "listen").map((d) => d.args)).toEqual([["127.0.0.1:20080", "default_server"], ["127.0.0.1:20443", "ssl", "http2"]]);
  });
  it("points every upstream server and a direct proxy_pass at the echo backend, parameters kept", () => {
    expect(http.find((d) => d.directive === "upstream")!.block!.map((d) => d.args)).toEqual([["127.0.0.1:30001", "weight=2"], ["127.0.0.1:30001"]]);
    const direct = server.find((d) => d.directive === "location" && d.args[0] === "/direct/")!.block!;
    expect(direct[0]!.args).toEqual(["http://127.0.0.1:30002/x/"]);
    // A host name that is no upstream {} (nginx would resolve it at start), over https: the echo, in plain HTTP.
    const named = server.find((d) => d.directive === "location" && d.args[0] === "/named/")!.block!;
    expect(named[0]!.args).toEqual(["http://127.0.0.1:30003/"]);
  });
  it("sends logs and the pid to the scratch directory and makes conf-relative paths absolute", () => {
    expect(out.filter((d) => ["pid", "error_log", "worker_processes"].includes(d.directive)).map((d) => [d.directive, ...d.args])).toEqual([
      ["worker_processes", "1"],
      ["pid", "/scratch/logs/nginx.pid"],
      ["error_log", "/scratch/logs/error.log", "warn"],
    ]);
    expect(server.find((d) => d.directive === "access_log")!.args).toEqual(["/scratch/logs/access.log", "main"]);
    expect(server.find((d) => d.directive === "ssl_certificate")!.args).toEqual(["/old/conf/certs/site.crt"]);
    // Each side its own cache: a shared one answers the new side from the old side's entries (X-Cached: HIT).
    expect(http.find((d) => d.directive === "proxy_cache_path")!.args).toEqual(["/scratch/logs/cache-_var_cache_nginx", "levels=1:2", "keys_zone=CACHE:10m"]);
  });
});

describe("comparing two answers", () => {
  const ok = { status: 200, headers: { "content-type": "text/plain", date: "x", server: "nginx/1", etag: '"1"' }, body: "ok\n" };
  it("ignores Date, Server, ETag and per-connection headers", () => {
    expect(compareAnswers(ok, { ...ok, headers: { ...ok.headers, date: "y", server: "nginx", etag: '"2"', connection: "close" } })).toEqual([]);
  });
  it("names status, header, body and backend differences", () => {
    expect(compareAnswers(ok, { ...ok, status: 502, headers: { "content-type": "text/html" }, body: "bad" })).toEqual([
      "status 200 became 502",
      'response header content-type: "text/plain" became "text/html"',
      'body "ok\\n" became "bad"',
    ]);
    const a = { ...ok, backend: { path: "/a", host: "app", "x-forwarded-for": "127.0.0.1" } };
    expect(compareAnswers(a, { ...ok, backend: { path: "/a", host: "www.example.test" } })).toEqual([
      'at the backend: host: "app" became "www.example.test"',
      'at the backend: x-forwarded-for: "127.0.0.1" became (none)',
    ]);
  });
  it("a header the config adds of its own is compared by shape: a request-start time differs, a missing one is a difference", () => {
    const a = { ...ok, backend: { path: "/", "x-request-start": "t=1764690000.123", "x-accel-mapping": "/srv/public/=/downloads/" } };
    expect(compareAnswers(a, { ...ok, backend: { path: "/", "x-request-start": "t=1764690001.457", "x-accel-mapping": "/srv/public/=/downloads/" } })).toEqual([]);
    expect(compareAnswers(a, { ...ok, backend: { path: "/" } })).toEqual([
      'at the backend: x-accel-mapping: "/srv/public/=/downloads/" became (none)',
      'at the backend: x-request-start: "t=#.#" became (none)',
    ]);
  });
  it("a difference is explained by a lost/todo/changed finding inside its location, not by one elsewhere", () => {
    const r = requestSet(tree).find((x) => x.path === "/healthz")!;
    const inside: Finding = { kind: "lost", file: "conf/nginx.conf", line: 12, message: "x" };
    const elsewhere: Finding = { kind: "lost", file: "conf/nginx.conf", line: 13, message: "y" };
    expect(explainDifference(r, [elsewhere])).toBeUndefined();
    expect(explainDifference(r, [elsewhere, inside])).toBe(inside);
  });
});
