/**
 * Cross-key checks of one upstream: Consul (`service`) or static
 * (`servers`), and the peer addresses of either. Keys that only one kind
 * reads are refused on the other, judged from what the user wrote (the
 * parsed spec has every default filled in).
 */
import type { SpecDiagnostic } from "../pipeline/load.js";
import { formatPeerAddress, parsePeerAddress, type PeerAddress } from "./address.js";
import { upstreamResolveUnsupported } from "./features.js";
import type { Spec, StaticServer, Upstream } from "./schema.js";

type Diag = (path: readonly PropertyKey[], message: string) => SpecDiagnostic;

export function isStaticUpstream(up: Pick<Upstream, "servers" | "service">): up is Upstream & { servers: Array<string | StaticServer> } {
  return up.servers !== undefined && up.service === undefined;
}

/** The upstreams discovered from Consul, sorted by name, with `service` known to be set. */
export function consulUpstreamEntries(spec: Pick<Spec, "upstreams">): Array<[string, Upstream & { service: string }]> {
  return Object.entries(spec.upstreams)
    .filter((e): e is [string, Upstream & { service: string }] => typeof e[1].service === "string")
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A static server entry with every field: a bare string is {address}. */
export function staticServerEntry(entry: string | StaticServer): StaticServer {
  return typeof entry === "string" ? { address: entry, backup: false, down: false } : entry;
}

/** The parsed address of a validated peer string (validation already refused the rest). */
export function peerOf(text: string): PeerAddress {
  const r = parsePeerAddress(text, { unix: true });
  if (!r.ok) throw new Error(`invalid peer address reached the plan: ${text} (${r.reason})`);
  return r.address;
}

const CONSUL_ONLY: Record<string, string> = {
  tags: "tags select Consul instances",
  datacenter: "datacenter picks where the Consul service is read",
  fallback: "fallback peers stand in for Consul until it answers; list every server under servers",
  fail_open: "fail_open is the Consul balancer's choice when every peer is down; nginx's own upstream answers 502 then (add a backup server for a fallback)",
  healthcheck:
    "health checks are run by gen-lb's Lua, which static upstreams do not use; set max_fails and fail_timeout on each server for nginx's passive checks",
  counters: "counters are kept by gen-lb's Lua balancer, which static upstreams do not use; the status endpoint shows nginx's own failed tries where the target has ngx.upstream",
};

export function checkUpstream(spec: Spec, name: string, up: Upstream, raw: Record<string, unknown>, diag: Diag): SpecDiagnostic[] {
  const path = ["upstreams", name];
  const errors: SpecDiagnostic[] = [];
  if (up.service === undefined && up.servers === undefined) {
    return [diag(path, "an upstream needs `service` (a Consul service name) or `servers` (a static list of \"host:port\"); give one")];
  }
  if (up.service !== undefined && up.servers !== undefined) {
    return [diag([...path, "servers"], "give either `service` (peers from Consul) or `servers` (a static upstream), not both; peers to use before Consul first answers go under `fallback`")];
  }
  if (up.service !== undefined) {
    if ("resolve" in raw) errors.push(diag([...path, "resolve"], "resolve applies to static upstreams (`servers`); Consul peers are addresses Consul gives"));
    errors.push(...checkFallback(spec, up, path, diag));
    return errors;
  }

  for (const [key, why] of Object.entries(CONSUL_ONLY)) {
    if (key in raw) errors.push(diag([...path, key], `${key} applies to Consul upstreams (\`service\`) only, and this one is static (\`servers\`): ${why}`));
  }
  const servers = up.servers!;
  const seen = new Map<string, number>();
  let names = 0;
  let serving = 0;
  servers.forEach((entry, i) => {
    const s = staticServerEntry(entry);
    const at = typeof entry === "string" ? [...path, "servers", i] : [...path, "servers", i, "address"];
    const addr = peerOf(s.address);
    if (addr.kind === "name") names++;
    const key = formatPeerAddress(addr);
    const first = seen.get(key);
    if (first !== undefined) errors.push(diag(at, `${key} is already servers[${first}] (addresses are compared normalised); list a server once and raise its weight instead`));
    else seen.set(key, i);
    if (s.backup && (up.balance === "chash" || up.balance === "random")) {
      errors.push(diag([...path, "servers", i, "backup"], `nginx's ${up.balance === "chash" ? "hash" : "random"} method has no backup servers (balance "${up.balance}"); use round_robin or least_conn, or drop backup`));
    }
    if (!s.backup && !s.down) serving++;
  });
  if (serving === 0) errors.push(diag([...path, "servers"], "a static upstream needs at least one server that is neither backup nor down"));
  if (up.resolve) {
    const unsupported = upstreamResolveUnsupported(spec);
    if (unsupported !== undefined) errors.push(diag([...path, "resolve"], unsupported));
    else if (spec.nginx.http.resolver === undefined) {
      errors.push(diag([...path, "resolve"], "resolve re-resolves host names through a DNS resolver: set nginx.http.resolver, e.g. [\"127.0.0.53\"]"));
    } else if (names === 0) {
      errors.push(diag([...path, "resolve"], "resolve has nothing to do: no server of this upstream is a host name; remove it"));
    }
  }
  return errors;
}

function checkFallback(spec: Spec, up: Upstream, path: PropertyKey[], diag: Diag): SpecDiagnostic[] {
  const errors: SpecDiagnostic[] = [];
  const seen = new Map<string, number>();
  up.fallback.forEach((entry, i) => {
    const text = typeof entry === "string" ? entry : entry.address;
    const at = typeof entry === "string" ? [...path, "fallback", i] : [...path, "fallback", i, "address"];
    const addr = peerOf(text);
    if (addr.kind === "name" && spec.nginx.http.resolver === undefined) {
      errors.push(
        diag(
          at,
          `fallback peer ${JSON.stringify(text)} is a host name, and the Lua balancer takes only IP addresses unless a resolver is set: write its IP ("127.0.0.1:${addr.port}" for localhost), or set nginx.http.resolver, or make the upstream static (\`servers\`), which nginx resolves at start`,
        ),
      );
    }
    const key = formatPeerAddress(addr);
    const first = seen.get(key);
    if (first !== undefined) errors.push(diag(at, `${key} is already fallback[${first}] (addresses are compared normalised); list a peer once and raise its weight instead`));
    else seen.set(key, i);
  });
  return errors;
}
