/**
 * `migrate --verify=traffic`, the pure half: how the old and the new config
 * are rewritten to run side by side on scratch loopback ports (listens, log
 * and pid paths, upstream servers pointed at echo backends), which requests
 * both get, and how two answers are compared. The other half
 * (src/migrate/traffic.ts) allocates the ports, starts the backends and the
 * two nginx masters, and sends the requests.
 */
import path from "node:path";
import type { Directive } from "../nginx/types.js";
import type { Finding } from "./types.js";

/** What the rewrite needs from the run: ports and backends, by key. */
export interface Endpoints {
  /** Old listen address (normalised) -> scratch port on 127.0.0.1. */
  listens: ReadonlyMap<string, number>;
  /** Upstream name, or "direct:host:port" for a proxy_pass without upstream -> echo backend "127.0.0.1:port". */
  backends: ReadonlyMap<string, string>;
}

export interface RewriteOptions {
  /** Where the scratch logs and pid go. */
  logDir: string;
  /** The directory relative conf paths (include, ssl_certificate...) were read against. */
  confDir: string;
  /** What a relative load_module path is relative to (the binary's --prefix). */
  modulePrefix?: string;
  /** Leave upstreams with a Lua balancer alone (gen-lb's own, fed by the runtime), or replace the old ones'. */
  keepLuaUpstreams: boolean;
}

/** "80", "*:80", "0.0.0.0:80" are one address; anything else is itself. */
export function listenKey(addr: string): string {
  if (/^\d+$/.test(addr)) return `*:${addr}`;
  return addr.replace(/^0\.0\.0\.0:/, "*:");
}

/** Every listen address and backend key in a tree (what the run must allocate). */
export function collectEndpoints(tree: readonly Directive[]): { listens: string[]; backends: string[] } {
  const listens = new Set<string>();
  const backends = new Set<string>();
  const upstreams = upstreamNames(tree);
  const visit = (nodes: readonly Directive[], parent: string | undefined) => {
    for (const d of nodes) {
      if (d.directive === "listen" && parent === "server") listens.add(listenKey(d.args[0] ?? ""));
      if (d.directive === "upstream" && parent === "http") backends.add(d.args[0] ?? "");
      if (d.directive === "proxy_pass") {
        const direct = directTarget(d.args[0] ?? "", upstreams);
        if (direct) backends.add(`direct:${direct}`);
      }
      if (d.block) visit(d.block, d.directive);
    }
  };
  visit(tree, undefined);
  return { listens: [...listens], backends: [...backends] };
}

/** The upstream {} names of the http block (nginx compares them case-insensitively). */
function upstreamNames(tree: readonly Directive[]): Set<string> {
  const http = tree.find((d) => d.directive === "http")?.block ?? [];
  return new Set(http.filter((d) => d.directive === "upstream").map((d) => (d.args[0] ?? "").toLowerCase()));
}

/** A proxy_pass URL's host[:port] when it names no upstream {} (an address, or a host name nginx resolves at start). */
function directTarget(url: string, upstreams: ReadonlySet<string>): string | undefined {
  const m = /^https?:\/\/([^/$]+)/.exec(url);
  if (!m || url.includes("$")) return undefined;
  return upstreams.has(m[1]!.toLowerCase()) ? undefined : m[1];
}

const CONF_RELATIVE = new Set(["include", "ssl_certificate", "ssl_certificate_key", "ssl_trusted_certificate", "ssl_client_certificate", "ssl_dhparam", "auth_basic_user_file", "lua_ssl_trusted_certificate"]);
const DROPPED = new Set(["user", "daemon", "master_process", "worker_processes", "pid", "error_log", "lock_file", "working_directory", "worker_rlimit_core"]);

/**
 * The tree, ready to run on scratch ports: listens -> 127.0.0.1:PORT (ssl,
 * http2 and default_server kept; socket options dropped), upstream servers
 * and direct proxy_pass targets -> the echo backends, logs and pid into
 * logDir, relative conf paths made absolute, one worker.
 */
