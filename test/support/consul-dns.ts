/**
 * A stand-in for the Consul agent's DNS interface (UDP), answering from the
 * same registrations the HTTP stand-in holds.
 *
 * What it answers, after Consul's DNS documentation:
 * - `[TAG.]NAME.service[.DC].consul` A/AAAA: the address of every instance
 *   that is not critical (Service.Address, else the node's), shuffled.
 * - `_NAME._TAG.service[.DC].consul` SRV (RFC 2782; TAG `tcp` filters on no
 *   tag) and `[TAG.]NAME.service[.DC].consul` SRV: priority 1, the weight
 *   Consul's Weights give the instance's state (Passing, or Warning: by
 *   default Consul's DNS serves warning instances too), the port, and a
 *   target `HEX.addr.DC.consul.` (a service address) or `NODE.node.DC.consul.`
 *   (the node's), with that target's address in the additional section.
 * - `HEX.addr.DC.consul` and `NODE.node[.DC].consul` A/AAAA, which is what a
 *   resolver such as nginx's asks next for each SRV target.
 * - TTL 0 everywhere (Consul's default), NXDOMAIN with the zone's SOA for a
 *   name that matches nothing (a service with no live instance included), NOERROR with no answers (and the SOA) for a
 *   known name without records of the asked type.
 * - Over UDP an answer is cut to fit 512 bytes (or the EDNS size the query
 *   offers) without setting TC, as Consul does.
 *
 * Faults: `mode = "silent"` drops every query (a dead agent), `"servfail"`
 * answers SERVFAIL.
 *
 * Beside Consul's zone, host names of a test's own (`setHost`): A/AAAA
 * records with a TTL of the test's choosing, so that the stand-in can serve
 * as nginx.http.resolver for names gen-lb resolves (fallback peers).
 */
import dgram from "node:dgram";
import net from "node:net";

/** One entry of /v1/health/service/NAME, in Consul's documented shape (the fields DNS needs). */
export interface HealthEntryLike {
  Node: { Node: string; Address: string; Datacenter?: string };
  Service: { ID: string; Service: string; Tags: string[] | null; Address: string; Port: number; Weights?: { Passing: number; Warning: number } };
  Checks: Array<{ Status: string }>;
}

/** Where the answers come from: normally the HTTP stand-in's model. */
export interface DnsSource {
  readonly datacenter: string;
  /** Health entries of a service (every instance, any state); undefined when no such service is registered. */
  healthEntries(service: string): HealthEntryLike[] | undefined;
  /** The address of a node, when the node exists. */
  nodeAddress(node: string): string | undefined;
}

export type DnsMode = "answer" | "silent" | "servfail";

export interface LoggedQuery {
  name: string;
  type: string;
  at: number;
}

const TYPE = { A: 1, NS: 2, SOA: 6, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 } as const;
const TYPE_NAME: Record<number, string> = Object.fromEntries(Object.entries(TYPE).map(([k, v]) => [v, k]));
const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;
const CLASS_IN = 1;

interface Question {
  name: string;
  type: number;
  class: number;
}

interface Record_ {
  name: string;
  type: number;
  data: Buffer;
  /** Seconds; Consul's 0 unless given. */
  ttl?: number;
}

interface Target {
  name: string;
  address: string;
}

interface Resolved {
  answers: Record_[];
  additional: Record_[];
}

/** `127.0.0.1` → `7f000001`, `::1` → 32 hex digits: Consul's `.addr.` label. */
export function addrLabel(ip: string): string {
  if (net.isIPv4(ip)) return ip.split(".").map((o) => Number(o).toString(16).padStart(2, "0")).join("");
  return ipv6Bytes(ip).toString("hex");
}

function labelAddr(label: string): string | undefined {
  if (/^[0-9a-f]{8}$/i.test(label)) return [0, 2, 4, 6].map((i) => parseInt(label.slice(i, i + 2), 16)).join(".");
  if (/^[0-9a-f]{32}$/i.test(label)) return label.toLowerCase().match(/.{4}/g)!.join(":");
  return undefined;
}

function ipv6Bytes(ip: string): Buffer {
  const [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g || "0", 16), i * 2));
  return out;
}

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, "").split(".").filter(Boolean);
  const bufs = parts.map((p) => {
    const b = Buffer.from(p, "ascii");
    return Buffer.concat([Buffer.from([b.length]), b]);
  });
  return Buffer.concat([...bufs, Buffer.from([0])]);
}

