/**
 * Odd and hostile Consul answers about peers, through the real watcher and
 * balancer: an instance with no Service.Address is at its node's Address (as
 * Consul documents it); one address spelled several ways (IPv6 with and
 * without zeros, upper-case hex) is one peer; a zone index, a Port of 0,
 * 65536, a string or a fraction is dropped with one escaped warning; the
 * same instance many times is one peer; a list of thousands of peers is
 * taken whole. IPv6 traffic stays on ::1: addresses off loopback are only
 * ever listed (no request, no active check goes to them).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { ConsulStandin } from "../support/consul-standin.js";
import { runLoad } from "../support/load.js";
import { freePort, sleep, waitFor } from "../support/ports.js";
import { Stack, startBackends } from "../support/stack.js";

const NODE_ADDRESS = "127.0.0.3";
const HOSTILE = /^\/v1\/health\/service\/hostile$/;

type Entry = Record<string, unknown>;

/** n copies of an answer's first entry, each with service(i) merged into its Service. */
function copies(entries: Entry[], n: number, service: (i: number) => Record<string, unknown>): Entry[] {
  return Array.from({ length: n }, (_, i) => {
    const e = structuredClone(entries[0]!);
    Object.assign(e.Service as object, service(i));
    return e;
  });
}

describe("Consul answers about peers", () => {
  let standin: ConsulStandin;
  let lb: Stack;
  let v4: Backend;
  let v6: Backend;
  let onNode: Backend;
  let good: Backend;
  let fb6: Backend;

  beforeAll(async () => {
    standin = new ConsulStandin({ nodeAddress: NODE_ADDRESS });
    await standin.start();
    [v4, good] = (await startBackends(["v4", "good"])) as [Backend, Backend];
    v6 = await new Backend({ name: "v6", host: "::1" }).start();
    onNode = await new Backend({ name: "on-node", host: NODE_ADDRESS }).start();
    fb6 = await new Backend({ name: "fb6", host: "::1" }).start();
    lb = await Stack.start({
      standin,
      // wait=1s: a new fault reaches the watcher within about a second.
      consul: { wait: "1s" },
      upstreams: {
        spell: { retries: 0 },
        mapped: { retries: 0 },
        listed: { retries: 0 },
        node: { retries: 0 },
        hostile: { retries: 0 },
        // An IPv6 peer that cannot be reached (nothing listens on its port of ::1) beside a good one.
        v6dead: { retries: 1, healthcheck: { active: { path: "/health", interval: "500ms", timeout: "400ms", fall: 1, rise: 1 } } },
        // No instance in Consul: served from its fallback, an IPv6 literal (spelled long).
        fb6: { retries: 0, fallback: [`[0:0:0:0:0:0:0:1]:${fb6.port}`] },
      },
    });
  });

  afterAll(async () => {
    await lb?.stop();
    await standin?.stop();
    await Promise.all([v4, v6, onNode, good, fb6].map((b) => b?.stop()));
  });

  /** Answers about upstream hostile made by `edit` from the real ones, until the returned function is called. */
  const spoilHostile = (edit: (entries: Entry[]) => unknown) => standin.fault({ path: HOSTILE, kind: "edit", edit });
  const warnings = (needle: string) => lb.errorLog().split("\n").filter((l) => l.includes(needle));

  it("an instance with an empty Service.Address is at its node's Address, and serves", async () => {
    // Consul: "If Address is not provided or left empty, then the node's address will be used."
    lb.register({ ID: "node-empty", Name: "node", Address: "", Port: onNode.port });
    await lb.waitForPeers("node", [`${NODE_ADDRESS}:${onNode.port}`]);
    const r = await runLoad({ url: lb.url("node"), requests: 50, concurrency: 2 });
    expect(r.failures, lb.logTail()).toEqual([]);
    expect(r.byBackend).toEqual({ "on-node": 50 });
  });

  it("an IPv6 fallback peer serves while Consul lists no instance (never 500: no host allowed)", async () => {
    await lb.waitForPeers("fb6", [`[::1]:${fb6.port}`]);
    const r = await runLoad({ url: lb.url("fb6"), requests: 50, concurrency: 2 });
    expect(r.failures, lb.logTail()).toEqual([]);
    expect(r.byBackend).toEqual({ fb6: 50 });
  });

  it("an unreachable IPv6 peer is taken out by active checks and costs no request (retried on the IPv4 one)", async () => {
    const closed = await freePort();
    lb.register({ ID: "v6dead-good", Name: "v6dead", Address: "127.0.0.1", Port: good.port });
    await lb.waitForPeers("v6dead", [good.address]);
    const load = runLoad({ url: lb.url("v6dead"), durationMs: 2500, requests: 20_000, concurrency: 2 });
    lb.register({ ID: "v6dead-bad", Name: "v6dead", Address: "::1", Port: closed });
    await lb.waitForPeers("v6dead", [good.address, `[::1]:${closed}`]);
    const p = await lb.waitForPeer("v6dead", `[::1]:${closed}`, (s) => s.last_check_result !== undefined, "checked");
    const r = await load;
    expect(r.failures, JSON.stringify(r.failures.slice(0, 3)) + lb.logTail()).toEqual([]);
    expect(r.total).toBeGreaterThan(50);
    expect(p.healthy).toBe(false);
    // The check reached [::1]:PORT and was refused there (not a mangled address, not "invalid port").
    expect(p.last_check_result).toMatch(/connect: connection refused/);
    expect(lb.errorLog()).not.toMatch(/invalid port|no host allowed|set_current_peer\(.*\) failed/);
  });

  it("::1 spelled three ways is one peer beside IPv4; 0 failed requests", async () => {
    lb.register("spell", v4);
    for (const [id, address] of [["v6-short", "::1"], ["v6-long", "0:0:0:0:0:0:0:1"], ["v6-zeros", "0000:0000::0001"]] as const) {
      lb.register({ ID: id, Name: "spell", Address: address, Port: v6.port });
    }
    await lb.waitForPeers("spell", [v4.address, `[::1]:${v6.port}`]);
    const r = await runLoad({ url: lb.url("spell"), requests: 400, concurrency: 2 });
    expect(r.failures, lb.logTail()).toEqual([]);
    // Round robin over two peers of weight 1: an even split (::1 counted three times would take 3/4).
    expect(Math.abs((r.byBackend.v4 ?? 0) - (r.byBackend.v6 ?? 0)), JSON.stringify(r.byBackend)).toBeLessThanOrEqual(4);
  });

  it("an IPv4-mapped IPv6 Address (::ffff:127.0.0.1, ::FFFF:7F00:1) is the IPv4 peer it reaches: one peer, its even share", async () => {
    lb.register({ ID: "m-v4", Name: "mapped", Address: "127.0.0.1", Port: v4.port });
    lb.register({ ID: "m-mapped", Name: "mapped", Address: "::ffff:127.0.0.1", Port: v4.port });
    lb.register({ ID: "m-hex", Name: "mapped", Address: "::FFFF:7F00:1", Port: v4.port });
    lb.register({ ID: "m-good", Name: "mapped", Address: "127.0.0.1", Port: good.port });
    await lb.waitForPeers("mapped", [v4.address, good.address]);
    const r = await runLoad({ url: lb.url("mapped"), requests: 400, concurrency: 2 });
    expect(r.failures, lb.logTail()).toEqual([]);
    expect(Math.abs((r.byBackend.v4 ?? 0) - (r.byBackend.good ?? 0)), JSON.stringify(r.byBackend)).toBeLessThanOrEqual(4);
  });

  it("upper-case hex is the same peer as lower case; a zone index, and [::1]:PORT, are dropped with one warning each", async () => {
    // Listed only: nothing is sent to this upstream.
    lb.register({ ID: "upper", Name: "listed", Address: "DEAD:BEEF:0:0::1", Port: 8080 });
    lb.register({ ID: "lower", Name: "listed", Address: "dead:beef::1", Port: 8080 });
    lb.register({ ID: "zoned", Name: "listed", Address: "fe80::1%eth0", Port: 8080 });
    lb.register({ ID: "v6-ported", Name: "listed", Address: "[::1]:8081", Port: 8080 });
    await lb.waitForPeers("listed", ["[dead:beef::1]:8080"]);
    await sleep(1500); // a few more answers: still one warning each
    const warned = warnings("zoned");
    expect(warned, lb.logTail()).toHaveLength(1);
    expect(warned[0]).toMatch(/\[warn\].*service zoned: address "fe80::1%eth0" is not an IP address/);
    const ported = warnings("v6-ported");
    expect(ported, lb.logTail()).toHaveLength(1);
    expect(ported[0]).toMatch(/service v6-ported: address "\[::1\]:8081" carries a port/);
  });

  it("a host name without nginx.http.resolver is dropped with one warning saying so, on either target", async () => {
    lb.register({ ID: "named-nores", Name: "listed", Address: "app.service.consul", Port: 8080 });
    await sleep(1500); // a few answers: still one warning, and the list did not move
    await lb.waitForPeers("listed", ["[dead:beef::1]:8080"]);
    const warned = warnings("named-nores");
    expect(warned, lb.logTail()).toHaveLength(1);
    expect(warned[0]).toMatch(/\[warn\].*service named-nores: address "app\.service\.consul" is not an IP address \(a host name, not resolved: nginx\.http\.resolver is not set\)/);
  });

  it("Port 0, 65536, a string or a fraction: that entry dropped with one warning, the rest kept; a newline in an ID is escaped", async () => {
    lb.register("hostile", good);
    await lb.waitForPeers("hostile", [good.address]);
    // The forged ID first, so that it is among the problems the warning spells out.
    const bad: Array<[string, unknown]> = [["evil\n2026/01/01 00:00:00 [emerg] forged", 0], ["port-zero", 0], ["port-big", 65536], ["port-string", String(good.port)], ["port-frac", 80.5]];
    const clear = spoilHostile((entries) => [...entries, ...copies(entries, bad.length, (i) => ({ ID: bad[i]![0], Port: bad[i]![1] }))]);
    try {
      const since = Date.now();
      await waitFor(() => standin.countRequests({ path: HOSTILE, since }) >= 4, "three edited answers", 15_000);
      await lb.waitForPeers("hostile", [good.address]);
      const r = await runLoad({ url: lb.url("hostile"), requests: 100, concurrency: 2 });
      expect(r.failures, lb.logTail()).toEqual([]);
      expect(r.byBackend).toEqual({ good: 100 });
      const lines = warnings('upstream "hostile": ignored');
      expect(lines, lb.logTail()).toHaveLength(1);
      expect(lines[0]).toMatch(/ignored 5 of 6 Consul entries/);
      expect(lines[0]).toMatch(/service port-zero: Port is number 0/);
      expect(lines[0]).toContain("forged");
      // The forged line stays inside the warning: no [emerg] line of its own.
      expect(lb.errorLog().split("\n").filter((l) => l.includes("forged") && !l.includes('upstream "hostile": ignored'))).toEqual([]);
      expect(lb.errorLog()).not.toMatch(/^2026\/01\/01 00:00:00 \[emerg\]/m);
    } finally {
      clear();
    }
  });

  it("the same instance 500 times (under other IDs, weights) is one peer with the largest weight", async () => {
    const clear = spoilHostile((entries) => copies(entries, 500, (i) => ({ ID: `copy-${i}`, Weights: { Passing: i === 250 ? 7 : 1, Warning: 1 } })));
    try {
      const view = await waitFor(async () => {
        const v = (await lb.view()).upstreams.hostile;
        return v && v.peers.length === 1 && v.peers[0] === `${good.address}/7` ? v : undefined;
      }, "one peer of weight 7", 15_000);
      expect(view.peers).toEqual([`${good.address}/7`]);
      const r = await runLoad({ url: lb.url("hostile"), requests: 50, concurrency: 2 });
      expect(r.failures).toEqual([]);
    } finally {
      clear();
    }
  });

  it("a list of 3000 peers is taken whole, status still answers, and the next answer replaces it", async () => {
    const clear = spoilHostile((entries) => [
      ...entries,
      ...copies(entries, 3000, (i) => ({ ID: `many-${i}`, Address: `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`, Port: 9 })),
    ]);
    try {
      await waitFor(async () => (await lb.view()).upstreams.hostile?.peers.length === 3001, "3001 peers", 20_000);
      const up = await lb.upstream("hostile");
      expect(up.total).toBe(3001);
    } finally {
      clear();
    }
    // Any change makes Consul answer again: the real list comes back.
    const id = lb.register({ ID: "nudge", Name: "hostile", Address: "127.0.0.1", Port: good.port });
    await lb.waitForPeers("hostile", [good.address], 20_000);
    lb.deregister(id);
    // (The forged ID's warning above holds an "[emerg]" by design.)
    expect(lb.luaErrors().filter((l) => !l.includes("forged"))).toEqual([]);
  });
});
