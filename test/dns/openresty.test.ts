/**
 * discovery: dns against the real OpenResty 1.31 (/opt/openresty/bin/openresty,
 * target openresty) and the Consul DNS stand-in answering from the HTTP
 * stand-in's registrations: nginx's own resolver follows registrations,
 * keeps its peers while DNS is dead, and the status endpoint reads nginx's
 * peers from the upstream's zone (source "dns"). The spec also sets an
 * http-level resolver (nginx.http.resolver) that answers nothing: the
 * upstream's own resolver, Consul's DNS, is the one nginx asks.
 *
 * Propagation bound: nginx asks again dns_valid + 1 s after an answer (its
 * resolver cache is checked in whole seconds: measured 2.0 s apart with
 * valid=1s, 3.0 s with 2s), so a change shows within dns_valid + 1 s plus
 * the queries' round trip; the tests allow dns_valid + 1.5 s.
 */
import { chmodSync, existsSync, rmSync } from "node:fs";
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { ConsulDns, dnsSourceOf } from "../support/consul-dns.js";
import { ConsulStandin } from "../support/consul-standin.js";
import { request, runLoad } from "../support/load.js";
import { buildPrefix, Nginx, tempDir } from "../support/nginx.js";
import { freePort, sleep, waitFor } from "../support/ports.js";
import { expectStatusContract, readStatus } from "../support/status-contract.js";
import type { DnsUpstreamStatus, StatusDocument } from "../../src/contract/status.js";

const OPENRESTY = process.env.GEN_LB_TEST_OPENRESTY ?? "/opt/openresty/bin/openresty";
const VALID_S = 1;
const BOUND_MS = VALID_S * 1000 + 1500;

