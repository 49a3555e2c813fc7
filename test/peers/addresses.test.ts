/**
 * Peer addresses at run time, as Consul gives them: IPv6 literals get
 * traffic beside IPv4 ones (bracketed for set_current_peer and for the
 * active checks' connect), an Address carrying a port is dropped with one
 * warning, and two spellings of one address are one peer.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { request, runLoad } from "../support/load.js";
import { sleep } from "../support/ports.js";
import { Stack, startBackends, luaLocation } from "../support/stack.js";

describe("peer addresses from Consul", () => {
  let lb: Stack;
  let v4: Backend;
  let v6: Backend;
  let ported: Backend;

  beforeAll(async () => {
    [v4, ported] = (await startBackends(["v4", "ported"])) as [Backend, Backend];
    v6 = await new Backend({ name: "v6", host: "::1" }).start();
    lb = await Stack.start({
      upstreams: {
        web: {
          retries: 0,
          healthcheck: { active: { path: "/health", interval: "500ms", timeout: "400ms", fall: 2, rise: 1 } },
        },
        dup: { retries: 0 },
      },
    });
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([v4, v6, ported].map((b) => b?.stop()));
  });

  it("IPv6 peers on [::1] get traffic beside IPv4 ones, and pass their active checks; no request fails", async () => {
    lb.register("web", v4);
    lb.standin.registerService({ ID: "web-v6", Name: "web", Address: "::1", Port: v6.port });
    const v6Address = `[::1]:${v6.port}`;
    await lb.waitForPeers("web", [v4.address, v6Address]);
    const p = await lb.waitForPeer("web", v6Address, (s) => s.last_check_result !== undefined, "checked");
    expect(p.last_check_result, lb.logTail()).toBe("ok");
    expect(p.healthy).toBe(true);

    const result = await runLoad({ url: lb.url("web"), durationMs: 3000, requests: 2000, concurrency: 4 });
    expect(result.failures, JSON.stringify(result.failures.slice(0, 3)) + lb.logTail()).toEqual([]);
    expect(result.total).toBeGreaterThan(100);
    expect(result.byBackend.v6 ?? 0, JSON.stringify(result.byBackend)).toBeGreaterThan(result.total * 0.3);
    expect(result.byBackend.v4 ?? 0, JSON.stringify(result.byBackend)).toBeGreaterThan(result.total * 0.3);
    expect(lb.luaErrors()).toEqual([]);
  });

  it("an Address carrying a port never receives traffic, and is warned about once", async () => {
    // Address "127.0.0.1:<ported>" with Port <v4>: the old code sent traffic to <ported>.
    lb.standin.registerService({ ID: "web-ported", Name: "web", Address: `127.0.0.1:${ported.port}`, Port: v4.port });
    // Several blocking-query answers (each a membership change) while it stays registered.
    for (let k = 0; k < 3; k++) {
      lb.standin.registerService({ ID: `web-churn-${k}`, Name: "web", Address: "127.0.0.1", Port: 1 + k });
      await sleep(150);
      lb.deregister(`web-churn-${k}`);
      await sleep(150);
    }
    await lb.waitForPeers("web", [v4.address, `[::1]:${v6.port}`]);
    const result = await runLoad({ url: lb.url("web"), requests: 400, concurrency: 4 });
    expect(result.failures).toEqual([]);
    expect(ported.requests).toBe(0);
    const warned = lb.errorLog().split("\n").filter((l) => l.includes("web-ported"));
    expect(warned, lb.logTail()).toHaveLength(1);
    expect(warned[0]).toMatch(/\[warn\].*service web-ported: address "127\.0\.0\.1:\d+" carries a port/);
  });

  it("127.000.000.001 and 127.0.0.1 are one peer (one share, not two)", async () => {
    const [a, b] = (await startBackends(["a", "b"])) as [Backend, Backend];
    try {
      lb.standin.registerService({ ID: "dup-a", Name: "dup", Address: "127.0.0.1", Port: a.port });
      lb.standin.registerService({ ID: "dup-a-zeros", Name: "dup", Address: "127.000.000.001", Port: a.port });
      lb.standin.registerService({ ID: "dup-b", Name: "dup", Address: "127.0.0.1", Port: b.port });
      await lb.waitForPeers("dup", [a.address, b.address]);
      const result = await runLoad({ url: lb.url("dup"), requests: 400, concurrency: 2 });
      expect(result.failures).toEqual([]);
      // Round robin over two peers of weight 1: an even split (a counted twice would take 2/3).
      expect(Math.abs((result.byBackend.a ?? 0) - (result.byBackend.b ?? 0)), JSON.stringify(result.byBackend)).toBeLessThanOrEqual(4);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});

// A list holding a peer set_current_peer refuses, stored the way gen_lb.peers
// stores one (the publisher never writes such a peer: this is the fault path).
const INJECT_LUA = [
  "local dict = ngx.shared[require('gen_lb.config').dicts.peers]",
  "local json = require('cjson').encode({ { 'not an address', tonumber(ngx.var.arg_bad), 1 }, { '127.0.0.1', tonumber(ngx.var.arg_good), 1 } })",
  "dict:set('p:web', '100000' .. string.char(10) .. json)",
  "dict:set('v:web', 100000)",
  "ngx.say('ok')",
].join(" ");

// With passive checks the upstream runs the log phase (the tracked path); without, the lean path.
describe.each([true, false])("a peer set_current_peer refuses (log phase: %s)", (tracked) => {
  let lb: Stack;
  let good: Backend;

  beforeAll(async () => {
    [good] = (await startBackends(["good"])) as [Backend];
    lb = await Stack.start({
      upstreams: { web: { retries: 0, ...(tracked ? { healthcheck: { passive: { max_fails: 1000, fail_timeout: "30s" } } } : {}) } },
      locations: [luaLocation("/_inject", INJECT_LUA)],
      workers: 1,
    });
    lb.register("web", good);
    await lb.waitForPeers("web", [good.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await good?.stop();
  });

  it("moves the request to another peer (no 500) and counts as that peer's failure", async () => {
    const inject = await request(`http://127.0.0.1:${lb.port}/_inject?bad=1&good=${good.port}`);
    expect(inject.status).toBe(200);
    await lb.waitForPeers("web", [good.address, "not an address:1"]);
    const result = await runLoad({ url: lb.url("web"), requests: 200, concurrency: 2 });
    expect(result.failures, JSON.stringify(result.failures.slice(0, 3)) + lb.logTail()).toEqual([]);
    expect(result.byBackend.good).toBe(200);
    if (tracked) {
      // Failed tries are counted where the log phase runs (the status shows none without it).
      // The worker adds its counts to the dict once a second: a flush during the load shows part of them.
      const bad = await lb.waitForPeer("web", "not an address:1", (p) => (p.failures ?? 0) >= 90, "failures counted");
      expect(bad.failures ?? 0).toBeGreaterThanOrEqual(90);
    }
    expect(lb.errorLog()).toMatch(/set_current_peer\(not an address:1\) failed: .*; trying another peer/);
  });
});
