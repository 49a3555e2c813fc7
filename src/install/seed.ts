/**
 * install's seeding step: right before the reload, read every upstream's
 * passing instances from Consul (through the adapter) and write them into the
 * runtime's dump file, so the new workers start with real peers instead of
 * answering 502 until their own first Consul answer arrives (a fresh prefix,
 * a slow Consul).
 *
 * What Consul does not answer for keeps what the existing dump holds for it;
 * with nothing there the runtime starts from the upstream's fallback peers, or
 * none. Seeding never fails an install: every outcome is a line saying what
 * the new workers start with.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { consulTargetOf, createConsulAdapter, type ConsulAdapter } from "../consul/client.js";
import { dumpPath, parseDump, renderDump, serviceKey, type DumpUpstream } from "../consul/dump.js";
import { isIP } from "node:net";
import { parseHealthEntries } from "../consul/peers.js";
import { runtimeResolvesNames } from "../spec/features.js";
import type { Spec } from "../spec/schema.js";
import { writeFileAtomic } from "../util/files.js";
import { consulUpstreamEntries } from "../spec/upstream-checks.js";

export type SeedSource = "consul" | "dump" | "fallback" | "none";

export interface SeedUpstream {
  name: string;
  /** Where the new workers' first peers come from. */
  source: SeedSource;
  peers: number;
  /** Why Consul's answer was not used, when it was not. */
  problem?: string;
}

export interface SeedReport {
  /** The dump file (absolute). */
  path: string;
  /** Whether the file was (re)written. */
  written: boolean;
  upstreams: SeedUpstream[];
  /** One line per upstream, for humans. */
  lines: string[];
}

export interface SeedDeps {
  consul: ConsulAdapter;
  /** Epoch milliseconds. */
  now?: () => number;
  readFile?: (file: string) => Promise<string>;
  writeFile?: (file: string, contents: string) => Promise<void>;
}

export const SEED_GENERATOR = "gen-lb install";

/**
 * The seam install calls after its swap and before it signals the master.
 * Undefined when the spec has no Consul upstream (nothing asked, nothing written).
 */
export async function seedPeerDump(input: { prefix: string; spec: Spec; buildId: string }, deps: SeedDeps): Promise<SeedReport | undefined> {
  const { prefix, spec } = input;
  const ups = consulUpstreamEntries(spec);
  if (ups.length === 0) return undefined;

  const file = dumpPath(prefix, spec);
  const shown = path.relative(prefix, file) || file;
  const existing: Record<string, DumpUpstream> = {};
  let existingProblem: string | undefined;
  try {
    const parsed = parseDump(await (deps.readFile ?? ((f) => readFile(f, "utf8")))(file));
    if ("problem" in parsed) existingProblem = parsed.problem;
    else Object.assign(existing, parsed.upstreams);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") existingProblem = (error as Error).message;
  }

  const answers = await Promise.all(ups.map(([, up]) => deps.consul.healthService({ service: up.service, tags: up.tags, datacenter: up.datacenter }, { passing: true })));
  const next: Record<string, DumpUpstream> = { ...existing };
  const upstreams: SeedUpstream[] = [];
  const lines: string[] = [];
  let fromConsul = 0;
  ups.forEach(([name, up], i) => {
    const a = answers[i]!;
    const key = serviceKey(up, spec);
    let problem: string;
    if (a.ok) {
      const parsed = parseHealthEntries(a.value, { resolvesNames: runtimeResolvesNames(spec) });
      // The dump holds IP literals only (dump.lua): a host name the runtime resolves is left to it.
      const names = parsed.peers.filter((p) => isIP(p.host) === 0);
      parsed.peers = parsed.peers.filter((p) => isIP(p.host) !== 0);
      const bad =
        (parsed.rejected.length > 0 ? `; ${parsed.rejected.length} instance(s) left out: ${parsed.rejected.map((r) => `${r.id}: ${r.why}`).join("; ")}` : "") +
        (names.length > 0 ? `; ${names.length} host name(s) not seeded, resolved by the runtime after the start: ${names.map((p) => p.host).join(", ")}` : "");
      if (parsed.peers.length > 0) {
        next[name] = { key, index: a.index, peers: parsed.peers };
        fromConsul++;
        upstreams.push({ name, source: "consul", peers: parsed.peers.length });
        lines.push(`upstream ${name}: ${parsed.peers.length} passing peer(s) of service ${up.service} from ${a.address}, seeded into ${shown}${bad}`);
        return;
      }
      problem = `Consul (${a.address}) lists no usable passing instance of service ${up.service}${a.filtered ? " (results filtered by ACLs: the token may lack service:read)" : ""}${bad}`;
    } else {
      problem = a.kind === "unreachable" ? `Consul cannot be reached (${a.message})` : a.kind === "forbidden" ? `Consul refused the token (ACL): ${a.message}` : `Consul answered ${a.message}`;
    }
    const kept = existing[name];
    if (kept && kept.key === key && kept.peers.length > 0) {
      upstreams.push({ name, source: "dump", peers: kept.peers.length, problem });
      lines.push(`upstream ${name}: ${problem}; it starts with the ${kept.peers.length} peer(s) already in ${shown}`);
    } else if (up.fallback.length > 0) {
      delete next[name];
      upstreams.push({ name, source: "fallback", peers: up.fallback.length, problem });
      lines.push(`upstream ${name}: ${problem}; it starts with its ${up.fallback.length} fallback peer(s)`);
    } else {
      upstreams.push({ name, source: "none", peers: 0, problem });
      lines.push(`upstream ${name}: ${problem}; it has no peers until Consul answers the new workers (requests get 502 meanwhile)`);
    }
  });
  if (existingProblem) lines.push(`${shown} was not a usable dump (${existingProblem})${fromConsul > 0 ? "; replaced" : "; left as it was"}`);

  let written = false;
  if (fromConsul > 0) {
    const doc = renderDump({ generator: SEED_GENERATOR, buildId: input.buildId, writtenAt: Math.round((deps.now ?? Date.now)()) / 1000, upstreams: next });
    try {
      await (deps.writeFile ?? writeFileAtomic)(file, doc);
      written = true;
    } catch (error) {
      lines.push(`cannot write ${shown}: ${(error as Error).message}; the new workers start without the seeded peers`);
      for (const u of upstreams) if (u.source === "consul") u.source = "none";
    }
  }
  return { path: file, written, upstreams, lines };
}

/** seedPeerDump with the real adapter for the spec's Consul (token from `env`), closed afterwards. */
export async function seedFromConsul(prefix: string, spec: Spec, buildId: string, env: NodeJS.ProcessEnv): Promise<SeedReport | undefined> {
  const consul = createConsulAdapter(consulTargetOf(spec, env, path.join(prefix, "conf")));
  try {
    return await seedPeerDump({ prefix, spec, buildId }, { consul });
  } finally {
    consul.close();
  }
}
