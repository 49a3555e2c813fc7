/**
 * Health state across a membership change: a peer whose ip:port stays in
 * Consul's list while others join and leave keeps what the checks found.
 * A healthy one keeps serving (no new probe before traffic, its success
 * streak goes on); one taken out by active checks stays out, its failure
 * streak going on. Under a steady load with retries: 0, so a staying peer
 * briefly treated as new or unhealthy would show.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { runLoad } from "../support/load.js";
import { sleep } from "../support/ports.js";
import { Stack, startBackends } from "../support/stack.js";

describe("health state across a membership change", () => {
  let lb: Stack;
  let a: Backend;
  let b: Backend;
  let sick: Backend;
  const joiners: Backend[] = [];

  beforeAll(async () => {
    [a, b, sick] = (await startBackends(["a", "b", "sick"])) as [Backend, Backend, Backend];
    sick.healthStatus = 500;
    lb = await Stack.start({
      upstreams: {
        web: {
          retries: 0,
          // rise 3: a staying peer made to start over would take 1.5 s to serve again.
          healthcheck: { active: { path: "/health", interval: "500ms", timeout: "400ms", fall: 2, rise: 3 } },
        },
      },
    });
    lb.register("web", a);
    lb.register("web", b);
    lb.register("web", sick);
    await lb.waitForPeers("web", [a.address, b.address, sick.address]);
    await lb.waitForPeer("web", a.address, (p) => p.healthy && p.consecutive_successes >= 3, "a checked healthy");
    await lb.waitForPeer("web", b.address, (p) => p.healthy && p.consecutive_successes >= 3, "b checked healthy");
    await lb.waitForPeer("web", sick.address, (p) => !p.healthy && p.down_by === "active", "sick taken out");
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([a, b, sick, ...joiners].map((x) => x?.stop()));
  });

  it("peers that stay keep their state while others join and leave; 0 failed requests", async () => {
    const before = await lb.upstream("web");
    const at = (u: typeof before, addr: string) => u.peers.find((p) => p.address === addr)!;
    const load = runLoad({ url: lb.url("web"), durationMs: 3500, requests: 50_000, concurrency: 4 });
    await sleep(300);
    // Three membership changes: one joins, another joins, the first leaves.
    const [j1, j2] = (await startBackends(["j1", "j2"])) as [Backend, Backend];
    joiners.push(j1, j2);
    lb.register("web", j1);
    await lb.waitForPeers("web", [a.address, b.address, sick.address, j1.address]);
    await sleep(400);
    lb.register("web", j2);
    await lb.waitForPeers("web", [a.address, b.address, sick.address, j1.address, j2.address]);
    await sleep(400);
    lb.deregister(`web-${j1.port}`);
    await lb.waitForPeers("web", [a.address, b.address, sick.address, j2.address]);
    const result = await load;
    const after = await lb.upstream("web");

    expect(result.failures, JSON.stringify(result.failures.slice(0, 3)) + lb.logTail()).toEqual([]);
    expect(sick.requests).toBe(0);
    for (const addr of [a.address, b.address]) {
      const p0 = at(before, addr);
      const p1 = at(after, addr);
      expect(p1.healthy, addr).toBe(true);
      // The streak went on: never reset to 0 by the changes.
      expect(p1.consecutive_successes, addr).toBeGreaterThan(p0.consecutive_successes);
      expect(p1.since, addr).toBe(p0.since);
    }
    const s0 = at(before, sick.address);
    const s1 = at(after, sick.address);
    expect(s1).toMatchObject({ healthy: false, down_by: "active" });
    expect(s1.since).toBe(s0.since);
    expect(s1.consecutive_failures).toBeGreaterThan(s0.consecutive_failures);
    expect(lb.luaErrors()).toEqual([]);
  });
});
