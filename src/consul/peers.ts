/**
 * Consul's /v1/health/service entries -> peers the runtime can balance to,
 * with the same rules as the Lua watcher (templates/lua/gen_lb/discovery.lua,
 * parse_entry): Service.Address, else Node.Address; an IP literal only
 * (balancer.set_current_peer takes nothing else); Port 1-65535;
 * Weights.Passing as the weight; the same address:port twice is one peer.
 * Pure: no I/O.
 */
import { isIP } from "node:net";
import { canonicalIp } from "../spec/address.js";

export interface Peer {
  host: string;
  port: number;
  weight: number;
}

export interface RejectedEntry {
  /** Service.ID, or "?" */
  id: string;
  /** The address as Consul gave it (clipped), when there was one. */
  address?: string;
  why: string;
}

export interface ParsedEntries {
  peers: Peer[];
  rejected: RejectedEntry[];
  total: number;
}

const clip = (s: string) => (s.length > 60 ? `${s.slice(0, 60)}…` : s);

/** Host names: taken as peers the runtime resolves (OpenResty with nginx.http.resolver), or refused. */
export interface EntryOptions {
  /** The runtime resolves host-name Addresses (lua-resty-dns and a resolver); without it they are refused. */
  resolvesNames?: boolean;
}

/** Why `addr` is not a usable peer address, or undefined when it is one. */
export function peerAddressProblem(addr: string, opts: EntryOptions = {}): string | undefined {
  // The runtime's own test (peers.valid_ip) takes no zone index, nor brackets.
  if (isIP(addr) !== 0 && !addr.includes("%")) return undefined;
  if (addr.includes("%")) return "is an IPv6 address with a zone index (%...), which the runtime cannot use";
  const withPort = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(addr);
  if (withPort) {
    const host = withPort[1] ?? withPort[2]!;
    return isIP(host) !== 0
      ? "carries a port: Consul's Address takes the IP alone (the port goes in Port)"
      : "is a host name with a port: the runtime needs an IP literal, and the port goes in Port";
  }
  if (/^\[[0-9A-Fa-f:.]+\]$/.test(addr) && isIP(addr.slice(1, -1)) === 6) return "is an IPv6 address in brackets: register it without them";
  if (/^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/.test(addr) && !/^[\d.]+$/.test(addr)) {
    if (opts.resolvesNames) return undefined;
    return "is a host name, which the runtime resolves only on target openresty with nginx.http.resolver set (register the instance's IP, or set both)";
  }
  return "is not an IP address";
}

function describe(v: unknown): string {
  if (v === undefined) return "missing";
  if (v === null) return "null";
  if (typeof v === "string") return JSON.stringify(clip(v));
  if (typeof v === "number" || typeof v === "boolean") return `${typeof v} ${String(v)}`;
  return Array.isArray(v) ? "an array" : `a ${typeof v}`;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function parseEntry(e: unknown, opts: EntryOptions): { peer: Peer } | { rejected: RejectedEntry } {
  if (!isRecord(e)) return { rejected: { id: "?", why: `entry is ${describe(e)}` } };
  const svc = e.Service;
  if (!isRecord(svc)) return { rejected: { id: "?", why: `Service is ${describe(svc)}` } };
  const id = typeof svc.ID === "string" ? clip(svc.ID) : "?";
  let addr: unknown = svc.Address;
  if (addr === undefined || addr === null || addr === "") {
    addr = isRecord(e.Node) ? e.Node.Address : undefined;
    if (addr === undefined || addr === null || addr === "") return { rejected: { id, why: "no Service.Address and no Node.Address" } };
  }
  if (typeof addr !== "string") return { rejected: { id, why: `address is ${describe(addr)}` } };
  const problem = peerAddressProblem(addr, opts);
  if (problem) return { rejected: { id, address: clip(addr), why: `address ${JSON.stringify(clip(addr))} ${problem}` } };
  const port = svc.Port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) return { rejected: { id, address: addr, why: `Port is ${describe(port)}` } };
  const passing = isRecord(svc.Weights) ? svc.Weights.Passing : undefined;
  const weight = typeof passing === "number" && Number.isInteger(passing) && passing >= 1 ? passing : 1;
  // One backend, one peer: "::1" and "0:0::1", "::ffff:10.0.0.1" and "10.0.0.1" as the runtime keys them (peers_address.lua).
  return { peer: { host: canonicalIp(addr) ?? addr, port, weight } };
}

/** A decoded health answer -> peers (deduplicated, in Consul's order) and the entries that are not usable, with why. */
export function parseHealthEntries(doc: unknown, opts: EntryOptions = {}): ParsedEntries {
  if (!Array.isArray(doc)) return { peers: [], rejected: [{ id: "?", why: `answer is ${describe(doc)}, not a JSON array` }], total: 0 };
  const peers: Peer[] = [];
  const byId = new Map<string, Peer>();
  const rejected: RejectedEntry[] = [];
  for (const e of doc) {
    const r = parseEntry(e, opts);
    if ("rejected" in r) {
      rejected.push(r.rejected);
      continue;
    }
    const key = peerId(r.peer);
    const prev = byId.get(key);
    if (prev) prev.weight = Math.max(prev.weight, r.peer.weight);
    else {
      byId.set(key, r.peer);
      peers.push(r.peer);
    }
  }
  return { peers, rejected, total: doc.length };
}

export function peerId(p: { host: string; port: number }): string {
  return p.host.includes(":") ? `[${p.host}]:${p.port}` : `${p.host}:${p.port}`;
}
