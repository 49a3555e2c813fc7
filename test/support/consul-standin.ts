/**
 * A stand-in for the part of Consul's HTTP API that gen-lb uses, for tests
 * and benchmarks on a machine where no Consul server can be installed: what
 * the runtime asks (GET /v1/health/service/NAME with ?passing, ?tag, ?dc and
 * blocking ?index/?wait, X-Consul-Token), what the CLI's preflight asks
 * through the `consul` npm client (the same, and GET /v1/catalog/services),
 * and the agent's register/deregister endpoints that tests and benchmarks
 * drive. One datacenter, whose agent (node "node1" by default) also is the
 * leader.
 *
 * Faithful to Consul's documented shapes and behaviour: the JSON of those
 * answers; blocking queries (a raft-like index bumped on every write,
 * per-service indexes including Consul's "last extinction" index for
 * services that no longer exist, index/wait semantics, wait clamping and
 * wait/16 jitter); ACL tokens (403 texts, default-deny read filtering);
 * Consul's error texts for what it validates. On top of that it misbehaves
 * on demand (faults) and tells tests what it saw (request log, blocked
 * queries per service).
 *
 * Deliberate differences, because the stand-in runs no checks: a check
 * registered without a Status starts "passing" (Consul starts it "critical"
 * until it first runs); checks are stored, never run. `filter`, `near`,
 * `node-meta`, `ns`, `consistent`/`stale` are accepted and ignored.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import { isIP, type AddressInfo, type Socket } from "node:net";

export type HealthStatus = "passing" | "warning" | "critical";

export type FaultKind =
  | "status500"
  | "hang"
  | "delay"
  | "close"
  | "garbage"
  | "indexBackwards"
  | "slowTrickle"
  | "hugeBody"
  | "wrongTypes"
  | "missingFields"
  | "edit";

export interface FaultSpec {
  kind: FaultKind;
  /** How many matching requests it spoils; omitted: every one until cleared. */
  times?: number;
  /** Matched against the request's path (no query string); omitted: all paths. */
  path?: RegExp;
  /** delay: how long the request waits before Consul starts on it (default 1500 ms); a slow, overloaded agent. */
  delayMs?: number;
  /** hugeBody: target body size in bytes (default 8 MiB). */
  bytes?: number;
  /** slowTrickle: bytes per write (default 16) and pause between writes (default 50 ms). */
  chunkBytes?: number;
  intervalMs?: number;
  /** wrongTypes / missingFields: keep the real entries and append the bad ones. */
  mixed?: boolean;
  /** edit: the body sent instead of the answer, made from a copy of its real entries (a hostile or odd Consul). */
  edit?: (entries: Array<Record<string, unknown>>) => unknown;
}

export interface LoggedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /**
   * Epoch milliseconds on the monotonic clock (`performance.timeOrigin +
   * performance.now()`), sub-millisecond precision (benchmarks diff these).
   * It can sit tens of ms from `Date.now()` in a long-lived process: compare
   * it with the same clock.
   */
  at: number;
  /** Set when an answer was sent; stays undefined for closed or hung requests. */
  status?: number;
}

export type RequestFilter =
  | ((r: LoggedRequest) => boolean)
  | { method?: string; path?: string | RegExp; since?: number; query?: Record<string, string | true> };

export interface StandinOptions {
  /** When set, every API request must present this ACL token. */
  token?: string;
  /**
   * What a request without any token gets when `token` is set. "forbid": 403
   * "Permission denied" everywhere. "filter": what Consul with
   * default_policy=deny really does for reads (200 with the entries the
   * anonymous token may not see removed, and X-Consul-Results-Filtered-By-ACLs);
   * writes are still refused.
   */
  aclMissingToken?: "forbid" | "filter";
  datacenter?: string;
  /** The agent's node, where every service is registered (default "node1"). */
  nodeName?: string;
  nodeAddress?: string;
  port?: number;
}

/** A service registration as Consul's agent endpoint takes it (the fields gen-lb's tests use; EnableTagOverride is always false). */
export interface ServiceDefinition {
  ID?: string;
  Name: string;
  Tags?: string[];
  Address?: string;
  Port?: number;
  Meta?: Record<string, string>;
  Weights?: { Passing?: number; Warning?: number };
  Check?: CheckDefinition;
  Checks?: CheckDefinition[];
}

export interface CheckDefinition {
  CheckID?: string;
  Name?: string;
  Status?: HealthStatus;
  Notes?: string;
  HTTP?: string;
  TCP?: string;
  TTL?: string;
  Interval?: string;
  Timeout?: string;
}

