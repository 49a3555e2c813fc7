/**
 * One gen-lb node for end-to-end tests: the Consul stand-in, a prefix built
 * from a spec pointing at it, the real nginx on free loopback ports, and two
 * ways to read what the runtime decided: the status endpoint (the typed
 * document of src/contract/status.ts) and a view location whose Lua prints
 * gen_lb.peers' get/meta/dump_state as the answering worker sees them.
 *
 * Two profiles, because the tests that grew them rely on their defaults:
 * - "balancer": a status endpoint on its own port, the schema's upstream
 *   defaults, upstream NAME at /NAME/, access log off;
 * - "discovery": no status endpoint, retries 2 and keepalive 0, the first
 *   upstream at / and the others at /u/NAME/, runtime log level notice, a
 *   listening socket per worker (reuseport) so that a test can ask each one.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { luaEngineOnly, statusDocumentSchema, type LuaStatusDocument, type PeerStatus, type UpstreamStatus } from "../../src/contract/status.js";
import { startBackends, type Backend } from "./backends.js";
import { ConsulStandin, type ServiceDefinition, type StandinOptions } from "./consul-standin.js";
import { request } from "./load.js";
import { buildPrefix, Nginx, type Launch } from "./nginx.js";
import type { TestTarget } from "./target.js";
import { freePort, sleep, waitFor } from "./ports.js";

export type { LuaStatusDocument, PeerStatus, UpstreamStatus } from "../../src/contract/status.js";
export { startBackends } from "./backends.js";

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

const VIEW_PATH = "/_gen_lb_view";

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

export type StackProfile = "balancer" | "discovery";

export interface StackOptions {
  /** Default "balancer" (see the file's header). */
  profile?: StackProfile;
  /** Upstream name -> spec fields (service defaults to the name); default { web: { service: "web" } }. */
  upstreams?: Record<string, Record<string, unknown>>;
  workers?: number;
  /** error_log level (default info). */
  errorLevel?: string;
  /** Merged into the spec's consul section (addresses default to the stand-in). */
  consul?: Record<string, unknown>;
  /** Extra nginx spec fields (user, ...); `http` here replaces the profile's. */
  nginx?: Record<string, unknown>;
  /** Extra nginx.http fields (resolver, ...), merged into the profile's. */
  http?: Record<string, unknown>;
  /** Extra runtime fields (hold_for_peers, ...), merged into the profile's. */
  runtime?: Record<string, unknown>;
  /** Extra fields for the main server (error_pages, ...). */
  server?: Record<string, unknown>;
  /** Extra locations for the main server (after one per upstream). */
  locations?: Array<Record<string, unknown>>;
  /** Extra exact-match locations: path -> Lua run by content_by_lua (test hooks). */
  luaLocations?: Record<string, string>;
  /** Extra Lua files copied into the prefix: module path ("gen_lb_test/x.lua") -> source file. */
  luaFiles?: Record<string, string>;
  /** Status allow list (balancer profile; default 127.0.0.1). */
  allow?: string[];
  /** Stand-in ACL options (requests without the token get 403, or filtered reads). */
  token?: string;
  aclMissingToken?: StandinOptions["aclMissingToken"];
  /** Environment for nginx (the token variable, for one). */
  env?: Record<string, string>;
  /** Use this stand-in instead of starting one (stop() then leaves it running). */
  standin?: ConsulStandin;
  /** Build into this prefix (reusing a dump file there). */
  prefix?: string;
  /** Render for this target and run `bin`, whatever the test matrix says (a test about one binary); both or neither. */
  target?: TestTarget;
  bin?: string;
  /** How nginx is started: from another directory (a relative `-p`), as a non-root user. */
  launch?: Launch;
  /** Backends started on 127.0.0.1 before nginx (`stack.backends`, in this order), stopped by stop(); not registered. */
  backends?: string[];
  /** Runs between the build and nginx's start: edit the prefix, set stand-in faults or registrations. */
  beforeStart?: (built: { prefix: string; standin: ConsulStandin; backends: Backend[] }) => void | Promise<void>;
}

/** A location whose content is one Lua chunk (data passed as the nginx argument, never spliced). */
export function luaLocation(pathname: string, code: string): Record<string, unknown> {
  return { path: pathname, match: "exact", directives: [{ name: "content_by_lua", args: [code] }] };
}

/** The path upstream `name` is proxied at, in a profile's layout. */
function routeOf(profile: StackProfile, names: string[], name: string): string {
  if (profile === "balancer") return `/${name}/`;
  return names[0] === name ? "/" : `/u/${name}/`;
}

export class Stack {
  protected constructor(
    readonly standin: ConsulStandin,
    public nginx: Nginx,
    readonly prefix: string,
    readonly buildId: string,
    readonly port: number,
    /** 0 without a status endpoint (the discovery profile). */
    readonly statusPort: number,
    readonly options: StackOptions,
    private readonly ownStandin: boolean,
    /** The `backends` option's, in its order. */
    readonly backends: Backend[],
  ) {}

