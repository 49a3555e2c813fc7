/**
 * `gen-lb check`'s Consul preflight: with the same adapter install uses, ask
 * the spec's Consul, for every upstream, whether its service exists, how many
 * instances pass, whether their addresses are peers the runtime can use, and
 * whether the token is accepted. Every problem is a warning (check --strict
 * makes them failures); an unreachable Consul is one too, never silence.
 * Returns data; the command prints it.
 */
import type { Spec } from "../spec/schema.js";
import type { ConsulAdapter, ConsulAnswer, ConsulFailure } from "./client.js";
import { parseHealthEntries } from "./peers.js";
import { runtimeResolvesNames } from "../spec/features.js";
import { consulUpstreamEntries } from "../spec/upstream-checks.js";

export interface PreflightUpstream {
  name: string;
  service: string;
  tags: string[];
  datacenter?: string;
  /** Registered in the catalog (undefined: could not tell). */
  exists?: boolean;
  /** Instances registered with the tags, and how many of them pass every check. */
  instances?: number;
  passing?: number;
  /** Passing instances whose address and port the runtime can use. */
  usable?: number;
  /** Passing instances left out, with why. */
  rejected: Array<{ id: string; why: string }>;
  warnings: string[];
}

export interface PreflightReport {
  /** False: skipped (--no-consul) or nothing to ask (no upstream uses Consul). */
  ran: boolean;
  reachable: boolean;
  /** The address that answered. */
  address?: string;
  upstreams: PreflightUpstream[];
  /** Every warning, upstream ones prefixed with the upstream; what --strict fails on. */
  warnings: string[];
  /** The report, one line each, for humans. */
  lines: string[];
}

function failureText(f: ConsulFailure): string {
  if (f.kind === "forbidden") {
    const why = /ACL not found/i.test(f.message)
      ? "the token is not known to Consul"
      : /Permission denied/i.test(f.message)
        ? "the token lacks a permission"
        : "the token was refused";
    return `Consul refused the token: 403 (ACL: ${why}): ${f.message.replace(/^403 /, "")}`;
  }
  if (f.kind === "unreachable") return `Consul cannot be reached (${f.message})`;
  return `Consul answered ${f.message}`;
}

const skipped = (why: string): PreflightReport => ({ ran: false, reachable: false, upstreams: [], warnings: [], lines: [`consul preflight skipped: ${why}`] });

export function skippedPreflight(why: string): PreflightReport {
  return skipped(why);
}

export async function runConsulPreflight(spec: Spec, consul: ConsulAdapter): Promise<PreflightReport> {
  const ups = consulUpstreamEntries(spec);
  if (ups.length === 0) return skipped("no upstream discovers its peers from Consul");

  const warnings: string[] = [];
  const lines: string[] = [];
  const src = consul.tokenSource;
  if (src && !src.set) warnings.push(`consul.token_env names ${src.env}, which is not set here: Consul was asked without a token (the runtime reads ${src.env} from nginx's environment)`);

  // One catalog list per datacenter: does each service exist at all.
  const dcs = [...new Set(ups.map(([, up]) => up.datacenter ?? spec.consul.datacenter ?? ""))];
  const catalogs = new Map<string, ConsulAnswer<unknown>>();
  await Promise.all(dcs.map(async (dc) => catalogs.set(dc, await consul.catalogServices(dc === "" ? undefined : dc))));
  const first = catalogs.values().next().value as ConsulAnswer<unknown>;
  if (!first.ok && first.kind === "unreachable") {
    const w = `${failureText(first)}: no upstream's service was checked; the runtime's discovery is unverified (use --no-consul to skip this preflight)`;
    return { ran: true, reachable: false, upstreams: [], warnings: [...warnings, w], lines: [`consul: ${w}`] };
  }
  const address = first.ok ? first.address : undefined;
  // Addresses that failed before one answered (a refusal is the cluster's verdict, reported per upstream).
  for (const t of first.ok ? first.tried : first.tried.slice(0, -1)) warnings.push(`Consul address ${t.address} did not answer (${t.error})`);

  const upstreams: PreflightUpstream[] = [];
  for (const [name, up] of ups) {
    const dc = up.datacenter ?? spec.consul.datacenter;
    const u: PreflightUpstream = { name, service: up.service, tags: [...up.tags], ...(dc ? { datacenter: dc } : {}), rejected: [], warnings: [] };
    upstreams.push(u);
    const q = { service: up.service, tags: up.tags, datacenter: dc };
    const [catalog, all, passing] = [catalogs.get(dc ?? "")!, await consul.healthService(q, { passing: false }), await consul.healthService(q, { passing: true })];
    const tagText = up.tags.length > 0 ? ` with tag(s) ${up.tags.join(", ")}` : "";
    const where = dc ? ` in datacenter ${dc}` : "";

    if (catalog.ok) {
      const list = catalog.value !== null && typeof catalog.value === "object" ? (catalog.value as Record<string, unknown>) : {};
      u.exists = Object.hasOwn(list, up.service);
      if (!u.exists) {
        u.warnings.push(
          catalog.filtered
            ? `service ${up.service} is not listed${where}: Consul filtered the list by ACLs (the token may lack service:read on ${up.service})`
            : `service ${up.service} is not registered in Consul${where}`,
        );
      }
    } else if (catalog.kind !== "unreachable") {
      u.warnings.push(failureText(catalog));
    }
    const failed = [all, passing].find((a): a is ConsulFailure => !a.ok);
    if (failed) {
      const text = failureText(failed);
      if (!u.warnings.includes(text)) u.warnings.push(text);
    } else if (all.ok && passing.ok) {
      u.instances = Array.isArray(all.value) ? all.value.length : 0;
      const parsed = parseHealthEntries(passing.value, { resolvesNames: runtimeResolvesNames(spec) });
      u.passing = parsed.total;
      u.usable = parsed.peers.length;
      u.rejected = parsed.rejected.map((r) => ({ id: r.id, why: r.why }));
      for (const r of parsed.rejected) u.warnings.push(`instance ${r.id} is not a usable peer: ${r.why}`);
      if (u.exists !== false && u.instances === 0) u.warnings.push(`no instance of ${up.service}${tagText} is registered${where}`);
      else if (u.passing === 0 && u.instances > 0) u.warnings.push(`none of the ${u.instances} instance(s) of ${up.service}${tagText} passes its health checks`);
      if (passing.filtered && u.passing === 0) u.warnings.push(`Consul filtered the instances by ACLs (the token may lack service:read on ${up.service} or node:read)`);
    }
    const counts =
      u.instances === undefined ? "not checked" : `${u.passing} of ${u.instances} instance(s)${tagText} passing, ${u.usable} usable peer(s)`;
    lines.push(`consul: upstream ${name} (service ${up.service}${where}): ${counts}${u.warnings.length > 0 ? ` - ${u.warnings.length} warning(s)` : ""}`);
    for (const w of u.warnings) warnings.push(`upstream ${name}: ${w}`);
  }
  return { ran: true, reachable: true, ...(address ? { address } : {}), upstreams, warnings, lines: [`consul: asked ${address}`, ...lines] };
}
