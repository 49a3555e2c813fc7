/**
 * Active and passive health checks against discovered peers, end to end:
 * real nginx, real backends, the Consul stand-in.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { request, runLoad } from "../support/load.js";
import { sleep, waitFor } from "../support/ports.js";
import { luaLocation, Stack, startBackends } from "../support/stack.js";
import { tlsPeer } from "./peers.js";

// A Lua location that lists a peer's keys in the health dict.
const KEYS_LUA = [
  "local id = ngx.var.arg_id",
  "local out = {}",
  "for _, k in ipairs(ngx.shared.gen_lb_health:get_keys(0)) do",
  "  if k:sub(-#id - 1) == '|' .. id then out[#out + 1] = k end",
  "end",
  "ngx.say(#out == 0 and '[]' or require('cjson.safe').encode(out))",
].join(" ");

describe("active checks", () => {
  let lb: Stack;
  let good: Backend;
  let sick: Backend;

  beforeAll(async () => {
    [good, sick] = (await startBackends(["good", "sick"])) as [Backend, Backend];
    lb = await Stack.start({
      upstreams: {
        web: { healthcheck: { active: { path: "/health", interval: "300ms", timeout: "500ms", fall: 2, rise: 2, valid_statuses: [200] } } },
      },
      locations: [luaLocation("/_keys", KEYS_LUA)],
    });
    lb.register("web", good);
    lb.register("web", sick);
    await lb.waitForPeers("web", [good.address, sick.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([good?.stop(), sick?.stop()]);
  });

  it("take out a backend whose health path answers 500 while its traffic answers 200", async () => {
    sick.healthStatus = 500;
    // Down by the active checks, not merely pending its first check (probe_new).
    const down = await lb.waitForPeer("web", sick.address, (p) => !p.healthy && p.down_by !== undefined, "down");
    expect(down.down_by).toBe("active");
    expect(down.last_check_result).toBe("HTTP 500");
    expect(down.reason).toMatch(/^2 failed check\(s\) in a row \(last: HTTP 500\)$/);
    // Traffic itself would have worked; it no longer goes there.
    const r = await runLoad({ url: lb.url("web"), requests: 200, concurrency: 4 });
    expect(r.failures).toEqual([]);
    expect(r.byBackend).toEqual({ good: 200 });
  });

  it("bring it back after `rise` good answers", async () => {
    sick.healthStatus = 200;
    const up = await lb.waitForPeer("web", sick.address, (p) => p.healthy, "healthy");
    expect(up.consecutive_successes).toBeGreaterThanOrEqual(2);
    expect(up.reason).toMatch(/^2 successful check/);
    const r = await runLoad({ url: lb.url("web"), requests: 200, concurrency: 4 });
    expect(r.byBackend.sick).toBeGreaterThan(50);
  });

  it("check a peer as soon as it appears, and forget one that vanishes", async () => {
    const [fresh] = (await startBackends(["fresh"])) as [Backend];
    try {
      lb.register("web", fresh);
      const appeared = Date.now();
      await waitFor(() => fresh.healthRequests > 0, "a first check of the new peer", 5000, 10);
      // Far sooner than a check interval of the whole set would allow if it waited its turn.
      expect(Date.now() - appeared).toBeLessThan(3000);
      fresh.healthStatus = 500;
      await lb.waitForPeer("web", fresh.address, (p) => !p.healthy, "down");
      lb.deregister(`web-${fresh.port}`);
      await lb.waitForPeers("web", [good.address, sick.address]);
      // Its state goes from the health dict (checked through a worker's view of the keys).
      const keys = await waitFor(
        async () => {
          const res = await request(`http://127.0.0.1:${lb.port}/_keys?id=${fresh.address}`);
          const list = JSON.parse(res.body) as string[];
          return list.length === 0 ? list : undefined;
        },
        "the vanished peer's keys to go",
        8000,
      ).catch(async () => JSON.parse((await request(`http://127.0.0.1:${lb.port}/_keys?id=${fresh.address}`)).body));
      expect(keys).toEqual([]);
      const checksThen = fresh.healthRequests;
      await sleep(1000);
      expect(fresh.healthRequests).toBe(checksThen);
    } finally {
      await fresh.stop();
    }
  });

  it("another worker takes the checks over when the checking worker dies", async () => {
    const before = (await lb.status()).health_checker!;
    expect(lb.nginx.workerPids()).toContain(before);
    process.kill(before, "SIGKILL");
    const after = await waitFor(
      async () => {
        const pid = (await lb.status()).health_checker;
        return pid && pid !== before && lb.nginx.workerPids().includes(pid) ? pid : undefined;
      },
      "a new checker",
      15_000,
      100,
    );
    expect(after).not.toBe(before);
    const seen = good.healthRequests;
    await waitFor(() => good.healthRequests >= seen + 3, "checks to continue", 5000);
    sick.healthStatus = 500;
    await lb.waitForPeer("web", sick.address, (p) => !p.healthy, "down under the new checker");
    sick.healthStatus = 200;
    await lb.waitForPeer("web", sick.address, (p) => p.healthy, "healthy");
  });
}, 60_000);


describe("https and tcp checks", () => {
  let lb: Stack;
  let tls: Awaited<ReturnType<typeof tlsPeer>>;
  let plain: Backend;

  beforeAll(async () => {
    tls = await tlsPeer(200);
    [plain] = (await startBackends(["plain"])) as [Backend];
    lb = await Stack.start({
      upstreams: {
        secure: { healthcheck: { active: { type: "https", path: "/health", interval: "300ms", timeout: "500ms", fall: 2, rise: 2 } } },
        raw: { healthcheck: { active: { type: "tcp", interval: "300ms", timeout: "500ms", fall: 2, rise: 2 } } },
      },
    });
    lb.register("secure", tls);
    lb.register("secure", plain);
    lb.register("raw", plain);
    lb.register("raw", tls);
    await lb.waitForPeers("secure", [tls.address, plain.address]);
    await lb.waitForPeers("raw", [tls.address, plain.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([tls?.stop(), plain?.stop()]);
  });

  it("https: a TLS peer passes, a plain-HTTP peer fails the handshake", async () => {
    await waitFor(() => tls.hits() >= 3, "https checks", 5000);
    const bad = await lb.waitForPeer("secure", plain.address, (p) => !p.healthy, "down");
    expect(bad.last_check_result).toMatch(/TLS handshake/);
    const ok = await lb.peer("secure", tls.address);
    expect(ok?.healthy).toBe(true);
    expect(ok?.last_check_result).toBe("ok");
  });

  it("tcp: a listening peer passes; once it stops listening it is taken out", async () => {
    const ok = await lb.waitForPeer("raw", plain.address, (p) => p.last_check_result === "ok" && p.consecutive_successes >= 2, "checked");
    expect(ok.healthy).toBe(true);
    await tls.stop();
    const down = await lb.waitForPeer("raw", tls.address, (p) => !p.healthy, "down");
    expect(down.last_check_result).toMatch(/connect: connection refused/);
  });
});

describe("passive checks", () => {
  let lb: Stack;
  let ok: Backend;
  let stuck: Backend;
  let broken: Backend;

  beforeAll(async () => {
    [ok, stuck, broken] = (await startBackends(["ok", "stuck", "broken"])) as [Backend, Backend, Backend];
    lb = await Stack.start({
      upstreams: {
        slow: {
          service: "slow",
          retries: 1,
          read_timeout: "500ms",
          healthcheck: { passive: { max_fails: 2, fail_timeout: "3s" } },
        },
        errors: {
          service: "errors",
          retries: 1,
          retry_statuses: [500, 502, 503, 504],
          healthcheck: { passive: { max_fails: 3, fail_timeout: "30s", statuses: [500] } },
        },
      },
    });
    lb.register("slow", ok);
    lb.register("slow", stuck);
    lb.register("errors", ok);
    lb.register("errors", broken);
    await lb.waitForPeers("slow", [ok.address, stuck.address]);
    await lb.waitForPeers("errors", [ok.address, broken.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([ok, stuck, broken].map((b) => b?.stop()));
  });

  it("take out a backend whose traffic times out; clients never see it (retries); it returns after fail_timeout", async () => {
    stuck.mode = "hang";
    const r = await runLoad({ url: lb.url("slow"), requests: 60, concurrency: 3 });
    expect(r.failures).toEqual([]);
    expect(r.byBackend).toEqual({ ok: 60 });
    const down = await lb.waitForPeer("slow", stuck.address, (p) => !p.healthy, "down");
    expect(down.down_by).toBe("passive");
    expect(down.reason).toMatch(/^2 failed tries within 3 s \(last: timeout\)$/);
    // Out of the rotation: nothing more is sent to it.
    const sent = stuck.requests;
    const again = await runLoad({ url: lb.url("slow"), requests: 100, concurrency: 4 });
    expect(again.failures).toEqual([]);
    expect(stuck.requests).toBe(sent);
    // No active checks: fail_timeout brings it back.
    stuck.mode = "ok";
    const up = await lb.waitForPeer("slow", stuck.address, (p) => p.healthy, "back after fail_timeout", 10_000);
    expect(up.since! - down.since!).toBeGreaterThanOrEqual(3 - 0.3);
    expect(up.reason).toMatch(/fail_timeout/);
  });

  it("count the statuses the spec names (500) as failures", async () => {
    broken.mode = "error500";
    const r = await runLoad({ url: lb.url("errors"), requests: 60, concurrency: 2 });
    expect(r.failures).toEqual([]);
    const down = await lb.waitForPeer("errors", broken.address, (p) => !p.healthy, "down");
    expect(down.down_by).toBe("passive");
    expect(down.reason).toMatch(/last: HTTP 500/);
  });
});

describe("when every peer is down", () => {
  let lb: Stack;
  let one: Backend;
  let two: Backend;

  beforeAll(async () => {
    [one, two] = (await startBackends(["one", "two"])) as [Backend, Backend];
    const active = { path: "/health", interval: "300ms", timeout: "500ms", fall: 1, rise: 1 };
    lb = await Stack.start({
      upstreams: {
        open: { service: "both", fail_open: true, healthcheck: { active } },
        closed: { service: "both", fail_open: false, healthcheck: { active } },
      },
    });
    lb.register("both", one);
    lb.register("both", two);
    await lb.waitForPeers("open", [one.address, two.address]);
    await lb.waitForPeers("closed", [one.address, two.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([one?.stop(), two?.stop()]);
  });

  it("fail open sends to all of them, fail closed answers 503, each logged once per interval, not per request", async () => {
    one.healthStatus = 500;
    two.healthStatus = 500;
    for (const u of ["open", "closed"]) {
      await waitFor(async () => (await lb.upstream(u)).all_down, `${u}: all down`, 10_000);
    }
    const open = await runLoad({ url: lb.url("open"), requests: 200, concurrency: 4 });
    expect(open.failures).toEqual([]);
    expect(Object.keys(open.byBackend).sort()).toEqual(["one", "two"]);
    const closed = await runLoad({ url: lb.url("closed"), requests: 200, concurrency: 4 });
    expect(closed.statuses).toEqual({ 503: 200 });
    expect(one.requests + two.requests).toBe(200);

    const status = await lb.status();
    expect(status.upstreams.open!.failing).toBe("open");
    expect(status.upstreams.closed!.failing).toBe("closed");
    const lines = lb.errorLog().split("\n");
    expect(lines.filter((l) => /upstream "open": all 2 peer\(s\) are unhealthy; failing open/.test(l))).toHaveLength(1);
    expect(lines.filter((l) => /upstream "closed": all 2 peer\(s\) are unhealthy; failing closed/.test(l))).toHaveLength(1);

    one.healthStatus = 200;
    await waitFor(async () => !(await lb.upstream("closed")).all_down, "closed: a healthy peer", 10_000);
    const back = await runLoad({ url: lb.url("closed"), requests: 50, concurrency: 2 });
    expect(back.failures).toEqual([]);
    expect(back.byBackend).toEqual({ one: 50 });
    expect(lb.errorLog()).toMatch(/upstream "closed": 1 of 2 peer\(s\) healthy again/);
  });
});

describe("an upstream a reload removes", () => {
  // Every key of both shared dicts that belongs to upstream `name`.
  const KEYS_OF = [
    "local name = ngx.var.arg_name",
    "local out = {}",
    "for _, d in ipairs({ ngx.shared.gen_lb_health, ngx.shared.gen_lb_peers }) do",
    "  for _, k in ipairs(d:get_keys(0)) do",
    "    if k:find('|' .. name, 1, true) or k:sub(3) == name then out[#out + 1] = k end",
    "  end",
    "end",
    "table.sort(out)",
    "ngx.say(#out == 0 and '[]' or require('cjson.safe').encode(out))",
  ].join(" ");
  const locations = [luaLocation("/_keys", KEYS_OF)];
  let lb: Stack;
  let peer: Backend;

  beforeAll(async () => {
    [peer] = (await startBackends(["peer"])) as [Backend];
    lb = await Stack.start({
      workers: 2,
      upstreams: { keep: { healthcheck: { passive: {} } }, gone: { healthcheck: { passive: {} } } },
      locations,
    });
    lb.register("keep", peer);
    lb.register("gone", peer);
    await lb.waitForPeers("keep", [peer.address]);
    await lb.waitForPeers("gone", [peer.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await peer?.stop();
  });

  const keysOf = async (name: string): Promise<string[]> => JSON.parse((await request(`http://127.0.0.1:${lb.port}/_keys?name=${name}`)).body);

  it("has its health and peer keys forgotten by the next checker", async () => {
    for (const name of ["keep", "gone"]) {
      expect((await runLoad({ url: lb.url(name), requests: 20, concurrency: 2 })).failures).toEqual([]);
      await lb.waitForPeer(name, peer.address, (p) => p.requests === 20, `${name}'s requests flushed`);
    }
    const before = await keysOf("gone");
    expect(before).toEqual(expect.arrayContaining([`req|gone|${peer.address}`, "v:gone", "p:gone", "m:gone"]));

    await lb.reconfigure({ workers: 2, upstreams: { keep: { healthcheck: { passive: {} } } }, locations });
    await waitFor(async () => ((await keysOf("gone")).length === 0 ? true : undefined), "gone's keys to go", 15_000);
    expect(Object.keys((await lb.status()).upstreams)).toEqual(["keep"]);
    // The upstream that stayed keeps its counters and its list.
    expect(await keysOf("keep")).toEqual(expect.arrayContaining([`req|keep|${peer.address}`, "v:keep", "p:keep"]));
    expect((await lb.peer("keep", peer.address))?.requests).toBe(20);
    expect(lb.nginx.errorLog()).toContain("forgot the state of 1 upstream(s) this config no longer has: gone");

    // A config without any upstream runs no checker; its first worker forgets them.
    await lb.reconfigure({ workers: 2, upstreams: {}, locations });
    await waitFor(async () => ((await keysOf("keep")).length === 0 ? true : undefined), "keep's keys to go", 15_000);
    expect(lb.nginx.errorLog()).toContain("forgot the state of 1 upstream(s) this config no longer has: keep");
  });
});
