/**
 * Whole responses: a backend that sends a 200 status line and headers and
 * then resets mid-body is taken out, by active checks (which now read the
 * whole answer) within fall x interval + timeout, and by passive checks
 * (Content-Length against the bytes the upstream sent) within max_fails
 * tries; afterwards no client gets a truncated response.
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { runLoad } from "../support/load.js";
import { Stack, startBackends } from "../support/stack.js";

/** Answers every request whole ("ok") or with 10 of 1000 body bytes and then a reset ("cut"). */
class CutPeer {
  port = 0;
  mode: "ok" | "cut" = "ok";
  requests = 0;
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    const server = net.createServer((s) => {
      this.sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => this.sockets.delete(s));
      s.once("data", (d) => {
        if (!d.toString("latin1").startsWith("GET /health")) this.requests++;
        if (this.mode === "ok") {
          s.end("HTTP/1.1 200 OK\r\nX-Backend: cut\r\nContent-Length: 4\r\nConnection: close\r\n\r\ncut\n");
        } else {
          s.write("HTTP/1.1 200 OK\r\nX-Backend: cut\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n0123456789");
          setTimeout(() => s.resetAndDestroy(), 10);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

describe("a backend that resets mid-body", () => {
  let lb: Stack | undefined;
  let good: Backend | undefined;
  let cut: CutPeer | undefined;

  afterEach(async () => {
    await lb?.stop();
    await good?.stop();
    await cut?.stop();
  });

  it("active checks take it out within fall x interval + timeout; afterwards 0 truncated responses", async () => {
    const INTERVAL = 0.5;
    const TIMEOUT = 0.4;
    const FALL = 2;
    [good] = (await startBackends(["good"])) as [Backend];
    cut = await new CutPeer().start();
    lb = await Stack.start({
      upstreams: {
        web: { retries: 0, healthcheck: { active: { path: "/health", interval: `${INTERVAL}s`, timeout: `${TIMEOUT}s`, fall: FALL, rise: 2 } } },
      },
    });
    lb.register("web", good);
    lb.register("web", cut);
    await lb.waitForPeers("web", [good.address, cut.address]);
    await lb.waitForPeer("web", cut.address, (p) => p.healthy && p.last_check_result === "ok", "checked healthy");

    const cutAt = Date.now() / 1000;
    cut.mode = "cut";
    const down = await lb.waitForPeer("web", cut.address, (p) => !p.healthy, "marked down");
    expect(down.down_by).toBe("active");
    expect(down.last_check_result).toMatch(/^truncated body: /);
    // The checker's own clock; 0.3 s for its scheduling step and a busy machine.
    expect(down.since! - cutAt, `down ${down.since! - cutAt} s after the cut`).toBeLessThanOrEqual(FALL * INTERVAL + TIMEOUT + 0.3);

    const before = cut.requests;
    const after = await runLoad({ url: lb.url("web"), requests: 400, concurrency: 4 });
    expect(after.failures, JSON.stringify(after.failures.slice(0, 3))).toEqual([]);
    expect(cut.requests - before).toBe(0);
  });

  it("passive checks take it out within max_fails tries; afterwards 0 truncated responses", async () => {
    const MAX_FAILS = 3;
    [good] = (await startBackends(["good"])) as [Backend];
    cut = await new CutPeer().start();
    cut.mode = "cut";
    lb = await Stack.start({
      upstreams: { web: { retries: 0, healthcheck: { passive: { max_fails: MAX_FAILS, fail_timeout: "30s" } } } },
      workers: 1,
    });
    lb.register("web", good);
    lb.register("web", cut);
    await lb.waitForPeers("web", [good.address, cut.address]);

    // One client, one request at a time: each cut answer is one try of the cut peer.
    const first = await runLoad({ url: lb.url("web"), requests: 40, concurrency: 1 });
    expect(cut.requests).toBe(MAX_FAILS);
    expect(first.failures).toHaveLength(MAX_FAILS);
    const p = await lb.peer("web", cut.address);
    expect(p?.healthy).toBe(false);
    expect(p?.down_by).toBe("passive");
    expect(p?.reason).toMatch(/response cut short/);

    const after = await runLoad({ url: lb.url("web"), requests: 400, concurrency: 4 });
    expect(after.failures, JSON.stringify(after.failures.slice(0, 3))).toEqual([]);
    expect(cut.requests).toBe(MAX_FAILS);
  });
});
