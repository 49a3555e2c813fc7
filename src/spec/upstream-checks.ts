/**
 * Cross-key checks of one upstream: Consul (`service`) or static
 * (`servers`), and the peer addresses of either. Keys that only one kind
 * reads are refused on the other, judged from what the user wrote (the
 * parsed spec has every default filled in).
 */
import type { SpecDiagnostic } from "../pipeline/load.js";
import { formatPeerAddress, parsePeerAddress, type PeerAddress } from "./address.js";
import { luaDnsUnsupported, upstreamDnsUnsupported, upstreamResolveUnsupported } from "./features.js";
import { parseDuration } from "./units.js";
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
  slow_start: "slow_start ramps the weights of gen-lb's Lua balancer, which static upstreams do not use (nginx's own slow_start is an NGINX Plus parameter)",
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
  if (up.service !== undefined && up.discovery === "dns") return checkDnsUpstream(spec, up, raw, path, diag);
  if (up.service !== undefined) {
    if ("resolve" in raw) errors.push(diag([...path, "resolve"], "resolve applies to static upstreams (`servers`); Consul peers are addresses Consul gives"));
    errors.push(...checkFallback(spec, up, path, diag));
    return errors;
  }

  if ("discovery" in raw) errors.push(diag([...path, "discovery"], "discovery applies to Consul upstreams (`service`) only, and this one is static (`servers`)"));
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
    if (addr.kind === "name") {
      // The runtime resolves fallback names with lua-resty-dns in a timer, before it publishes them.
      const noDns = luaDnsUnsupported(spec);
      const why =
        noDns !== undefined
          ? `${noDns}, so the Lua balancer cannot resolve it and takes only IP addresses`
          : spec.nginx.http.resolver === undefined
            ? "the Lua balancer takes only IP addresses and resolves a host name only through nginx.http.resolver, which is not set"
            : undefined;
      const fix = noDns === undefined ? 'set nginx.http.resolver (e.g. ["127.0.0.53"]), ' : "";
      if (why !== undefined) {
        errors.push(
          diag(at, `fallback peer ${JSON.stringify(text)} is a host name, and ${why}: ${fix}write its IP ("127.0.0.1:${addr.port}" for localhost), or make the upstream static (\`servers\`), which nginx resolves at start`),
        );
      }
    }
    const key = formatPeerAddress(addr);
    const first = seen.get(key);
    if (first !== undefined) errors.push(diag(at, `${key} is already fallback[${first}] (addresses are compared normalised); list a peer once and raise its weight instead`));
    else seen.set(key, i);
  });
  return errors;
}

/**
 * `discovery: dns`: what nginx's own upstream can do with SRV-resolved
 * servers, and what only gen-lb's Lua runtime can (refused, with why).
 */
function checkDnsUpstream(spec: Spec, up: Upstream, raw: Record<string, unknown>, path: PropertyKey[], diag: Diag): SpecDiagnostic[] {
  const errors: SpecDiagnostic[] = [];
  const unsupported = upstreamDnsUnsupported(spec);
  if (unsupported !== undefined) errors.push(diag([...path, "discovery"], unsupported));
  if ("resolve" in raw) errors.push(diag([...path, "resolve"], "resolve applies to static upstreams (`servers`); discovery: dns always re-resolves the service"));
  if (up.tags.length > 1) {
    errors.push(diag([...path, "tags"], `Consul's DNS filters on one tag (_NAME._TAG.service.consul), and this upstream asks for ${up.tags.length}; keep one tag, or use discovery: blocking, which filters on all of them`));
  }
  if (up.fallback.length > 0) {
    errors.push(diag([...path, "fallback"], "fallback peers are used by gen-lb's Lua runtime until Consul first answers; with discovery: dns nginx's upstream holds only what Consul's DNS answers (an NXDOMAIN empties it): remove fallback, or use discovery: blocking"));
  }
  if ("fail_open" in raw) {
    errors.push(diag([...path, "fail_open"], "fail_open is the Lua balancer's choice when every peer is down; with discovery: dns nginx decides (it answers 502 when every peer is out by max_fails): remove fail_open, or use discovery: blocking"));
  }
  const hc = up.healthcheck;
  if (hc.active !== undefined) {
    errors.push(diag([...path, "healthcheck", "active"], "active health checks are run by gen-lb's Lua runtime, and open-source nginx has none of its own: with discovery: dns only Consul's own checks (instances Consul's DNS leaves out) and passive checks (max_fails/fail_timeout) apply; remove healthcheck.active, or use discovery: blocking"));
  }
  if (hc.passive !== undefined) {
    const extra = hc.passive.statuses.filter((s) => up.retries === 0 || !up.retry_statuses.includes(s as never));
    if (extra.length > 0) {
      errors.push(
        diag(
          [...path, "healthcheck", "passive", "statuses"],
          `nginx counts an upstream status as a failed try (max_fails) only when it is a proxy_next_upstream condition, i.e. one of retry_statuses with retries > 0; ${extra.join(", ")} ${extra.length === 1 ? "is" : "are"} not: add ${extra.length === 1 ? "it" : "them"} to retry_statuses, or remove ${extra.length === 1 ? "it" : "them"} here`,
        ),
      );
    }
  }
  // A dot would split the name into other DNS labels than Consul's _NAME._TAG.
  if (up.service!.includes(".")) errors.push(diag([...path, "service"], `Consul's DNS name for a service is one label, and "${up.service}" has a dot: discovery: dns cannot ask for it; use discovery: blocking`));
  if (up.tags.some((t) => t.includes("."))) errors.push(diag([...path, "tags"], "a tag in Consul's DNS name is one label, and a dot would split it: discovery: dns cannot ask for it; use discovery: blocking"));
  return errors;
}

/** Once per spec, when an upstream uses discovery: dns: the resolver settings nginx can take. */
export function checkDnsSettings(spec: Spec, diag: Diag): SpecDiagnostic[] {
  if (!Object.values(spec.upstreams).some((up) => up.service !== undefined && up.discovery === "dns")) return [];
  const valid = typeof spec.consul.dns_valid === "number" ? spec.consul.dns_valid : parseDuration(spec.consul.dns_valid);
  if (!Number.isInteger(valid) || valid < 1) {
    return [diag(["consul", "dns_valid"], `nginx's resolver takes valid= in whole seconds, at least 1 (got ${JSON.stringify(spec.consul.dns_valid)}): use "1s" or more`)];
  }
  return [];
}