  /** The spec a stack builds; `statusPort` is needed by the balancer profile only. */
  static spec(options: StackOptions, consulUrls: string[], port: number, statusPort?: number): Record<string, unknown> {
    const profile = options.profile ?? "balancer";
    const upstreams = options.upstreams ?? { web: { service: "web" } };
    const names = Object.keys(upstreams);
    const balancer = profile === "balancer";
    if (balancer && statusPort === undefined) throw new Error("the balancer profile serves status: give Stack.spec a status port");
    const upstreamDefaults = balancer ? {} : { retries: 2, keepalive: 0 };
    return {
      consul: { addresses: consulUrls, wait: "5s", timeout: "1s", ...options.consul },
      nginx: {
        worker_processes: options.workers ?? 2,
        error_log: { path: "logs/error.log", level: options.errorLevel ?? "info" },
        ...(balancer || options.http ? { http: { ...(balancer ? { access_log: "off" } : {}), ...options.http } } : {}),
        ...options.nginx,
      },
      ...(balancer && !options.runtime ? {} : { runtime: { ...(balancer ? {} : { log_level: "notice" }), ...options.runtime } }),
      status: balancer ? { listen: `127.0.0.1:${statusPort}`, path: "/status", allow: options.allow ?? ["127.0.0.1"] } : { enabled: false },
      upstreams: Object.fromEntries(
        Object.entries(upstreams).map(([n, u]) => [n, { service: n, ...upstreamDefaults, connect_timeout: "1s", read_timeout: "5s", ...u }]),
      ),
      servers: [
        {
          listen: `127.0.0.1:${port}`,
          ...(balancer ? {} : { reuseport: true }),
          locations: [
            ...names.map((n) => ({ path: routeOf(profile, names, n), upstream: n })),
            luaLocation(VIEW_PATH, VIEW_LUA),
            ...(options.locations ?? []),
            ...Object.entries(options.luaLocations ?? {}).map(([p, code]) => luaLocation(p, code)),
          ],
          ...options.server,
        },
      ],
    };
  }

  static async start(options: StackOptions = {}): Promise<Stack> {
    const standin = options.standin ?? new ConsulStandin({ token: options.token, aclMissingToken: options.aclMissingToken });
    const own = options.standin === undefined;
    if (own) await standin.start();
    const port = await freePort();
    const statusPort = (options.profile ?? "balancer") === "balancer" ? await freePort() : 0;
    if ((options.target === undefined) !== (options.bin === undefined)) throw new Error("Stack.start: give target and bin together");
    const backends: Backend[] = [];
    try {
      backends.push(...(await startBackends(options.backends ?? [])));
      const { dir, buildId } = await buildPrefix(Stack.spec(options, [standin.url], port, statusPort || undefined) as never, options.prefix, options.target);
      // mkdtemp makes 0700 directories; workers run as nobody and must reach the dump directory.
      chmodSync(dir, 0o755);
      copyLua(dir, options);
      await options.beforeStart?.({ prefix: dir, standin, backends });
      const nginx = await Nginx.start(dir, options.env ?? {}, options.bin, options.launch);
      await Stack.allWorkers(nginx, options.workers ?? 2);
      return new Stack(standin, nginx, dir, buildId, port, statusPort, options, own, backends);
    } catch (e) {
      await Promise.all(backends.map((b) => b.stop()));
      if (own) await standin.stop();
      throw e;
    }
  }

  /** Nginx.start returns once the first worker is up; tests that count workers need all of them. */
  static async allWorkers(nginx: Nginx, count: number): Promise<void> {
    await waitFor(() => nginx.workerPids().length === count, `${count} nginx workers`);
  }

  /** Rebuilds the prefix from new options (same profile, ports and stand-in) and reloads nginx (HUP). */
  async reconfigure(options: StackOptions): Promise<void> {
    const next = { ...options, profile: this.options.profile, target: this.options.target, bin: this.options.bin };
    await buildPrefix(Stack.spec(next, [this.standin.url], this.port, this.statusPort || undefined) as never, this.prefix, next.target);
    copyLua(this.prefix, next);
    await this.nginx.reload();
  }

  /**
   * A URL on the main server: `url("/x")` is that path; `url("web", "a")` is
   * upstream web's route (with "a" after it); `url()` is "/".
   */
  url(pathOrUpstream = "/", rest = ""): string {
    if (pathOrUpstream.startsWith("/")) return `http://127.0.0.1:${this.port}${pathOrUpstream}`;
    const names = Object.keys(this.options.upstreams ?? { web: {} });
    return `http://127.0.0.1:${this.port}${routeOf(this.options.profile ?? "balancer", names, pathOrUpstream)}${rest}`;
  }

  // --- the status endpoint (balancer profile) --------------------------------

  statusUrl(query = ""): string {
    if (this.statusPort === 0) throw new Error("this stack serves no status endpoint (discovery profile)");
    return `http://127.0.0.1:${this.statusPort}/status${query}`;
  }

  /** The status document, validated against the contract (Lua-engine upstreams only). */
  async status(): Promise<LuaStatusDocument> {
    const res = await request(this.statusUrl(), { timeoutMs: 5000 });
    if (res.status !== 200) throw new Error(`status: HTTP ${res.status}: ${res.body}`);
    return luaEngineOnly(statusDocumentSchema.parse(JSON.parse(res.body)));
  }

