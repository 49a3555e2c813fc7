/**
 * Last known good: Consul fails in every way while a bounded load runs, and
 * no client request fails; a change made during the outage is picked up when
 * Consul returns. Issue 3's scenario 3.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackends, type Backend } from "../support/backends.js";
import { sleep, waitFor } from "../support/ports.js";
import { instance, Stack } from "../support/stack.js";
import { pacedLoad } from "../support/load.js";

/**
 * How long Consul stays away. Nothing in the runtime keys on 30 s (the
 * watcher retries with backoff capped below this, and last known good has no
 * expiry), so a few retry cycles are enough; OUTAGE_S=30 for the long form.
 */
const OUTAGE_S = Number(process.env.OUTAGE_S ?? 8);

describe("discovery: Consul failures", () => {
  let stack: Stack;
  let backends: Backend[];

  beforeAll(async () => {
    backends = await startBackends(["a", "b", "c"]);
    // A short wait so that each fault reaches the watcher within ~2 s.
    stack = await Stack.start({ profile: "discovery", workers: 2, consul: { wait: "2s", timeout: "1s" } });
  });
  afterAll(async () => {
    await stack?.stop();
    await Promise.all(backends.map((b) => b.stop()));
  });

  it(`500s, hangs, garbage and ${OUTAGE_S} s of no Consul fail no request; a change made meanwhile is picked up`, { timeout: 120_000 }, async () => {
    const [a, b, c] = backends as [Backend, Backend, Backend];
    stack.register(instance("web", a.port));
    stack.register(instance("web", b.port));
    const good = await stack.waitForPeers("web", [a.address, b.address]);
    const version = good.version;

    const load = pacedLoad(stack.url("/"), { clients: 2, intervalMs: 40 });
    const versionNow = async () => (await stack.view()).upstreams.web?.version;
    const path = /^\/v1\/health\/service\//;

    // 500s: the watcher's next queries fail.
    stack.standin.fault({ kind: "status500", path });
    await waitFor(() => stack.standin.countRequests((r) => path.test(r.path) && r.status === 500) >= 2, "two 500s", 10_000);
    expect(await versionNow()).toBe(version);

    // Hangs: requests that never get an answer (they time out on our side).
    stack.standin.clearFaults();
    stack.standin.fault({ kind: "hang", path });
    const hangsFrom = Date.now();
    await waitFor(() => stack.standin.countRequests({ path, since: hangsFrom }) >= 2, "two hung queries", 15_000);
    expect(await versionNow()).toBe(version);

    // Garbage that claims to be JSON.
    stack.standin.clearFaults();
    stack.standin.fault({ kind: "garbage", path });
    const garbageFrom = Date.now();
    await waitFor(() => stack.standin.countRequests({ path, since: garbageFrom }) >= 2, "two garbage answers", 15_000);
    expect(await versionNow()).toBe(version);
    stack.standin.clearFaults();

    // Consul goes away; meanwhile an instance comes and one goes.
    await stack.standin.down();
    await sleep(2000);
    stack.standin.registerService(instance("web", c.port));
    stack.standin.deregisterService(`web-${b.port}`);
    await sleep(OUTAGE_S * 1000 - 2000);
    const during = await stack.view();
    expect(during.upstreams.web?.version).toBe(version);
    expect(during.upstreams.web?.meta.last_error).toBeTruthy();

    await stack.standin.up();
    const after = await stack.waitForPeers("web", [a.address, c.address], 15_000);
    expect(after.meta.source).toBe("consul");
    await sleep(500);
    const result = await load.stop();

    expect(result.failures).toEqual([]);
    expect(result.total).toBeGreaterThan(300);
    // Both old peers served through the outage, and the new one after it.
    expect(result.byBackend.a).toBeGreaterThan(0);
    expect(result.byBackend.b).toBeGreaterThan(0);
    expect(result.byBackend.c).toBeGreaterThan(0);

    // Failure streaks are logged once each, not once per attempt.
    const failed = stack.genLbLines().filter((l) => /Consul query to .* failed/.test(l));
    const attempts = stack.standin.countRequests({ path }) ;
    expect(failed.length).toBeGreaterThanOrEqual(2);
    expect(failed.length).toBeLessThanOrEqual(6);
    expect(attempts).toBeGreaterThan(failed.length);
    expect(failed.join("\n")).toMatch(/HTTP 500/);
    expect(failed.join("\n")).toMatch(/timed out|timeout/);
    expect(failed.join("\n")).toMatch(/not JSON/);
    expect(failed.join("\n")).toMatch(/connect failed|connection refused/i);
    expect(stack.genLbLines().filter((l) => /Consul answers again/.test(l)).length).toBeGreaterThanOrEqual(1);
  });
});
