/**
 * One upstream {} block -> a spec upstream: the Consul + Lua pattern (its
 * placeholder servers dropped), consul-template output (service from its
 * header or the shapes of its own nginx example, rendered servers as
 * fallback peers), or a static upstream with every server parameter kept.
 * Peer addresses go through the spec's own parser (src/spec/address.ts).
 */
import type { Directive } from "../nginx/types.js";
import { formatPeerAddress, parsePeerAddress } from "../spec/address.js";
import { duration, SPEC_NAME_RE, text, UNSAFE_RE } from "./args.js";
import type { Ledger } from "./ledger.js";
import type { StaticServerInput, UpstreamInput } from "./spec-input.js";
import type { Finding } from "./types.js";

export interface UpstreamContext {
  ledger: Ledger;
  /** Upstreams whose balancer is Lua (the Consul + Lua pattern). */
  luaUpstreams: ReadonlyMap<string, Directive>;
  /** The comments of each file (for the consul-template header). */
  comments: ReadonlyMap<string, string[]>;
}

export interface UpstreamResult {
  comments: number;
  /** Absent when the upstream was left out (the ledger says why). */
  converted?: {
    name: string;
    up: UpstreamInput;
    /** Static and consul-template upstreams: the servers a failed request may be retried on. */
    staticCount?: number;
  };
}

/**
 * An upstream server's address as the spec holds it (the one peer parser of
 * src/spec/address.ts, canonical form), or why it cannot be: nginx gives a
 * server without a port port 80.
 */
export function peerOf(text: string, unix: boolean): { address: string } | { why: string } {
  let t = text;
  if (!t.startsWith("unix:") && (/^\[[^\]]*\]$/.test(t) || !t.includes(":"))) t += ":80";
  const r = parsePeerAddress(t, { unix });
  return r.ok ? { address: formatPeerAddress(r.address) } : { why: r.reason };
}
interface PeerFinding {
  kind: Finding["kind"];
  d: Directive;
  message: string;
  to?: string;
}

/**
 * The servers of a static upstream as the spec's static `servers:` (the one
 * place that knows that shape): "host:port", "unix:/path", or an object with
 * the parameters nginx was given. A bare host gets nginx's default port 80.
 */
export function staticServers(servers: readonly Directive[], at: string): { servers: StaticServerInput[]; resolve: boolean; findings: PeerFinding[] } {
  const out: StaticServerInput[] = [];
  const findings: PeerFinding[] = [];
  let resolve = false;
  for (const s of servers) {
    const [addr0, ...params] = s.args;
    const parsed = peerOf(addr0 ?? "", true);
    if ("why" in parsed) {
      findings.push({ kind: "lost", d: s, message: `${text(s)}: the address cannot be expressed: ${parsed.why}` });
      continue;
    }
    const address = parsed.address;
    const peer: Exclude<StaticServerInput, string> = { address };
    const lostParams: string[] = [];
    for (const p of params) {
      const [k, v] = p.includes("=") ? [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)] : [p, undefined];
      if (k === "weight" && /^[1-9]\d*$/.test(v ?? "")) peer.weight = Number(v);
      else if (k === "max_fails" && /^\d+$/.test(v ?? "")) peer.max_fails = Number(v);
      else if (k === "max_conns" && /^\d+$/.test(v ?? "")) peer.max_conns = Number(v);
      else if (k === "fail_timeout" && duration(v) !== undefined) peer.fail_timeout = duration(v)!;
      else if (k === "backup" && v === undefined) peer.backup = true;
      else if (k === "down" && v === undefined) peer.down = true;
      else if (k === "resolve" && v === undefined) resolve = true;
      else lostParams.push(p);
    }
    out.push(Object.keys(peer).length === 1 ? address : peer);
    findings.push({
      kind: lostParams.length ? "lost" : "converted",
      d: s,
      message: `${text(s)}${lostParams.length ? `: ${lostParams.join(" ")} cannot be expressed (the server is kept without it)` : ""}`,
      to: `${at}.servers`,
    });
  }
  return { servers: out, resolve, findings };
}

