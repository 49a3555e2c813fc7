/**
 * A static upstream's server parameters and methods, as the real nginx
 * (either binary of the matrix) applies them to real backends on loopback:
 * weight, down, max_fails with fail_timeout (counted on a retry_statuses
 * status, retried on the next server), max_conns, and balance: random
 * (`random two`). One worker, so nginx's per-worker state is the whole state.
 */
import { chmodSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import type net from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { runLoad } from "../support/load.js";
import { buildPrefix, Nginx, tempDir } from "../support/nginx.js";
import { freePort } from "../support/ports.js";
import { TEST_TARGET } from "../support/target.js";

/** A backend that answers after `delayMs` and records the most requests it held at once. */
async function countingBackend(name: string, delayMs: number) {
  let inFlight = 0;
  const stats = { max: 0, requests: 0, port: 0 };
  const server = http.createServer((_req, res) => {
    stats.requests++;
    inFlight++;
    stats.max = Math.max(stats.max, inFlight);
    setTimeout(() => {
      inFlight--;
      res.writeHead(200, { "x-backend": name });
      res.end(`${name}\n`);
    }, delayMs);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  stats.port = (server.address() as net.AddressInfo).port;
  return { stats, stop: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe(`static upstream parameters on ${TEST_TARGET}`, () => {
  const dir = tempDir("gen-lb-static-params-");
  let nginx: Nginx;
  let port = 0;
  let conf = "";
  const heavy = new Backend({ name: "heavy" });
  const light = new Backend({ name: "light" });
  const serving = new Backend({ name: "serving" });
  const drained = new Backend({ name: "drained" });
  const sick = new Backend({ name: "sick" });
  const healthy = new Backend({ name: "healthy" });
  const r1 = new Backend({ name: "r1" });
  const r2 = new Backend({ name: "r2" });
  const fast = new Backend({ name: "fast" });
  const all = [heavy, light, serving, drained, sick, healthy, r1, r2, fast];
  let slow: Awaited<ReturnType<typeof countingBackend>>;

  beforeAll(async () => {
    chmodSync(dir, 0o755);
    await Promise.all(all.map((b) => b.start()));
    sick.mode = "error500";
    slow = await countingBackend("slow", 300);
    port = await freePort();
    const upstreams: Record<string, Record<string, unknown>> = {
      weighted: { servers: [{ address: heavy.address, weight: 3 }, light.address] },
      drain: { servers: [serving.address, { address: drained.address, down: true }] },
      failing: {
        servers: [{ address: sick.address, max_fails: 1, fail_timeout: "30s" }, healthy.address],
        retries: 1,
        retry_statuses: [500],
      },
      rand: { servers: [r1.address, r2.address], balance: "random" },
      capped: { servers: [{ address: `127.0.0.1:${slow.stats.port}`, max_conns: 1 }, fast.address] },
    };
    await buildPrefix(
      {
        nginx: { worker_processes: 1, error_log: { path: "logs/error.log", level: "info" }, http: { access_log: "off" } },
        upstreams,
        servers: [{ listen: `127.0.0.1:${port}`, locations: Object.keys(upstreams).map((n) => ({ path: `/${n}/`, upstream: n })) }],
        status: { enabled: false },
      },
      dir,
    );
    conf = readFileSync(path.join(dir, "conf/nginx.conf"), "utf8");
    nginx = await Nginx.start(dir);
  }, 30_000);

  afterAll(async () => {
    await nginx?.stop();
    await Promise.all(all.map((b) => b.stop()));
    await slow?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const url = (name: string) => `http://127.0.0.1:${port}/${name}/x`;
  const block = (name: string) => new RegExp(`upstream ${name} \\{([^}]*)\\}`).exec(conf)?.[1] ?? "";

  it("weight=3 beside weight 1: nginx's smooth round robin gives exactly 3:1", async () => {
    expect(block("weighted")).toContain(`server ${heavy.address} weight=3;`);
    const r = await runLoad({ url: url("weighted"), requests: 40, concurrency: 1 });
    expect(r.failures).toEqual([]);
    expect(r.byBackend).toEqual({ heavy: 30, light: 10 });
  });

  it("a down server gets nothing", async () => {
    expect(block("drain")).toContain(`server ${drained.address} down;`);
    const r = await runLoad({ url: url("drain"), requests: 20, concurrency: 2 });
    expect(r.failures).toEqual([]);
    expect(r.byBackend).toEqual({ serving: 20 });
    expect(drained.requests).toBe(0);
  });

  it("a 500 in retry_statuses is retried on the next server and counts toward max_fails: then the server is out for fail_timeout", async () => {
    expect(conf).toMatch(/proxy_next_upstream error timeout http_500;/);
    const r = await runLoad({ url: url("failing"), requests: 40, concurrency: 1 });
    expect(r.failures).toEqual([]);
    expect(r.byBackend).toEqual({ healthy: 40 });
    // max_fails=1: the first 500 takes it out for 30 s.
    expect(sick.requests).toBe(1);
  });

  it("balance: random is nginx's `random two`, and serves both", async () => {
    expect(block("rand")).toMatch(/^\s*random two;/);
    const r = await runLoad({ url: url("rand"), requests: 100, concurrency: 2 });
    expect(r.failures).toEqual([]);
    expect(r.byBackend.r1 ?? 0, JSON.stringify(r.byBackend)).toBeGreaterThan(20);
    expect(r.byBackend.r2 ?? 0, JSON.stringify(r.byBackend)).toBeGreaterThan(20);
  });

  it("max_conns=1: the slow server never holds two requests; the rest go to the other", async () => {
    expect(block("capped")).toContain(`server 127.0.0.1:${slow.stats.port} max_conns=1;`);
    const r = await runLoad({ url: url("capped"), requests: 40, concurrency: 4 });
    expect(r.failures).toEqual([]);
    expect(slow.stats.requests).toBeGreaterThan(0);
    expect(slow.stats.max).toBe(1);
    expect(r.byBackend.fast ?? 0).toBeGreaterThan(r.byBackend.slow ?? 0);
  });
});