export function rewriteTree(tree: readonly Directive[], ep: Endpoints, opts: RewriteOptions): Directive[] {
  const log = (name: string) => path.join(opts.logDir, name);
  const abs = (p: string) => (path.isAbsolute(p) || p.includes("$") || p.startsWith("data:") ? p : path.resolve(opts.confDir, p));
  const upstreams = upstreamNames(tree);
  const rewrite = (nodes: readonly Directive[], parent: string | undefined): Directive[] => {
    const out: Directive[] = [];
    for (const d of nodes) {
      if (d.directive === "#") continue;
      if (parent === undefined && DROPPED.has(d.directive)) continue;
      if (d.directive === "error_log") {
        out.push({ ...d, args: [log("error.log"), ...d.args.slice(1).filter((a) => /^(debug|info|notice|warn|error|crit|alert|emerg)$/.test(a))] });
        continue;
      }
      if (d.directive === "access_log" && d.args[0] !== "off") {
        out.push({ ...d, args: [log("access.log"), ...d.args.slice(1).filter((a) => !a.startsWith("buffer=") && !a.startsWith("flush="))] });
        continue;
      }
      if (/^(proxy|fastcgi|uwsgi|scgi)_cache_path$/.test(d.directive) && d.args[0]) {
        // Each side caches in its own scratch directory: a shared cache would answer the new side with the old side's entries.
        out.push({ ...d, args: [path.join(opts.logDir, `cache-${d.args[0].replace(/[^A-Za-z0-9]+/g, "_")}`), ...d.args.slice(1)] });
        continue;
      }
      if (d.directive === "listen" && parent === "server") {
        const port = ep.listens.get(listenKey(d.args[0] ?? ""));
        const keep = d.args.slice(1).filter((a) => ["ssl", "http2", "default_server", "default"].includes(a));
        out.push({ ...d, args: [`127.0.0.1:${port}`, ...keep] });
        continue;
      }
      if (d.directive === "upstream" && parent === "http") {
        const lua = d.block?.some((c) => c.directive.startsWith("balancer_by_lua")) ?? false;
        const echo = ep.backends.get(d.args[0] ?? "");
        if ((lua && opts.keepLuaUpstreams) || echo === undefined) {
          out.push(d);
          continue;
        }
        // Every server of the upstream stands in for the same backend: one echo, parameters kept (but not resolve/service).
        const block: Directive[] = [];
        let servers = 0;
        for (const c of d.block ?? []) {
          if (c.directive === "server") {
            servers++;
            block.push({ ...c, args: [echo, ...c.args.slice(1).filter((a) => a !== "resolve" && !a.startsWith("service=") && a !== "down")] });
          } else if (!c.directive.startsWith("balancer_by_lua") && c.directive !== "#" && c.directive !== "resolver" && !(lua && c.directive === "keepalive")) {
            block.push(c);
          }
        }
        if (servers === 0) block.unshift({ ...d, directive: "server", args: [echo], block: undefined } as Directive);
        out.push({ ...d, block });
        continue;
      }
      if (d.directive === "proxy_pass") {
        const direct = directTarget(d.args[0] ?? "", upstreams);
        const echo = direct ? ep.backends.get(`direct:${direct}`) : undefined;
        if (echo) {
          // An https:// target talks TLS to the backend; the echo speaks plain HTTP.
          out.push({ ...d, args: [d.args[0]!.replace(direct!, echo).replace(/^https:/, "http:"), ...d.args.slice(1)] });
          continue;
        }
        const host = /^https:\/\/([^/$]+)/.exec(d.args[0] ?? "")?.[1];
        if (host !== undefined && upstreams.has(host.toLowerCase())) {
          out.push({ ...d, args: [d.args[0]!.replace(/^https:/, "http:"), ...d.args.slice(1)] });
          continue;
        }
      }
      if (CONF_RELATIVE.has(d.directive) && d.args.length >= 1) {
        out.push({ ...d, args: [abs(d.args[0]!), ...d.args.slice(1)], ...(d.block ? { block: rewrite(d.block, d.directive) } : {}) });
        continue;
      }
      if (d.directive === "load_module" && d.args[0] && !path.isAbsolute(d.args[0]) && opts.modulePrefix !== undefined) {
        out.push({ ...d, args: [path.join(opts.modulePrefix, d.args[0])] });
        continue;
      }
      if (d.directive === "http" && d.block && !d.block.some((c) => c.directive === "access_log")) {
        // nginx's default access log is PREFIX/logs/access.log, which the old prefix may not have.
        out.push({ ...d, block: [{ ...d, directive: "access_log", args: [log("access.log")], block: undefined } as Directive, ...rewrite(d.block, "http")] });
        continue;
      }
      out.push(d.block ? { ...d, block: rewrite(d.block, d.directive) } : d);
    }
    if (parent === undefined) {
      out.unshift(
        { directive: "worker_processes", args: ["1"], line: 0, file: "", column: 0 } as unknown as Directive,
        { directive: "pid", args: [log("nginx.pid")], line: 0, file: "", column: 0 } as unknown as Directive,
        { directive: "error_log", args: [log("error.log"), "warn"], line: 0, file: "", column: 0 } as unknown as Directive,
      );
    }
    return out;
  };
  return rewrite(tree, undefined);
}