  async upstream(name: string): Promise<UpstreamStatus> {
    const u = (await this.status()).upstreams[name];
    if (!u) throw new Error(`no upstream ${name} in the status`);
    return u;
  }

  async peer(name: string, address: string): Promise<PeerStatus | undefined> {
    return (await this.upstream(name)).peers.find((p) => p.address === address);
  }

  async prometheus(): Promise<string> {
    const res = await request(this.statusUrl("?format=prometheus"), { timeoutMs: 5000 });
    if (res.status !== 200) throw new Error(`prometheus: HTTP ${res.status}: ${res.body}`);
    return res.body;
  }

  /** Waits until `pred` holds for the status of peer `address` of `name`. */
  async waitForPeer(name: string, address: string, pred: (p: PeerStatus) => boolean, what: string, timeoutMs = 15_000): Promise<PeerStatus> {
    let last: PeerStatus | undefined;
    try {
      return await waitFor(
        async () => {
          last = await this.peer(name, address);
          return last && pred(last) ? last : undefined;
        },
        `${name} ${address}: ${what}`,
        timeoutMs,
        25,
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}; last seen ${JSON.stringify(last)}\n${this.logTail()}`);
    }
  }

  // --- the view of one worker (every profile) --------------------------------

  /** What the worker that answers holds. */
  async view(): Promise<NodeView> {
    const res = await request(this.url(VIEW_PATH), { timeoutMs: 5000 });
    if (res.status !== 200) throw new Error(`view: HTTP ${res.status}: ${res.body}`);
    const v = JSON.parse(res.body) as NodeView;
    // cjson encodes an empty Lua table as {}.
    for (const u of Object.values(v.upstreams)) if (!Array.isArray(u.peers)) u.peers = [];
    return v;
  }

  /** Waits until the answering worker's list for `name` is exactly `addresses` (host:port, any order). */
  async waitForPeers(name: string, addresses: string[], timeoutMs = 10_000): Promise<UpstreamView> {
    const want = [...addresses].sort().join(",");
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
      throw new Error(`${(e as Error).message}; last seen [${last}]\n${this.logTail()}`);
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

  // --- Consul -----------------------------------------------------------------

  /**
   * Registers an instance with the stand-in: a full definition, or a backend
   * (anything with a port, on 127.0.0.1 unless it says) as an instance of
   * `service` with ID service-port (weight 1 unless given). Returns the ID.
   */
  register(def: ServiceDefinition): string;
  register(service: string, backend: { port: number; host?: string }, weight?: number): string;
  register(defOrService: ServiceDefinition | string, backend?: { port: number; host?: string }, weight?: number): string {
    if (typeof defOrService !== "string") return this.standin.registerService(defOrService);
    const b = backend as { port: number; host?: string };
    return this.standin.registerService(
      instance(defOrService, b.port, { Address: b.host ?? "127.0.0.1", ...(weight === undefined ? {} : { Weights: { Passing: weight, Warning: 1 } }) }),
    );
  }

  deregister(id: string): void {
    this.standin.deregisterService(id);
  }

  // --- logs, dump, lifecycle ---------------------------------------------------

  errorLog(): string {
    return this.nginx.errorLog();
  }

  logTail(lines = 40): string {
    return `--- error.log tail ---\n${this.errorLog().split("\n").slice(-lines).join("\n")}`;
  }

  /** gen-lb's own log lines. */
  genLbLines(): string[] {
    return this.errorLog()
      .split("\n")
      .filter((l) => l.includes("gen-lb: "));
  }

  /** Lines that mean a Lua error somewhere (a crashed timer, a failed phase handler). */
  luaErrors(): string[] {
    return this.errorLog()
      .split("\n")
      .filter((l) => /lua entry thread aborted|runtime error|stack traceback|\[alert\]|\[emerg\]|failed:.*\.lua:\d+/.test(l));
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
    this.nginx = await Nginx.start(this.prefix, env, this.options.bin, this.options.launch);
    await Stack.allWorkers(this.nginx, this.options.workers ?? 2);
  }

  async stop(): Promise<void> {
    await this.nginx.stop();
    if (this.ownStandin) await this.standin.stop();
    await Promise.all(this.backends.map((b) => b.stop()));
  }
}

function copyLua(dir: string, options: StackOptions): void {
  for (const [mod, src] of Object.entries(options.luaFiles ?? {})) {
    const to = path.join(dir, "lua", mod);
    mkdirSync(path.dirname(to), { recursive: true });
    copyFileSync(src, to);
  }
}

/** A registration of a backend on 127.0.0.1 (or `extra.Address`) as an instance of `service`, ID service-port. */
export function instance(service: string, port: number, extra: Partial<ServiceDefinition> = {}): ServiceDefinition {
  return { ID: `${service}-${port}`, Name: service, Address: "127.0.0.1", Port: port, ...extra };
}

/** The share of answers `name` gave, from X-Backend counts. */
export function share(counts: Record<string, number>, name: string): number {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return total === 0 ? 0 : (counts[name] ?? 0) / total;
}