describe("discovery: dns on OpenResty", () => {
  const standin = new ConsulStandin({ datacenter: "dc1", nodeName: "lb1", nodeAddress: "127.0.0.1" });
  const dns = new ConsulDns(dnsSourceOf(standin));
  const backends = ["a", "b", "c"].map((name) => new Backend({ name }));
  const v6 = new Backend({ name: "v6", host: "::1" });
  let nginx: Nginx | undefined;
  let dir = "";
  let port = 0;
  let statusPort = 0;
  const [a, b, c] = backends as [Backend, Backend, Backend];

  const register = (x: Backend, weight = 1) =>
    standin.registerService({ ID: x.name, Name: "web", Address: x.host, Port: x.port, Weights: { Passing: weight, Warning: 1 } });
  const hit = async () => {
    try {
      const r = await request(`http://127.0.0.1:${port}/`, { timeoutMs: 3000 });
      return r.status === 200 ? String(r.headers["x-backend"]) : String(r.status);
    } catch (error) {
      return `error: ${(error as Error).message}`;
    }
  };
  /** ms until `ok` holds for 10 answers in a row, measured from now. */
  const settle = async (ok: (answers: string[]) => boolean, what: string, timeoutMs = 3 * BOUND_MS): Promise<number> => {
    const t0 = Date.now();
    let settledAt = 0;
    let run: string[] = [];
    for (;;) {
      const s = await hit();
      if (run.length === 0) settledAt = Date.now() - t0;
      run.push(s);
      if (!ok(run)) run = [];
      else if (run.length >= 10) return settledAt;
      if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms (last answers ${run.join(",")} / ${s})`);
      await sleep(15);
    }
  };
  /** upstream web's status: a `discovery: dns` one. */
  const dnsOnly = (doc: StatusDocument): DnsUpstreamStatus => {
    const web = doc.upstreams.web!;
    if (web.source !== "dns") throw new Error(`upstream web has source ${web.source}, not dns`);
    return web;
  };
  const status = async (): Promise<DnsUpstreamStatus> => dnsOnly(await readStatus(`http://127.0.0.1:${statusPort}/status`));
  const only = (...names: string[]) => (run: string[]) => run.every((s) => names.includes(s));
  const sees = (name: string) => (run: string[]) => run.some((s) => s === name) && run.every((s) => !s.startsWith("error") && !/^\d+$/.test(s));

  beforeAll(async () => {
    if (!existsSync(OPENRESTY)) throw new Error(`${OPENRESTY} is missing: build OpenResty into /opt/openresty (or set GEN_LB_TEST_OPENRESTY)`);
    await standin.start();
    await dns.start();
    for (const x of [...backends, v6]) await x.start();
    register(a);
    port = await freePort();
    statusPort = await freePort();
    dir = tempDir("gen-lb-dns-or-");
    chmodSync(dir, 0o755);
    await buildPrefix(
      {
        target: "openresty",
        consul: { addresses: [standin.url], dns: dns.address, dns_valid: `${VALID_S}s`, timeout: "1s" },
        // An http-level resolver for other names that answers nothing: the DNS
        // upstream must keep asking its own (Consul's DNS), not this one.
        nginx: { worker_processes: 2, http: { access_log: "off", resolver: [`127.0.0.1:${await freePort()}`] } },
        upstreams: {
          web: { service: "web", discovery: "dns", retries: 2, healthcheck: { passive: { max_fails: 1, fail_timeout: "10s" } } },
          // The same service through the Lua engine, in the same server: gen-lb's log phase runs there for both.
          lua: { service: "web" },
        },
        servers: [{ listen: `127.0.0.1:${port}`, locations: [{ path: "/", upstream: "web" }, { path: "/lua/", upstream: "lua" }] }],
        status: { listen: `127.0.0.1:${statusPort}` },
      },
      dir,
      "openresty",
    );
    nginx = await Nginx.start(dir, {}, OPENRESTY);
    await settle(only("a"), "the first peer");
  }, 30_000);

  afterAll(async () => {
    await nginx?.stop();
    await dns.stop();
    await standin.stop();
    for (const x of [...backends, v6]) await x.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`registrations and deregistrations reach nginx within dns_valid + 1.5 s (${BOUND_MS} ms)`, async () => {
    const took: number[] = [];
    for (let i = 0; i < 3; i++) {
      register(b);
      took.push(await settle(sees("b"), `registration ${i}`));
      standin.deregisterService("b");
      took.push(await settle(only("a"), `deregistration ${i}`));
    }
    for (const ms of took) expect(ms).toBeLessThanOrEqual(BOUND_MS);
    // nginx's resolver, not a reload: one master, the same workers.
    expect(nginx!.errorLog()).not.toMatch(/reconfiguring|\[emerg\]/);
  }, 60_000);

  it("status lists nginx's current peers with source dns, the same from every worker (the zone is shared)", async () => {
    register(b, 5);
    await settle(sees("b"), "b registered");
    // A DNS upstream and a Lua engine one side by side, both within the contract.
    const { doc } = await expectStatusContract(`http://127.0.0.1:${statusPort}/status`, { staticUpstreams: false, ngxUpstream: true });
    expect(Object.fromEntries(Object.entries(doc.upstreams).map(([n, u]) => [n, u.source]))).toEqual({ web: "dns", lua: "consul" });
    const seen = new Map<string, string>();
    for (let i = 0; i < 40 && seen.size < 2; i++) {
      // A new connection each time, so that both workers answer.
      const agent = new http.Agent({ keepAlive: false });
      const body = await readStatus(`http://127.0.0.1:${statusPort}/status?upstream=web`, { agent });
      agent.destroy();
      const web = dnsOnly(body);
      seen.set(String(body.pid), JSON.stringify(web.peers.map((p) => [p.address, p.weight]).sort()));
      expect(web).toMatchObject({ source: "dns", service: "web", dns_name: "_web._tcp.service.consul", total: 2, healthy: 2 });
    }
    expect(seen.size, "both workers answered the status").toBe(2);
    expect(new Set(seen.values()).size).toBe(1);
    expect(JSON.parse([...seen.values()][0]!)).toEqual([[a.address, 1], [b.address, 5]].sort());
    const prom = (await request(`http://127.0.0.1:${statusPort}/status?format=prometheus`)).body;
    expect(prom).toContain(`gen_lb_peer_up{upstream="web",peer="${b.address}"} 1\n`);
    expect(prom).toContain(`gen_lb_peer_weight{upstream="web",peer="${b.address}"} 5\n`);
    // nginx honours the SRV weights: 1:5.
    const load = await runLoad({ url: `http://127.0.0.1:${port}/`, requests: 120, concurrency: 2 });
    expect(load.failures).toEqual([]);
    expect(load.byBackend.b).toBeGreaterThan(3 * (load.byBackend.a ?? 0));
    standin.deregisterService("b");
    await settle(only("a"), "b deregistered");
  }, 30_000);

  it("a dead DNS (no answer) and SERVFAIL keep the last peers; they follow again once it answers", async () => {
    register(b);
    await settle(sees("b"), "b registered");
    for (const mode of ["silent", "servfail"] as const) {
      dns.mode = mode;
      standin.deregisterService("b"); // Consul would drop b, but nobody can ask it
      const queries = dns.queries.length;
      const load = await runLoad({ url: `http://127.0.0.1:${port}/`, durationMs: 3 * BOUND_MS, concurrency: 2 });
      expect(dns.queries.length, "nginx kept asking").toBeGreaterThan(queries);
      expect(load.failures).toEqual([]);
      expect(Object.keys(load.byBackend).sort()).toEqual(["a", "b"]);
      expect((await status()).peers.map((p) => p.address).sort()).toEqual([a.address, b.address].sort());
      dns.mode = "answer";
      await settle(only("a"), `b dropped after ${mode}`, 10_000);
      register(b);
      await settle(sees("b"), `b back after ${mode}`, 10_000);
    }
    standin.deregisterService("b");
    await settle(only("a"), "b deregistered");
  }, 90_000);

  it("0 failed requests under load when a backend is stopped (retries, max_fails), then Consul drops it", async () => {
    register(b);
    register(c);
    await settle((run) => run.length < 10 || (run.includes("b") && run.includes("c")), "b and c registered");
    const load = runLoad({ url: `http://127.0.0.1:${port}/`, durationMs: 4000, concurrency: 8 });
    await sleep(1000);
    await b.stop();
    await sleep(1000);
    const mid = await status();
    const dead = mid.peers.find((p) => p.address === b.address);
    expect(dead, JSON.stringify(mid)).toMatchObject({ healthy: false, state: "failed" });
    standin.setHealth("b", "critical"); // Consul's own check fails it: DNS stops answering it
    const result = await load;
    expect(result.failures).toEqual([]);
    expect(result.total).toBeGreaterThan(100);
    expect(result.byBackend.b ?? 0).toBeLessThan(result.total);
    await settle(only("a", "c"), "b gone from DNS");
    expect((await status()).peers.map((p) => p.address).sort()).toEqual([a.address, c.address].sort());
    await b.start();
    standin.deregisterService("b");
    standin.deregisterService("c");
    await settle(only("a"), "c deregistered");
  }, 60_000);

  it("an IPv6 instance is served (nginx's resolver asks AAAA too: ipv6 stays on)", async () => {
    register(v6);
    await settle(sees("v6"), "the IPv6 instance");
    expect((await status()).peers.map((p) => p.address)).toContain(`[::1]:${v6.port}`);
    standin.deregisterService("v6");
    await settle(only("a"), "v6 deregistered");
  }, 30_000);

  it("a server mixing both engines serves each; gen-lb's log phase leaves DNS requests alone", async () => {
    const load = await runLoad({ url: `http://127.0.0.1:${port}/`, requests: 40, concurrency: 2 });
    const lua = await waitFor(async () => (await request(`http://127.0.0.1:${port}/lua/`)).headers["x-backend"] === "a", "the Lua engine's upstream");
    expect(lua).toBe(true);
    expect(load.failures).toEqual([]);
    const s = (await readStatus(`http://127.0.0.1:${statusPort}/status`)).upstreams;
    expect(s.web!.source).toBe("dns");
    expect(s.lua!.source).toBe("consul");
    expect(nginx!.errorLog()).not.toMatch(/lua entry thread aborted|runtime error|log_by_lua/);
  }, 30_000);

  it("NXDOMAIN (no live instance) empties the upstream: 502, total 0; the next registration serves again", async () => {
    standin.setHealth("a", "critical");
    await settle(only("502"), "no live instance");
    expect(await status()).toMatchObject({ total: 0, healthy: 0, peers: [] });
    expect(nginx!.errorLog()).toContain("no live upstreams");
    standin.setHealth("a", "passing");
    await settle(only("a"), "a passing again");
  }, 30_000);
});
