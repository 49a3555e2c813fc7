/**
 * A backend process dies under load and comes back: retries hide it from
 * clients, the active checker takes it out and brings it back.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { runLoad } from "../support/load.js";
import { sleep } from "../support/ports.js";
import { Stack, startBackends } from "../support/stack.js";

const INTERVAL = 1;
const TIMEOUT = 0.5;
const FALL = 2;
const RISE = 2;

describe("a backend killed under load", () => {
  let lb: Stack;
  let peers: Backend[];

  beforeAll(async () => {
    peers = await startBackends(["a", "b", "c"]);
    lb = await Stack.start({
      upstreams: {
        web: {
          retries: 2,
          // Active checks only, so that it is the checker that takes the peer out.
          healthcheck: { active: { path: "/health", interval: `${INTERVAL}s`, timeout: `${TIMEOUT}s`, fall: FALL, rise: RISE } },
        },
      },
    });
    for (const p of peers) lb.register("web", p);
    await lb.waitForPeers("web", peers.map((p) => p.address));
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all(peers.map((p) => p.stop()));
  });

  it("costs no client request with retries: 2; the checker marks it down within fall x interval + timeout; it returns after rise successes", async () => {
    const victim = peers[1]!;
    const load = runLoad({ url: lb.url("web"), durationMs: 5000, requests: 50_000, concurrency: 6 });
    await sleep(1000);
    const killedAt = Date.now() / 1000;
    await victim.stop();
    const result = await load;
    expect(result.failures, JSON.stringify(result.failures.slice(0, 5))).toEqual([]);
    expect(result.total).toBeGreaterThan(100);

    const down = await lb.waitForPeer("web", victim.address, (p) => !p.healthy, "marked down");
    expect(down.down_by).toBe("active");
    expect(down.consecutive_failures).toBeGreaterThanOrEqual(FALL);
    // The checker's own clock says when; 0.3 s for its scheduling step and a busy machine.
    expect(down.since! - killedAt, `down ${down.since! - killedAt} s after the kill`).toBeLessThanOrEqual(FALL * INTERVAL + TIMEOUT + 0.3);

    // Out of the rotation: every request goes to the others, first try.
    const during = await runLoad({ url: lb.url("web"), requests: 300, concurrency: 4 });
    expect(during.failures).toEqual([]);
    expect(Object.keys(during.byBackend).sort()).toEqual(["a", "c"]);

    // Back on the same port.
    const revived = new Backend({ name: victim.name, port: victim.port });
    await revived.start();
    peers[1] = revived;
    const startedAt = Date.now() / 1000;
    const up = await lb.waitForPeer("web", victim.address, (p) => p.healthy, "healthy again");
    expect(up.consecutive_successes).toBeGreaterThanOrEqual(RISE);
    expect(up.reason).toMatch(new RegExp(`^${RISE} successful check`));
    expect(up.since! - startedAt).toBeGreaterThanOrEqual((RISE - 1) * INTERVAL - 0.3);
    const after = await runLoad({ url: lb.url("web"), requests: 300, concurrency: 4 });
    expect(after.failures).toEqual([]);
    expect(after.byBackend.b).toBeGreaterThan(50);
    expect(lb.luaErrors()).toEqual([]);
  });
});
