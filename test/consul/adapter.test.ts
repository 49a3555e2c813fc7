/**
 * The CLI's Consul adapter (src/consul/client.ts, over the `consul` npm
 * client) against the stand-in on 127.0.0.1: what it asks (path, tags, dc,
 * token header), how it walks the spec's addresses, and how it names a 403,
 * an unreachable Consul and a late one. Plus the pure pieces beside it: the
 * peer rules and the dump format.
 */
import { readFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { consulTargetOf, createConsulAdapter, type ConsulAdapter, type ConsulTarget } from "../../src/consul/client.js";
import { parseDump, renderDump, serviceKey } from "../../src/consul/dump.js";
import { parseHealthEntries, peerAddressProblem } from "../../src/consul/peers.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { ConsulStandin } from "../support/consul-standin.js";
import { FIXTURES } from "../install/helpers.js";

let standins: ConsulStandin[] = [];
let adapters: ConsulAdapter[] = [];

async function standin(opts: ConstructorParameters<typeof ConsulStandin>[0] = {}): Promise<ConsulStandin> {
  const s = new ConsulStandin(opts);
  await s.start();
  standins.push(s);
  return s;
}

function adapter(target: Partial<ConsulTarget> & { addresses: readonly string[] }): ConsulAdapter {
  const a = createConsulAdapter({ timeoutMs: 3000, ...target });
  adapters.push(a);
  return a;
}

afterEach(async () => {
  for (const a of adapters) a.close();
  adapters = [];
  for (const s of standins) await s.stop();
  standins = [];
});

function specOf(obj: unknown) {
  const r = validateSpecText(JSON.stringify(obj), "spec.json");
  if (!r.spec) throw new Error(JSON.stringify(r.errors));
  return r.spec;
}

describe("the Consul adapter against the stand-in", () => {
  it("asks /v1/health/service with passing, every tag, dc and the token from the spec's env var", async () => {
    const s = await standin({ token: "s3cret", datacenter: "east" });
    s.registerService({ ID: "web-1", Name: "web", Address: "127.0.0.11", Port: 8081, Tags: ["v1", "primary"] });
    s.registerService({ ID: "web-2", Name: "web", Address: "127.0.0.12", Port: 8082, Tags: ["v1"] });
    s.registerService({ ID: "web-3", Name: "web", Address: "127.0.0.13", Port: 8083, Tags: ["v1", "primary"], Check: { TTL: "30s", Status: "critical" } });
    const spec = specOf({
      consul: { addresses: [s.url], token_env: "MY_CONSUL_TOKEN", datacenter: "east" },
      upstreams: { app: { service: "web", tags: ["v1", "primary"] } },
    });
    const target = consulTargetOf(spec, { MY_CONSUL_TOKEN: "s3cret" });
    expect(target.token).toBe("s3cret");
    const a = adapter(target);
    expect(a.tokenSource).toEqual({ env: "MY_CONSUL_TOKEN", set: true });

    const r = await a.healthService({ service: "web", tags: ["v1", "primary"] }, { passing: true });
    if (!r.ok) throw new Error(r.message);
    expect(parseHealthEntries(r.value).peers).toEqual([{ host: "127.0.0.11", port: 8081, weight: 1 }]);
    expect(r.index).toBe(s.indexFor("web"));
    expect(r.address).toBe(s.url);
    const req = s.requests.at(-1)!;
    expect(req.path).toBe("/v1/health/service/web");
    expect(req.query.getAll("tag")).toEqual(["v1", "primary"]);
    expect(req.query.get("dc")).toBe("east");
    expect(req.query.has("passing")).toBe(true);
    expect(req.headers["x-consul-token"]).toBe("s3cret");
    // The token never travels in the URL.
    expect(req.query.has("token")).toBe(false);
  });

  it("tries the addresses in order: a dead one and a 500 hand over to the next, which answers", async () => {
    const bad = await standin();
    const good = await standin();
    good.registerService({ ID: "web-1", Name: "web", Address: "127.0.0.11", Port: 8081 });
    bad.fault({ kind: "status500" });
    const a = adapter({ addresses: ["http://127.0.0.1:1", bad.url, good.url] });
    const r = await a.healthService({ service: "web", tags: [] }, { passing: true });
    if (!r.ok) throw new Error(r.message);
    expect(r.address).toBe(good.url);
    expect(r.tried.map((t) => t.address)).toEqual(["http://127.0.0.1:1", bad.url]);
    expect(r.tried[0]!.error).toMatch(/ECONNREFUSED/);
    expect(r.tried[1]!.error).toBe("500 No cluster leader");
  });

  it("names a 403 as the token's refusal (ACL) and does not try the next address", async () => {
    const s = await standin({ token: "right" });
    const other = await standin();
    const wrong = await adapter({ addresses: [s.url, other.url], token: "wrong" }).healthService({ service: "web", tags: [] }, { passing: true });
    expect(wrong).toMatchObject({ ok: false, kind: "forbidden", status: 403, message: "403 ACL not found" });
    expect(other.countRequests()).toBe(0);

    const none = await adapter({ addresses: [s.url] }).healthService({ service: "web", tags: [] }, { passing: true });
    expect(none).toMatchObject({ ok: false, kind: "forbidden", status: 403 });
    expect(!none.ok && none.message).toMatch(/^403 Permission denied: token with AccessorID '.*' lacks permission 'service:read' on "web"$/);
  });

  it("reports an anonymous read that Consul filtered by ACLs (default_policy=deny)", async () => {
    const s = await standin({ token: "right", aclMissingToken: "filter" });
    s.registerService({ ID: "web-1", Name: "web", Address: "127.0.0.11", Port: 8081 });
    const r = await adapter({ addresses: [s.url] }).catalogServices();
    expect(r).toMatchObject({ ok: true, filtered: true, value: {} });
  });

  it("an unreachable Consul, and one slower than the timeout, are 'unreachable' with each address's reason", async () => {
    const s = await standin();
    s.registerService({ ID: "web-1", Name: "web", Address: "127.0.0.11", Port: 8081 });
    const down = await adapter({ addresses: ["http://127.0.0.1:1", "http://[::1]:1"] }).healthService({ service: "web", tags: [] }, { passing: true });
    expect(down).toMatchObject({ ok: false, kind: "unreachable" });
    expect(!down.ok && down.tried.map((t) => t.address)).toEqual(["http://127.0.0.1:1", "http://[::1]:1"]);

    s.fault({ kind: "delay", delayMs: 1500, path: /^\/v1\/health\// });
    const t0 = Date.now();
    const late = await adapter({ addresses: [s.url], timeoutMs: 300 }).healthService({ service: "web", tags: [] }, { passing: true });
    expect(late).toMatchObject({ ok: false, kind: "unreachable" });
    expect(!late.ok && late.message).toMatch(/timed out/);
    expect(Date.now() - t0).toBeLessThan(1400);

    // With time to wait, the late answer is the real one.
    const t1 = Date.now();
    const patient = await adapter({ addresses: [s.url], timeoutMs: 5000 }).healthService({ service: "web", tags: [] }, { passing: true });
    expect(patient.ok).toBe(true);
    expect(Date.now() - t1).toBeGreaterThanOrEqual(1400);
  });

  it("https addresses: ssl_verify on refuses a certificate no CA vouches for; off, the answer is read", async () => {
    const certs = path.join(FIXTURES, "certs");
    const server = https.createServer({ cert: readFileSync(path.join(certs, "lb.crt")), key: readFileSync(path.join(certs, "lb.key")) }, (_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json", "X-Consul-Index": "9" }).end("[]");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const verified = await adapter({ addresses: [url], tls: { verify: true } }).healthService({ service: "web", tags: [] }, { passing: true });
      expect(verified).toMatchObject({ ok: false, kind: "unreachable" });
      expect(!verified.ok && verified.message).toMatch(/self[- ]signed|unable to verify|certificate/i);
      const unverified = await adapter({ addresses: [url], tls: { verify: false } }).healthService({ service: "web", tags: [] }, { passing: true });
      expect(unverified).toMatchObject({ ok: true, value: [], index: 9 });
      const missingCa = await adapter({ addresses: [url], tls: { verify: true, caFile: "/nonexistent/ca.pem" } }).healthService({ service: "web", tags: [] }, { passing: true });
      expect(!missingCa.ok && missingCa.message).toBe(`${url}: cannot read consul.ca_file /nonexistent/ca.pem: ENOENT`);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it("catalogServices lists services with their tags (existence), with dc", async () => {
    const s = await standin({ datacenter: "dc1" });
    s.registerService({ ID: "web-1", Name: "web", Address: "127.0.0.11", Port: 8081, Tags: ["v1"] });
    const a = adapter({ addresses: [s.url] });
    const r = await a.catalogServices("dc1");
    expect(r).toMatchObject({ ok: true, value: { consul: [], web: ["v1"] } });
    const far = await a.catalogServices("elsewhere");
    expect(far).toMatchObject({ ok: false, kind: "error", status: 500, message: "500 No path to datacenter" });
  });
});

describe("peer rules (the runtime's) and the dump format", () => {
  it("says why an address is not a usable peer", () => {
    expect(peerAddressProblem("10.0.0.1")).toBeUndefined();
    expect(peerAddressProblem("2001:db8::1")).toBeUndefined();
    expect(peerAddressProblem("::ffff:10.0.0.1")).toBeUndefined();
    expect(peerAddressProblem("web.internal")).toMatch(/^is a host name, which the runtime resolves only on target openresty/);
    // On OpenResty with nginx.http.resolver the runtime resolves the name (gen_lb.resolve): check must not call it unusable there.
    expect(peerAddressProblem("web.internal", { resolvesNames: true })).toBeUndefined();
    expect(peerAddressProblem("web.internal:80", { resolvesNames: true })).toMatch(/^is a host name with a port/);
    expect(peerAddressProblem("10.0.0.1:8080")).toMatch(/^carries a port/);
    expect(peerAddressProblem("[2001:db8::1]:80")).toMatch(/^carries a port/);
    expect(peerAddressProblem("web.internal:80")).toMatch(/^is a host name with a port/);
    expect(peerAddressProblem("[2001:db8::1]")).toMatch(/in brackets/);
    expect(peerAddressProblem("fe80::1%eth0")).toMatch(/zone index/);
    expect(peerAddressProblem("10.0.0.256")).toBe("is not an IP address");
    expect(peerAddressProblem("<html>")).toBe("is not an IP address");
  });

  it("parses entries as the Lua watcher does: Node.Address when Service.Address is empty, Weights.Passing, one peer per address:port", () => {
    const parsed = parseHealthEntries([
      { Node: { Address: "10.0.0.5" }, Service: { ID: "a", Address: "", Port: 80, Weights: { Passing: 3, Warning: 1 } } },
      { Node: { Address: "10.0.0.9" }, Service: { ID: "b", Address: "10.0.0.5", Port: 80, Weights: { Passing: 5 } } },
      { Node: { Address: "10.0.0.9" }, Service: { ID: "c", Address: "db.internal", Port: 80 } },
      { Node: { Address: "10.0.0.9" }, Service: { ID: "d", Address: "10.0.0.7", Port: 0 } },
      { Node: {}, Service: { ID: "e", Address: "", Port: 80 } },
    ]);
    expect(parsed.peers).toEqual([{ host: "10.0.0.5", port: 80, weight: 5 }]);
    expect(parsed.rejected.map((r) => `${r.id}: ${r.why}`)).toEqual([
      'c: address "db.internal" is a host name, which the runtime resolves only on target openresty with nginx.http.resolver set (register the instance\'s IP, or set both)',
      "d: Port is number 0",
      "e: no Service.Address and no Node.Address",
    ]);
    const spelled = parseHealthEntries(
      ["::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "::FFFF:7F00:1", "127.0.0.1"].map((a, i) => ({ Node: {}, Service: { ID: `s${i}`, Address: a, Port: 80 } })),
    );
    expect(spelled.peers).toEqual([{ host: "::1", port: 80, weight: 1 }, { host: "127.0.0.1", port: 80, weight: 1 }]);
    const named = parseHealthEntries([{ Node: { Address: "10.0.0.9" }, Service: { ID: "c", Address: "db.internal", Port: 80 } }], { resolvesNames: true });
    expect(named).toMatchObject({ peers: [{ host: "db.internal", port: 80, weight: 1 }], rejected: [] });
    expect(parseHealthEntries({ a: 1 }).rejected[0]!.why).toBe("answer is a object, not a JSON array");
  });

  it("renders the runtime's dump format: keys as discovery.lua's service_key, peers in canonical order", () => {
    const spec = specOf({ consul: { datacenter: "east" }, upstreams: { app: { service: "web", tags: ["v2", "a"] }, b: { service: "x", datacenter: "west" } } });
    expect(serviceKey(spec.upstreams.app!, spec)).toBe("web|east|a,v2");
    expect(serviceKey(spec.upstreams.b!, spec)).toBe("x|west|");
    const text = renderDump({
      generator: "gen-lb install",
      buildId: "abc",
      writtenAt: 1700000000.5,
      upstreams: { app: { key: "web|east|a,v2", index: 42, peers: [{ host: "10.0.0.9", port: 80, weight: 1 }, { host: "10.0.0.10", port: 81, weight: 2 }, { host: "10.0.0.10", port: 80, weight: 1 }] } },
    });
    expect(text).toBe(
      '{"format":1,"generator":"gen-lb install","build_id":"abc","written_at":1700000000.5,"upstreams":{"app":{"key":"web|east|a,v2","index":42,"peers":[["10.0.0.10",80,1],["10.0.0.10",81,2],["10.0.0.9",80,1]]}}}\n',
    );
    expect(parseDump(text)).toEqual({
      upstreams: { app: { key: "web|east|a,v2", index: 42, peers: [{ host: "10.0.0.10", port: 80, weight: 1 }, { host: "10.0.0.10", port: 81, weight: 2 }, { host: "10.0.0.9", port: 80, weight: 1 }] } },
    });
    expect(parseDump('{"format":2}')).toEqual({ problem: "not a gen-lb dump (format 1)" });
  });
});
