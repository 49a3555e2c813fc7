/**
 * Balancing real traffic: real nginx, real backends on 127.0.0.1, peers and
 * weights from the Consul stand-in.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../support/backends.js";
import { request, runLoad } from "../support/load.js";
import { waitFor } from "../support/ports.js";
import { share, Stack, startBackends } from "../support/stack.js";

describe("weights", () => {
  let lb: Stack;
  let a: Backend;
  let b: Backend;

  beforeAll(async () => {
    [a, b] = (await startBackends(["a", "b"])) as [Backend, Backend];
    lb = await Stack.start({
      upstreams: {
        rr: { service: "web" },
        lc: { service: "web", balance: "least_conn" },
        rnd: { service: "web", balance: "random" },
      },
    });
    lb.register("web", a, 1);
    lb.register("web", b, 3);
    for (const u of ["rr", "lc", "rnd"]) await lb.waitForPeers(u, [a.address, b.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it("round_robin: Consul weights 1:3 give a 1:3 split within ±5% over 4,000 requests", async () => {
    const r = await runLoad({ url: lb.url("rr"), requests: 4000, concurrency: 8 });
    expect(r.failures).toEqual([]);
    const ratio = (r.byBackend.b ?? 0) / (r.byBackend.a ?? 1);
    expect(ratio, JSON.stringify(r.byBackend)).toBeGreaterThanOrEqual(3 * 0.95);
    expect(ratio, JSON.stringify(r.byBackend)).toBeLessThanOrEqual(3 * 1.05);
  });

  it("random follows the weights, and so does least_conn when load ties (one request at a time)", async () => {
    // Under concurrency least_conn balances in-flight counts, which is its job, not shares.
    for (const [u, concurrency, requests] of [["lc", 1, 1000], ["rnd", 8, 4000]] as const) {
      const r = await runLoad({ url: lb.url(u), requests, concurrency });
      expect(r.failures).toEqual([]);
      const s = share(r.byBackend, "a");
      expect(s, `${u}: ${JSON.stringify(r.byBackend)}`).toBeGreaterThan(0.2);
      expect(s, `${u}: ${JSON.stringify(r.byBackend)}`).toBeLessThan(0.3);
    }
  });

  it("status counts the requests each peer got", async () => {
    // Earlier requests, once every worker has added its share (each does once a second).
    let last = -1;
    const before = await waitFor(
      async () => {
        const u = await lb.upstream("rr");
        const sum = u.peers.reduce((n, p) => n + p.requests, 0);
        const settled = sum === last;
        last = sum;
        return settled ? u : undefined;
      },
      "counters to settle",
      10_000,
      1200,
    );
    const r = await runLoad({ url: lb.url("rr"), requests: 400, concurrency: 4 });
    expect(r.failures).toEqual([]);
    // Workers add their counters once a second.
    const after = await (async () => {
      for (let i = 0; i < 60; i++) {
        const u = await lb.upstream("rr");
        const sum = u.peers.reduce((n, p) => n + p.requests, 0) - before.peers.reduce((n, p) => n + p.requests, 0);
        if (sum >= 400) return u;
        await new Promise((res) => setTimeout(res, 100));
      }
      throw new Error("requests never counted");
    })();
    const got = (addr: string) => after.peers.find((p) => p.address === addr)!.requests - before.peers.find((p) => p.address === addr)!.requests;
    expect(got(a.address)).toBe(r.byBackend.a);
    expect(got(b.address)).toBe(r.byBackend.b);
    // Round robin without counters runs no log phase: tries sent are counted, failures and in-flight are not.
    expect(after.log_phase).toBe(false);
    expect(after.peers.map((p) => [p.failures, p.in_flight])).toEqual([[undefined, undefined], [undefined, undefined]]);
    const lc = await lb.upstream("lc");
    expect(lc.log_phase).toBe(true);
    expect(lc.peers.map((p) => [p.failures, p.in_flight])).toEqual([[0, 0], [0, 0]]);
  });
});

describe("chash", () => {
  let lb: Stack;
  let peers: Backend[];

  beforeAll(async () => {
    peers = await startBackends(["p1", "p2", "p3", "p4", "p5"]);
    lb = await Stack.start({ upstreams: { sticky: { service: "sticky", balance: "chash", hash_key: "$arg_key" } } });
    for (const p of peers) lb.register("sticky", p);
    await lb.waitForPeers("sticky", peers.map((p) => p.address));
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all(peers.map((p) => p.stop()));
  });

  async function owners(keys: string[]): Promise<string[]> {
    const out: string[] = [];
    // A few keys at a time: every worker answers some of them.
    for (let i = 0; i < keys.length; i += 20) {
      const batch = keys.slice(i, i + 20);
      const res = await Promise.all(batch.map((k) => request(lb.url("sticky", `?key=${k}`))));
      for (const r of res) {
        expect(r.status).toBe(200);
        out.push(String(r.headers["x-backend"]));
      }
    }
    return out;
  }

  it("sends the same key to the same peer, and removing 1 of 5 peers remaps at most 30% of 1,000 keys", async () => {
    const keys = Array.from({ length: 1000 }, (_, i) => `user-${i}`);
    const first = await owners(keys);
    const again = await owners(keys);
    expect(again).toEqual(first);
    const used = new Set(first);
    expect(used.size).toBe(5);

    const gone = peers[2]!;
    lb.deregister(`sticky-${gone.port}`);
    await lb.waitForPeers("sticky", peers.filter((p) => p !== gone).map((p) => p.address));
    const after = await owners(keys);
    const moved = after.filter((o, i) => o !== first[i]).length;
    expect(moved, `${moved} keys moved`).toBeLessThanOrEqual(300);
    // Only the removed peer's keys moved.
    expect(after.filter((o, i) => o !== first[i] && first[i] !== gone.name)).toEqual([]);
    expect(after).not.toContain(gone.name);
  });
});

describe("retries", () => {
  let lb: Stack;
  let bad1: Backend;
  let bad2: Backend;
  let good: Backend;
  const ALGOS = ["round_robin", "least_conn", "chash", "random"] as const;

  beforeAll(async () => {
    [bad1, bad2, good] = (await startBackends(["bad1", "bad2", "good"])) as [Backend, Backend, Backend];
    bad1.mode = "error500";
    bad2.mode = "error500";
    lb = await Stack.start({
      upstreams: Object.fromEntries(
        ALGOS.map((a): [string, Record<string, unknown>] => [
          a,
          {
            service: "flaky",
            balance: a,
            retries: 2,
            retry_statuses: [500, 502, 503, 504],
            ...(a === "chash" ? { hash_key: "$arg_key" } : {}),
          },
        ]).concat([["counted", { service: "flaky", retries: 2, retry_statuses: [500, 502, 503, 504], counters: true }]]),
      ),
    });
    for (const b of [bad1, bad2, good]) lb.register("flaky", b);
    for (const a of [...ALGOS, "counted"]) await lb.waitForPeers(a, [bad1, bad2, good].map((b) => b.address));
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([bad1, bad2, good].map((b) => b?.stop()));
  });

  it("a retry never goes to a peer this request already tried while an untried one exists", async () => {
    // least_conn and counted run the log phase (tracked tries); the others do not (lean tries).
    for (const a of [...ALGOS, "counted"]) {
      const r = await runLoad({ url: lb.url(a), requests: 300, concurrency: 4, headers: () => ({}) });
      // With 3 peers and 3 tries, each request reaches the good one.
      expect(r.failures, a).toEqual([]);
      expect(r.byBackend, a).toEqual({ good: 300 });
    }
    // chash: different keys start at different peers, and still reach the good one.
    for (let i = 0; i < 100; i++) {
      const res = await request(lb.url("chash", `?key=k${i}`));
      expect(res.status).toBe(200);
      expect(res.headers["x-backend"]).toBe("good");
    }
  });

  it("status counts the failed tries with counters: true, and only the tries sent without", async () => {
    await new Promise((res) => setTimeout(res, 1500));
    const u = await lb.upstream("counted");
    const by = Object.fromEntries(u.peers.map((p) => [p.address, p]));
    expect(by[bad1.address]!.failures).toBeGreaterThan(0);
    expect(by[bad1.address]!.failures).toBe(by[bad1.address]!.requests);
    expect(by[good.address]!.failures).toBe(0);
    const lean = await lb.upstream("round_robin");
    expect(lean.log_phase).toBe(false);
    // 300 requests, each tried until it reached the good peer.
    const sent = Object.fromEntries(lean.peers.map((p) => [p.address, p.requests]));
    expect(sent[good.address]).toBe(300);
    expect(lean.peers.every((p) => p.failures === undefined && p.in_flight === undefined)).toBe(true);
  });
});

describe("least_conn", () => {
  let lb: Stack;
  let fast: Backend;
  let slow: Backend;

  beforeAll(async () => {
    [fast, slow] = (await startBackends(["fast", "slow"])) as [Backend, Backend];
    slow.mode = "slow";
    slow.slowMs = 200;
    lb = await Stack.start({ upstreams: { lc: { service: "lc", balance: "least_conn" }, rr: { service: "lc" } } });
    lb.register("lc", fast);
    lb.register("lc", slow);
    await lb.waitForPeers("lc", [fast.address, slow.address]);
    await lb.waitForPeers("rr", [fast.address, slow.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([fast?.stop(), slow?.stop()]);
  });

  it("sends less to a peer that holds requests longer (round robin would split evenly)", async () => {
    const lc = await runLoad({ url: lb.url("lc"), durationMs: 2000, concurrency: 8 });
    expect(lc.failures).toEqual([]);
    expect(share(lc.byBackend, "slow"), JSON.stringify(lc.byBackend)).toBeLessThan(0.15);
    const rr = await runLoad({ url: lb.url("rr"), requests: 200, concurrency: 8 });
    expect(rr.failures).toEqual([]);
    expect(share(rr.byBackend, "slow"), JSON.stringify(rr.byBackend)).toBeGreaterThan(0.4);
  });
});

describe("in-flight accounting", () => {
  let lb: Stack;
  let broken: Backend;

  beforeAll(async () => {
    [broken] = (await startBackends(["broken"])) as [Backend];
    broken.mode = "reset";
    lb = await Stack.start({
      workers: 1,
      upstreams: { web: { retries: 1, balance: "least_conn" } },
      // nginx's own 502 goes to an error page: an internal redirect, which drops
      // ngx.ctx, so the log phase of the proxied location never runs.
      locations: [{ path: "/50x", match: "exact", return: { code: 502, text: "custom" } }],
      server: { error_pages: [{ codes: [502], uri: "/50x" }] },
    });
    lb.register("web", broken);
    await lb.waitForPeers("web", [broken.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await broken?.stop();
  });

  it("returns to zero after requests whose log phase never ran (error_page redirect)", async () => {
    const r = await runLoad({ url: lb.url("web"), requests: 40, concurrency: 2 });
    expect(r.statuses).toEqual({ 502: 40 });
    const p = await lb.waitForPeer("web", broken.address, (x) => x.requests === 80 && x.in_flight === 0, "in-flight back to 0", 20_000);
    expect(p.failures).toBeGreaterThanOrEqual(40);
  });
});

// The redirect's target either runs the log phase too (least_conn) or not (round robin: the lean path settles web's try).
describe.each(["least_conn", "round_robin"] as const)("in-flight accounting across an internal redirect to another upstream (%s)", (backupBalance) => {
  let lb: Stack;
  let broken: Backend;
  let spare: Backend;

  beforeAll(async () => {
    [broken, spare] = (await startBackends(["broken", "spare"])) as [Backend, Backend];
    broken.mode = "reset";
    lb = await Stack.start({
      workers: 1,
      upstreams: { web: { retries: 0, balance: "least_conn" }, backup: { balance: backupBalance } },
      // web's 502 is redirected to the backup upstream's location: one
      // request, two upstreams, one log phase at the very end.
      server: { error_pages: [{ codes: [502], uri: "/backup/" }] },
    });
    lb.register("web", broken);
    lb.register("backup", spare);
    await lb.waitForPeers("web", [broken.address]);
    await lb.waitForPeers("backup", [spare.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([broken?.stop(), spare?.stop()]);
  });

  it("counts each upstream's try once, the first one's failure included, and leaves nothing in flight", async () => {
    const r = await runLoad({ url: lb.url("web"), requests: 40, concurrency: 2 });
    // error_page keeps the status: 502, with the spare's answer.
    expect(r.statuses).toEqual({ 502: 40 });
    const one = await request(lb.url("web"));
    expect([one.status, one.headers["x-backend"], one.body.trim()]).toEqual([502, "spare", "spare"]);
    const web = await lb.waitForPeer("web", broken.address, (x) => x.requests === 41, "web's tries counted");
    expect(web.in_flight).toBe(0);
    expect(web.failures).toBe(41);
    const backup = await lb.waitForPeer("backup", spare.address, (x) => x.requests === 41, "backup's tries counted");
    const counted = backupBalance === "least_conn";
    expect([backup.in_flight, backup.failures]).toEqual(counted ? [0, 0] : [undefined, undefined]);
  });
});

describe("in-flight accounting of subrequests", () => {
  let lb: Stack;
  let main: Backend;
  let shadow: Backend;

  beforeAll(async () => {
    [main, shadow] = (await startBackends(["main", "shadow"])) as [Backend, Backend];
    lb = await Stack.start({
      workers: 1,
      upstreams: { web: { counters: true }, shadow: { balance: "least_conn" } },
      // A mirror subrequest to a gen-lb upstream: nginx never runs the log
      // phase of a subrequest, so its end is seen only by the sweep.
      locations: [{ path: "/m/", upstream: "web", directives: [{ name: "mirror", args: ["/shadow/"] }] }],
    });
    lb.register("web", main);
    lb.register("shadow", shadow);
    await lb.waitForPeers("web", [main.address]);
    await lb.waitForPeers("shadow", [shadow.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([main?.stop(), shadow?.stop()]);
  });

  it("returns to zero after mirror subrequests, which never run the log phase", async () => {
    const r = await runLoad({ url: `http://127.0.0.1:${lb.port}/m/`, requests: 60, concurrency: 3 });
    expect(r.failures).toEqual([]);
    expect(r.byBackend).toEqual({ main: 60 });
    const p = await lb.waitForPeer("shadow", shadow.address, (x) => x.requests === 60 && x.in_flight === 0, "shadow in-flight back to 0", 30_000);
    expect(p.failures).toBe(0);
    const m = await lb.waitForPeer("web", main.address, (x) => x.requests === 60, "main's requests counted");
    expect(m.in_flight).toBe(0);
  });
});

describe("non-idempotent requests", () => {
  let lb: Stack;
  let ok: Backend;
  let reset: Backend;

  beforeAll(async () => {
    [ok, reset] = (await startBackends(["ok", "reset"])) as [Backend, Backend];
    reset.mode = "reset";
    lb = await Stack.start({
      workers: 1,
      upstreams: {
        once: { service: "pair", retries: 2 },
        again: { service: "pair", retries: 2, retry_non_idempotent: true },
      },
    });
    lb.register("pair", ok);
    lb.register("pair", reset);
    await lb.waitForPeers("once", [ok.address, reset.address]);
    await lb.waitForPeers("again", [ok.address, reset.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([ok?.stop(), reset?.stop()]);
  });

  it("are not retried unless the spec says so (retry_non_idempotent)", async () => {
    const post = async (u: string) => (await request(lb.url(u), { method: "POST" })).status;
    const once: number[] = [];
    const again: number[] = [];
    for (let i = 0; i < 20; i++) {
      once.push(await post("once"));
      again.push(await post("again"));
    }
    // Round robin sends every other POST to the peer that resets; nginx does not retry those.
    expect(once.filter((s) => s === 502).length).toBeGreaterThanOrEqual(5);
    expect(once.filter((s) => s === 200).length).toBeGreaterThanOrEqual(5);
    expect(again).toEqual(Array(20).fill(200));
    // GETs are retried either way.
    const gets = await runLoad({ url: lb.url("once"), requests: 40, concurrency: 2 });
    expect(gets.failures).toEqual([]);
  });
});