// ------------------------------------------------------------ requests

export interface TrafficRequest {
  /** Which old server and location it is meant for (for the report). */
  server: Directive;
  location: Directive | undefined;
  /** The old listen it is sent to (normalised key). */
  listen: string;
  tls: boolean;
  method: string;
  host: string;
  path: string;
  body?: string;
  websocket?: boolean;
}

/** A path a regex location matches, made from its literal parts, or undefined. */
export function regexSample(re: string, caseless: boolean): string | undefined {
  let s = re.replace(/^\^/, "").replace(/\$$/, "");
  s = s.replace(/\(\?[a-z]+\)/g, "").replace(/\\d[+*]?/g, "1").replace(/\\w[+*]?/g, "a").replace(/\\(.)/g, "$1");
  s = s.replace(/\[([^\]])[^\]]*\][+*?]?/g, "$1").replace(/\(([^|)]*)(\|[^)]*)?\)/g, "$1").replace(/\.\*|\.\+/g, "x").replace(/[?*+]/g, "");
  // Unanchored: a plain name before the match ("\.php$" -> "/x.php", not the hidden "/.php").
  const rooted = s.startsWith("/") ? s : `/${s}`;
  const candidates = re.startsWith("^") ? [rooted, `/x${s}`] : [`/x${s}`, rooted, `/verify/x${s}`];
  try {
    const rx = new RegExp(re, caseless ? "i" : "");
    return candidates.find((c) => rx.test(c) && !/[\s#]/.test(c));
  } catch {
    return undefined;
  }
}

const hostOf = (server: Directive) => {
  const names = (server.block ?? []).filter((d) => d.directive === "server_name").flatMap((d) => d.args);
  return names.find((n) => n !== "" && n !== "_" && !n.startsWith("~") && !n.includes("*") && !n.startsWith(".")) ?? "migrate-verify.test";
};

/**
 * The request set, from the old config: for every server, every location's
 * path (and a sample under prefix and regex locations) with GET and a POST
 * with a body, a WebSocket upgrade where the location proxies, and HEAD,
 * PUT, DELETE, OPTIONS on the server's first location.
 */
export function requestSet(tree: readonly Directive[]): TrafficRequest[] {
  const out: TrafficRequest[] = [];
  const http = tree.find((d) => d.directive === "http")?.block ?? [];
  for (const server of http.filter((d) => d.directive === "server")) {
    const listens = (server.block ?? []).filter((d) => d.directive === "listen");
    const listen = listens.find((l) => !l.args.includes("ssl")) ?? listens[0];
    const key = listenKey(listen?.args[0] ?? "80");
    const tls = listen?.args.includes("ssl") ?? false;
    const host = hostOf(server);
    const base = { server, listen: key, tls, host };
    const locations: Directive[] = [];
    const gather = (nodes: readonly Directive[]) => {
      for (const d of nodes) if (d.directive === "location") {
        locations.push(d);
        gather(d.block ?? []);
      }
    };
    gather(server.block ?? []);
    if (locations.length === 0) out.push({ ...base, location: undefined, method: "GET", path: "/" });
    let first = true;
    for (const l of locations) {
      const [mod, p] = l.args.length === 2 ? [l.args[0]!, l.args[1]!] : ["", l.args[0] ?? ""];
      if (p.startsWith("@")) continue;
      const paths: string[] = [];
      if (mod === "~" || mod === "~*") {
        const sample = regexSample(p, mod === "~*");
        if (sample) paths.push(sample);
      } else if (p.startsWith("/")) {
        paths.push(p);
        if (mod !== "=") paths.push(p.endsWith("/") ? `${p}verify-sample` : `${p}/verify-sample`);
      }
      const proxied = (l.block ?? []).some((d) => d.directive === "proxy_pass");
      for (const path of paths) {
        out.push({ ...base, location: l, method: "GET", path });
        out.push({ ...base, location: l, method: "POST", path, body: "migrate-verify body\n" });
      }
      if (paths.length && proxied) out.push({ ...base, location: l, method: "GET", path: paths[0]!, websocket: true });
      if (paths.length && first) {
        for (const method of ["HEAD", "PUT", "DELETE", "OPTIONS"]) out.push({ ...base, location: l, method, path: paths[0]!, ...(method === "PUT" ? { body: "migrate-verify put\n" } : {}) });
        first = false;
      }
    }
  }
  return out;
}

export const showRequest = (r: TrafficRequest) => `${r.websocket ? "GET (WebSocket upgrade)" : r.method} ${r.tls ? "https" : "http"}://${r.host}${r.path} (listen ${r.listen})`;

// ------------------------------------------------------------ answers

export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** What the echo backend saw, when the answer came from one. */
  backend?: Record<string, unknown>;
  error?: string;
}

