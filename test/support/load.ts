/**
 * A bounded client load over loopback: N concurrent keep-alive clients, until
 * a request count or a time limit, whichever comes first. Counts which
 * backend answered (X-Backend) and every failure. Also a paced background
 * load and a sequential sample.
 */
import http from "node:http";
import { sleep } from "./ports.js";

export interface LoadOptions {
  url: string;
  concurrency?: number;
  /** Stop after this many requests in total. */
  requests?: number;
  /** Stop after this long (hard cap 120 s). */
  durationMs?: number;
  headers?: Record<string, string> | ((i: number) => Record<string, string>);
  /** Per-request timeout. */
  timeoutMs?: number;
}

export interface LoadResult {
  total: number;
  ok: number;
  failures: Array<{ at: number; status?: number; error?: string }>;
  byBackend: Record<string, number>;
  statuses: Record<number, number>;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  agent?: http.Agent;
  timeoutMs?: number;
  method?: string;
  /** The loopback address to send from (127.0.0.2 to be outside an allow list); a fresh connection. */
  localAddress?: string;
}

export function request(url: string, opts: RequestOptions = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const from = opts.localAddress === undefined ? { agent: opts.agent } : { agent: false as const, localAddress: opts.localAddress };
    const req = http.request(url, { headers: opts.headers, ...from, method: opts.method ?? "GET", timeout: opts.timeoutMs ?? 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("client timeout")));
    req.on("error", reject);
    req.end();
  });
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const concurrency = opts.concurrency ?? 8;
  const limit = opts.requests ?? Number.POSITIVE_INFINITY;
  const deadline = Date.now() + Math.min(opts.durationMs ?? 120_000, 120_000);
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const result: LoadResult = { total: 0, ok: 0, failures: [], byBackend: {}, statuses: {} };
  let issued = 0;
  const started = Date.now();
  const client = async () => {
    while (issued < limit && Date.now() < deadline) {
      const i = issued++;
      const headers = typeof opts.headers === "function" ? opts.headers(i) : opts.headers;
      try {
        const res = await request(opts.url, { headers, agent, timeoutMs: opts.timeoutMs });
        result.total++;
        result.statuses[res.status] = (result.statuses[res.status] ?? 0) + 1;
        if (res.status === 200) {
          result.ok++;
          const backend = String(res.headers["x-backend"] ?? "?");
          result.byBackend[backend] = (result.byBackend[backend] ?? 0) + 1;
        } else {
          result.failures.push({ at: Date.now() - started, status: res.status });
        }
      } catch (error) {
        result.total++;
        result.failures.push({ at: Date.now() - started, error: (error as Error).message });
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  agent.destroy();
  return result;
}

export interface PacedLoad {
  /** Stops issuing and resolves once every client has finished. */
  stop(): Promise<LoadResult>;
  readonly result: LoadResult;
}

/**
 * A steady, bounded background load: `clients` keep-alive clients, each
 * sending one request every `intervalMs` until stopped or `maxRequests`.
 * (runLoad sends back to back, which on a 2-core box starves everything else
 * during a 30 s outage test.) Also records the slowest answer.
 */
export function pacedLoad(url: string, opts: { clients?: number; intervalMs?: number; maxRequests?: number; timeoutMs?: number } = {}): PacedLoad & { slowestMs: () => number } {
  const clients = opts.clients ?? 2;
  const interval = opts.intervalMs ?? 25;
  const max = opts.maxRequests ?? 20_000;
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const result: LoadResult = { total: 0, ok: 0, failures: [], byBackend: {}, statuses: {} };
  const started = Date.now();
  let stopped = false;
  let slowest = 0;
  const client = async () => {
    while (!stopped && result.total < max) {
      const t0 = Date.now();
      try {
        const res = await request(url, { agent, timeoutMs: opts.timeoutMs ?? 10_000 });
        result.statuses[res.status] = (result.statuses[res.status] ?? 0) + 1;
        if (res.status === 200) {
          result.ok++;
          const b = String(res.headers["x-backend"] ?? "?");
          result.byBackend[b] = (result.byBackend[b] ?? 0) + 1;
        } else {
          result.failures.push({ at: Date.now() - started, status: res.status });
        }
      } catch (error) {
        result.failures.push({ at: Date.now() - started, error: (error as Error).message });
      }
      result.total++;
      const took = Date.now() - t0;
      slowest = Math.max(slowest, took);
      await sleep(Math.max(0, interval - took));
    }
  };
  const done = Promise.all(Array.from({ length: clients }, client));
  return {
    result,
    slowestMs: () => slowest,
    async stop() {
      stopped = true;
      await done;
      agent.destroy();
      return result;
    },
  };
}

/** Counts answers per backend over `n` sequential requests. */
export async function sample(url: string, n: number): Promise<{ byBackend: Record<string, number>; failures: number; statuses: Record<number, number> }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const byBackend: Record<string, number> = {};
  const statuses: Record<number, number> = {};
  let failures = 0;
  for (let i = 0; i < n; i++) {
    try {
      const res = await request(url, { agent, timeoutMs: 5000 });
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      if (res.status === 200) {
        const b = String(res.headers["x-backend"] ?? "?");
        byBackend[b] = (byBackend[b] ?? 0) + 1;
      } else failures++;
    } catch {
      failures++;
    }
  }
  agent.destroy();
  return { byBackend, failures, statuses };
}
