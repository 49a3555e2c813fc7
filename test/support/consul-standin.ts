/**
 * A stand-in for the part of Consul's HTTP API that gen-lb's runtime uses, for
 * tests and benchmarks on a machine where no Consul server can be installed.
 *
 * It models one datacenter whose agent (node "node1" by default) also is the
 * leader. What it keeps faithful, because the generated Lua depends on it:
 * - the JSON shapes of /v1/health/service, /v1/catalog/service and
 *   /v1/catalog/services, and the agent's register/deregister bodies;
 * - blocking queries: a raft-like index bumped on every write, per-service
 *   indexes (including Consul's "last extinction" index for services that no
 *   longer exist), index/wait semantics, wait clamping and wait/16 jitter;
 * - ACL token handling and Consul's error texts;
 * and on top of that it can misbehave on demand (fault injection) and tells
 * tests what it saw (request log, blocked queries per service).
 *
 * Deliberate differences from Consul, each because the stand-in runs no checks:
 * a check registered without a Status starts "passing" (Consul starts it
 * "critical" until it first runs); check definitions are stored, never run.
 * `filter`, `near`, `node-meta`, `ns`, `consistent`/`stale` are accepted and
 * ignored.
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
  | "missingFields";

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
  /** The agent's own node: where /v1/agent/service/register puts services. */
  nodeName?: string;
  nodeAddress?: string;
  port?: number;
}

/** A service registration as Consul's agent endpoint takes it. */
export interface ServiceDefinition {
  ID?: string;
  Name: string;
  Tags?: string[];
  Address?: string;
  Port?: number;
  Meta?: Record<string, string>;
  Weights?: { Passing?: number; Warning?: number };
  EnableTagOverride?: boolean;
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
  [other: string]: unknown;
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
// The catalog model.

interface NodeRec {
  id: string;
  name: string;
  address: string;
  serf: HealthStatus;
  createIndex: number;
  modifyIndex: number;
  serfModifyIndex: number;
}

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
  node: string;
  id: string;
  name: string;
  tags: string[];
  address: string;
  port: number;
  meta: Record<string, string>;
  weights: { Passing: number; Warning: number };
  enableTagOverride: boolean;
  createIndex: number;
  modifyIndex: number;
  checks: CheckRec[];
}

/** A registration after validation: what the model stores, minus indexes. */
interface ParsedService {
  id: string;
  name: string;
  tags: string[];
  address: string;
  port: number;
  meta: Record<string, string>;
  weights: { Passing: number; Warning: number };
  enableTagOverride: boolean;
  checks: Array<Omit<CheckRec, "createIndex" | "modifyIndex" | "status"> & { status?: HealthStatus }>;
}

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

// --- Decoding registrations the way Go's encoding/json does: keys match
// case-insensitively (Consul also accepts snake_case aliases), types do not
// bend, and the error names the Go field.

function field(obj: Record<string, unknown>, name: string): unknown {
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(obj)) {
    if (k.replace(/_/g, "").toLowerCase() === want) return v;
  }
  return undefined;
}

function jsonType(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (v === null) return "null";
  return typeof v === "object" ? "object" : typeof v;
}

function decodeError(v: unknown, where: string, goType: string): HttpError {
  return new HttpError(
    400,
    `Request decode failed: json: cannot unmarshal ${jsonType(v)} into Go struct field ${where} of type ${goType}`,
  );
}

function optString(obj: Record<string, unknown>, name: string, where: string): string | undefined {
  const v = field(obj, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw decodeError(v, `${where}.${name}`, "string");
  return v;
}

function optInt(obj: Record<string, unknown>, name: string, where: string): number | undefined {
  const v = field(obj, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v)) throw decodeError(v, `${where}.${name}`, "int");
  return v;
}

function optObject(v: unknown, where: string, goType: string): Record<string, unknown> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw decodeError(v, where, goType);
  return v as Record<string, unknown>;
}