/** Headers no comparison should look at: set per response, per server, or per connection. */
const IGNORED_HEADERS = new Set(["date", "server", "etag", "last-modified", "connection", "keep-alive", "transfer-encoding", "content-length", "expires", "age", "x-verify-echo", "sec-websocket-accept"]);

export interface TrafficDifference {
  request: TrafficRequest;
  what: string;
  /** The finding that accounts for it, when one does. */
  explainedBy?: Finding;
}

function compareMaps(what: string, a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    const x = a[k];
    const y = b[k];
    if (JSON.stringify(x) !== JSON.stringify(y)) out.push(`${what} ${k}: ${x === undefined ? "(none)" : JSON.stringify(x)} became ${y === undefined ? "(none)" : JSON.stringify(y)}`);
  }
  return out;
}

/** The headers a proxy forwards as they are, compared exactly. */
const EXACT_AT_BACKEND = new Set(["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip"]);

/**
 * The other X-* headers the backend saw with their numbers masked: a
 * request-start time (`t=$msec`), a request id or the scratch port differs
 * between the two runs and is no difference; the header's presence and shape is.
 */
function customHeadersMasked(seen: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, k.startsWith("x-") && !EXACT_AT_BACKEND.has(k) && typeof v === "string" ? v.replace(/[0-9a-f]*[0-9][0-9a-f]*/g, "#") : v]));
}

/** Every way the new answer differs from the old one, in words. */
export function compareAnswers(old: Answer, neu: Answer): string[] {
  if (old.error || neu.error) return old.error === neu.error ? [] : [`the request ${old.error ? `failed on the old config (${old.error})` : "succeeded on the old config"} and ${neu.error ? `failed on the new one (${neu.error})` : "succeeded on the new one"}`];
  const out: string[] = [];
  if (old.status !== neu.status) out.push(`status ${old.status} became ${neu.status}`);
  const pick = (h: Record<string, string>) => Object.fromEntries(Object.entries(h).filter(([k]) => !IGNORED_HEADERS.has(k)));
  out.push(...compareMaps("response header", pick(old.headers), pick(neu.headers)));
  if (old.backend || neu.backend) {
    if (!old.backend || !neu.backend) out.push(old.backend ? "the old config's answer came from the backend, the new one's did not" : "the new config's answer came from a backend, the old one's did not");
    else out.push(...compareMaps("at the backend:", customHeadersMasked(old.backend), customHeadersMasked(neu.backend)));
  } else if (old.body !== neu.body) {
    const cut = (s: string) => JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);
    out.push(`body ${cut(old.body)} became ${cut(neu.body)}`);
  }
  return out;
}

/** The last line inside a block (its children's, recursively). */
function lastLine(d: Directive): number {
  let n = d.line;
  for (const c of d.block ?? []) n = Math.max(n, lastLine(c));
  return n;
}

/**
 * The finding that accounts for a difference on this request: something in
 * its location (or in its server outside any location) that the report says
 * was not carried, changed or must be done by hand.
 */
export function explainDifference(r: TrafficRequest, findings: readonly Finding[]): Finding | undefined {
  const relevant = findings.filter((f) => f.kind === "lost" || f.kind === "todo" || f.kind === "changed");
  const within = (f: Finding, d: Directive) => f.file === d.file && f.line >= d.line && f.line <= lastLine(d);
  if (r.location) {
    const hit = relevant.find((f) => within(f, r.location!));
    if (hit) return hit;
  }
  const locations = (r.server.block ?? []).filter((d) => d.directive === "location");
  return relevant.find((f) => within(f, r.server) && !locations.some((l) => within(f, l)));
}
