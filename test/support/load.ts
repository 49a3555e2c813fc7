/**
 * A bounded client load over loopback: N concurrent keep-alive clients, until
 * a request count or a time limit, whichever comes first. Counts which
 * backend answered (X-Backend) and every failure.
 */
import http from "node:http";

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

export function request(url: string, opts: { headers?: Record<string, string>; agent?: http.Agent; timeoutMs?: number; method?: string } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { headers: opts.headers, agent: opts.agent, method: opts.method ?? "GET", timeout: opts.timeoutMs ?? 10_000 }, (res) => {
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
