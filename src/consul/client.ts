/**
 * The one module of the CLI that talks to Consul (check's preflight and
 * install's dump seeding), built on the `consul` npm client. Everything else
 * gets a ConsulAdapter passed in, so tests can swap it.
 *
 * Addresses are the spec's `consul.addresses`, tried in order: an address
 * that cannot be reached, times out or answers 5xx hands over to the next
 * one; a 4xx (a refused token, a bad request) is Consul's verdict and ends
 * the query, as another server of the same cluster would say the same.
 * The ACL token is read from the environment variable `consul.token_env`
 * names and sent as X-Consul-Token; it is never printed nor written.
 */
import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import path from "node:path";
import Consul from "consul";
import type { Spec } from "../spec/schema.js";
import { parseDuration } from "../spec/units.js";

/** Why a query got no answer. */
export type ConsulFailureKind =
  /** No address could be reached (refused, timed out, reset, 5xx from every one). */
  | "unreachable"
  /** 403: the token is unknown ("ACL not found") or lacks a permission ("Permission denied"). */
  | "forbidden"
  /** Any other answer Consul gave that is not a result (400, 404, 500 "No path to datacenter"...). */
  | "error";

export interface ConsulFailure {
  ok: false;
  kind: ConsulFailureKind;
  /** One line, for humans: what Consul (or the network) said. */
  message: string;
  status?: number;
  /** Each address tried and what went wrong there. */
  tried: Array<{ address: string; error: string }>;
}

export interface ConsulSuccess<T> {
  ok: true;
  value: T;
  /** The address that answered. */
  address: string;
  /** X-Consul-Index of the answer (0 when absent). */
  index: number;
  /** X-Consul-Results-Filtered-By-ACLs: the token may not see everything. */
  filtered: boolean;
  /** Addresses tried before this one, and why they failed. */
  tried: Array<{ address: string; error: string }>;
}

export type ConsulAnswer<T> = ConsulSuccess<T> | ConsulFailure;

export interface ServiceQuery {
  service: string;
  tags: readonly string[];
  datacenter?: string | undefined;
}

export interface ConsulAdapter {
  /** The addresses, in the order they are tried. */
  readonly addresses: readonly string[];
  /** Whether a token is sent (from the environment variable the spec names). */
  readonly tokenSource: { env: string; set: boolean } | undefined;
  /** GET /v1/health/service/NAME (?passing, ?tag= per tag, ?dc=): the entries as Consul sends them. */
  healthService(q: ServiceQuery, opts: { passing: boolean }): Promise<ConsulAnswer<unknown>>;
  /** GET /v1/catalog/services (?dc=): service name -> tags. */
  catalogServices(datacenter?: string): Promise<ConsulAnswer<unknown>>;
  /** Drop kept-alive connections. */
  close(): void;
}

export interface ConsulTarget {
  addresses: readonly string[];
  datacenter?: string | undefined;
  /** The token itself (already read from the environment); never logged. */
  token?: string | undefined;
  tokenEnv?: string | undefined;
  /** Per address and request: connect, send and read, all of it. */
  timeoutMs: number;
  /** https:// addresses: verify the server certificate (consul.ssl_verify), against this CA bundle (consul.ca_file) or Node's. */
  tls?: { verify: boolean; caFile?: string | undefined };
}

/** The CLI waits longer than the runtime's per-request timeout: it is not on any request's path. */
export const CLI_MIN_TIMEOUT_MS = 5_000;

/**
 * The adapter settings a spec gives, with the token read from `env`. A
 * relative consul.ca_file resolves against `caBase`: the prefix's conf/ when
 * there is a prefix (where nginx resolves lua_ssl_trusted_certificate).
 */
export function consulTargetOf(spec: Spec, env: NodeJS.ProcessEnv, caBase = process.cwd()): ConsulTarget {
  const c = spec.consul;
  const tokenEnv = c.token_env;
  const token = tokenEnv === undefined ? undefined : env[tokenEnv];
  return {
    addresses: c.addresses,
    datacenter: c.datacenter,
    token: token === undefined || token === "" ? undefined : token,
    tokenEnv,
    timeoutMs: Math.max((typeof c.timeout === "number" ? c.timeout : parseDuration(c.timeout)) * 1000, CLI_MIN_TIMEOUT_MS),
    tls: { verify: c.ssl_verify, caFile: c.ca_file === undefined ? undefined : path.resolve(caBase, c.ca_file) },
  };
}

interface RawResult {
  res: IncomingMessage;
  body: unknown;
}