function readName(msg: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  for (let hops = 0; hops < 64; hops++) {
    const len = msg[pos];
    if (len === undefined) throw new Error("name runs past the message");
    if ((len & 0xc0) === 0xc0) {
      if (next < 0) next = pos + 2;
      pos = ((len & 0x3f) << 8) | msg[pos + 1]!;
      continue;
    }
    if (len === 0) return { name: labels.join("."), next: next < 0 ? pos + 1 : next };
    labels.push(msg.subarray(pos + 1, pos + 1 + len).toString("ascii"));
    pos += 1 + len;
  }
  throw new Error("name compression loop");
}

function record(name: string, type: number, data: Buffer): Record_ {
  return { name, type, data };
}

function addressRecord(name: string, ip: string): Record_ {
  return net.isIPv4(ip)
    ? record(name, TYPE.A, Buffer.from(ip.split(".").map(Number)))
    : record(name, TYPE.AAAA, ipv6Bytes(ip));
}

function encodeRecord(r: Record_, ttl: number): Buffer {
  const head = Buffer.alloc(10);
  head.writeUInt16BE(r.type, 0);
  head.writeUInt16BE(CLASS_IN, 2);
  head.writeUInt32BE(ttl, 4);
  head.writeUInt16BE(r.data.length, 8);
  return Buffer.concat([encodeName(r.name), head, r.data]);
}

