/**
 * Asking a running gen-lb config which build it is: GET <status.path> serves
 * the status document (src/contract/status.ts), whose `build_id` names the
 * build. Each request opens a fresh connection so that during a reload the
 * answer comes from whichever worker accepts now, not from an old worker
 * holding a keep-alive connection.
 */
import http from "node:http";
import { z } from "zod";
import { statusDocumentSchema, type StatusDocument } from "../contract/status.js";
import type { Spec } from "../spec/schema.js";

export interface StatusAnswer {
  status: number;
  buildId?: string;
  /** The whole document, when it matches this gen-lb's status contract. */
  document?: StatusDocument;
  body: string;
}

/**
 * Only build_id, as the contract types it: a build made by another gen-lb
 * version (the live one a rollback restores) may serve other fields.
 */
const buildIdOnly = z.object({ build_id: statusDocumentSchema.shape.build_id });

/** What a status body says: the typed document and its build id, or neither when it is not one. */
export function readStatusBody(body: string): { buildId?: string; document?: StatusDocument } {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return {}; // not JSON: the caller reports the status and body
  }
  const doc = statusDocumentSchema.safeParse(json);
  if (doc.success) return { buildId: doc.data.build_id, document: doc.data };
  const id = buildIdOnly.safeParse(json);
  return id.success ? { buildId: id.data.build_id } : {};
}

export type StatusFetcher = (url: string, timeoutMs: number) => Promise<StatusAnswer>;

export const fetchStatus: StatusFetcher = (url, timeoutMs) =>
  new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs, headers: { connection: "close" } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk.length + body.length > 1_000_000 ? "" : chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, ...readStatusBody(body) }));
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
