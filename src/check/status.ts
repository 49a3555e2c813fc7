/**
 * Asking a running gen-lb config which build it is: GET <status.path> returns
 * JSON with a top-level `build_id`. Each request opens a fresh connection so
 * that during a reload the answer comes from whichever worker accepts now,
 * not from an old worker holding a keep-alive connection.
 */
import http from "node:http";
import type { Spec } from "../spec/schema.js";

export interface StatusAnswer {
  status: number;
  buildId?: string;
  body: string;
}

export type StatusFetcher = (url: string, timeoutMs: number) => Promise<StatusAnswer>;

export const fetchStatus: StatusFetcher = (url, timeoutMs) =>
  new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs, headers: { connection: "close" } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk.length + body.length > 1_000_000 ? "" : chunk));
      res.on("end", () => {
        let buildId: string | undefined;
        try {
          const parsed = JSON.parse(body) as { build_id?: unknown };
          if (typeof parsed.build_id === "string") buildId = parsed.build_id;
        } catch {
          /* not JSON: the caller reports the status and body */
        }
        resolve({ status: res.statusCode ?? 0, body, ...(buildId === undefined ? {} : { buildId }) });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
  });

/**
 * The URL a local client reaches the status endpoint at: wildcard and bare
 * port listens are reached on loopback.
 */
export function statusUrl(spec: Spec): string | undefined {
  if (!spec.status.enabled) return undefined;
  const listen = String(spec.status.listen);
  let hostPort: string;
  if (/^\d+$/.test(listen)) hostPort = `127.0.0.1:${listen}`;
  else if (listen.startsWith("*:") || listen.startsWith("0.0.0.0:")) hostPort = `127.0.0.1:${listen.slice(listen.indexOf(":") + 1)}`;
  else if (listen.startsWith("[::]:")) hostPort = `[::1]:${listen.slice(5)}`;
  else hostPort = listen;
  return `http://${hostPort}${spec.status.path}`;
}