function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export class ConsulDns {
  mode: DnsMode = "answer";
  readonly queries: LoggedQuery[] = [];
  private socket: dgram.Socket | undefined;
  private listenPort = 0;
  private readonly hosts = new Map<string, { addresses: string[]; ttl: number }>();

  constructor(
    private readonly source: DnsSource,
    private readonly domain = "consul",
  ) {}

  /** Listen on loopback (IPv4 unless `host` says otherwise); returns the port. */
  async start(port = 0, host = "127.0.0.1"): Promise<number> {
    const socket = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
    socket.on("message", (msg, rinfo) => this.onMessage(msg, rinfo));
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(port, host, () => resolve());
    });
    this.socket = socket;
    this.listenPort = socket.address().port;
    return this.listenPort;
  }

  get port(): number {
    return this.listenPort;
  }

  /** `127.0.0.1:PORT`, as nginx's `resolver` takes it. */
  get address(): string {
    return `127.0.0.1:${this.listenPort}`;
  }

  async stop(): Promise<void> {
    const s = this.socket;
    this.socket = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Answer A/AAAA for host name `name` (outside Consul's zone) with `addresses`, each with `ttl` seconds. */
  setHost(name: string, addresses: string[], ttl = 0): void {
    for (const a of addresses) if (!net.isIP(a)) throw new Error(`setHost ${name}: ${a} is not an IP address`);
    this.hosts.set(name.toLowerCase().replace(/\.$/, ""), { addresses, ttl });
  }

  /** Stop answering for `name` (NXDOMAIN from then on). */
  deleteHost(name: string): void {
    this.hosts.delete(name.toLowerCase().replace(/\.$/, ""));
  }

  countQueries(filter?: (q: LoggedQuery) => boolean): number {
    return filter ? this.queries.filter(filter).length : this.queries.length;
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    let reply: Buffer | undefined;
    try {
      reply = this.handle(msg);
    } catch {
      reply = undefined; // unparseable: a real agent drops it too
    }
    if (reply && this.socket) this.socket.send(reply, rinfo.port, rinfo.address);
  }

  /** The answer to one query message, or undefined to stay silent. */
  handle(msg: Buffer): Buffer | undefined {
    if (msg.length < 12) return undefined;
    const id = msg.readUInt16BE(0);
    const flags = msg.readUInt16BE(2);
    if (flags & 0x8000) return undefined; // a response, not a query
    const qdcount = msg.readUInt16BE(4);
    if (qdcount !== 1) return this.reply(id, flags, undefined, RCODE.NOTIMP, { answers: [], additional: [] }, false, 512);
    const { name, next } = readName(msg, 12);
    const question: Question = { name, type: msg.readUInt16BE(next), class: msg.readUInt16BE(next + 2) };
    const limit = this.udpLimit(msg, next + 4);
    this.queries.push({ name: name.toLowerCase(), type: TYPE_NAME[question.type] ?? String(question.type), at: Date.now() });
    if (this.mode === "silent") return undefined;
    if (this.mode === "servfail") return this.reply(id, flags, question, RCODE.SERVFAIL, { answers: [], additional: [] }, false, limit);
    const found = this.resolve(question);
    if (found === undefined) return this.reply(id, flags, question, RCODE.NXDOMAIN, { answers: [], additional: [] }, true, limit);
    return this.reply(id, flags, question, RCODE.NOERROR, found, found.answers.length === 0, limit);
  }

  /** The EDNS payload size a query offers, else 512. */
  private udpLimit(msg: Buffer, offset: number): number {
    const arcount = msg.readUInt16BE(10);
    if (arcount === 0 || offset >= msg.length) return 512;
    try {
      const { next } = readName(msg, offset);
      if (msg.readUInt16BE(next) === TYPE.OPT) return Math.max(512, msg.readUInt16BE(next + 2));
    } catch {
      /* no usable OPT record */
    }
    return 512;
  }

  /** Records for a question, or undefined when the name matches nothing (NXDOMAIN). */
  private resolve(q: Question): Resolved | undefined {
    const host = this.hosts.get(q.name.toLowerCase().replace(/\.$/, ""));
    if (host !== undefined) {
      const wanted = host.addresses.filter((ip) => (net.isIPv4(ip) ? q.type === TYPE.A : q.type === TYPE.AAAA) || q.type === TYPE.ANY);
      return { answers: wanted.map((ip) => ({ ...addressRecord(q.name, ip), ttl: host.ttl })), additional: [] };
    }
    const labels = q.name.toLowerCase().replace(/\.$/, "").split(".");
    if (labels.at(-1) !== this.domain) return undefined;
    const rest = labels.slice(0, -1);
    const dc = this.source.datacenter.toLowerCase();
    // After the kind label comes nothing (this datacenter), `DC`, or `DC.dc`.
    const dcOk = (after: string[]): boolean =>
      after.length === 0 || (after[0] === dc && (after.length === 1 || (after.length === 2 && after[1] === "dc")));

    const addrAt = rest.indexOf("addr");
    if (addrAt === 1) {
      const ip = labelAddr(rest[0]!);
      if (ip === undefined || !dcOk(rest.slice(2))) return undefined;
      return this.addressAnswer(q, q.name, ip);
    }
    const nodeAt = rest.lastIndexOf("node");
    if (nodeAt >= 1 && dcOk(rest.slice(nodeAt + 1))) {
      const ip = this.source.nodeAddress(rest.slice(0, nodeAt).join("."));
      return ip === undefined ? undefined : this.addressAnswer(q, q.name, ip);
    }
    const serviceAt = rest.lastIndexOf("service");
    if (serviceAt < 1 || !dcOk(rest.slice(serviceAt + 1))) return undefined;
    const head = rest.slice(0, serviceAt);
    let service: string;
    let tag: string | undefined;
    if (head.length === 2 && head[0]!.startsWith("_") && head[1]!.startsWith("_")) {
      service = head[0]!.slice(1);
      tag = head[1] === "_tcp" ? undefined : head[1]!.slice(1);
    } else if (head.length === 1) {
      service = head[0]!;
    } else if (head.length === 2) {
      [tag, service] = head as [string, string];
    } else {
      return undefined;
    }
    const entries = this.source.healthEntries(service);
    if (entries === undefined) return undefined;
    const live = shuffle(
      entries.filter(
        (e) =>
          e.Checks.every((c) => c.Status !== "critical") &&
          (tag === undefined || (e.Service.Tags ?? []).some((t) => t.toLowerCase() === tag)),
      ),
    );
    // Consul answers NXDOMAIN when no instance survives the health and tag filters.
    if (live.length === 0) return undefined;
    const answers: Record_[] = [];
    const additional: Record_[] = [];
    for (const e of live) {
      const fromService = e.Service.Address !== "";
      const ip = fromService ? e.Service.Address : e.Node.Address;
      if (!net.isIP(ip)) continue;
      if (q.type === TYPE.SRV || q.type === TYPE.ANY) {
        const warning = e.Checks.some((c) => c.Status === "warning");
        const weights = e.Service.Weights ?? { Passing: 1, Warning: 1 };
        const weight = warning ? weights.Warning : weights.Passing;
        const target: Target = fromService
          ? { name: `${addrLabel(ip)}.addr.${dc}.${this.domain}`, address: ip }
          : { name: `${e.Node.Node.toLowerCase()}.node.${dc}.${this.domain}`, address: ip };
        const data = Buffer.alloc(6);
        data.writeUInt16BE(1, 0);
        data.writeUInt16BE(weight, 2);
        data.writeUInt16BE(e.Service.Port, 4);
        answers.push(record(q.name, TYPE.SRV, Buffer.concat([data, encodeName(target.name)])));
        additional.push(addressRecord(target.name, target.address));
      } else if (q.type === TYPE.A || q.type === TYPE.AAAA) {
        if ((q.type === TYPE.A) === net.isIPv4(ip)) answers.push(addressRecord(q.name, ip));
      }
    }
    return { answers, additional };
  }

  private addressAnswer(q: Question, name: string, ip: string): Resolved {
    const wantsA = q.type === TYPE.A || q.type === TYPE.ANY;
    const wantsAAAA = q.type === TYPE.AAAA || q.type === TYPE.ANY;
    const fits = net.isIPv4(ip) ? wantsA : wantsAAAA;
    return { answers: fits ? [addressRecord(name, ip)] : [], additional: [] };
  }

  private soa(): Record_ {
    const times = Buffer.alloc(20);
    times.writeUInt32BE(Math.floor(Date.now() / 1000) >>> 0, 0); // serial
    times.writeUInt32BE(3600, 4); // refresh
    times.writeUInt32BE(600, 8); // retry
    times.writeUInt32BE(86400, 12); // expire
    times.writeUInt32BE(0, 16); // negative TTL: Consul's default soa.min_ttl
    return record(this.domain, TYPE.SOA, Buffer.concat([encodeName(`ns.${this.domain}`), encodeName(`hostmaster.${this.domain}`), times]));
  }

  private reply(
    id: number,
    queryFlags: number,
    q: Question | undefined,
    rcode: number,
    found: Resolved,
    withSoa: boolean,
    limit: number,
  ): Buffer {
    const flags = 0x8000 | (queryFlags & 0x7800) | 0x0400 | (queryFlags & 0x0100) | rcode; // QR, opcode, AA, RD
    const question = q
      ? Buffer.concat([encodeName(q.name), Buffer.from([q.type >> 8, q.type & 0xff, q.class >> 8, q.class & 0xff])])
      : Buffer.alloc(0);
    const authority = withSoa ? [encodeRecord(this.soa(), 0)] : [];
    let answers = found.answers.map((r) => encodeRecord(r, r.ttl ?? 0));
    let additional = found.additional.map((r) => encodeRecord(r, r.ttl ?? 0));
    const size = (): number =>
      12 + question.length + [...answers, ...authority, ...additional].reduce((n, b) => n + b.length, 0);
    // Consul cuts UDP answers to fit without setting TC: drop additional
    // records first, then answers, keeping SRV and its address together.
    while (size() > limit && additional.length > 0 && additional.length >= answers.length) additional = additional.slice(0, -1);
    while (size() > limit && answers.length > 0) {
      answers = answers.slice(0, -1);
      additional = additional.slice(0, Math.min(additional.length, answers.length));
    }
    const header = Buffer.alloc(12);
    header.writeUInt16BE(id, 0);
    header.writeUInt16BE(flags, 2);
    header.writeUInt16BE(q ? 1 : 0, 4);
    header.writeUInt16BE(answers.length, 6);
    header.writeUInt16BE(authority.length, 8);
    header.writeUInt16BE(additional.length, 10);
    return Buffer.concat([header, question, ...answers, ...authority, ...additional]);
  }
}

/** The HTTP stand-in's model as a DNS source (structural, so the two modules stay independent). */
export function dnsSourceOf(standin: {
  readonly dc: string;
  healthEntries(service: string): Array<Record<string, unknown>> | undefined;
  nodeAddress(node: string): string | undefined;
}): DnsSource {
  return {
    datacenter: standin.dc,
    healthEntries: (service) => standin.healthEntries(service) as HealthEntryLike[] | undefined,
    nodeAddress: (node) => standin.nodeAddress(node),
  };
}