/** What the `consul` client threw, as one line and a kind. */
function describeError(error: unknown): { kind: ConsulFailureKind | "retry"; message: string; status?: number } {
  const e = error as { message?: string; code?: string; statusCode?: number; isResponse?: boolean; response?: { body?: unknown; statusCode?: number } };
  const status = e.isResponse ? (e.statusCode ?? e.response?.statusCode) : undefined;
  // papi shortens long bodies to the status text; Consul's own text says more.
  const body = typeof e.response?.body === "string" ? e.response.body.trim() : undefined;
  const said = (body && body.length > 0 ? body : (e.message ?? String(error))).replace(/^consul: /, "").split("\n")[0]!.slice(0, 300);
  if (status !== undefined) {
    if (status === 403) return { kind: "forbidden", message: `403 ${said}`, status };
    if (status >= 500 && !/No path to datacenter/i.test(said)) return { kind: "retry", message: `${status} ${said}`, status };
    return { kind: "error", message: `${status} ${said}`, status };
  }
  return { kind: "retry", message: e.code && !said.includes(e.code) ? `${e.code} ${said}` : said };
}

function hostOf(address: string): { host: string; port: number; secure: boolean } {
  const u = new URL(address);
  const secure = u.protocol === "https:";
  return { host: u.hostname.replace(/^\[(.*)\]$/, "$1"), port: u.port ? Number(u.port) : secure ? 8501 : 8500, secure };
}

/** The adapter over the `consul` npm client. */
export function createConsulAdapter(target: ConsulTarget): ConsulAdapter {
  let ca: Buffer | undefined;
  let caProblem: string | undefined;
  if (target.tls?.caFile && target.addresses.some((a) => a.startsWith("https:"))) {
    try {
      ca = readFileSync(target.tls.caFile);
    } catch (error) {
      caProblem = `cannot read consul.ca_file ${target.tls.caFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
    }
  }
  const clients = target.addresses.map((address) => {
    const { host, port, secure } = hostOf(address);
    const agent = secure
      ? new https.Agent({ keepAlive: true, rejectUnauthorized: target.tls?.verify ?? true, ...(ca ? { ca } : {}) })
      : new http.Agent({ keepAlive: true });
    // baseUrl, not host/port: the client would put an IPv6 literal in the URL without brackets.
    const base = `${secure ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}/v1`;
    return { address, client: new Consul({ baseUrl: base, agent, ...(target.token ? { defaults: { token: target.token } } : {}) } as ConstructorParameters<typeof Consul>[0]) };
  });

  async function query<T>(run: (client: Consul, common: Record<string, unknown>) => Promise<T>): Promise<ConsulAnswer<unknown>> {
    const tried: Array<{ address: string; error: string }> = [];
    for (const { address, client } of clients) {
      if (caProblem && address.startsWith("https:")) {
        tried.push({ address, error: caProblem });
        continue;
      }
      const ctx = Object.assign(new EventEmitter(), { includeResponse: true });
      try {
        const [res, body] = (await run(client, { ctx, timeout: target.timeoutMs })) as unknown as [IncomingMessage, unknown];
        const raw: RawResult = { res, body };
        return {
          ok: true,
          value: raw.body,
          address,
          index: Number(raw.res.headers["x-consul-index"] ?? 0) || 0,
          filtered: raw.res.headers["x-consul-results-filtered-by-acls"] === "true",
          tried,
        };
      } catch (error) {
        const d = describeError(error);
        tried.push({ address, error: d.message });
        if (d.kind !== "retry") return { ok: false, kind: d.kind, message: d.message, ...(d.status ? { status: d.status } : {}), tried };
      }
    }
    return { ok: false, kind: "unreachable", message: tried.map((t) => `${t.address}: ${t.error}`).join("; "), tried };
  }

  return {
    addresses: target.addresses,
    tokenSource: target.tokenEnv === undefined ? undefined : { env: target.tokenEnv, set: target.token !== undefined },
    healthService(q, opts) {
      const dc = q.datacenter ?? target.datacenter;
      return query((c, common) =>
        c.health.service({
          service: q.service,
          // Repeated tag= (all of them must match), as the runtime asks.
          ...(q.tags.length > 0 ? { tag: [...q.tags] as unknown as string } : {}),
          ...(opts.passing ? { passing: true } : {}),
          ...(dc ? { dc } : {}),
          ...common,
        }),
      );
    },
    catalogServices(datacenter) {
      const dc = datacenter ?? target.datacenter;
      return query((c, common) => c.catalog.services({ ...(dc ? { dc } : {}), ...common } as Parameters<Consul["catalog"]["services"]>[0]));
    },
    close() {
      for (const { client } of clients) client.destroy();
    },
  };
}
