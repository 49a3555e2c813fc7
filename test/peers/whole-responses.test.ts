/**
 * Whole responses: a backend that sends a 200 status line and headers and
 * then resets mid-body is taken out, by active checks (which now read the
 * whole answer) within fall x interval + timeout, and by passive checks
 * (the answer's body began and its last buffer never went out, yet nginx
 * completed the request) within max_fails tries, with a Content-Length or
 * in chunked mode; afterwards no client gets a truncated response. A
 * complete chunked answer, and a client that goes away mid-body, are not
 * the upstream's failures.
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { runLoad } from "../support/load.js";
import { waitFor } from "../support/ports.js";
import { Stack, startBackends } from "../support/stack.js";

const CHUNKED_HEAD = "HTTP/1.1 200 OK\r\nX-Backend: cut\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

/**
 * Answers every request whole ("ok": Content-Length; "chunked": two chunks
 * and the last one), with 10 of 1000 body bytes and then a reset ("cut"),
 * with one chunk and then a reset ("chunked-cut"), or with one chunk and
 * the rest 1.5 s later ("chunked-slow").
 */
class CutPeer {
  port = 0;
  mode: "ok" | "cut" | "chunked" | "chunked-cut" | "chunked-slow" = "ok";
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
        } else if (this.mode === "cut") {
          s.write("HTTP/1.1 200 OK\r\nX-Backend: cut\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n0123456789");
          setTimeout(() => s.resetAndDestroy(), 10);
        } else if (this.mode === "chunked") {
          s.end(`${CHUNKED_HEAD}a\r\n0123456789\r\n4\r\ncut\n\r\n0\r\n\r\n`);
        } else if (this.mode === "chunked-cut") {
          s.write(`${CHUNKED_HEAD}a\r\n0123456789\r\n`);
          setTimeout(() => s.resetAndDestroy(), 10);
        } else {
          s.write(`${CHUNKED_HEAD}a\r\n0123456789\r\n`);
          setTimeout(() => s.destroyed || s.end("4\r\ncut\n\r\n0\r\n\r\n"), 1500);
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

  // Before passive checks watched the body's end, the chunked cut peer was never taken out (20 of 40 tries).
  it.each([
    ["with a Content-Length", "ok", "cut"],
    ["in chunked mode", "chunked", "chunked-cut"],
  ] as const)("passive checks take it out (%s) within max_fails tries; afterwards 0 truncated responses, and the whole peer stays in", async (_how, wholeMode, cutMode) => {
    const MAX_FAILS = 3;
    const whole = await new CutPeer().start();
    whole.mode = wholeMode;
    cut = await new CutPeer().start();
    cut.mode = cutMode;
    lb = await Stack.start({
      upstreams: { web: { retries: 0, healthcheck: { passive: { max_fails: MAX_FAILS, fail_timeout: "30s" } } } },
      workers: 1,
    });
    try {
      lb.register("web", whole);
      lb.register("web", cut);
      await lb.waitForPeers("web", [whole.address, cut.address]);

      // One client, one request at a time: each truncated answer is one try of the cut peer.
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
      // Every whole answer (37 + 400 of them) left its peer in.
      expect(whole.requests).toBe(40 - MAX_FAILS + 400);
      expect((await lb.peer("web", whole.address))?.healthy).toBe(true);
    } finally {
      await whole.stop();
    }
  });

  it("a client that goes away mid-body (chunked) is not counted as the upstream's failure", async () => {
    const MAX_FAILS = 2;
    const ABORTS = 5;
    cut = await new CutPeer().start();
    cut.mode = "chunked-slow";
    lb = await Stack.start({
      upstreams: { web: { retries: 0, healthcheck: { passive: { max_fails: MAX_FAILS, fail_timeout: "30s" } } } },
      workers: 1,
    });
    lb.register("web", cut);
    await lb.waitForPeers("web", [cut.address]);

    const url = new URL(lb.url("web"));
    for (let k = 0; k < ABORTS; k++) {
      // Read the head and the first chunk, then hang up.
      await new Promise<void>((resolve, reject) => {
        const s = net.connect(Number(url.port), url.hostname);
        let got = "";
        s.on("error", reject);
        s.on("data", (d) => {
          got += d.toString("latin1");
          if (got.includes("0123456789")) {
            s.destroy();
            resolve();
          }
        });
        s.write(`GET ${url.pathname} HTTP/1.1\r\nHost: lb\r\n\r\n`);
      });
    }
    expect(cut.requests).toBe(ABORTS);
    // nginx notices each hang-up at once (epoll's EPOLLRDHUP) and ends the request.
    await waitFor(() => (lb!.errorLog().match(/client prematurely closed connection/g) ?? []).length >= ABORTS, "nginx noticing the hang-ups");
    const p = await lb.peer("web", cut.address);
    expect(p?.healthy, JSON.stringify(p)).toBe(true);
    expect(lb.errorLog()).not.toMatch(/response cut short/);
  });
});
