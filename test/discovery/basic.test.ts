/**
 * Discovery end to end: real nginx, real backends, the Consul stand-in, all
 * on 127.0.0.1. Issue 3's scenarios 1, 2 and 6.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startBackends, type Backend } from "../support/backends.js";
import { sleep, waitFor } from "../support/ports.js";
import { instance, Stack } from "../support/stack.js";
import { sample } from "../support/load.js";

describe("discovery: no instances registered", () => {
  let stack: Stack;
  let fallback: Backend;
  let light: Backend;
  let heavy: Backend;

  beforeAll(async () => {
    [fallback, light, heavy] = (await startBackends(["fallback", "light", "heavy"])) as [Backend, Backend, Backend];
    stack = await Stack.start({
      profile: "discovery",
      upstreams: {
        web: { service: "web", fallback: [fallback.address] },
        api: { service: "api" },
        weighted: { service: "weighted", fallback: [light.address, { address: heavy.address, weight: 3 }] },
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
    await Promise.all([fallback?.stop(), light?.stop(), heavy?.stop()]);
  });

  it("gives fallback peers their weights: 1:3 within ±5% over 400 requests", async () => {
    await waitFor(async () => (await stack.view()).upstreams.weighted?.meta.consul_address, "Consul's first answer");
    expect((await stack.view()).upstreams.weighted?.peers.sort()).toEqual([`${heavy.address}/3`, `${light.address}/1`].sort());
    const s = await sample(stack.url("/u/weighted/"), 400);
    expect(s.failures).toBe(0);
    const ratio = (s.byBackend.heavy ?? 0) / (s.byBackend.light ?? 1);
    expect(ratio, JSON.stringify(s.byBackend)).toBeGreaterThanOrEqual(3 * 0.95);
    expect(ratio, JSON.stringify(s.byBackend)).toBeLessThanOrEqual(3 * 1.05);
  });

  it("serves the fallback peer while Consul lists no instance", async () => {
    await waitFor(async () => (await stack.view()).upstreams.web?.meta.consul_address, "Consul's first answer");
    const view = await stack.view();
    expect(view.upstreams.web?.meta.source).toBe("fallback");
    expect(view.upstreams.web?.peers).toEqual([`${fallback.address}/1`]);
    const s = await sample(stack.url("/"), 10);
    expect(s.failures).toBe(0);
    expect(s.byBackend).toEqual({ fallback: 10 });
  });

  it("answers 502 with a log line naming the upstream when it has neither instances nor fallback", async () => {
    await waitFor(async () => (await stack.view()).upstreams.api?.meta.consul_address, "Consul's first answer");
    const view = await stack.view();
    expect(view.upstreams.api).toMatchObject({ version: 0, peers: [] });
    expect(view.upstreams.api?.meta).toMatchObject({ source: "consul", count: 0, version: 0 });
    const s = await sample(stack.url("/u/api/"), 3);
    expect(s.statuses).toEqual({ 502: 3 });
    const lines = await waitFor(() => {
      const l = stack.errorLog().split("\n").filter((x) => /gen-lb/.test(x) && /\bapi\b/.test(x) && /\[(error|warn|crit)\]/.test(x));
      return l.length > 0 ? l : undefined;
    }, "a log line about api");
    expect(lines.join("\n")).toMatch(/peer/i);
  });
});

describe("discovery: registrations move traffic without a reload", () => {
  let stack: Stack;
  let backends: Backend[];

  beforeAll(async () => {
    backends = await startBackends(["a", "b"]);
    // c listens on another loopback address: its Service.Address differs.
    backends.push(...(await startBackends(["c"], { host: "127.0.0.2" })));
    stack = await Stack.start({ profile: "discovery", workers: 2 });
  });
  afterAll(async () => {
    await stack?.stop();
    await Promise.all(backends.map((b) => b.stop()));
  });

  it("follows register, deregister and re-address, with the same worker processes", async () => {
    const [a, b, c] = backends as [Backend, Backend, Backend];
    // waitForPeers sees one worker's list. The balancer re-reads the shared
    // list at most every 4 requests or 2 ms (balancer.lua, REFRESH_*), so the
    // other worker may serve up to 3 requests within 2 ms of its last read
    // on the old list: past 10 ms every worker serves the new one.
    const waitForPeers = async (want: string[]) => {
      await stack.waitForPeers("web", want);
      await sleep(10);
    };
    const master = stack.nginx.masterPid;
    const workers = stack.nginx.workerPids();
    expect(workers).toHaveLength(2);

    stack.register(instance("web", a.port));
    stack.register(instance("web", b.port));
    await waitForPeers([a.address, b.address]);
    let s = await sample(stack.url("/"), 20);
    expect(s.failures).toBe(0);
    expect(s.byBackend.a).toBeGreaterThan(0);
    expect(s.byBackend.b).toBeGreaterThan(0);

    expect(stack.standin.deregisterService(`web-${a.port}`)).toBe(true);
    await waitForPeers([b.address]);
    s = await sample(stack.url("/"), 20);
    expect(s).toMatchObject({ failures: 0, byBackend: { b: 20 } });

    stack.register(instance("web", c.port, { ID: "web-c", Address: "127.0.0.2" }));
    await waitForPeers([b.address, c.address]);
    s = await sample(stack.url("/"), 20);
    expect(s.failures).toBe(0);
    expect(Object.keys(s.byBackend).sort()).toEqual(["b", "c"]);

    // Re-address an instance: same ID, new Service.Address (a listens on 127.0.0.1).
    stack.register(instance("web", a.port, { ID: "web-c", Address: "127.0.0.1" }));
    await waitForPeers([b.address, a.address]);
    s = await sample(stack.url("/"), 20);
    expect(s.failures).toBe(0);
    expect(Object.keys(s.byBackend).sort()).toEqual(["a", "b"]);

    // Every worker has the same list, and nothing was reloaded.
    const views = await stack.viewsOfAllWorkers();
    expect(views.size).toBe(2);
    for (const v of views.values()) expect(v.upstreams.web?.peers.map((p) => p.replace(/\/\d+$/, "")).sort()).toEqual([a.address, b.address].sort());
    expect(stack.nginx.masterPid).toBe(master);
    expect(stack.nginx.workerPids()).toEqual(workers);
    expect(stack.errorLog()).not.toMatch(/reconfiguring|signal 1 \(SIGHUP\)/);
  });

  it("uses Node.Address when Service.Address is empty, and Service.Weights.Passing as the weight", async () => {
    const [, b] = backends as [Backend, Backend];
    // The agent's node address is 127.0.0.1 in the stand-in.
    stack.register(instance("web", b.port, { ID: "web-node-addr", Address: "", Weights: { Passing: 7, Warning: 1 } }));
    const view = await waitFor(async () => {
      const v = (await stack.view()).upstreams.web;
      return v?.peers.includes(`${b.address}/7`) ? v : undefined;
    }, "b with weight 7");
    expect(view.meta.source).toBe("consul");
  });

  it("logs one line per change, naming the upstream, what was added and removed, and the version", async () => {
    const changes = stack.genLbLines().filter((l) => /peers changed/.test(l));
    expect(changes.length).toBeGreaterThanOrEqual(4);
    for (const l of changes) expect(l).toMatch(/upstream "web": peers changed to version \d+ from \w+.*: added .*; removed .*; \d+ peer\(s\) now/);
    // Nothing is logged per request.
    const before = stack.genLbLines().length;
    await sample(stack.url("/"), 30);
    await sleep(100);
    expect(stack.genLbLines().length).toBe(before);
  });
});

describe("discovery: addresses", () => {
  let stack: Stack;
  afterAll(async () => {
    await stack?.stop();
  });

  it("accepts IPv6 literals, drops hostnames (cosockets do not resolve them here) with one warning", async () => {
    stack = await Stack.start({ profile: "discovery", workers: 1 });
    stack.register(instance("web", 18001, { ID: "v4" }));
    stack.register(instance("web", 18002, { ID: "v6", Address: "::1" }));
    stack.register(instance("web", 18003, { ID: "named", Address: "web-3.example.internal" }));
    const view = await stack.waitForPeers("web", ["127.0.0.1:18001", "[::1]:18002"]);
    expect(view.peers).toEqual(["127.0.0.1:18001/1", "[::1]:18002/1"]);
    const warned = stack.genLbLines().filter((l) => /ignored 1 of 3 Consul entries/.test(l));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain('address "web-3.example.internal" is not an IP address');
  });
});

describe("discovery: one watcher per node", () => {
  let stack: Stack;
  afterEach(async () => {
    await stack?.stop();
  });

  it("with 4 workers, Consul sees one blocking query per upstream", async () => {
    stack = await Stack.start({
      profile: "discovery",
      workers: 4,
      consul: { wait: "2s" },
      upstreams: { web: { service: "web" }, api: { service: "api", tags: ["v2"] }, db: { service: "db", datacenter: "dc1" } },
    });
    await stack.watcherPid();
    await stack.standin.waitForBlocked("web", 1);
    await stack.standin.waitForBlocked("api", 1);
    await stack.standin.waitForBlocked("db", 1);
    expect(stack.nginx.workerPids()).toHaveLength(4);

    // Over 5 s (2.5 wait periods), at most one query in flight per service and
    // at most 2 requests per wait period per service.
    const since = Date.now();
    for (let i = 0; i < 25; i++) {
      for (const svc of ["web", "api", "db"]) expect(stack.standin.blockedQueries(svc)).toBeLessThanOrEqual(1);
      await sleep(200);
    }
    for (const svc of ["web", "api", "db"]) {
      const n = stack.standin.countRequests({ path: `/v1/health/service/${svc}`, since });
      expect(n, svc).toBeGreaterThanOrEqual(1);
      expect(n, svc).toBeLessThanOrEqual(Math.ceil((5 / 2) * 2));
    }
    // The query carries what the spec asks: passing, index, wait, tag, dc.
    const api = stack.standin.requests.filter((r) => r.path === "/v1/health/service/api").at(-1)!;
    expect(api.query.get("passing")).toBe("1");
    expect(api.query.getAll("tag")).toEqual(["v2"]);
    expect(Number(api.query.get("index"))).toBeGreaterThan(0);
    expect(api.query.get("wait")).toBe("2000ms");
    const db = stack.standin.requests.filter((r) => r.path === "/v1/health/service/db").at(-1)!;
    expect(db.query.get("dc")).toBe("dc1");
    expect(stack.genLbLines().filter((l) => /is now the Consul watcher/.test(l))).toHaveLength(1);
  });
});
