/**
 * `migrate --verify`: compare the directive tree of the config gen-lb builds
 * from the migrated spec with the old one, scope by scope (main, events,
 * http, each server and location, nested blocks), and list every difference
 * the report does not explain. Explained are: what the report says was
 * dropped or not carried, what moved into the Lua runtime's data (upstream
 * peers, balancing, Consul settings), and what gen-lb always generates.
 * Values are compared as nginx reads them ("65" and "65s" are one duration).
 */
import type { Directive } from "../nginx/types.js";
import type { Finding } from "./types.js";
import { unbrace } from "./braces.js";

export interface Difference {
  kind: "missing" | "changed" | "added";
  /** Where to look: the old directive for missing/changed, the new one for added. */
  file: string;
  line: number;
  scope: string;
  message: string;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;
const SIZE = /^(\d+)([kKmMgG])$/;

function normArg(a: string): string {
  const d = DURATION.exec(a);
  if (d) {
    const mult = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[d[2] ?? "s"]!;
    return `${Number(d[1]) * mult}`;
  }
  const s = SIZE.exec(a);
  if (s) return `${Number(s[1]) * { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[s[2]!.toLowerCase() as "k" | "m" | "g"]}`;
  return a;
}

/** A directive as nginx means it, with nginx's implicit defaults made explicit. */
function norm(d: Directive): string {
  let args = d.args;
  if (d.directive === "log_format") args = [args[0] ?? "", ...(args[1]?.startsWith("escape=") ? [args[1]] : []), args.slice(args[1]?.startsWith("escape=") ? 2 : 1).join("")];
  if (d.directive === "error_log" && args.length === 1) args = [...args, "error"];
  if (d.directive === "access_log" && args.length === 1 && args[0] !== "off") args = [...args, "combined"];
  // listen parameters mean the same in any order; "default" is the old spelling of default_server.
  if (d.directive === "listen") args = [normListen(args[0] ?? ""), ...args.slice(1).map((a) => (a === "default" ? "default_server" : a)).sort()];
  // `${name}` is `$name` to nginx where no name character follows (migrate writes the latter).
  return [d.directive, ...args.map((a) => normArg(unbrace(a)))].join("\u0000");
}

const show = (d: Directive) => [d.directive, ...d.args.map((a) => (a.includes("\n") ? "{...}" : a))].join(" ");
const key = (d: Directive) => `${d.file}:${d.line}:${d.column}`;

/** Directives whose value is nginx's built-in default: leaving them out changes nothing. */
const NGINX_DEFAULTS = new Set(
  [
    "gzip off", "gzip_vary off", "gzip_comp_level 1", "gzip_min_length 20", "gzip_http_version 1.1", "gzip_proxied off",
    "sendfile off", "tcp_nopush off", "tcp_nodelay on", "server_tokens on", "keepalive_timeout 75s", "keepalive_requests 1000",
    "client_max_body_size 1m", "client_body_timeout 60s", "client_header_timeout 60s", "send_timeout 60s",
    "proxy_connect_timeout 60s", "proxy_read_timeout 60s", "proxy_send_timeout 60s", "proxy_buffering on", "multi_accept off",
    "ssl_prefer_server_ciphers off", "ssl_session_tickets on", "charset off", "autoindex off",
  ].map((t) => {
    const [n, ...a] = t.split(" ");
    return [n!, ...a.map(normArg)].join("\u0000");
  }),
);
const isDefault = (d: Directive) => NGINX_DEFAULTS.has(norm(d));

/** What gen-lb adds on its own, per scope kind. */
function generated(scope: string, d: Directive): boolean {
  const n = d.directive;
  if (/^(load_module|env|worker_processes|error_log|pid|worker_connections|multi_accept)$/.test(n) && (scope === "main" || scope === "events")) return true;
  if (scope === "http") {
    if (n === "include" && d.args[0] === "mime.types") return true;
    if (/^(default_type|lua_package_path|lua_ssl_trusted_certificate|lua_ssl_verify_depth|lua_socket_log_errors|lua_max_running_timers|lua_max_pending_timers)$/.test(n)) return true;
    if (n === "lua_shared_dict" && d.args[0]?.startsWith("gen_lb_")) return true;
    if (/^init(_worker)?_by_lua_block$/.test(n)) return true;
    if (n === "map" && d.args[0] === "$http_upgrade") return true;
  }
  // The balancer's log phase, at server level.
  if (n === "log_by_lua_block" && d.args[0]?.trim() === 'require("gen_lb.balancer").log()') return true;
  if (scope.includes("location")) {
    if (/^(proxy_pass|proxy_http_version|proxy_set_header|proxy_next_upstream|proxy_next_upstream_tries)$/.test(n)) return true;
    if (n === "set" && d.args[0] === "$gen_lb_hash_key") return true;
    if (n === "access_by_lua_block" && /^require\("gen_lb\.(discovery_hold|balancer)"\)/.test(d.args[0]?.trim() ?? "")) return true;
    // The passive checks' body filter (a peer that cuts a response short counts as failed).
    if (/^(body|header)_filter_by_lua_block$/.test(n) && /^require\("gen_lb\.balancer"\)\.\w+\(\)$/.test(d.args[0]?.trim() ?? "")) return true;
  }
  return false;
}

export function compareConfigs(oldTree: readonly Directive[], newTree: readonly Directive[], findings: readonly Finding[]): Difference[] {
  const disposition = new Map<string, Finding>();
  for (const f of findings) if (f.directive !== undefined && f.column !== undefined) disposition.set(`${f.file}:${f.line}:${f.column}`, f);
  const diffs: Difference[] = [];
  // New directives a finding accounts for ([name] alone: any arguments).
  const explainedList = findings.flatMap((f) => f.explains ?? []);
  const explained = (d: Directive) => explainedList.some((e) => e[0] === d.directive && (e.length === 1 || norm({ ...d, args: e.slice(1) }) === norm(d)));
  // http-level TLS files moved into each ssl server (as nginx inherits them): not missing at http, not new in servers.
  const inherited = new Set(findings.filter((f) => f.to?.startsWith("servers[].ssl.") && /set at http level/.test(f.message)).map((f) => `${f.directive}\u0000${(f.newArgs ?? []).join("\u0000")}`));

  /** Old directives that must show up in the new config. */
  const expected = (d: Directive): boolean => {
    if (d.directive === "#") return false;
    const f = disposition.get(key(d));
    if (f === undefined) return true;
    if (f.kind === "dropped" || f.kind === "lost" || f.kind === "changed") return false;
    if (inherited.size && /set at http level/.test(f.message)) return false;
    // Moved into the runtime's data (Lua config), not nginx.conf.
    if (f.to !== undefined && /^(upstreams|consul|status|target)/.test(f.to)) return false;
    return true;
  };

  const compare = (scope: string, olds: readonly Directive[], news: readonly Directive[]) => {
    const pool = news.filter((d) => d.directive !== "#");
    const take = (pred: (d: Directive) => boolean) => {
      const i = pool.findIndex(pred);
      return i < 0 ? undefined : pool.splice(i, 1)[0];
    };
    for (const o of olds) {
      if (!expected(o) || o.directive === "server" || o.directive === "upstream") continue;
      if (o.block !== undefined) {
        const n = take((d) => d.directive === o.directive && d.block !== undefined && norm(d) === norm(o));
        if (n === undefined) diffs.push({ kind: "missing", file: o.file, line: o.line, scope, message: `${show(o)} { ... } is not in the new config` });
        else compare(`${scope} > ${show(o)}`, o.block, n.block ?? []);
        continue;
      }
      const f = disposition.get(key(o));
      const want = f?.newArgs ? { ...o, args: f.newArgs } : o;
      const same = take((d) => norm(d) === norm(want));
      if (same) continue;
      const other = pool.find((d) => d.directive === o.directive && !generated(scope, d));
      if (other && isDefault(o) && isDefault(other)) {
        pool.splice(pool.indexOf(other), 1);
      } else if (other) {
        pool.splice(pool.indexOf(other), 1);
        if (!explained(other)) diffs.push({ kind: "changed", file: o.file, line: o.line, scope, message: `${show(o)} became ${show(other)} (${other.file}:${other.line})` });
      } else if (!pool.some((d) => d.directive === o.directive) && !isDefault(o)) {
        diffs.push({ kind: "missing", file: o.file, line: o.line, scope, message: `${show(o)} is not in the new config` });
      }
    }
    for (const n of pool) {
      if (n.directive === "server" || n.directive === "upstream" || generated(scope, n) || isDefault(n) || explained(n)) continue;
      // Types the old mime.types mapped and gen-lb's file does not, kept as nginx.http.types (the report says so).
      if ((scope === "http" && n.directive === "types") || scope.endsWith("> types")) continue;
      if (inherited.has([n.directive, ...n.args].join("\u0000"))) continue;
      if (olds.some((o) => o.directive === n.directive && !expected(o))) continue;
      diffs.push({ kind: "added", file: n.file, line: n.line, scope, message: `${show(n)} is new` });
    }
  };

  const child = (list: readonly Directive[], name: string) => list.find((d) => d.directive === name)?.block ?? [];
  compare("main", oldTree.filter((d) => d.directive !== "events" && d.directive !== "http"), newTree.filter((d) => d.directive !== "events" && d.directive !== "http"));
  compare("events", child(oldTree, "events"), child(newTree, "events"));
  const oldHttp = child(oldTree, "http");
  const newHttp = child(newTree, "http");
  compare("http", oldHttp, newHttp);

  // Servers: an old server maps to the new ones with its server_name whose
  // listens it has (a server split by listen kind maps to several).
  const listenAddr = (d: Directive) => d.args[0] ?? "";
  const names = (s: Directive) => (s.block ?? []).filter((d) => d.directive === "server_name").flatMap((d) => d.args).sort().join(" ");
  const listensOf = (s: Directive) => (s.block ?? []).filter((d) => d.directive === "listen").map(listenAddr);
  const newServers = newHttp.filter((d) => d.directive === "server");
  for (const os of oldHttp.filter((d) => d.directive === "server")) {
    if (!expected(os)) continue;
    const ol = listensOf(os).map(normListen);
    const matches = newServers.filter((ns) => names(ns) === names(os) && listensOf(ns).length > 0 && listensOf(ns).every((l) => ol.includes(normListen(l))));
    const scope = `server ${names(os) || "(no server_name)"} (${os.file}:${os.line})`;
    if (matches.length === 0) {
      if ((os.block ?? []).some(expected)) diffs.push({ kind: "missing", file: os.file, line: os.line, scope: "http", message: `${scope} has no counterpart in the new config` });
      continue;
    }
    const oldListens = (os.block ?? []).filter((d) => d.directive === "listen");
    const newListens = matches.flatMap((m) => (m.block ?? []).filter((d) => d.directive === "listen"));
    compare(scope, oldListens, newListens);
    for (const m of matches) {
      const body = (list: readonly Directive[]) => list.filter((d) => d.directive !== "listen" && d.directive !== "location");
      const oldBody = body(os.block ?? []);
      // ssl_* settings belong only to the ssl part of a split server.
      const isSsl = (m.block ?? []).some((d) => d.directive === "listen" && d.args.includes("ssl"));
      compare(scope, isSsl ? oldBody : oldBody.filter((d) => !d.directive.startsWith("ssl_")), body(m.block ?? []));
      const locs = (list: readonly Directive[]) => list.filter((d) => d.directive === "location");
      for (const ol of locs(os.block ?? [])) {
        if (!expected(ol)) continue;
        const nl = locs(m.block ?? []).find((d) => d.args.join(" ") === ol.args.join(" "));
        if (!nl) diffs.push({ kind: "missing", file: ol.file, line: ol.line, scope, message: `location ${ol.args.join(" ")} is not in the new config` });
        else compare(`${scope} > location ${ol.args.join(" ")}`, ol.block ?? [], nl.block ?? []);
      }
    }
  }
  return diffs;
}

function normListen(a: string): string {
  if (/^\d+$/.test(a)) return `*:${a}`;
  return a.replace(/^0\.0\.0\.0:/, "*:");
}