const CHECK_KINDS: Array<[string, string]> = [
  ["HTTP", "http"],
  ["TCP", "tcp"],
  ["UDP", "udp"],
  ["GRPC", "grpc"],
  ["H2PING", "h2ping"],
  ["Args", "script"],
  ["ScriptArgs", "script"],
  ["TTL", "ttl"],
  ["AliasService", "alias"],
  ["AliasNode", "alias"],
];

function parseCheck(raw: unknown, serviceId: string, serviceName: string, ordinal: number | undefined, where: string) {
  const c = optObject(raw, where, "structs.CheckType") ?? {};
  const status = optString(c, "Status", where);
  if (status !== undefined && status !== "" && !STATUSES.includes(status)) {
    throw new HttpError(400, "Status for checks must 'passing', 'warning', 'critical'");
  }
  const kind = CHECK_KINDS.find(([k]) => {
    const v = field(c, k);
    return v !== undefined && v !== null && v !== "" && !(Array.isArray(v) && v.length === 0);
  });
  const interval = optString(c, "Interval", where) ?? "";
  const ttl = optString(c, "TTL", where) ?? "";
  const type = kind?.[1] ?? "";
  const needsInterval = ["http", "tcp", "udp", "grpc", "h2ping", "script"].includes(type);
  if (needsInterval && !((parseGoDuration(interval) ?? 0) > 0)) {
    throw new HttpError(400, "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks");
  }
  if (type === "" || (type === "ttl" && !((parseGoDuration(ttl) ?? 0) > 0))) {
    throw new HttpError(400, "Invalid check: TTL must be > 0 for TTL checks");
  }
  const suffix = ordinal === undefined ? "" : `:${ordinal}`;
  return {
    checkId: optString(c, "CheckID", where) ?? optString(c, "ID", where) ?? `service:${serviceId}${suffix}`,
    name: optString(c, "Name", where) ?? `Service '${serviceName}' check`,
    status: status ? (status as HealthStatus) : undefined,
    notes: optString(c, "Notes", where) ?? "",
    type,
    interval: type === "ttl" ? "" : interval,
    timeout: optString(c, "Timeout", where) ?? "",
  };
}

