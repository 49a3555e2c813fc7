/**
 * The runtime's dump file (templates/lua/gen_lb/dump.lua), read and rendered
 * in TypeScript so that install can seed it before a reload. The format is
 * the runtime's, unchanged:
 *
 *   {"format":1,"generator":"...","build_id":"...","written_at":<epoch s>,
 *    "upstreams":{"NAME":{"key":"service|dc|tag,tag","index":N,
 *                         "peers":[["host",port,weight],...]}}}
 *
 * init_by_lua (discovery.seed) takes an upstream's list when its key matches
 * the upstream's service key and the list is not empty. Pure: no I/O.
 */
import path from "node:path";
import type { Spec, Upstream } from "../spec/schema.js";
import { peerId, type Peer } from "./peers.js";

export const DUMP_FORMAT = 1;

export interface DumpUpstream {
  key: string;
  index: number;
  peers: Peer[];
}

export interface DumpDoc {
  generator: string;
  buildId: string;
  /** Epoch seconds. */
  writtenAt: number;
  upstreams: Record<string, DumpUpstream>;
}

/** The key discovery.lua's service_key() gives: "service|datacenter|sorted,tags". */
export function serviceKey(up: Pick<Upstream, "service" | "tags" | "datacenter">, spec: Pick<Spec, "consul">): string {
  const dc = up.datacenter ?? spec.consul.datacenter ?? "";
  return `${up.service}|${dc}|${[...up.tags].sort(byteOrder).join(",")}`;
}

// Lua compares strings byte by byte; spec names are ASCII, where code units are bytes.
function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Where the runtime reads the dump: consul.dump_file, relative to the prefix. */
export function dumpPath(prefix: string, spec: Pick<Spec, "consul">): string {
  return path.resolve(prefix, spec.consul.dump_file);
}

/** Peers in the runtime's canonical order (host, then port), as peers.canonical writes them. */
function canonical(peers: readonly Peer[]): Peer[] {
  return [...peers].sort((a, b) => (a.host !== b.host ? byteOrder(a.host, b.host) : a.port - b.port));
}

export function renderDump(doc: DumpDoc): string {
  const names = Object.keys(doc.upstreams).sort(byteOrder);
  const parts = names.map((name) => {
    const u = doc.upstreams[name]!;
    const peers = canonical(u.peers).map((p) => `[${JSON.stringify(p.host)},${p.port},${p.weight}]`).join(",");
    return `${JSON.stringify(name)}:{"key":${JSON.stringify(u.key)},"index":${Math.max(0, Math.floor(u.index))},"peers":[${peers}]}`;
  });
  return `{"format":${DUMP_FORMAT},"generator":${JSON.stringify(doc.generator)},"build_id":${JSON.stringify(doc.buildId)},"written_at":${doc.writtenAt},"upstreams":{${parts.join(",")}}}\n`;
}

/** A dump's upstreams, or why the text is not one (the runtime ignores such a file too). */
export function parseDump(text: string): { upstreams: Record<string, DumpUpstream> } | { problem: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    return { problem: `not JSON (${(error as Error).message})` };
  }
  const d = doc as { format?: unknown; upstreams?: unknown };
  if (typeof doc !== "object" || doc === null || d.format !== DUMP_FORMAT || typeof d.upstreams !== "object" || d.upstreams === null) {
    return { problem: `not a gen-lb dump (format ${DUMP_FORMAT})` };
  }
  const out: Record<string, DumpUpstream> = {};
  for (const [name, u] of Object.entries(d.upstreams as Record<string, unknown>)) {
    const rec = u as { key?: unknown; index?: unknown; peers?: unknown };
    if (typeof rec !== "object" || rec === null || !Array.isArray(rec.peers)) continue;
    const seen = new Set<string>();
    const peers: Peer[] = [];
    for (const p of rec.peers as unknown[]) {
      if (!Array.isArray(p) || typeof p[0] !== "string" || typeof p[1] !== "number") continue;
      const peer = { host: p[0], port: p[1], weight: typeof p[2] === "number" && p[2] >= 1 ? p[2] : 1 };
      if (seen.has(peerId(peer))) continue;
      seen.add(peerId(peer));
      peers.push(peer);
    }
    out[name] = { key: typeof rec.key === "string" ? rec.key : "", index: Number(rec.index) || 0, peers };
  }
  return { upstreams: out };
}
