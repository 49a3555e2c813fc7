/**
 * One gen-lb node for discovery tests: the Consul stand-in, a prefix built
 * from a spec pointing at it, the real nginx on free loopback ports, and a
 * read-only view of what the runtime holds (an extra location whose Lua
 * prints gen_lb.peers' get/meta/dump_state as this worker sees them).
 */
import { chmodSync, existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { ServiceDefinition } from "../support/consul-standin.js";
import { ConsulStandin } from "../support/consul-standin.js";
import { buildPrefix, Nginx } from "../support/nginx.js";
import { freePort, sleep, waitFor } from "../support/ports.js";
import http from "node:http";
import { request, type LoadResult } from "../support/load.js";

/** Lua run by the view location; data only, printed as JSON. */
const VIEW_LUA = [
  "local p = require('gen_lb.peers')",
  "local cj = require('cjson.safe')",
  "local out = {pid = ngx.worker.pid(), watcher = require('gen_lb.discovery').is_watcher(), dump = p.dump_state(), upstreams = {}}",
  "for _, n in ipairs(require('gen_lb.config').upstream_names) do",
  "  local l, v = p.get(n)",
  "  local ids = {}",
  "  for i, x in ipairs(l) do ids[i] = x.id .. '/' .. x.weight end",
  "  out.upstreams[n] = {version = v, peers = ids, meta = p.meta(n)}",
  "end",
  "ngx.say(cj.encode(out))",
].join(" ");

export interface UpstreamView {
  version: number;
  /** "host:port/weight", sorted as the runtime sorts them. */
  peers: string[];
  meta: {
    version: number;
    index: number;
    updated_at: number;
    source: "consul" | "dump" | "fallback" | "none";
    last_error?: string;
    consul_address?: string;
    count?: number;
    /** Consul failures in a row (0 after a good answer). */
    failures?: number;
    changed_at?: number;
    key?: string;
  };
}

export interface NodeView {
  pid: number;
  watcher: boolean;
  dump: { path?: string; written_at?: number; ok?: boolean; error?: string };
  upstreams: Record<string, UpstreamView>;
}

export interface StackOptions {
  /** Upstream name -> spec fields; default { web: { service: "web" } }. */
  upstreams?: Record<string, Record<string, unknown>>;
  workers?: number;
  /** Merged into the spec's consul section (addresses default to the stand-in). */
  consul?: Record<string, unknown>;
  /** Extra nginx spec fields (user, ...). */
  nginx?: Record<string, unknown>;
  /** Stand-in ACL token (requests without it get 403). */
  token?: string;
  /** Environment for nginx (the token variable, for one). */
  env?: Record<string, string>;
  /** Use this stand-in instead of starting one. */
  standin?: ConsulStandin;
  /** Build into this prefix (reusing a dump file there). */
  prefix?: string;
  /** Extra exact-match locations: path -> Lua run by content_by_lua (test hooks). */
  luaLocations?: Record<string, string>;
}

export class Stack {
  private constructor(
    readonly standin: ConsulStandin,
    public nginx: Nginx,
    readonly prefix: string,
    readonly port: number,
    readonly options: StackOptions,
    private readonly ownStandin: boolean,
  ) {}

  static spec(options: StackOptions, consulUrls: string[], port: number): Record<string, unknown> {
    const upstreams = options.upstreams ?? { web: { service: "web" } };
    const names = Object.keys(upstreams);
    return {
      consul: { addresses: consulUrls, wait: "5s", timeout: "1s", ...options.consul },
      nginx: {
        worker_processes: options.workers ?? 2,
        error_log: { path: "logs/error.log", level: "info" },
        ...options.nginx,
      },
      runtime: { log_level: "notice" },
      status: { enabled: false },
      upstreams: Object.fromEntries(Object.entries(upstreams).map(([n, u]) => [n, { retries: 2, keepalive: 0, connect_timeout: "1s", read_timeout: "5s", ...u }])),
      servers: [
        {
          listen: `127.0.0.1:${port}`,
          // A socket per worker: new connections spread over every worker, so a test can ask each one.
          reuseport: true,
          locations: [
            ...names.map((n, i) => ({ path: i === 0 ? "/" : `/u/${n}/`, upstream: n })),
            { path: "/_gen_lb_view", match: "exact", directives: [{ name: "content_by_lua", args: [VIEW_LUA] }] },
            ...Object.entries(options.luaLocations ?? {}).map(([p, code]) => ({
              path: p,
              match: "exact",
              directives: [{ name: "content_by_lua", args: [code] }],
            })),
          ],
        },
      ],
    };
  }

  static async start(options: StackOptions = {}): Promise<Stack> {
    const standin = options.standin ?? new ConsulStandin({ token: options.token });
    const own = options.standin === undefined;
    if (own) await standin.start();
    const port = await freePort();
    const spec = Stack.spec(options, [standin.url], port);
    const { dir } = await buildPrefix(spec as never, options.prefix);
    // mkdtemp makes 0700 directories; workers run as nobody and must reach the dump directory.
    chmodSync(dir, 0o755);
    const nginx = await Nginx.start(dir, options.env ?? {});
    await Stack.allWorkers(nginx, options.workers ?? 2);
    return new Stack(standin, nginx, dir, port, options, own);
  }

  /** Nginx.start returns once the first worker is up; tests that count workers need all of them. */
  static async allWorkers(nginx: Nginx, count: number): Promise<void> {
    await waitFor(() => nginx.workerPids().length === count, `${count} nginx workers`);
  }

  url(p = "/"): string {
    return `http://127.0.0.1:${this.port}${p}`;
  }

  /** What the worker that answers sees. */
  async view(): Promise<NodeView> {
    const res = await request(this.url("/_gen_lb_view"), { timeoutMs: 5000 });
    if (res.status !== 200) throw new Error(`view: HTTP ${res.status}: ${res.body}`);
    const v = JSON.parse(res.body) as NodeView;
    for (const u of Object.values(v.upstreams)) if (!Array.isArray(u.peers)) u.peers = [];
    return v;
  }

  /** Waits until the answering worker's list for `name` is exactly `ids` (host:port, any order). */
  async waitForPeers(name: string, ids: string[], timeoutMs = 10_000): Promise<UpstreamView> {
    const want = [...ids].sort().join(",");
    let last = "";
    try {
      return await waitFor(
        async () => {
          const v = (await this.view()).upstreams[name];
          if (!v) return undefined;
          last = v.peers.map((p) => p.replace(/\/\d+$/, "")).sort().join(",");
          return last === want ? v : undefined;
        },
        `peers of ${name} to be [${want}]`,
        timeoutMs,
        20,
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}; last seen [${last}]\n--- error.log tail ---\n${this.logTail()}`);
    }
  }

  /** Polls the view through several connections so that every worker has answered. */
  async viewsOfAllWorkers(timeoutMs = 5000): Promise<Map<number, NodeView>> {
    const want = this.nginx.workerPids().length;
    const seen = new Map<number, NodeView>();
    const deadline = Date.now() + timeoutMs;
    while (seen.size < want && Date.now() < deadline) {
      const batch = await Promise.all(Array.from({ length: want * 2 }, () => this.view()));
      for (const v of batch) seen.set(v.pid, v);
    }
    return seen;
  }

  register(def: ServiceDefinition): string {
    return this.standin.registerService(def);
  }

  errorLog(): string {
    return this.nginx.errorLog();
  }

  logTail(lines = 40): string {
    return this.errorLog().split("\n").slice(-lines).join("\n");
  }

  /** gen-lb's own log lines. */
  genLbLines(): string[] {
    return this.errorLog()
      .split("\n")
      .filter((l) => l.includes("gen-lb: "));
  }

  /** The pid of the worker that logged it became the watcher last (and is still alive). */
  async watcherPid(timeoutMs = 10_000): Promise<number> {
    return waitFor(
      () => {
        const pids = this.nginx.workerPids();
        const lines = this.genLbLines().filter((l) => / is now the Consul watcher/.test(l));
        for (let i = lines.length - 1; i >= 0; i--) {
          const pid = Number(/worker (\d+) is now the Consul watcher/.exec(lines[i]!)?.[1]);
          if (pids.includes(pid)) return pid;
        }
        return undefined;
      },
      "a watcher worker",
      timeoutMs,
    );
  }

  dumpPath(): string {
    return path.join(this.prefix, "state/gen_lb_peers.json");
  }

  readDump(): { upstreams: Record<string, { peers: Array<[string, number, number]>; index: number; key: string }> } | undefined {
    const p = this.dumpPath();
    if (!existsSync(p)) return undefined;
    return JSON.parse(readFileSync(p, "utf8"));
  }

  /** Stop nginx and start it again on the same prefix (a restart, not a reload). */
  async restart(env = this.options.env ?? {}): Promise<void> {
    await this.nginx.stop();
    await sleep(50);
    this.nginx = await Nginx.start(this.prefix, env);
    await Stack.allWorkers(this.nginx, this.options.workers ?? 2);
  }

  async stop(): Promise<void> {
    await this.nginx.stop();
    if (this.ownStandin) await this.standin.stop();
  }
}

/** A health-service registration of a backend on 127.0.0.1 (or `address`). */
export function instance(service: string, port: number, extra: Partial<ServiceDefinition> = {}): ServiceDefinition {
  return { ID: `${service}-${port}`, Name: service, Address: "127.0.0.1", Port: port, ...extra };
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
