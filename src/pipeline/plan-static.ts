/**
 * Plan of a static upstream (`servers:`, no `service:`): nginx's own
 * `upstream {}`, with no Lua on its request path, and what the status
 * endpoint lists for it. Pure, like plan.ts.
 */
import type { NginxDirective } from "../render/quote.js";
import { formatPeerAddress } from "../spec/address.js";
import type { Spec, Upstream } from "../spec/schema.js";
import { nginxDuration, parseDuration } from "../spec/units.js";
import { isStaticUpstream, peerOf, staticServerEntry } from "../spec/upstream-checks.js";
import type { RuntimeStaticUpstream } from "../contract/runtime-config.js";

export { isStaticUpstream };

const d = (name: string, ...args: Array<string | number>): NginxDirective => ({ name, args });
const duration = (v: string | number) => nginxDuration(typeof v === "number" ? v : parseDuration(v));

/** Zone for `resolve`: shared by the workers, so they also share the servers' state. */
export const staticZoneName = (name: string) => `gen_lb_static_${name}`;

/** balance -> nginx's method line (static and DNS upstreams); round robin is nginx's default and has none. */
export function nginxBalanceMethod(up: Pick<Upstream, "balance" | "hash_key">): NginxDirective[] {
  switch (up.balance) {
    case "least_conn":
      return [d("least_conn")];
    case "chash":
      return [d("hash", up.hash_key!, "consistent")];
    case "random":
      return [d("random", "two")];
    default:
      return [];
  }
}

export function planStaticUpstream(name: string, up: Upstream): NginxDirective {
  const servers = up.servers!.map((entry) => {
    const s = staticServerEntry(entry);
    const addr = peerOf(s.address);
    const args: string[] = [formatPeerAddress(addr)];
    if (s.weight !== undefined && s.weight !== 1) args.push(`weight=${s.weight}`);
    if (s.max_fails !== undefined) args.push(`max_fails=${s.max_fails}`);
    if (s.fail_timeout !== undefined) args.push(`fail_timeout=${duration(s.fail_timeout)}`);
    if (s.max_conns !== undefined) args.push(`max_conns=${s.max_conns}`);
    if (s.backup) args.push("backup");
    if (s.down) args.push("down");
    if (up.resolve && addr.kind === "name") args.push("resolve");
    return d("server", ...args);
  });
  return {
    name: "upstream",
    args: [name],
    comment: `upstreams.${name}`,
    block: [
      // The method comes first: keepalive must wrap it, not the other way round.
      ...nginxBalanceMethod(up),
      ...(up.resolve ? [d("zone", staticZoneName(name), "64k")] : []),
      ...servers,
      ...(up.keepalive > 0 ? [d("keepalive", up.keepalive)] : []),
      ...(up.keepalive > 0 && up.keepalive_timeout !== undefined ? [d("keepalive_timeout", duration(up.keepalive_timeout))] : []),
      ...(up.keepalive > 0 && up.keepalive_requests !== undefined ? [d("keepalive_requests", up.keepalive_requests)] : []),
    ],
  };
}

/** What the status endpoint says about a static upstream: its configured servers, canonical. */
export function planStaticStatus(up: Upstream): RuntimeStaticUpstream {
  return {
    balance: up.balance,
    retries: up.retries,
    resolve: up.resolve,
    servers: up.servers!.map((entry) => {
      const s = staticServerEntry(entry);
      return {
        address: formatPeerAddress(peerOf(s.address)),
        weight: s.weight ?? 1,
        max_fails: s.max_fails ?? 1,
        fail_timeout: s.fail_timeout === undefined ? 10 : typeof s.fail_timeout === "number" ? s.fail_timeout : parseDuration(s.fail_timeout),
        max_conns: s.max_conns ?? 0,
        backup: s.backup,
        down: s.down,
      };
    }),
  };
}

/**
 * Split a spec's upstreams: Consul ones with discovery blocking feed the Lua
 * runtime; static ones and discovery dns ones are nginx's own upstream {}.
 */
export function splitUpstreams(spec: Pick<Spec, "upstreams">): {
  consul: Array<[string, Upstream]>;
  static: Array<[string, Upstream]>;
  dns: Array<[string, Upstream]>;
} {
  const all = Object.entries(spec.upstreams).sort(([a], [b]) => (a < b ? -1 : 1));
  const dns = (up: Upstream) => !isStaticUpstream(up) && up.discovery === "dns";
  return {
    consul: all.filter(([, up]) => !isStaticUpstream(up) && !dns(up)),
    static: all.filter(([, up]) => isStaticUpstream(up)),
    dns: all.filter(([, up]) => dns(up)),
  };
}
