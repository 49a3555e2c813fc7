/**
 * Bad Consul answers: missing fields, wrong types, a huge body, a slow
 * trickle, an index going backwards, a dropped connection. None crashes the
 * watcher loop, empties a good list or blocks a worker, and each gets one log
 * line that says what was wrong (however many times it is retried).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackends, type Backend } from "../support/backends.js";
import type { FaultSpec } from "../support/consul-standin.js";
import { sleep, waitFor } from "../support/ports.js";
import { instance, Stack } from "../support/stack.js";
import { pacedLoad } from "../support/load.js";

const HEALTH = /^\/v1\/health\/service\/web$/;

describe("discovery: bad answers from Consul", () => {
  let stack: Stack;
  let backends: Backend[];
  let ids: string[];
  let version: number;

  beforeAll(async () => {
    backends = await startBackends(["a", "b", "c"]);
    // wait=1s: a new fault reaches the watcher within about a second.
    stack = await Stack.start({ profile: "discovery", workers: 2, consul: { wait: "1s", timeout: "1s" } });
    const [a, b] = backends as [Backend, Backend];
    stack.register(instance("web", a.port));
    stack.register(instance("web", b.port));
    ids = [a.address, b.address];
    version = (await stack.waitForPeers("web", ids)).version;
  });
  afterAll(async () => {
    await stack?.stop();
    await Promise.all(backends.map((b) => b.stop()));
  });

  /**
   * Serves `fault` until the watcher has received `answers` spoiled answers,
   * under a light load; then checks the list is intact and returns gen-lb's
   * log lines of the phase and what the load saw.
   */
  async function phase(fault: FaultSpec, answers = 3, keeps: "same" | "subset" = "same") {
    // Start from the good list (an earlier phase may just have recovered).
    version = (await stack.waitForPeers("web", ids)).version;
    // ... and from a watcher that is not in a failure streak.
    await waitFor(async () => (await stack.view()).upstreams.web?.meta.failures === 0, "a successful query", 15_000);
    await sleep(200);
    const linesBefore = stack.genLbLines().length;
    const load = pacedLoad(stack.url("/"), { clients: 2, intervalMs: 20 });
    const since = Date.now();
    stack.standin.fault({ path: HEALTH, ...fault });
    await waitFor(() => stack.standin.countRequests({ path: HEALTH, since }) >= answers + 1, `${answers} spoiled answers`, 20_000);
    const during = await stack.view();
    stack.standin.clearFaults();
    const result = await load.stop();
    const slowest = load.slowestMs();
    const served = during.upstreams.web?.peers.map((p) => p.replace(/\/\d+$/, "")) ?? [];
    if (keeps === "same") {
      // The list the workers serve did not move.
      expect(during.upstreams.web?.version).toBe(version);
      expect([...served].sort()).toEqual([...ids].sort());
    } else {
      // Only the well-formed entries count: never an empty list, never a peer Consul did not list.
      expect(served.length).toBeGreaterThan(0);
      for (const p of served) expect(ids).toContain(p);
    }
    expect(result.failures).toEqual([]);
    expect(result.total).toBeGreaterThan(10);
    return { lines: stack.genLbLines().slice(linesBefore), slowest };
  }

  const failures = (lines: string[], re: RegExp) => lines.filter((l) => /Consul query to .* failed/.test(l) && re.test(l));

  it("entries missing their fields are dropped with one warning; never an empty list", async () => {
    // Only the copy of b whose Checks were removed is well formed.
    const { lines } = await phase({ kind: "missingFields" }, 3, "subset");
    const warned = lines.filter((l) => /ignored \d+ of \d+ Consul entries/.test(l));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/ignored 5 of 6 Consul entries: .*(Service is missing|Port is missing|Port is number 0)/);
    expect(failures(lines, /./)).toEqual([]);
  });

  it("good entries mixed with ones missing fields: the good ones are kept, one warning", async () => {
    const { lines } = await phase({ kind: "missingFields", mixed: true });
    const warned = lines.filter((l) => /ignored \d+ of \d+ Consul entries/.test(l));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/ignored 5 of 8 Consul entries/);
    expect(failures(lines, /./)).toEqual([]);
  });

  it("entries with wrong types: malformed ones dropped with one warning, the rest kept", async () => {
    const { lines } = await phase({ kind: "wrongTypes" });
    const warned = lines.filter((l) => /ignored \d+ of \d+ Consul entries/.test(l));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/Port is string "\d+"|address is number|Service is "not-an-object"|Port is null/);
  });

  it("a huge body is refused at the size cap without blocking any worker", async () => {
    const { lines, slowest } = await phase({ kind: "hugeBody", bytes: 8 * 1024 * 1024 }, 2);
    const f = failures(lines, /larger than .* byte limit/);
    expect(f).toHaveLength(1);
    expect(slowest).toBeLessThan(1000);
  });

  it("a slow trickle is cut off at the deadline without blocking any worker", async () => {
    const { lines, slowest } = await phase({ kind: "slowTrickle", chunkBytes: 8, intervalMs: 100 }, 2);
    const f = failures(lines, /timed out reading the body/);
    expect(f).toHaveLength(1);
    expect(slowest).toBeLessThan(1000);
  });

  it("garbage and closed connections: one line each, then recovery", async () => {
    const { lines } = await phase({ kind: "garbage" });
    expect(failures(lines, /not JSON/)).toHaveLength(1);
    const closed = await phase({ kind: "close" });
    expect(failures(closed.lines, /connection closed before a response|connection reset/)).toHaveLength(1);
    await waitFor(() => stack.genLbLines().some((l) => /Consul answers again/.test(l)), "a recovery line");
  });

  it("an index going backwards resets to 0 without a tight loop", async () => {
    const since = Date.now();
    stack.standin.fault({ kind: "indexBackwards", path: HEALTH, times: 3 });
    await sleep(4000);
    const n = stack.standin.countRequests({ path: HEALTH, since });
    // wait=1s: about 4 queries plus at most one paced index=0 read per reset.
    expect(n).toBeLessThanOrEqual(12);
    const zeros = stack.standin.requests.filter((r) => r.at >= since && HEALTH.test(r.path) && r.query.get("index") === "0");
    expect(zeros.length).toBeGreaterThanOrEqual(1);
    for (let i = 1; i < zeros.length; i++) expect(zeros[i]!.at - zeros[i - 1]!.at).toBeGreaterThanOrEqual(900);
    expect((await stack.view()).upstreams.web?.version).toBe(version);
  });

  it("after all that, the same watcher loop still propagates changes", async () => {
    const c = backends[2]!;
    stack.register(instance("web", c.port));
    await stack.waitForPeers("web", [...ids, c.address]);
    expect(stack.genLbLines().filter((l) => /watcher step failed|is now the Consul watcher/.test(l))).toHaveLength(1);
    expect(stack.errorLog()).not.toMatch(/lua entry thread aborted|runtime error/);
  });
});
