/**
 * Probe before traffic (healthcheck.active.probe_new, on by default): a peer
 * that joins gets no request until its first active check passed. Under a
 * steady load with retries: 0, so that any request sent to a peer that
 * cannot serve shows as a failure.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { runLoad } from "../support/load.js";
import { freePort, sleep } from "../support/ports.js";
import { Stack, startBackends } from "../support/stack.js";

const INTERVAL = 0.5;
const FALL = 2;

describe("probe before traffic", () => {
  let lb: Stack;
  let a: Backend;
  const extra: Backend[] = [];

  beforeAll(async () => {
    [a] = (await startBackends(["a"])) as [Backend];
    lb = await Stack.start({
      upstreams: {
        web: {
          retries: 0,
          healthcheck: { active: { path: "/health", interval: `${INTERVAL}s`, timeout: "400ms", fall: FALL, rise: 2 } },
        },
      },
    });
    lb.register("web", a);
    await lb.waitForPeers("web", [a.address]);
    await lb.waitForPeer("web", a.address, (p) => p.last_check_result === "ok", "checked");
  });

  afterAll(async () => {
    await lb?.stop();
    await a?.stop();
    await Promise.all(extra.map((b) => b.stop()));
  });

  it("a new instance whose health path answers 500 gets 0 requests", async () => {
    const sick = new Backend({ name: "sick" });
    sick.healthStatus = 500;
    await sick.start();
    extra.push(sick);
    const load = runLoad({ url: lb.url("web"), durationMs: 3000, requests: 50_000, concurrency: 4 });
    await sleep(300);
    lb.register("web", sick);
    await lb.waitForPeers("web", [a.address, sick.address]);
    const down = await lb.waitForPeer("web", sick.address, (p) => p.consecutive_failures >= FALL, `${FALL} failed checks`);
    const result = await load;
    expect(down.healthy).toBe(false);
    expect(result.failures, JSON.stringify(result.failures.slice(0, 3))).toEqual([]);
    expect(result.total).toBeGreaterThan(100);
    expect(sick.requests, lb.logTail()).toBe(0);
    lb.deregister(`web-${sick.port}`);
    await lb.waitForPeers("web", [a.address]);
  });

  it("an instance registered before it listens costs no request, and gets traffic once its check passes", async () => {
    const port = await freePort();
    const load = runLoad({ url: lb.url("web"), durationMs: 4000, requests: 50_000, concurrency: 4 });
    await sleep(300);
    lb.register("web", { port });
    await lb.waitForPeers("web", [a.address, `127.0.0.1:${port}`]);
    // Connections refused for a while (at least one check), then it listens.
    await sleep(INTERVAL * 1000 + 300);
    const late = await new Backend({ name: "late", port }).start();
    extra.push(late);
    const result = await load;
    expect(result.failures, JSON.stringify(result.failures.slice(0, 3)) + lb.logTail()).toEqual([]);
    expect(result.total).toBeGreaterThan(100);
    expect(result.byBackend.late ?? 0, JSON.stringify(result.byBackend)).toBeGreaterThan(0);
    expect(lb.luaErrors()).toEqual([]);
  });
});
