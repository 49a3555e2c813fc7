/**
 * Bad input for the health checker: peers that refuse connections, reset
 * them, answer garbage (short, or a line longer than any buffer), or hang.
 * None of them may crash the checker's timer, leak a cosocket, or stall the
 * checks of the healthy peer beside them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../support/backends.js";
import { runLoad } from "../support/load.js";
import { sleep, waitFor } from "../support/ports.js";
import { Stack, startBackends } from "../support/stack.js";
import { RawPeer, fdCount, refusedPort } from "./peers.js";

const INTERVAL = 0.5;
const TIMEOUT = 0.4;
const CONCURRENCY = 2;

describe("misbehaving peers", () => {
  let lb: Stack;
  let good: Backend;
  let raw: RawPeer[];
  let refused: number;

  beforeAll(async () => {
    [good] = (await startBackends(["good"])) as [Backend];
    raw = await Promise.all((["reset", "garbage", "garbage-endless", "hang"] as const).map((m) => new RawPeer(m).start()));
    refused = await refusedPort();
    lb = await Stack.start({
      upstreams: {
        web: {
          retries: 2,
          connect_timeout: "500ms",
          read_timeout: "500ms",
          healthcheck: {
            active: { path: "/health", interval: `${INTERVAL}s`, timeout: `${TIMEOUT}s`, fall: 1, rise: 2, concurrency: CONCURRENCY },
          },
        },
      },
    });
    lb.register("web", good);
    for (const r of raw) lb.register("web", r);
    lb.register("web", { port: refused });
  });

  afterAll(async () => {
    await lb?.stop();
    await good?.stop();
    await Promise.all((raw ?? []).map((r) => r.stop()));
  });

  it("are each marked down with what went wrong, and the healthy peer's checks keep their pace", async () => {
    const all = [good.address, ...raw.map((r) => r.address), `127.0.0.1:${refused}`];
    await lb.waitForPeers("web", all);
    const expectations: Record<string, RegExp> = {
      [`127.0.0.1:${refused}`]: /^connect: connection refused$/,
      [raw[0]!.address]: /^read: (connection reset by peer|closed)$/,
      [raw[1]!.address]: /^not an HTTP status line: \?+ NOT HTTP AT ALL/,
      [raw[2]!.address]: /^(bad answer|read): /,
      [raw[3]!.address]: /^read: timeout$/,
    };
    for (const [address, want] of Object.entries(expectations)) {
      const p = await lb.waitForPeer("web", address, (s) => !s.healthy && s.last_check_result !== undefined, "down");
      expect(p.last_check_result, address).toMatch(want);
    }

    // Over a few seconds, with two check slots and two peers that hold a slot
    // for the whole timeout, the healthy peer is still checked about every interval.
    const checker = (await lb.status()).health_checker!;
    const fdsBefore = fdCount(checker);
    const checksBefore = good.healthRequests;
    const seconds = 4;
    await sleep(seconds * 1000);
    const checks = good.healthRequests - checksBefore;
    expect(checks, `${checks} checks in ${seconds} s`).toBeGreaterThanOrEqual(Math.floor((seconds / INTERVAL) * 0.6));
    expect((await lb.peer("web", good.address))?.healthy).toBe(true);

    // No cosocket outlives its check: the hanging peer never holds more
    // connections than there are check slots, and the checker's descriptors do not grow.
    const hang = raw[3]!;
    const endless = raw[2]!;
    expect(hang.connections).toBeGreaterThanOrEqual(seconds / INTERVAL / 2);
    expect(hang.maxOpen).toBeLessThanOrEqual(CONCURRENCY);
    expect(endless.maxOpen).toBeLessThanOrEqual(CONCURRENCY);
    expect(fdCount(checker) - fdsBefore).toBeLessThanOrEqual(CONCURRENCY);
    expect((await lb.status()).health_checker).toBe(checker);

    // Traffic still works, through the one healthy peer.
    const r = await runLoad({ url: lb.url("web"), requests: 100, concurrency: 4 });
    expect(r.failures).toEqual([]);
    expect(r.byBackend).toEqual({ good: 100 });
    expect(lb.luaErrors()).toEqual([]);
  });

  it("forgets them when they vanish: the hanging peer's connections all close", async () => {
    for (const r of raw) lb.deregister(`web-${r.port}`);
    lb.deregister(`web-${refused}`);
    await lb.waitForPeers("web", [good.address]);
    const hang = raw[3]!;
    await waitFor(() => hang.open === 0, "the hanging peer's connections to close", (TIMEOUT + 1) * 1000);
    const count = hang.connections;
    await sleep(INTERVAL * 3 * 1000);
    expect(hang.connections).toBe(count);
    expect(lb.luaErrors()).toEqual([]);
  });
});