export function convertUpstream(u: Directive, ctx: UpstreamContext): UpstreamResult {
  const { ledger } = ctx;
  let comments = 0;
  const name = u.args[0] ?? "";
  if (!SPEC_NAME_RE.test(name)) {
    ledger.add("lost", u, `upstream "${name}": the name cannot be a spec key (letters, digits, _ . - only)`);
    return { comments };
  }
  const up: UpstreamInput = { service: name };
  const at = `upstreams.${name}`;
  const servers: Directive[] = [];
  const lua = ctx.luaUpstreams.has(name);
  for (const c of u.block ?? []) {
    switch (c.directive) {
      case "#":
        comments++;
        break;
      case "server":
        servers.push(c);
        break;
      case "least_conn":
        up.balance = "least_conn";
        ledger.converted(c, `${at}.balance`);
        break;
      case "random":
        up.balance = "random";
        ledger.converted(c, `${at}.balance`, c.args.length ? "its two/least_conn choice is not kept" : "");
        break;
      case "ip_hash":
        up.balance = "chash";
        up.hash_key = "$remote_addr";
        ledger.converted(c, `${at}.balance`, "as consistent hashing on $remote_addr: close to, not the same as, ip_hash's /24 grouping");
        break;
      case "hash":
        if (c.args[0] && !UNSAFE_RE.test(c.args[0])) {
          up.balance = "chash";
          up.hash_key = c.args[0];
          ledger.converted(c, `${at}.balance`, c.args[1] === "consistent" ? "" : "gen-lb's hashing is always consistent");
        } else ledger.add("lost", c, `${text(c)}: cannot be expressed`);
        break;
      case "keepalive":
        if (c.args.length === 1 && /^\d+$/.test(c.args[0]!)) {
          up.keepalive = Number(c.args[0]);
          ledger.converted(c, `${at}.keepalive`);
        } else ledger.add("lost", c, `${text(c)}: not a connection count the spec can hold`);
        break;
      case "zone":
        ledger.add("dropped", c, `${text(c)}: gen-lb keeps peers in its own shared dicts`);
        break;
      default:
        if (c.directive.startsWith("balancer_by_lua")) {
          ledger.add("dropped", c, `${c.directive}: the old Lua balancer, replaced by gen-lb's (${"balance"} and retries in ${at})`, `${at}.balance`);
        } else {
          ledger.add("lost", c, `${text(c)}: upstream-level "${c.directive}" has no place in the spec`);
        }
    }
  }
  if (up.keepalive === undefined) up.keepalive = 0;

  if (lua) {
    // The Consul + Lua pattern: servers are placeholders, peers come from Consul.
    for (const s of servers) ledger.add("dropped", s, `${text(s)}: placeholder for the Lua balancer; gen-lb generates its own`);
    up.balance ??= "random";
    ledger.add("converted", u, `upstream ${name}: the Consul + Lua pattern, as a Consul-discovered upstream`, at);
    return { comments, converted: { name, up } };
  }

  const ct = consulTemplateService(u, ctx.comments);
  if (!ct) {
    // A hand-written static list stays static: nginx's own upstream {}, every server parameter kept.
    const peers = staticServers(servers, at);
    for (const f of peers.findings) ledger.add(f.kind, f.d, f.message, f.to);
    if (peers.servers.length === 0) {
      ledger.mustRewrite(u, `upstream ${name}: none of its servers can be expressed, so the upstream is left out`);
      return { comments };
    }
    up.servers = peers.servers;
    if (peers.resolve) up.resolve = true;
    delete up.service;
    const staticCount = peers.servers.filter((p) => typeof p === "string" || !p.backup).length;
    ledger.add("converted", u, `upstream ${name}: a static upstream (nginx's own upstream {}), ${peers.servers.length} server${peers.servers.length === 1 ? "" : "s"}`, at);
    return { comments, converted: { name, up, staticCount } };
  }

  // consul-template output: the service comes from Consul, the rendered servers are fallback peers.
  const fallback: Array<string | { address: string; weight: number }> = [];
  const fails = new Set<string>();
  for (const s of servers) {
    const [addr, ...params] = s.args;
    if (addr === "127.0.0.1:65535") {
      ledger.add("dropped", s, `${text(s)}: consul-template's placeholder for a service with no instance (gen-lb answers 502 itself then)`);
      continue;
    }
    const parsed = peerOf(addr ?? "", false);
    if ("why" in parsed) {
      ledger.add("lost", s, `${text(s)}: only host:port peers can be fallback peers: ${parsed.why}`);
      continue;
    }
    const hostPort = parsed.address;
    if (params.includes("down")) {
      ledger.add("converted", s, `${text(s)}: marked down, so left out of the fallback peers`, `${at}.fallback`);
      continue;
    }
    let mf = "1";
    let ft = "10s";
    let weight = 1;
    const lostParams: string[] = [];
    for (const p of params) {
      const w = /^weight=(\d+)$/.exec(p);
      if (w && Number(w[1]) >= 1 && Number(w[1]) <= 1000) weight = Number(w[1]);
      else if (p.startsWith("max_fails=")) mf = p.slice(10);
      else if (p.startsWith("fail_timeout=")) ft = p.slice(13);
      else lostParams.push(p);
    }
    fallback.push(weight === 1 ? hostPort : { address: hostPort, weight });
    fails.add(`${mf} ${ft}`);
    ledger.add(
      lostParams.length ? "lost" : "converted",
      s,
      `${text(s)}${lostParams.length ? `: fallback peer ${hostPort}, but ${lostParams.join(" ")} cannot be expressed per peer` : ""}`,
      `${at}.fallback`,
    );
  }
  if (fallback.length) up.fallback = fallback;
  if (fails.size === 1) {
    const [mf, ft] = [...fails][0]!.split(" ");
    if (!(mf === "1" && ft === "10s") && Number(mf) > 0) up.healthcheck = { passive: { max_fails: Number(mf), fail_timeout: duration(ft) ?? ft } };
  } else if (fails.size > 1) {
    ledger.add("todo", u, `upstream ${name}: its servers have different max_fails/fail_timeout; gen-lb has one passive check per upstream`);
  }
  const staticCount = fallback.length;
  up.service = ct;
  ledger.add("todo", u, `upstream ${name} was rendered by consul-template: service "${ct}" (from its header, or its name as in consul-template's nginx example); its ${fallback.length} servers are kept only as fallback peers (used before Consul first answers)`, `${at}.service`);
  return { comments, converted: { name, up, staticCount } };
}

/**
 * An upstream consul-template rendered: a header comment naming
 * consul-template (and maybe the service), or the shapes of consul-template's
 * own nginx example: `zone upstream-NAME`, and `server 127.0.0.1:65535`
 * where the service had no instance ("force a 502"). The service is then the
 * upstream's name, as in that template.
 */
export function consulTemplateService(u: Directive, fileComments: ReadonlyMap<string, string[]>): string | undefined {
  const name = u.args[0];
  const comments = fileComments.get(u.file) ?? [];
  if (comments.some((c) => /consul-template/i.test(c))) {
    for (const c of comments) {
      const m = /service[:=\s]+["']?([A-Za-z0-9_.-]+)/i.exec(c);
      if (m && !/template/i.test(m[1]!)) return m[1];
    }
    return name;
  }
  const block = u.block ?? [];
  const zone = block.some((c) => c.directive === "zone" && c.args[0] === `upstream-${name}`);
  const placeholder = block.some((c) => c.directive === "server" && c.args[0] === "127.0.0.1:65535");
  return zone || placeholder ? name : undefined;
}