// ---------------------------------------------------------------------------
// Durations and blocking-query timing, as Consul (Go) parses and clamps them.

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go's time.ParseDuration ("300ms", "1h30m", "1.5s", "0"), in milliseconds; undefined if invalid. */
export function parseGoDuration(text: string): number | undefined {
  let rest = text;
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    sign = rest.startsWith("-") ? -1 : 1;
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (rest === "") return undefined;
  const part = /^(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/;
  let total = 0;
  while (rest !== "") {
    const m = part.exec(rest);
    if (!m || (m[1] === "" && !m[2])) return undefined;
    total += Number(`${m[1] || "0"}.${m[2] || "0"}`) * (UNIT_MS[m[3] as string] ?? NaN);
    rest = rest.slice(m[0].length);
  }
  return Number.isFinite(total) ? sign * total : undefined;
}

export const DEFAULT_WAIT_MS = 5 * 60_000;
export const MAX_WAIT_MS = 10 * 60_000;

/**
 * The wait a blocking query gets before jitter: Consul clamps to 10 minutes
 * and treats an absent, zero or negative wait as the 5 minute default.
 * Throws on a malformed value (the caller answers 400 "Invalid wait time").
 */
export function blockingWaitMs(wait: string | null): number {
  const ms = wait ? parseGoDuration(wait) : 0;
  if (ms === undefined) throw new Error("Invalid wait time");
  if (ms > MAX_WAIT_MS) return MAX_WAIT_MS;
  return ms <= 0 ? DEFAULT_WAIT_MS : ms;
}

/** Consul adds a random stagger of up to wait/16 so that waiters spread out. */
export function withJitter(waitMs: number, random: () => number = Math.random): number {
  return waitMs + Math.floor(random() * (waitMs / 16));
}

// ---------------------------------------------------------------------------
// The catalog model: the agent's node and the service instances on it.

interface CheckRec {
  checkId: string;
  name: string;
  status: HealthStatus;
  notes: string;
  type: string;
  interval: string;
  timeout: string;
  createIndex: number;
  modifyIndex: number;
}

interface InstanceRec {
  id: string;
  name: string;
  tags: string[];
  address: string;
  port: number;
  meta: Record<string, string>;
  weights: { Passing: number; Warning: number };
  createIndex: number;
  modifyIndex: number;
  checks: CheckRec[];
}

/** A registration after validation: what the model stores, minus indexes. */
type ParsedService = Omit<InstanceRec, "createIndex" | "modifyIndex" | "checks"> & {
  checks: Array<Omit<CheckRec, "createIndex" | "modifyIndex" | "status"> & { status?: HealthStatus }>;
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const STATUSES: readonly string[] = ["passing", "warning", "critical"];
const ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002";

/** A Node ID that is stable per node name, so answers are reproducible. */
function nodeId(name: string): string {
  const h = createHash("sha256").update(name).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function taggedAddresses(address: string): Record<string, string> {
  const family = isIP(address) === 6 ? "ipv6" : "ipv4";
  return { lan: address, [`lan_${family}`]: address, wan: address, [`wan_${family}`]: address };
}

/** Consul's agent fills these in for a service whose Address is an IP. */
function serviceTaggedAddresses(address: string, port: number): Record<string, { Address: string; Port: number }> | undefined {
  const v = isIP(address);
  if (v === 0) return undefined;
  const family = v === 6 ? "ipv6" : "ipv4";
  return { [`lan_${family}`]: { Address: address, Port: port }, [`wan_${family}`]: { Address: address, Port: port } };
}

/** The check type Consul derives from which field a definition sets. */
function checkType(c: CheckDefinition): string {
  if (c.HTTP) return "http";
  if (c.TCP) return "tcp";
  return c.TTL ? "ttl" : "";
}

function parseCheck(c: CheckDefinition, serviceId: string, serviceName: string, ordinal: number | undefined): ParsedService["checks"][number] {
  if (c.Status !== undefined && (c.Status as string) !== "" && !STATUSES.includes(c.Status)) {
    throw new HttpError(400, "Status for checks must 'passing', 'warning', 'critical'");
  }
  const type = checkType(c);
  if ((type === "http" || type === "tcp") && !((parseGoDuration(c.Interval ?? "") ?? 0) > 0)) {
    throw new HttpError(400, "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks");
  }
  if (type === "" || (type === "ttl" && !((parseGoDuration(c.TTL ?? "") ?? 0) > 0))) {
    throw new HttpError(400, "Invalid check: TTL must be > 0 for TTL checks");
  }
  return {
    checkId: c.CheckID ?? `service:${serviceId}${ordinal === undefined ? "" : `:${ordinal}`}`,
    name: c.Name ?? `Service '${serviceName}' check`,
    ...(c.Status ? { status: c.Status } : {}),
    notes: c.Notes ?? "",
    type,
    interval: type === "ttl" ? "" : (c.Interval ?? ""),
    timeout: c.Timeout ?? "",
  };
}

/** Validates a register body as Consul's agent does; throws HttpError(400) with Consul's wording. */
function parseServiceDefinition(body: unknown): ParsedService {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new HttpError(400, "Request decode failed: EOF");
  const def = body as ServiceDefinition;
  if (typeof def.Name !== "string" || def.Name === "") throw new HttpError(400, "Missing service name");
  const id = def.ID || def.Name;
  const port = def.Port ?? 0;
  if (typeof port !== "number") {
    throw new HttpError(400, `Request decode failed: json: cannot unmarshal ${typeof port} into Go struct field ServiceDefinition.Port of type int`);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new HttpError(400, `Invalid Port: ${port}`);
  // Consul's default when Weights is absent; a partial object keeps what it gives.
  const weights = { Passing: def.Weights?.Passing ?? 1, Warning: def.Weights?.Warning ?? 1 };
  if (weights.Passing < 1) throw new HttpError(400, "Invalid Weights: Passing must be greater than 0");
  if (weights.Warning < 0) throw new HttpError(400, "Invalid Weights: Warning must be greater or equal than 0");
  const defs = [...(def.Check && Object.keys(def.Check).length > 0 ? [def.Check] : []), ...(def.Checks ?? [])];
  // With several checks Consul numbers the generated IDs from 1.
  const checks = defs.map((c, i) => parseCheck(c, id, def.Name, defs.length > 1 ? i + 1 : undefined));
  return { id, name: def.Name, tags: def.Tags ?? [], address: def.Address ?? "", port, meta: def.Meta ?? {}, weights, checks };
}

/** Go's strconv.ParseBool, which Consul uses for ?passing=. */
function parseGoBool(v: string): boolean | undefined {
  if (["1", "t", "T", "true", "TRUE", "True"].includes(v)) return true;
  if (["0", "f", "F", "false", "FALSE", "False"].includes(v)) return false;
  return undefined;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

// ---------------------------------------------------------------------------

/** One read endpoint's answer, recomputed each time a blocked query wakes. */
interface Query {
  /** The service asked for, or undefined for the service listing. */
  service: string | undefined;
  index(): number;
  result(): unknown;
  filtered: boolean;
}

interface Waiter {
  wake(): void;
}

interface ActiveFault extends FaultSpec {
  remaining: number | undefined;
}

const BODY_FAULTS: readonly FaultKind[] = ["garbage", "indexBackwards", "slowTrickle", "hugeBody", "wrongTypes", "missingFields", "edit"];

export class ConsulStandin {
  /** Every request received, in arrival order. */
  readonly requests: LoggedRequest[] = [];

  private readonly token: string | undefined;
  private readonly aclMissingToken: "forbid" | "filter";
  private readonly datacenter: string;
  private readonly node: { id: string; name: string; address: string; createIndex: number };

  private server: http.Server | undefined;
  private listenPort: number | undefined;
  private readonly sockets = new Set<Socket>();

  private raftIndex = 0;
  /** Index of the last change to each service that has instances. */
  private readonly serviceIndex = new Map<string, number>();
  /** Index of the last time any service lost its last instance (Consul's "extinction" index). */
  private lastExtinction = 0;
  /** Index of the services table: registrations and deregistrations, not health. */
  private servicesTableIndex = 0;
  private readonly instances = new Map<string, InstanceRec>();

  private readonly serviceWaiters = new Map<string, Set<Waiter>>();
  private readonly listWaiters = new Set<Waiter>();
  private faults: ActiveFault[] = [];
  private readonly hung = new Set<() => void>();
  /** Cleanups of blocked queries, trickles and delays, run when the listener closes. */
  private readonly inFlight = new Set<() => void>();

  constructor(private readonly options: StandinOptions = {}) {
    this.token = options.token;
    this.aclMissingToken = options.aclMissingToken ?? "forbid";
    this.datacenter = options.datacenter ?? "dc1";
    const name = options.nodeName ?? "node1";
    this.node = { id: nodeId(name), name, address: options.nodeAddress ?? "127.0.0.1", createIndex: this.nextIndex() };
    // A fresh Consul server has its own node and the "consul" service.
    this.registerService({ Name: "consul", Port: 8300, Meta: { raft_version: "3" } });
  }

  // --- lifecycle ----------------------------------------------------------

  /** Starts listening on 127.0.0.1; a free port unless one is given. Returns the base URL. */
  async start(port = this.options.port ?? 0): Promise<string> {
    if (this.server) throw new Error("ConsulStandin already started");
    await this.listen(port);
    return this.url;
  }

  /** Closes the listener and every connection, blocked or hung ones included. */
  async stop(): Promise<void> {
    await this.closeListener();
    this.listenPort = undefined;
  }

  /** Consul "goes away": the port stops accepting and open connections drop; state is kept. */
  async down(): Promise<void> {
    await this.closeListener();
  }

  /** Consul comes back on the same port, with the catalog it had. */
  async up(): Promise<void> {
    if (this.server) return;
    if (this.listenPort === undefined) throw new Error("ConsulStandin was never started");
    await this.listen(this.listenPort);
  }

  get port(): number {
    if (this.listenPort === undefined) throw new Error("ConsulStandin not started");
    return this.listenPort;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private listen(port: number): Promise<void> {
    // requestTimeout 0: Node would otherwise cut blocking queries at 5 min.
    // keepAliveTimeout 0: like Consul (Go), idle keep-alive connections stay open.
    const server = http.createServer({ requestTimeout: 0, keepAliveTimeout: 0 }, (req, res) => this.onRequest(req, res));
    server.on("connection", (s: Socket) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        this.server = server;
        this.listenPort = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private async closeListener(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.hung.clear();
    // The responses' "close" events would clear blocked queries and trickles
    // too, but only on a later tick: do it now, so nothing is left pending.
    for (const cleanup of [...this.inFlight]) cleanup();
    await closed;
  }

  // --- observability --------------------------------------------------------

  /** This agent's datacenter, as its DNS interface qualifies names. */
  get dc(): string {
    return this.datacenter;
  }

  /**
   * Every instance of a service as /v1/health/service/NAME lists it (any
   * state, no faults, no ACL): what the DNS stand-in answers from.
   * Undefined when no instance of the service is registered.
   */
  healthEntries(service: string): Array<Record<string, unknown>> | undefined {
    const found = this.instancesOf(service, []);
    return found.length === 0 ? undefined : found.map((i) => this.healthEntry(i));
  }

  /** The agent node's address, when `node` names it (case-insensitively, as DNS does). */
  nodeAddress(node: string): string | undefined {
    return node.toLowerCase() === this.node.name.toLowerCase() ? this.node.address : undefined;
  }

  /** The current raft index (the last write). */
  get index(): number {
    return this.raftIndex;
  }

  /** The X-Consul-Index a health query on this service would get now. */
  indexFor(service: string): number {
    return Math.max(1, this.serviceIndex.get(service) ?? (this.lastExtinction || this.raftIndex));
  }

  countRequests(filter?: RequestFilter): number {
    return this.requests.filter((r) => matchesFilter(r, filter)).length;
  }

  /** In-flight blocking queries on one service, or on everything (the service listing included). */
  blockedQueries(service?: string): number {
    if (service !== undefined) return this.serviceWaiters.get(service)?.size ?? 0;
    let n = this.listWaiters.size;
    for (const set of this.serviceWaiters.values()) n += set.size;
    return n;
  }

  /** Resolves once at least `count` queries block on the service; rejects after timeoutMs. */
  async waitForBlocked(service: string, count = 1, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.blockedQueries(service) < count) {
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${count} blocked queries on ${service} (have ${this.blockedQueries(service)})`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  // --- fault injection ------------------------------------------------------

  /**
   * Spoils matching requests. "status500", "hang", "delay" and "close" apply
   * to any path; the others change the answer of the read endpoints and are
   * answered at once, without blocking. Returns a function that removes this
   * fault.
   */
  fault(spec: FaultSpec): () => void {
    const f: ActiveFault = { ...spec, remaining: spec.times };
    this.faults.push(f);
    return () => {
      this.faults = this.faults.filter((x) => x !== f);
    };
  }

  /** Removes every fault; hung requests then get their normal answer. */
  clearFaults(): void {
    this.faults = [];
    const resumes = [...this.hung];
    this.hung.clear();
    for (const resume of resumes) resume();
  }

  private takeFault(path: string, body: boolean): ActiveFault | undefined {
    const f = this.faults.find((x) => {
      if (BODY_FAULTS.includes(x.kind) !== body) return false;
      if (!x.path) return true;
      x.path.lastIndex = 0;
      return x.path.test(path);
    });
    if (f && f.remaining !== undefined) {
      f.remaining -= 1;
      if (f.remaining <= 0) this.faults = this.faults.filter((x) => x !== f);
    }
    return f;
  }

  // --- the agent's writes, also callable in-process ----------------------------

  /** Registers (or updates) a service instance, as PUT /v1/agent/service/register does. Returns the ID. */
  registerService(def: ServiceDefinition): string {
    return this.applyRegistration(parseServiceDefinition(def));
  }

  /** Removes an instance; false when there was none with that ID. */
  deregisterService(serviceId: string): boolean {
    const inst = this.instances.get(serviceId);
    if (!inst) return false;
    const idx = this.nextIndex();
    this.instances.delete(serviceId);
    this.servicesTableIndex = idx;
    this.touchService(inst.name, idx);
    this.notify([inst.name], true);
    return true;
  }

  /**
   * Sets every check of an instance to `status` (adding a TTL-style check
   * when it has none), as a failing or recovering health check would.
   */
  setHealth(serviceId: string, status: HealthStatus): void {
    const inst = this.instances.get(serviceId);
    if (!inst) throw new Error(`no service instance with ID ${serviceId}`);
    if (inst.checks.length > 0 && inst.checks.every((c) => c.status === status)) return;
    const idx = this.nextIndex();
    if (inst.checks.length === 0) {
      inst.checks.push({ checkId: `service:${inst.id}`, name: `Service '${inst.name}' check`, status, notes: "", type: "ttl", interval: "", timeout: "", createIndex: idx, modifyIndex: idx });
    }
    for (const c of inst.checks) {
      if (c.status !== status) {
        c.status = status;
        c.modifyIndex = idx;
      }
    }
    this.touchService(inst.name, idx);
    this.notify([inst.name], false);
  }

  // --- the model's writes -----------------------------------------------------

  private nextIndex(): number {
    this.raftIndex += 1;
    return this.raftIndex;
  }

  private touchService(name: string, idx: number): void {
    const stillThere = [...this.instances.values()].some((i) => i.name === name);
    if (stillThere) {
      this.serviceIndex.set(name, idx);
    } else if (this.serviceIndex.delete(name)) {
      this.lastExtinction = idx;
    }
  }

  private applyRegistration(svc: ParsedService): string {
    const old = this.instances.get(svc.id);
    const { checks: checkDefs, ...fields } = svc;
    // A check keeps its current status unless the registration names one.
    const checks = checkDefs.map((c) => ({ ...c, status: c.status ?? old?.checks.find((p) => p.checkId === c.checkId)?.status ?? "passing" }));
    const oldFields = old && { id: old.id, name: old.name, tags: old.tags, address: old.address, port: old.port, meta: old.meta, weights: old.weights };
    const oldChecks = old?.checks.map(({ createIndex: _c, modifyIndex: _m, ...rest }) => rest);
    const serviceChanged = !old || !sameJson(oldFields, fields);
    const checksChanged = !old || !sameJson(oldChecks, checks);
    // Consul's agent does not write an identical registration again, so it
    // bumps no index and wakes no blocked query.
    if (!serviceChanged && !checksChanged) return svc.id;

    const idx = this.nextIndex();
    this.instances.set(svc.id, {
      ...fields,
      createIndex: old?.createIndex ?? idx,
      modifyIndex: serviceChanged ? idx : (old?.modifyIndex ?? idx),
      checks: checks.map((c) => {
        const prev = old?.checks.find((p) => p.checkId === c.checkId);
        const same = prev && sameJson({ ...prev, createIndex: 0, modifyIndex: 0 }, { ...c, createIndex: 0, modifyIndex: 0 });
        return { ...c, createIndex: prev?.createIndex ?? idx, modifyIndex: same ? prev.modifyIndex : idx };
      }),
    });
    const names = new Set([svc.name]);
    if (old && old.name !== svc.name) names.add(old.name);
    for (const name of names) this.touchService(name, idx);
    if (serviceChanged) this.servicesTableIndex = idx;
    this.notify(names, serviceChanged);
    return svc.id;
  }

  /** Wakes blocked queries whose answer may have changed. */
  private notify(services: Iterable<string>, listChanged: boolean): void {
    const woken: Waiter[] = [];
    for (const name of services) woken.push(...(this.serviceWaiters.get(name) ?? []));
    if (listChanged) woken.push(...this.listWaiters);
    for (const w of woken) w.wake();
  }

  // --- the model's reads ------------------------------------------------------

  private instancesOf(service: string, tags: string[]): InstanceRec[] {
    // Consul matches tags case-insensitively, and every requested tag must be present.
    const wanted = tags.map((t) => t.toLowerCase());
    return [...this.instances.values()]
      .filter((i) => i.name === service)
      .filter((i) => wanted.every((t) => i.tags.some((have) => have.toLowerCase() === t)))
      .sort((a, b) => cmp(a.id, b.id));
  }

  private healthEntry(i: InstanceRec): Record<string, unknown> {
    const n = this.node;
    const tagged = serviceTaggedAddresses(i.address, i.port);
    const check = (c: Omit<CheckRec, "checkId"> & { checkId: string; output: string }, service?: InstanceRec) => ({
      Node: n.name,
      CheckID: c.checkId,
      Name: c.name,
      Status: c.status,
      Notes: c.notes,
      Output: c.output,
      ServiceID: service?.id ?? "",
      ServiceName: service?.name ?? "",
      ServiceTags: service ? [...service.tags] : [],
      Type: c.type,
      Interval: c.interval,
      Timeout: c.timeout,
      ExposedPort: 0,
      Definition: {},
      CreateIndex: c.createIndex,
      ModifyIndex: c.modifyIndex,
    });
    // The agent's own node is alive: its serfHealth check passes.
    const serf = { checkId: "serfHealth", name: "Serf Health Status", status: "passing" as const, notes: "", output: "Agent alive and reachable", type: "", interval: "", timeout: "", createIndex: n.createIndex, modifyIndex: n.createIndex };
    return {
      Node: {
        ID: n.id,
        Node: n.name,
        Address: n.address,
        Datacenter: this.datacenter,
        TaggedAddresses: taggedAddresses(n.address),
        Meta: { "consul-network-segment": "" },
        CreateIndex: n.createIndex,
        ModifyIndex: n.createIndex,
      },
      Service: {
        ID: i.id,
        Service: i.name,
        Tags: [...i.tags],
        Address: i.address,
        ...(tagged ? { TaggedAddresses: tagged } : {}),
        Meta: { ...i.meta },
        Port: i.port,
        Weights: { ...i.weights },
        EnableTagOverride: false,
        Proxy: { Mode: "", MeshGateway: {}, Expose: {} },
        Connect: {},
        PeerName: "",
        CreateIndex: i.createIndex,
        ModifyIndex: i.modifyIndex,
      },
      // Node checks come first, as Consul lists them.
      Checks: [check(serf), ...i.checks.map((c) => check({ ...c, output: "" }, i))],
    };
  }

  private serviceList(): Record<string, string[]> {
    const out: Record<string, Set<string>> = {};
    for (const i of this.instances.values()) {
      const tags = (out[i.name] ??= new Set());
      for (const t of i.tags) tags.add(t);
    }
    return Object.fromEntries(
      Object.keys(out)
        .sort(cmp)
        .map((name) => [name, [...(out[name] as Set<string>)].sort(cmp)]),
    );
  }

  // --- HTTP -------------------------------------------------------------------

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://standin.invalid");
    const entry: LoggedRequest = {
      method: req.method ?? "GET",
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      at: performance.timeOrigin + performance.now(),
    };
    this.requests.push(entry);
    res.on("finish", () => {
      entry.status = res.statusCode;
    });

    const fault = this.takeFault(url.pathname, false);
    if (fault?.kind === "close") {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === "status500") {
      sendText(res, 500, "No cluster leader");
      return;
    }
    const proceed = () => {
      this.route(req, res, url).catch((err: unknown) => {
        if (err instanceof HttpError) sendText(res, err.status, err.message);
        else sendText(res, 500, String(err));
      });
    };
    if (fault?.kind === "hang") {
      this.hung.add(proceed);
      res.on("close", () => this.hung.delete(proceed));
      return;
    }
    if (fault?.kind === "delay") {
      // The answer is what Consul would give once it gets to the request
      // (a blocking query then blocks as usual, from that moment).
      const timer = setTimeout(() => {
        this.inFlight.delete(cancel);
        if (!res.destroyed) proceed();
      }, fault.delayMs ?? 1500);
      const cancel = () => {
        clearTimeout(timer);
        this.inFlight.delete(cancel);
      };
      this.inFlight.add(cancel);
      res.on("close", cancel);
      return;
    }
    proceed();
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const path = url.pathname;
    const method = req.method ?? "GET";
    const allow = (...methods: string[]) => {
      if (!methods.includes(method)) throw new MethodNotAllowed(method, methods);
    };
    try {
      let m: RegExpExecArray | null;
      if (path === "/v1/agent/service/register") {
        allow("PUT");
        const body = await readBody(req);
        let parsed: unknown;
        try {
          parsed = body.length === 0 ? undefined : JSON.parse(body);
        } catch (e) {
          throw new HttpError(400, `Request decode failed: ${(e as Error).message}`);
        }
        const svc = parseServiceDefinition(parsed);
        this.checkAcl(req, res, url, "service:write", svc.name);
        this.applyRegistration(svc);
        res.writeHead(200).end();
      } else if ((m = /^\/v1\/agent\/service\/deregister\/(.*)$/.exec(path))) {
        allow("PUT");
        const id = decodeURIComponent(m[1] as string);
        const inst = this.instances.get(id);
        this.checkAcl(req, res, url, "service:write", inst?.name ?? id);
        if (!this.deregisterService(id)) {
          throw new HttpError(404, `Unknown service ID "${id}". Ensure that the service ID is passed, not the service name.`);
        }
        res.writeHead(200).end();
      } else if ((m = /^\/v1\/health\/service\/(.*)$/.exec(path))) {
        allow("GET");
        const service = decodeURIComponent(m[1] as string);
        if (service === "") throw new HttpError(400, "Missing service name");
        this.serveQuery(req, res, url, service);
      } else if (path === "/v1/catalog/services") {
        allow("GET");
        this.serveQuery(req, res, url, undefined);
      } else {
        sendText(res, 404, "404 page not found");
      }
    } catch (err) {
      if (err instanceof MethodNotAllowed) {
        res.setHeader("Allow", err.allow.join(", "));
        sendText(res, 405, `method ${err.method} not allowed`);
      } else if (err instanceof Denied) {
        // Already answered.
      } else {
        throw err;
      }
    }
  }

  /** The token a request presents, in Consul's order: ?token=, X-Consul-Token, Authorization: Bearer. */
  private presentedToken(req: http.IncomingMessage, url: URL): string {
    const q = url.searchParams.get("token");
    if (q) return q;
    const h = req.headers["x-consul-token"];
    if (typeof h === "string" && h !== "") return h;
    const auth = req.headers.authorization?.split(" ");
    if (auth?.length === 2 && auth[0]?.toLowerCase() === "bearer") return auth[1] ?? "";
    return "";
  }

  /**
   * Throws Denied after answering 403 when the request may not proceed;
   * returns true when the answer must be ACL-filtered (anonymous read in
   * "filter" mode).
   */
  private checkAcl(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    permission: string,
    object: string | undefined,
    filterable = false,
  ): boolean {
    if (this.token === undefined) return false;
    const presented = this.presentedToken(req, url);
    if (presented === this.token) return false;
    if (presented !== "") {
      sendText(res, 403, "ACL not found");
      throw new Denied();
    }
    if (filterable && this.aclMissingToken === "filter") return true;
    const on = object === undefined ? "" : ` on ${JSON.stringify(object)}`;
    sendText(
      res,
      403,
      `Permission denied: token with AccessorID '${ANONYMOUS_ACCESSOR}' lacks permission '${permission}'${on}`,
    );
    throw new Denied();
  }

  /** A health query on `service`, or the service listing when it is undefined. */
  private serveQuery(req: http.IncomingMessage, res: http.ServerResponse, url: URL, service: string | undefined): void {
    const params = url.searchParams;
    // Parameter errors come first, as in Consul's HTTP layer.
    let waitMs: number;
    try {
      waitMs = blockingWaitMs(params.get("wait"));
    } catch {
      throw new HttpError(400, "Invalid wait time");
    }
    const rawIndex = params.get("index") ?? "";
    if (rawIndex !== "" && !/^\d+$/.test(rawIndex)) throw new HttpError(400, "Invalid index");
    const minIndex = rawIndex === "" ? 0 : Number(rawIndex);
    let passing = false;
    if (service !== undefined && params.has("passing")) {
      const v = params.get("passing") as string;
      const b = v === "" ? true : parseGoBool(v);
      if (b === undefined) throw new HttpError(400, "Invalid value for ?passing");
      passing = b;
    }
    const dc = params.get("dc");
    if (dc && dc !== this.datacenter) throw new HttpError(500, "No path to datacenter");

    const filtered = this.checkAcl(req, res, url, "service:read", service, true);
    const tags = params.getAll("tag");
    const q: Query = {
      service,
      filtered,
      index: () => (service === undefined ? Math.max(1, this.servicesTableIndex) : this.indexFor(service)),
      result: () => {
        if (service === undefined) return filtered ? {} : this.serviceList();
        if (filtered) return [];
        const entries = this.instancesOf(service, tags).map((i) => this.healthEntry(i));
        return passing ? entries.filter((e) => (e.Checks as Array<{ Status: string }>).every((c) => c.Status === "passing")) : entries;
      },
    };

    // Body faults spoil health answers, what the runtime parses.
    const fault = service === undefined ? undefined : this.takeFault(url.pathname, true);
    if (fault) {
      this.answerWithFault(res, q, fault, minIndex);
      return;
    }
    if (minIndex === 0 || q.index() > minIndex) {
      this.answer(res, q);
      return;
    }
    this.block(res, q, minIndex, withJitter(waitMs));
  }

  private block(res: http.ServerResponse, q: Query, minIndex: number, waitMs: number): void {
    const set = q.service === undefined ? this.listWaiters : getOrCreate(this.serviceWaiters, q.service);
    const done = () => {
      clearTimeout(timer);
      this.inFlight.delete(done);
      set.delete(waiter);
      // Only drop the map entry if it is still this set (a later query may have made a new one).
      if (q.service !== undefined && set.size === 0 && this.serviceWaiters.get(q.service) === set) {
        this.serviceWaiters.delete(q.service);
      }
    };
    const waiter: Waiter = {
      wake: () => {
        // As in Consul, a wake-up only answers when the index moved past the
        // client's; otherwise the query keeps waiting.
        if (q.index() > minIndex) {
          done();
          this.answer(res, q);
        }
      },
    };
    const timer = setTimeout(() => {
      done();
      this.answer(res, q);
    }, waitMs);
    set.add(waiter);
    this.inFlight.add(done);
    res.on("close", done);
  }

  private queryHeaders(q: Query, index: number): Record<string, string> {
    return {
      "X-Consul-Index": String(Math.max(1, index)),
      "X-Consul-KnownLeader": "true",
      "X-Consul-LastContact": "0",
      "X-Consul-Query-Backend": "blocking-query",
      ...(q.filtered ? { "X-Consul-Results-Filtered-By-ACLs": "true" } : {}),
    };
  }

  private answer(res: http.ServerResponse, q: Query): void {
    if (res.destroyed || res.headersSent) return;
    sendJson(res, 200, q.result(), this.queryHeaders(q, q.index()));
  }

  private answerWithFault(res: http.ServerResponse, q: Query, fault: ActiveFault, clientIndex: number): void {
    const headers = this.queryHeaders(q, q.index());
    switch (fault.kind) {
      case "garbage":
        // What a misbehaving proxy in front of Consul sends: it claims JSON.
        send(res, 200, "application/json", Buffer.from('[{"Node": <html><body>502 Bad Gateway</body></html>\x00\xff'), headers);
        return;
      case "indexBackwards": {
        // Lower than what the client holds (a restored snapshot, a new cluster);
        // index 1 when the client holds 0 or 1, as nothing is lower.
        const back = clientIndex > 1 ? Math.max(1, Math.floor(clientIndex / 2)) : 1;
        sendJson(res, 200, q.result(), { ...headers, "X-Consul-Index": String(back) });
        return;
      }
      case "slowTrickle":
        this.trickle(res, Buffer.from(JSON.stringify(q.result())), headers, fault.chunkBytes ?? 16, fault.intervalMs ?? 50);
        return;
      case "hugeBody":
        send(res, 200, "application/json", hugeJson(q.result(), fault.bytes ?? 8 * 1024 * 1024), headers);
        return;
      case "wrongTypes":
      case "missingFields":
        sendJson(res, 200, spoil(q, fault.kind, fault.mixed === true), headers);
        return;
      case "edit":
        sendJson(res, 200, fault.edit ? fault.edit(structuredClone(q.result()) as Array<Record<string, unknown>>) : q.result(), headers);
        return;
      default:
        this.answer(res, q);
    }
  }

  private trickle(res: http.ServerResponse, body: Buffer, headers: Record<string, string>, chunk: number, intervalMs: number): void {
    res.writeHead(200, { ...headers, "Content-Type": "application/json", "Content-Length": String(body.length) });
    let offset = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      res.write(body.subarray(offset, offset + chunk));
      offset += chunk;
      if (offset >= body.length) {
        clearInterval(timer);
        res.end();
      }
    }, intervalMs);
    const stopTrickle = () => {
      clearInterval(timer);
      this.inFlight.delete(stopTrickle);
    };
    this.inFlight.add(stopTrickle);
    res.on("close", stopTrickle);
  }
}

// ---------------------------------------------------------------------------
// Small helpers.

class MethodNotAllowed extends Error {
  constructor(
    readonly method: string,
    readonly allow: string[],
  ) {
    super(`method ${method} not allowed`);
  }
}

/** Thrown after a 403 was sent, to unwind the route. */
class Denied extends Error {}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function getOrCreate<K, V>(map: Map<K, Set<V>>, key: K): Set<V> {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  return set;
}

function matchesFilter(r: LoggedRequest, filter: RequestFilter | undefined): boolean {
  if (!filter) return true;
  if (typeof filter === "function") return filter(r);
  if (filter.method && filter.method.toUpperCase() !== r.method) return false;
  if (filter.since !== undefined && r.at < filter.since) return false;
  if (typeof filter.path === "string" && filter.path !== r.path) return false;
  if (filter.path instanceof RegExp) {
    filter.path.lastIndex = 0;
    if (!filter.path.test(r.path)) return false;
  }
  for (const [k, v] of Object.entries(filter.query ?? {})) {
    if (v === true ? !r.query.has(k) : r.query.get(k) !== v) return false;
  }
  return true;
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(
  res: http.ServerResponse,
  status: number,
  contentType: string,
  body: Buffer,
  headers: Record<string, string> = {},
): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { ...headers, "Content-Type": contentType, "Content-Length": String(body.length) });
  res.end(body);
}

function sendText(res: http.ServerResponse, status: number, text: string): void {
  send(res, status, "text/plain; charset=utf-8", Buffer.from(text));
}

function sendJson(res: http.ServerResponse, status: number, value: unknown, headers: Record<string, string>): void {
  send(res, status, "application/json", Buffer.from(JSON.stringify(value)), headers);
}

/**
 * The real answer, made at least `bytes` long: padding goes into each
 * entry's Service.Meta (so the peers stay the same and the JSON stays valid),
 * or into whitespace when there is no entry to carry it.
 */
function hugeJson(result: unknown, bytes: number): Buffer {
  const entries = Array.isArray(result) ? (result as Array<Record<string, unknown>>) : [];
  if (entries.length === 0) {
    const text = JSON.stringify(result);
    return Buffer.from(text.slice(0, 1) + " ".repeat(Math.max(0, bytes - text.length)) + text.slice(1));
  }
  const pad = "x".repeat(Math.ceil(bytes / entries.length));
  const padded = entries.map((e) => {
    const copy = structuredClone(e);
    const svc = copy.Service as Record<string, unknown>;
    svc.Meta = { ...(svc.Meta as Record<string, string>), padding: pad };
    return copy;
  });
  return Buffer.from(JSON.stringify(padded));
}

/**
 * Health entries that are valid JSON but not what Consul sends: each variant
 * shows one defect, applied to a real entry in turn (or to a placeholder on
 * 127.0.0.1 when there is none). With `mixed`, the real entries come first.
 */
function spoil(q: Query, kind: "wrongTypes" | "missingFields", mixed: boolean): unknown {
  const entries = q.result() as Array<Record<string, unknown>>;
  const base = entries.length > 0 ? entries : [placeholder(q.service as string)];
  type Edit = (e: Record<string, unknown>) => void;
  const svcOf = (e: Record<string, unknown>) => e.Service as Record<string, unknown>;
  const nodeOf = (e: Record<string, unknown>) => e.Node as Record<string, unknown>;
  const edits: Edit[] =
    kind === "wrongTypes"
      ? [
          (e) => (svcOf(e).Port = String(svcOf(e).Port)),
          (e) => {
            svcOf(e).Address = 2130706433;
            nodeOf(e).Address = 2130706433;
          },
          (e) => (svcOf(e).Weights = { Passing: "10", Warning: true }),
          (e) => (svcOf(e).Tags = "primary"),
          (e) => (e.Service = "not-an-object"),
          (e) => (svcOf(e).Port = null),
        ]
      : [
          (e) => delete e.Service,
          (e) => delete svcOf(e).Port,
          (e) => (svcOf(e).Port = 0),
          (e) => {
            delete svcOf(e).Address;
            delete nodeOf(e).Address;
          },
          (e) => {
            delete e.Node;
            svcOf(e).Address = "";
          },
          (e) => delete e.Checks,
        ];
  const bad = edits.map((edit, n) => {
    const copy = structuredClone(base[n % base.length] as Record<string, unknown>);
    edit(copy);
    return copy;
  });
  return mixed ? [...entries, ...bad] : bad;
}

function placeholder(name: string): Record<string, unknown> {
  return {
    Node: { ID: nodeId("node1"), Node: "node1", Address: "127.0.0.1" },
    Service: { ID: name, Service: name, Tags: [], Address: "127.0.0.1", Port: 9, Weights: { Passing: 1, Warning: 1 } },
    Checks: [],
  };
}