/** Validates a register body; throws HttpError(400) with Consul's wording. */
function parseServiceDefinition(body: unknown): ParsedService {
  const where = "ServiceDefinition";
  const def = optObject(body, where, "structs.ServiceDefinition");
  if (!def) throw new HttpError(400, "Request decode failed: EOF");
  const name = optString(def, "Name", where) ?? "";
  if (name === "") throw new HttpError(400, "Missing service name");
  const id = optString(def, "ID", where) || name;

  const rawTags = field(def, "Tags");
  if (rawTags !== undefined && rawTags !== null && (!Array.isArray(rawTags) || rawTags.some((t) => typeof t !== "string"))) {
    throw decodeError(rawTags, `${where}.Tags`, "[]string");
  }
  const meta = optObject(field(def, "Meta"), `${where}.Meta`, "map[string]string") ?? {};
  for (const v of Object.values(meta)) {
    if (typeof v !== "string") throw decodeError(v, `${where}.Meta`, "string");
  }
  const port = optInt(def, "Port", where) ?? 0;
  if (port < 0 || port > 65535) throw new HttpError(400, `Invalid Port: ${port}`);

  // Consul's default when Weights is absent; a partial object keeps what it gives.
  const w = optObject(field(def, "Weights"), `${where}.Weights`, "structs.Weights");
  const weights = { Passing: 1, Warning: 1 };
  if (w) {
    weights.Passing = optInt(w, "Passing", `${where}.Weights`) ?? 1;
    weights.Warning = optInt(w, "Warning", `${where}.Weights`) ?? 1;
    if (weights.Passing < 1) throw new HttpError(400, "Invalid Weights: Passing must be greater than 0");
    if (weights.Warning < 0) throw new HttpError(400, "Invalid Weights: Warning must be greater or equal than 0");
  }

  const enableTagOverride = field(def, "EnableTagOverride");
  if (enableTagOverride !== undefined && enableTagOverride !== null && typeof enableTagOverride !== "boolean") {
    throw decodeError(enableTagOverride, `${where}.EnableTagOverride`, "bool");
  }

  const checks: ParsedService["checks"] = [];
  const one = field(def, "Check");
  // Consul ignores an empty Check object (what some clients send for "none").
  if (one !== undefined && one !== null && !(typeof one === "object" && Object.keys(one).length === 0)) {
    checks.push(parseCheck(one, id, name, undefined, `${where}.Check`));
  }
  const many = field(def, "Checks");
  if (many !== undefined && many !== null) {
    if (!Array.isArray(many)) throw decodeError(many, `${where}.Checks`, "structs.CheckTypes");
    // With several checks Consul numbers the generated IDs from 1.
    const numbered = checks.length + many.length > 1;
    many.forEach((c, i) => checks.push(parseCheck(c, id, name, numbered ? checks.length + 1 : undefined, `${where}.Checks[${i}]`)));
  }

  return {
    id,
    name,
    tags: (rawTags as string[] | undefined | null) ?? [],
    address: optString(def, "Address", where) ?? "",
    port,
    meta: meta as Record<string, string>,
    weights,
    enableTagOverride: enableTagOverride === true,
    checks,
  };
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

type QueryKind = "health" | "catalog" | "services";

/** One read endpoint's answer, recomputed each time a blocked query wakes. */
interface Query {
  kind: QueryKind;
  /** Wake-up key: the service name, or undefined for the service listing. */
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

const BODY_FAULTS: readonly FaultKind[] = ["garbage", "indexBackwards", "slowTrickle", "hugeBody", "wrongTypes", "missingFields"];

export class ConsulStandin {
  /** Every request received, in arrival order. */
  readonly requests: LoggedRequest[] = [];

  private readonly token: string | undefined;
  private readonly aclMissingToken: "forbid" | "filter";
  private readonly datacenter: string;
  private readonly agentNode: string;

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
  private readonly nodes = new Map<string, NodeRec>();
  private readonly instances = new Map<string, InstanceRec>();

  private readonly serviceWaiters = new Map<string, Set<Waiter>>();
  private readonly listWaiters = new Set<Waiter>();
  private faults: ActiveFault[] = [];
  private readonly hung = new Set<() => void>();
  /** Cleanups of blocked queries and trickles, run when the listener closes. */
  private readonly inFlight = new Set<() => void>();

  constructor(private readonly options: StandinOptions = {}) {
    this.token = options.token;
    this.aclMissingToken = options.aclMissingToken ?? "forbid";
    this.datacenter = options.datacenter ?? "dc1";
    this.agentNode = options.nodeName ?? "node1";
    // A fresh Consul server has its own node and the "consul" service.
    this.ensureNode(this.agentNode, options.nodeAddress ?? "127.0.0.1");
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

  /** The current raft index (the last write). */
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

  /** A node's address, when the node exists. */
  nodeAddress(node: string): string | undefined {
    return [...this.nodes.values()].find((n) => n.name.toLowerCase() === node.toLowerCase())?.address;
  }

  get index(): number {
    return this.raftIndex;
  }

  /** The X-Consul-Index a health or catalog query on this service would get now. */
  indexFor(service: string): number {
    return Math.max(1, this.serviceIndex.get(service) ?? (this.lastExtinction || this.raftIndex));
  }

  countRequests(filter?: RequestFilter): number {
    return this.requests.filter((r) => matchesFilter(r, filter)).length;
  }

  clearRequests(): void {
    this.requests.length = 0;
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
   * Spoils matching requests. "status500", "hang", "delay" and "close" apply to any
   * path; the others change the answer of the read endpoints (health, catalog)
   * and are answered at once, without blocking. Returns a function that
   * removes this fault.
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

  // --- test helpers beyond the HTTP API --------------------------------------

  /**
   * Registers (or updates) a service instance, by default on the agent's node,
   * as PUT /v1/agent/service/register does; `node` puts it on another node,
   * created with `nodeAddress` (or given that address) as needed. Returns the ID.
   */
  registerService(def: ServiceDefinition, where: { node?: string; nodeAddress?: string } = {}): string {
    return this.applyRegistration(where.node ?? this.agentNode, parseServiceDefinition(def), where.nodeAddress);
  }

  /** Removes an instance; false when there was none with that ID on the node. */
  deregisterService(serviceId: string, where: { node?: string } = {}): boolean {
    const node = where.node ?? this.agentNode;
    const inst = this.instances.get(instanceKey(node, serviceId));
    if (!inst) return false;
    const idx = this.nextIndex();
    this.instances.delete(instanceKey(node, serviceId));
    this.servicesTableIndex = idx;
    this.touchService(inst.name, idx);
    this.notify([inst.name], true);
    return true;
  }

  /**
   * Sets every check of an instance to `status` (adding a TTL-style check
   * when it has none), as a failing or recovering health check would.
   * Without `node`, looks on the agent's node first, then on any node.
   */
  setHealth(serviceId: string, status: HealthStatus, where: { node?: string } = {}): void {
    const inst = this.findInstance(serviceId, where.node);
    if (!inst) throw new Error(`no service instance with ID ${serviceId}`);
    if (inst.checks.length > 0 && inst.checks.every((c) => c.status === status)) return;
    const idx = this.nextIndex();
    if (inst.checks.length === 0) {
      inst.checks.push({
        checkId: `service:${inst.id}`,
        name: `Service '${inst.name}' check`,
        status,
        notes: "",
        type: "ttl",
        interval: "",
        timeout: "",
        createIndex: idx,
        modifyIndex: idx,
      });
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

  /** Sets a node's serfHealth check: "critical" is a node that left or died. */
  setNodeHealth(node: string, status: HealthStatus): void {
    const n = this.nodes.get(node);
    if (!n) throw new Error(`no node ${node}`);
    if (n.serf === status) return;
    const idx = this.nextIndex();
    n.serf = status;
    n.serfModifyIndex = idx;
    this.touchNodeServices(node, idx);
  }

  /** Changes a node's address (Node.Address, the fallback when Service.Address is empty). */
  setNodeAddress(node: string, address: string): void {
    const n = this.nodes.get(node);
    if (!n) throw new Error(`no node ${node}`);
    if (n.address === address) return;
    const idx = this.nextIndex();
    n.address = address;
    n.modifyIndex = idx;
    this.touchNodeServices(node, idx);
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

  private touchNodeServices(node: string, idx: number): void {
    const names = new Set([...this.instances.values()].filter((i) => i.node === node).map((i) => i.name));
    for (const name of names) this.touchService(name, idx);
    this.notify(names, false);
  }

  private ensureNode(name: string, address: string | undefined): void {
    const existing = this.nodes.get(name);
    if (existing) {
      if (address !== undefined && existing.address !== address) this.setNodeAddress(name, address);
      return;
    }
    const idx = this.nextIndex();
    this.nodes.set(name, {
      id: nodeId(name),
      name,
      address: address ?? "127.0.0.1",
      serf: "passing",
      createIndex: idx,
      modifyIndex: idx,
      serfModifyIndex: idx,
    });
  }

  private findInstance(serviceId: string, node: string | undefined): InstanceRec | undefined {
    if (node !== undefined) return this.instances.get(instanceKey(node, serviceId));
    return (
      this.instances.get(instanceKey(this.agentNode, serviceId)) ??
      [...this.instances.values()].find((i) => i.id === serviceId)
    );
  }

  private applyRegistration(node: string, svc: ParsedService, nodeAddress?: string): string {
    this.ensureNode(node, nodeAddress);
    const key = instanceKey(node, svc.id);
    const old = this.instances.get(key);
    const { checks: checkDefs, ...fields } = svc;
    // A check keeps its current status unless the registration names one.
    const checks = checkDefs.map((c) => {
      const prev = old?.checks.find((p) => p.checkId === c.checkId);
      return { ...c, status: c.status ?? prev?.status ?? "passing" };
    });
    const oldFields = old && {
      id: old.id,
      name: old.name,
      tags: old.tags,
      address: old.address,
      port: old.port,
      meta: old.meta,
      weights: old.weights,
      enableTagOverride: old.enableTagOverride,
    };
    const oldChecks = old?.checks.map(({ createIndex: _c, modifyIndex: _m, ...rest }) => rest);
    const serviceChanged = !old || !sameJson(oldFields, fields);
    const checksChanged = !old || !sameJson(oldChecks, checks);
    // Consul's agent does not write an identical registration again, so it
    // bumps no index and wakes no blocked query.
    if (!serviceChanged && !checksChanged) return svc.id;

    const idx = this.nextIndex();
    this.instances.set(key, {
      ...fields,
      node,
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
      .sort((a, b) => (a.node === b.node ? cmp(a.id, b.id) : cmp(a.node, b.node)));
  }

  private nodeJson(n: NodeRec): Record<string, unknown> {
    return {
      ID: n.id,
      Node: n.name,
      Address: n.address,
      Datacenter: this.datacenter,
      TaggedAddresses: taggedAddresses(n.address),
      Meta: { "consul-network-segment": "" },
      CreateIndex: n.createIndex,
      ModifyIndex: n.modifyIndex,
    };
  }

  private healthEntry(i: InstanceRec): Record<string, unknown> {
    const n = this.nodes.get(i.node) as NodeRec;
    const tagged = serviceTaggedAddresses(i.address, i.port);
    const serf = {
      Node: n.name,
      CheckID: "serfHealth",
      Name: "Serf Health Status",
      Status: n.serf,
      Notes: "",
      Output: n.serf === "passing" ? "Agent alive and reachable" : "Agent not live or unreachable",
      ServiceID: "",
      ServiceName: "",
      ServiceTags: [],
      Type: "",
      Interval: "",
      Timeout: "",
      ExposedPort: 0,
      Definition: {},
      CreateIndex: n.createIndex,
      ModifyIndex: n.serfModifyIndex,
    };
    return {
      Node: this.nodeJson(n),
      Service: {
        ID: i.id,
        Service: i.name,
        Tags: [...i.tags],
        Address: i.address,
        ...(tagged ? { TaggedAddresses: tagged } : {}),
        Meta: { ...i.meta },
        Port: i.port,
        Weights: { ...i.weights },
        EnableTagOverride: i.enableTagOverride,
        Proxy: { Mode: "", MeshGateway: {}, Expose: {} },
        Connect: {},
        PeerName: "",
        CreateIndex: i.createIndex,
        ModifyIndex: i.modifyIndex,
      },
      // Node checks come first, as Consul lists them.
      Checks: [
        serf,
        ...i.checks.map((c) => ({
          Node: n.name,
          CheckID: c.checkId,
          Name: c.name,
          Status: c.status,
          Notes: c.notes,
          Output: "",
          ServiceID: i.id,
          ServiceName: i.name,
          ServiceTags: [...i.tags],
          Type: c.type,
          Interval: c.interval,
          Timeout: c.timeout,
          ExposedPort: 0,
          Definition: {},
          CreateIndex: c.createIndex,
          ModifyIndex: c.modifyIndex,
        })),
      ],
    };
  }

  private catalogEntry(i: InstanceRec): Record<string, unknown> {
    const n = this.nodes.get(i.node) as NodeRec;
    const tagged = serviceTaggedAddresses(i.address, i.port);
    return {
      ID: n.id,
      Node: n.name,
      Address: n.address,
      Datacenter: this.datacenter,
      TaggedAddresses: taggedAddresses(n.address),
      NodeMeta: { "consul-network-segment": "" },
      ServiceKind: "",
      ServiceID: i.id,
      ServiceName: i.name,
      ServiceTags: [...i.tags],
      ServiceAddress: i.address,
      ...(tagged ? { ServiceTaggedAddresses: tagged } : {}),
      ServiceWeights: { ...i.weights },
      ServiceMeta: { ...i.meta },
      ServicePort: i.port,
      ServiceSocketPath: "",
      ServiceEnableTagOverride: i.enableTagOverride,
      ServiceProxy: { Mode: "", MeshGateway: {}, Expose: {} },
      ServiceConnect: {},
      CreateIndex: i.createIndex,
      ModifyIndex: i.modifyIndex,
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
        this.applyRegistration(this.agentNode, svc);
        res.writeHead(200).end();
      } else if ((m = /^\/v1\/agent\/service\/deregister\/(.*)$/.exec(path))) {
        allow("PUT");
        const id = decodeURIComponent(m[1] as string);
        const inst = this.instances.get(instanceKey(this.agentNode, id));
        this.checkAcl(req, res, url, "service:write", inst?.name ?? id);
        if (!this.deregisterService(id)) {
          throw new HttpError(404, `Unknown service ID "${id}". Ensure that the service ID is passed, not the service name.`);
        }
        res.writeHead(200).end();
      } else if ((m = /^\/v1\/(health|catalog)\/service\/(.*)$/.exec(path))) {
        allow("GET");
        const kind = m[1] === "health" ? "health" : "catalog";
        const service = decodeURIComponent(m[2] as string);
        if (service === "") throw new HttpError(400, "Missing service name");
        this.serveQuery(req, res, url, kind, service);
      } else if (path === "/v1/catalog/services") {
        allow("GET");
        this.serveQuery(req, res, url, "services", undefined);
      } else if (path === "/v1/status/leader") {
        // Consul asks no token here.
        allow("GET");
        sendJson(res, 200, "127.0.0.1:8300", {}, url);
      } else if (path === "/v1/status/peers") {
        allow("GET");
        sendJson(res, 200, ["127.0.0.1:8300"], {}, url);
      } else if (path === "/v1/agent/self") {
        allow("GET");
        this.checkAcl(req, res, url, "agent:read", this.agentNode);
        sendJson(res, 200, this.agentSelf(), {}, url);
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

  private agentSelf(): Record<string, unknown> {
    const n = this.nodes.get(this.agentNode) as NodeRec;
    return {
      Config: {
        Datacenter: this.datacenter,
        PrimaryDatacenter: this.datacenter,
        NodeName: n.name,
        NodeID: n.id,
        Server: true,
        Revision: "standin",
        Version: "1.20.0",
      },
      Member: { Name: n.name, Addr: n.address, Port: 8301, Tags: { dc: this.datacenter, role: "consul" }, Status: 1 },
      Meta: { "consul-network-segment": "" },
    };
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

  private serveQuery(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    kind: QueryKind,
    service: string | undefined,
  ): void {
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
    if (kind === "health" && params.has("passing")) {
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
      kind,
      service,
      filtered,
      index: () => (service === undefined ? Math.max(1, this.servicesTableIndex) : this.indexFor(service)),
      result: () => {
        if (kind === "services") return filtered ? {} : this.serviceList();
        if (filtered) return [];
        const found = this.instancesOf(service as string, tags);
        if (kind === "catalog") return found.map((i) => this.catalogEntry(i));
        const entries = found.map((i) => this.healthEntry(i));
        return passing ? entries.filter((e) => (e.Checks as Array<{ Status: string }>).every((c) => c.Status === "passing")) : entries;
      },
    };

    const fault = this.takeFault(url.pathname, true);
    if (fault) {
      this.answerWithFault(res, url, q, fault, minIndex);
      return;
    }
    if (minIndex === 0 || q.index() > minIndex) {
      this.answer(res, url, q);
      return;
    }
    this.block(res, url, q, minIndex, withJitter(waitMs));
  }

  private block(res: http.ServerResponse, url: URL, q: Query, minIndex: number, waitMs: number): void {
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
          this.answer(res, url, q);
        }
      },
    };
    const timer = setTimeout(() => {
      done();
      this.answer(res, url, q);
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

  private answer(res: http.ServerResponse, url: URL, q: Query): void {
    if (res.destroyed || res.headersSent) return;
    sendJson(res, 200, q.result(), this.queryHeaders(q, q.index()), url);
  }

  private answerWithFault(res: http.ServerResponse, url: URL, q: Query, fault: ActiveFault, clientIndex: number): void {
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
        sendJson(res, 200, q.result(), { ...headers, "X-Consul-Index": String(back) }, url);
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
        sendJson(res, 200, spoil(q, fault.kind, fault.mixed === true), headers, url);
        return;
      default:
        this.answer(res, url, q);
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

function instanceKey(node: string, id: string): string {
  return `${node}\u0000${id}`;
}

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

function sendJson(res: http.ServerResponse, status: number, value: unknown, headers: Record<string, string>, url: URL): void {
  // ?pretty indents with four spaces, as Consul does.
  const text = url.searchParams.has("pretty") ? JSON.stringify(value, null, 4) : JSON.stringify(value);
  send(res, status, "application/json", Buffer.from(text), headers);
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
    const svc = (copy.Service ?? copy) as Record<string, unknown>;
    const metaKey = "Service" in copy ? "Meta" : "ServiceMeta";
    svc[metaKey] = { ...(svc[metaKey] as Record<string, string>), padding: pad };
    return copy;
  });
  return Buffer.from(JSON.stringify(padded));
}

/**
 * Entries that are valid JSON but not what Consul sends: each variant shows
 * one defect, applied to a real entry in turn (or to a placeholder on
 * 127.0.0.1 when there is none). With `mixed`, the real entries come first.
 */
function spoil(q: Query, kind: "wrongTypes" | "missingFields", mixed: boolean): unknown {
  const real = q.result();
  if (q.kind === "services") {
    const list = real as Record<string, string[]>;
    if (kind === "missingFields") return mixed ? list : {};
    const bad = Object.fromEntries(Object.keys(list).map((k) => [k, 42]));
    return mixed ? { ...list, "bad-tags": "not-a-list" } : bad;
  }
  const entries = real as Array<Record<string, unknown>>;
  const base = entries.length > 0 ? entries : [placeholder(q)];
  type Edit = (e: Record<string, unknown>) => void;
  const svcOf = (e: Record<string, unknown>) => e.Service as Record<string, unknown>;
  const nodeOf = (e: Record<string, unknown>) => e.Node as Record<string, unknown>;
  const health = q.kind === "health";
  const edits: Edit[] =
    kind === "wrongTypes"
      ? health
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
            (e) => (e.ServicePort = String(e.ServicePort)),
            (e) => {
              e.ServiceAddress = 2130706433;
              e.Address = 2130706433;
            },
            (e) => (e.ServiceWeights = { Passing: "10", Warning: true }),
            (e) => (e.ServiceTags = "primary"),
            (e) => (e.ServicePort = null),
          ]
      : health
        ? [
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
          ]
        : [
            (e) => delete e.ServicePort,
            (e) => (e.ServicePort = 0),
            (e) => {
              delete e.ServiceAddress;
              delete e.Address;
            },
            (e) => delete e.ServiceID,
          ];
  const bad = edits.map((edit, n) => {
    const copy = structuredClone(base[n % base.length] as Record<string, unknown>);
    edit(copy);
    return copy;
  });
  return mixed ? [...entries, ...bad] : bad;
}

function placeholder(q: Query): Record<string, unknown> {
  const name = q.service ?? "service";
  const node = { ID: nodeId("node1"), Node: "node1", Address: "127.0.0.1" };
  if (q.kind === "catalog") {
    return { ...node, ServiceID: name, ServiceName: name, ServiceTags: [], ServiceAddress: "127.0.0.1", ServicePort: 9, ServiceWeights: { Passing: 1, Warning: 1 } };
  }
  return {
    Node: node,
    Service: { ID: name, Service: name, Tags: [], Address: "127.0.0.1", Port: 9, Weights: { Passing: 1, Warning: 1 } },
    Checks: [],
  };
}
