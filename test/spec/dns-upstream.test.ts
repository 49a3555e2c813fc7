/**
 * discovery: dns: what validation refuses (target without `resolve`, options
 * only the Lua engine honours), each with its spec path and line, and what
 * the plan renders (a zoned upstream of SRV-resolved servers, the resolver
 * inside it, no Lua on its request path).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { formatDiagnostic } from "../../src/pipeline/load.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { buildFileSet } from "../../src/pipeline/index.js";
import { runCli } from "../support/cli.js";

function errorsOf(text: string): string[] {
  const r = validateSpecText(text, "gen-lb.yaml");
  expect(r.spec).toBeUndefined();
  return r.errors.map(formatDiagnostic);
}

function confOf(text: string): string {
  const r = validateSpecText(text, "gen-lb.yaml");
  expect(r.errors.map(formatDiagnostic)).toEqual([]);
  return buildFileSet(r.spec!, "gen-lb.yaml").files.find((f) => f.path === "conf/nginx.conf")!.contents;
}

const SERVER = 'servers:\n  - listen: 8080\n    locations: [{path: /, upstream: web}]\n';

describe("discovery: dns: validation", () => {
  it("refuses a target whose nginx has no `server ... resolve` (Debian's 1.22), naming discovery's line", () => {
    expect(errorsOf(`target: nginx\nupstreams:\n  web:\n    service: web\n    discovery: dns\n${SERVER}`)).toEqual([
      expect.stringMatching(/^upstreams\.web\.discovery \(gen-lb\.yaml:5:5\): target "nginx" is nginx 1\.22\.1, and discovery: dns needs .*1\.27\.3.*use discovery: blocking/),
    ]);
  });

  it("refuses what only the Lua engine honours: active checks, fallback, fail_open, two tags, passive statuses nginx cannot count", () => {
    const errors = errorsOf(
      "upstreams:\n  web:\n    service: web\n    discovery: dns\n    tags: [a, b]\n    fallback: [\"127.0.0.1:80\"]\n    fail_open: false\n" +
        "    healthcheck:\n      active: {path: /health}\n      passive: {statuses: [500, 502]}\n" +
        SERVER,
    );
    expect(errors).toEqual([
      expect.stringMatching(/^upstreams\.web\.tags \(gen-lb\.yaml:5:5\): Consul's DNS filters on one tag/),
      expect.stringMatching(/^upstreams\.web\.fallback \(gen-lb\.yaml:6:5\): fallback peers .*NXDOMAIN empties it/),
      expect.stringMatching(/^upstreams\.web\.fail_open \(gen-lb\.yaml:7:5\): fail_open .*nginx decides/),
      expect.stringMatching(/^upstreams\.web\.healthcheck\.active \(gen-lb\.yaml:9:7\): active health checks .*open-source nginx has none/),
      expect.stringMatching(/^upstreams\.web\.healthcheck\.passive\.statuses \(gen-lb\.yaml:10:17\): .*proxy_next_upstream.*500 is not/),
    ]);
  });

  it("refuses dns_valid nginx cannot take, resolve on a Consul upstream, and a dotted service name", () => {
    expect(errorsOf(`consul:\n  dns_valid: 500ms\nupstreams:\n  web:\n    service: web\n    discovery: dns\n${SERVER}`)).toEqual([
      expect.stringMatching(/^consul\.dns_valid \(gen-lb\.yaml:2:3\): nginx's resolver takes valid= in whole seconds/),
    ]);
    expect(errorsOf(`upstreams:\n  web:\n    service: web.v2\n    discovery: dns\n    resolve: true\n${SERVER}`)).toEqual([
      expect.stringMatching(/^upstreams\.web\.service \(gen-lb\.yaml:3:5\): .*has a dot/),
      expect.stringMatching(/^upstreams\.web\.resolve \(gen-lb\.yaml:5:5\): resolve applies to static upstreams/),
    ]);
    expect(errorsOf('upstreams:\n  web:\n    servers: ["127.0.0.1:80"]\n    discovery: dns\n' + SERVER)).toEqual([
      expect.stringMatching(/^upstreams\.web\.discovery \(gen-lb\.yaml:4:5\): discovery applies to Consul upstreams/),
    ]);
    expect(errorsOf(`consul:\n  dns: "localhost"\nupstreams: {}\n`)[0]).toMatch(/^consul\.dns \(gen-lb\.yaml:2:3\): expected "host:port"/);
  });

  it("build and check exit 1 with the path and line (target nginx)", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "gen-lb-dns-spec-"));
    const spec = path.join(dir, "gen-lb.yaml");
    writeFileSync(spec, `target: nginx\nupstreams:\n  web:\n    service: web\n    discovery: dns\n    healthcheck: {active: {}}\n${SERVER}`);
    for (const cmd of [["build", "--spec", spec, "--out", path.join(dir, "out")], ["check", "--spec", spec]]) {
      const r = runCli(cmd);
      expect(r.status, `${cmd[0]}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(/upstreams\.web\.discovery \(.*gen-lb\.yaml:5:5\): target "nginx" is nginx 1\.22\.1/);
      expect(r.stderr).toMatch(/upstreams\.web\.healthcheck\.active \(.*gen-lb\.yaml:6:19\): active health checks/);
    }
  });
});

describe("discovery: dns: plan", () => {
  it("renders a zoned upstream of SRV-resolved servers with Consul's DNS as its own resolver, and no Lua on its path", () => {
    const conf = confOf(
      "consul: {dns: \"127.0.0.1:8600\", dns_valid: 2s, timeout: 1s}\nnginx: {http: {resolver: [\"127.0.0.53\"]}}\n" +
        "upstreams:\n  web:\n    service: web\n    discovery: dns\n    balance: least_conn\n    keepalive: 8\n    retries: 2\n    healthcheck: {passive: {max_fails: 2, fail_timeout: 5s}}\n" +
        "  api:\n    service: api\n    discovery: dns\n    tags: [v2]\n    datacenter: dc2\n    balance: chash\n    hash_key: $remote_addr\n" +
        'servers:\n  - listen: 8080\n    locations: [{path: /, upstream: web}, {path: /api/, upstream: api}]\n',
    );
    const web = /upstream web \{[^}]*\}/.exec(conf)![0];
    expect(web.split("\n").map((l) => l.trim()).filter(Boolean)).toEqual([
      "upstream web {",
      "least_conn;",
      "zone gen_lb_dns_web 256k;",
      "resolver 127.0.0.1:8600 valid=2s;",
      "resolver_timeout 1s;",
      "server service.consul service=_web._tcp resolve max_fails=2 fail_timeout=5s;",
      "keepalive 8;",
      "}",
    ]);
    const api = /upstream api \{[^}]*\}/.exec(conf)![0];
    expect(api).toContain('hash $remote_addr consistent;');
    expect(api).toContain("server service.dc2.consul service=_api._v2 resolve;");
    // The http-level resolver stays the user's; Consul's DNS is only the upstreams' own.
    expect(conf).toMatch(/^    resolver 127\.0\.0\.53;$/m);
    expect(conf).not.toContain("balancer_by_lua");
    expect(conf).not.toContain("log_by_lua");
    expect(conf).not.toContain("body_filter_by_lua");
    // Nor the access phase: the runtime never fills a DNS upstream, so a hold there would wait out every request.
    expect(conf).not.toContain("access_by_lua");
    expect(conf).not.toContain("set $gen_lb_hash_key");
    expect(conf).toContain("proxy_next_upstream_tries 3;");
  });
});
