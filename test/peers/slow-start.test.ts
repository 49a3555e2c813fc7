/**
 * slow_start: a peer that returns ramps its weight linearly over the window
 * (round robin, two peers of weight 1). In the k-th of BUCKETS equal time
 * buckets its weight is about f = (k + 0.5) / BUCKETS of its own, so its share
 * is about f / (1 + f): 0.11, 0.27, 0.38, 0.47 for four buckets. Tolerance:
 * each bucket's share within ±0.12 of that, the shares rising from the first
 * bucket to the last, and an even split once the window is over.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { runLoad } from "../support/load.js";
import { Stack, startBackends, share } from "../support/stack.js";

const WINDOW_S = 4;
const BUCKETS = 4;
const TOLERANCE = 0.12;

describe("slow_start", () => {
  let lb: Stack;
  let a: Backend;
  let b: Backend;

  beforeAll(async () => {
    [a, b] = (await startBackends(["a", "b"])) as [Backend, Backend];
    lb = await Stack.start({ upstreams: { web: { retries: 1, slow_start: `${WINDOW_S}s` } } });
    lb.register("web", a);
    lb.register("web", b);
    await lb.waitForPeers("web", [a.address, b.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await a?.stop();
    await b?.stop();
  });

  it("the share of a peer that returns grows over the window, then is its full share", async () => {
    lb.deregister(`web-${b.port}`);
    await lb.waitForPeers("web", [a.address]);
    lb.register("web", b);
    await lb.waitForPeers("web", [a.address, b.address]);
    const shares: number[] = [];
    for (let k = 0; k < BUCKETS; k++) {
      const r = await runLoad({ url: lb.url("web"), durationMs: (WINDOW_S * 1000) / BUCKETS, concurrency: 4 });
      expect(r.failures).toEqual([]);
      shares.push(share(r.byBackend, "b"));
    }
    const want = shares.map((_, k) => {
      const f = (k + 0.5) / BUCKETS;
      return f / (1 + f);
    });
    const detail = `slow_start ${WINDOW_S}s, b's share per ${WINDOW_S / BUCKETS}s bucket: ${shares.map((s) => s.toFixed(2)).join(" ")}; want ${want.map((s) => s.toFixed(2)).join(" ")}`;
    console.info(detail);
    for (let k = 0; k < BUCKETS; k++) expect(Math.abs(shares[k]! - want[k]!), detail).toBeLessThanOrEqual(TOLERANCE);
    expect(shares[BUCKETS - 1]! - shares[0]!, detail).toBeGreaterThan(0.2);

    const after = await runLoad({ url: lb.url("web"), requests: 1000, concurrency: 4 });
    expect(Math.abs(share(after.byBackend, "b") - 0.5), JSON.stringify(after.byBackend)).toBeLessThanOrEqual(0.05);
  });
});
