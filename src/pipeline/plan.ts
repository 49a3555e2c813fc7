/**
 * Plan: a validated Spec -> the render model. Pure. Defaults are applied and
 * names resolved here, so templates only lay out what the model says.
 *
 * Every block that comes from the spec carries its spec path as a comment
 * (`# servers[0].locations[1]`); `check` uses those to map nginx's
 * "in nginx.conf:LINE" back to the spec.
 */
import type { RuntimeConfig, RuntimeUpstream } from "../contract/runtime-config.js";
import type { NginxDirective } from "../render/quote.js";
import { needsLogPhase, runsLogPhase, type AccessLog, type Location, type Server, type Spec, type Upstream } from "../spec/schema.js";
import { nginxDuration, parseDuration } from "../spec/units.js";
import { formatPeerAddress } from "../spec/address.js";
import { hasUpstreamModule } from "../spec/features.js";
import { consulUpstreamEntries, peerOf } from "../spec/upstream-checks.js";
import { planStaticStatus, planStaticUpstream, splitUpstreams } from "./plan-static.js";
import { BASELINE_VERSION, versionAtLeast } from "../target/index.js";
import { planSecurityHeaders, planTls } from "./plan-tls.js";
import { planDnsStatus, planDnsUpstream } from "./plan-dns.js";

export interface RenderModel {
  generator: string;
  specFile: string;
  modules: string[];
  main: NginxDirective[];
  events: NginxDirective[];
  http: NginxDirective[];
  upstreams: NginxDirective[];
  servers: NginxDirective[];
  /** Data for lua/gen_lb/config.lua (the runtime contract); build_id and generator are added by render. */
  luaConfig: RuntimeConfig;
}

/** Names the runtime and the template agree on. */
export const DICTS = { peers: "gen_lb_peers", health: "gen_lb_health", locks: "gen_lb_locks" } as const;
export const HASH_VAR = "gen_lb_hash_key";
/** Debian's and most distributions' CA bundle, for https:// Consul without consul.ca_file. */
export const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

const d = (name: string, ...args: Array<string | number | boolean>): NginxDirective => ({ name, args });
const block = (name: string, args: Array<string | number>, inner: NginxDirective[], comment?: string): NginxDirective => ({
  name,
  args,
  block: inner,
  comment,
});
const lua = (name: string, code: string): NginxDirective => ({ name, args: [], lua: code });

const seconds = (v: string | number) => (typeof v === "number" ? v : parseDuration(v));
const duration = (v: string | number) => nginxDuration(seconds(v));
const size = (v: string | number) => (typeof v === "number" ? String(v) : v);

export function planBuild(spec: Spec, opts: { specFile: string; generator: string }): RenderModel {
  return {
    generator: opts.generator,
    specFile: opts.specFile,
    modules:
      spec.target === "nginx"
        ? ["ndk_http_module.so", "ngx_http_lua_module.so"].map((m) => `${spec.nginx.modules_dir.replace(/\/$/, "")}/${m}`)
        : [],
    main: planMain(spec),
    events: [d("worker_connections", spec.nginx.worker_connections), ...optional("multi_accept", spec.nginx.multi_accept), ...spec.nginx.events_directives],
    http: planHttp(spec),
    upstreams: Object.entries(spec.upstreams)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, up]) =>
        up.service === undefined ? planStaticUpstream(name, up) : up.discovery === "dns" ? planDnsUpstream(name, up, spec) : planUpstream(name, up),
      ),
    servers: [
      ...spec.servers.map((server, i) => planServer(spec, server, i)),
      ...(spec.status.enabled ? [planStatusServer(spec)] : []),
    ],
    luaConfig: planLuaConfig(spec),
  };
}

function optional(name: string, value: string | number | boolean | undefined): NginxDirective[] {
  return value === undefined ? [] : [d(name, value)];
}

function planMain(spec: Spec): NginxDirective[] {
  const n = spec.nginx;
  return [
    ...(n.user === undefined ? [] : [d("user", ...n.user.split(/\s+/))]),
    d("worker_processes", n.worker_processes),
    ...optional("worker_rlimit_nofile", n.worker_rlimit_nofile),
    d("error_log", n.error_log.path, n.error_log.level),
    d("pid", n.pid),
    // nginx clears the environment of its workers; the token must be let through by name.
    ...(spec.consul.token_env === undefined ? [] : [d("env", spec.consul.token_env)]),
    ...n.directives,
  ];
}

function accessLogs(logs: "off" | AccessLog[] | undefined): NginxDirective[] {
  if (logs === undefined) return [];
  if (logs === "off") return [d("access_log", "off")];
  return logs.map((log) => {
    const target = log.path ?? syslogTarget(log.syslog!);
    const args: string[] = [target, log.format ?? "combined"];
    if (log.buffer !== undefined) args.push(`buffer=${size(log.buffer)}`);
    if (log.flush !== undefined) args.push(`flush=${duration(log.flush)}`);
    if (log.if !== undefined) args.push(`if=${log.if}`);
    return d("access_log", ...args);
  });
}

function syslogTarget(s: NonNullable<AccessLog["syslog"]>): string {
  const parts = [`server=${s.server}`];
  if (s.facility) parts.push(`facility=${s.facility}`);
  if (s.tag) parts.push(`tag=${s.tag}`);
  if (s.severity) parts.push(`severity=${s.severity}`);
  if (s.nohostname) parts.push("nohostname");
  return `syslog:${parts.join(",")}`;
}

function planHttp(spec: Spec): NginxDirective[] {
  const h = spec.nginx.http;
  const out: NginxDirective[] = [];
  if (h.include_mime_types) out.push(d("include", "mime.types"));
  const types = Object.entries(h.types);
  if (types.length > 0) out.push(block("types", [], types.map(([type, exts]) => ({ name: type, args: exts, entry: true }))));
  out.push(d("default_type", h.default_type));
  const flags: Array<[string, boolean | undefined]> = [
    ["sendfile", h.sendfile],
    ["tcp_nopush", h.tcp_nopush],
    ["tcp_nodelay", h.tcp_nodelay],
    ["server_tokens", h.server_tokens],
  ];
  for (const [name, value] of flags) out.push(...optional(name, value));
  const durations: Array<[string, string | number | undefined]> = [
    ["keepalive_timeout", h.keepalive_timeout],
    ["client_body_timeout", h.client_body_timeout],
    ["client_header_timeout", h.client_header_timeout],
    ["send_timeout", h.send_timeout],
    ["proxy_connect_timeout", h.proxy_connect_timeout],
    ["proxy_send_timeout", h.proxy_send_timeout],
    ["proxy_read_timeout", h.proxy_read_timeout],
  ];
  for (const [name, value] of durations) if (value !== undefined) out.push(d(name, duration(value)));
  const sizes: Array<[string, string | number | undefined]> = [
    ["client_max_body_size", h.client_max_body_size],
    ["client_body_buffer_size", h.client_body_buffer_size],
    ["client_header_buffer_size", h.client_header_buffer_size],
    ["proxy_buffer_size", h.proxy_buffer_size],
    ["proxy_busy_buffers_size", h.proxy_busy_buffers_size],
  ];
  for (const [name, value] of sizes) if (value !== undefined) out.push(d(name, size(value)));
  const numbers: Array<[string, number | undefined]> = [
    ["keepalive_requests", h.keepalive_requests],
    ["types_hash_max_size", h.types_hash_max_size],
    ["server_names_hash_bucket_size", h.server_names_hash_bucket_size],
  ];
  for (const [name, value] of numbers) out.push(...optional(name, value));
  if (h.large_client_header_buffers) out.push(d("large_client_header_buffers", ...h.large_client_header_buffers.split(/\s+/)));
  if (h.proxy_buffers) out.push(d("proxy_buffers", ...h.proxy_buffers.split(/\s+/)));
  if (h.resolver) out.push(d("resolver", ...h.resolver));

  for (const [name, format] of Object.entries(h.log_formats)) {
    const f = typeof format === "string" ? { format } : format;
    out.push(d("log_format", name, ...(f.escape ? [`escape=${f.escape}`] : []), f.format));
  }
  out.push(...accessLogs(h.access_log));
  out.push(...optional("error_log", h.error_log));

  if (h.gzip) {
    const g = h.gzip;
    out.push(d("gzip", g.enabled));
    out.push(...optional("gzip_comp_level", g.comp_level), ...optional("gzip_min_length", g.min_length));
    if (g.types) out.push(d("gzip_types", ...g.types));
    if (g.proxied) out.push(d("gzip_proxied", ...g.proxied));
    out.push(...optional("gzip_vary", g.vary), ...optional("gzip_http_version", g.http_version), ...optional("gzip_disable", g.disable));
    if (g.buffers) out.push(d("gzip_buffers", ...g.buffers.split(/\s+/)));
  }

  const websocket = spec.servers.some((s) => s.locations.some((l) => l.websocket));
  if (h.upgrade_map || websocket) {
    out.push(block("map", ["$http_upgrade", "$connection_upgrade"], [mapEntry("default", "upgrade"), mapEntry("", "close")]));
  }
  h.maps.forEach((m, i) => {
    const inner: NginxDirective[] = [];
    if (m.hostnames) inner.push(d("hostnames"));
    if (m.default !== undefined) inner.push(mapEntry("default", m.default));
    for (const e of m.entries) inner.push(mapEntry(e.match, e.value));
    out.push(block("map", [m.source, m.variable], inner, `nginx.http.maps[${i}]`));
  });

  // The Lua runtime: our modules first, then the user's, then the default path (;;).
  const luaPath = ["$prefix/lua/?.lua", ...spec.nginx.lua_package_path].join(";") + ";;";
  out.push({ name: "lua_package_path", args: [luaPath], comment: "gen-lb runtime" });
  out.push(d("lua_shared_dict", DICTS.peers, dictSize(spec.runtime.peers_dict_size, spec)));
  out.push(d("lua_shared_dict", DICTS.health, dictSize(spec.runtime.health_dict_size, spec)));
  out.push(d("lua_shared_dict", DICTS.locks, "1m"));
  // The runtime logs each Consul failure streak once; the module's own line per failed socket op is noise.
  out.push(d("lua_socket_log_errors", "off"));
  // One long-lived watcher timer per upstream, plus health checks and housekeeping.
  const timers = splitUpstreams(spec).consul.length * 2 + 64;
  if (timers > 256) out.push(d("lua_max_running_timers", timers), d("lua_max_pending_timers", timers * 2));
  const ca = spec.consul.ca_file ?? (spec.consul.ssl_verify && spec.consul.addresses.some((a) => a.startsWith("https:")) ? SYSTEM_CA_BUNDLE : undefined);
  if (ca !== undefined) out.push(d("lua_ssl_trusted_certificate", ca), d("lua_ssl_verify_depth", 5));
  out.push(lua("init_by_lua_block", 'require("gen_lb.runtime").init()'));
  out.push(lua("init_worker_by_lua_block", 'require("gen_lb.runtime").init_worker()'));
  out.push(...h.directives);
  return out;
}

/** A map entry: its first word is a match value (any string, '' included), not a directive name. */
function mapEntry(match: string, value: string): NginxDirective {
  return { name: match, args: [value], entry: true };
}

/** About 8 KiB per upstream of peers and health keys, never under 1 MiB. */
function dictSize(explicit: string | number | undefined, spec: Spec): string {
  if (explicit !== undefined) return size(explicit);
  const bytes = Math.max(1024 * 1024, splitUpstreams(spec).consul.length * 8 * 1024 * 4);
  return `${Math.ceil(bytes / (1024 * 1024))}m`;
}

function planUpstream(name: string, up: Upstream): NginxDirective {
  return block(
    "upstream",
    [name],
    [
      // Never used: balancer_by_lua picks every peer. nginx needs one server line.
      d("server", "0.0.0.1:1"),
      lua("balancer_by_lua_block", `require("gen_lb.balancer").balance(${JSON.stringify(name)})`),
      // keepalive must come after balancer_by_lua so its pool wraps our balancer.
      ...(up.keepalive > 0 ? [d("keepalive", up.keepalive)] : []),
      ...(up.keepalive > 0 && up.keepalive_timeout !== undefined ? [d("keepalive_timeout", duration(up.keepalive_timeout))] : []),
      ...(up.keepalive > 0 ? optional("keepalive_requests", up.keepalive_requests) : []),
    ],
    `upstreams.${name}`,
  );
}

function listens(server: Server): string[] {
  const list = Array.isArray(server.listen) ? server.listen : [server.listen];
  return list.map(String);
}

function planServer(spec: Spec, server: Server, index: number): NginxDirective {
  const inner: NginxDirective[] = [];
  // nginx 1.25.1 made HTTP/2 a server directive and deprecated the listen
  // flag ([warn] on every -t); older versions know only the flag.
  const http2Directive = versionAtLeast(spec.target_version ?? BASELINE_VERSION, "1.25.1");
  for (const l of listens(server)) {
    const flags: string[] = [];
    if (server.ssl) flags.push("ssl");
    if (server.http2 && !http2Directive) flags.push("http2");
    if (server.default_server) flags.push("default_server");
    if (server.reuseport) flags.push("reuseport");
    inner.push(d("listen", l, ...flags, ...server.listen_options));
  }
  if (server.http2 && http2Directive) inner.push(d("http2", "on"));
  if (server.server_name.length > 0) inner.push(d("server_name", ...server.server_name));
  if (server.ssl) inner.push(...planTls(server.ssl));
  inner.push(...planSecurityHeaders(server));
  inner.push(...optional("root", server.root));
  if (server.index) inner.push(d("index", ...server.index));
  for (const page of server.error_pages) inner.push(d("error_page", ...page.codes, page.uri));
  inner.push(...accessLogs(server.access_log));
  if (runsLogPhase(server, spec.upstreams)) {
    // Only where an upstream needs to see its requests end (least_conn,
    // passive checks, counters): a log phase costs about 1.3k instructions
    // per request. Server level, so that every location inherits it: an
    // error_page or X-Accel-Redirect target ends a proxied request too.
    inner.push(lua("log_by_lua_block", 'require("gen_lb.balancer").log()'));
  }
  inner.push(...server.directives);
  server.locations.forEach((loc, li) => inner.push(planLocation(spec, loc, `servers[${index}].locations[${li}]`)));
  return block("server", [], inner, `servers[${index}]`);
}

const MATCH_MODIFIER: Record<Location["match"], string | undefined> = {
  prefix: undefined,
  exact: "=",
  regex: "~",
  regex_case_insensitive: "~*",
  prefix_no_regex: "^~",
};

function planLocation(spec: Spec, loc: Location, path: string): NginxDirective {
  const modifier = MATCH_MODIFIER[loc.match];
  const inner: NginxDirective[] = [];
  inner.push(...optional("root", loc.root), ...optional("alias", loc.alias));
  if (loc.index) inner.push(d("index", ...loc.index));
  if (loc.try_files) inner.push(d("try_files", ...loc.try_files));
  if (loc.return) inner.push(d("return", loc.return.code, ...(loc.return.text === undefined ? [] : [loc.return.text])));
  if (loc.upstream !== undefined) inner.push(...planProxy(spec, spec.upstreams[loc.upstream]!, loc));
  inner.push(...loc.directives);
  return block("location", modifier === undefined ? [loc.path] : [modifier, loc.path], inner, path);
}

/** runtime.hold_for_peers in seconds; by default the Consul timeout, about when a first answer (or its failure) arrives. */
function holdForPeers(spec: Spec): number {
  return seconds(spec.runtime.hold_for_peers ?? spec.consul.timeout);
}

/** Whether the Lua runtime discovers and balances `up` (a Consul upstream not on the DNS engine). */
function luaEngine(up: Upstream): boolean {
  return up.service !== undefined && up.discovery !== "dns";
}

/**
 * Whether requests to `up` may wait for its first peers (gen_lb.discovery_hold): only the Lua engine fills them,
 * and fallback peers serve from the start unless one is a host name, which a timer resolves first.
 */
function holdsRequests(spec: Spec, up: Upstream): boolean {
  const startsWithPeers = up.fallback.length > 0 && up.fallback.every((p) => peerOf(typeof p === "string" ? p : p.address).kind !== "name");
  return luaEngine(up) && !startsWithPeers && holdForPeers(spec) > 0;
}

/** Whether gen-lb puts its own access_by_lua in a location proxying to `up` (nginx keeps one per location). */
export function ownsAccessPhase(spec: Spec, up: Upstream): boolean {
  return holdsRequests(spec, up) || (luaEngine(up) && !up.fail_open);
}

function planProxy(spec: Spec, up: Upstream, loc: Location): NginxDirective[] {
  const name = loc.upstream!;
  // Only the Lua engine reads the hash key from a variable and answers fail-closed itself.
  const consul = luaEngine(up);
  const out: NginxDirective[] = [];
  if (consul && up.hash_key !== undefined) out.push(d("set", `$${HASH_VAR}`, up.hash_key));
  out.push(d("proxy_pass", `http://${name}`), d("proxy_http_version", "1.1"));
  const headers: Record<string, string> = loc.proxy_set_header ?? {
    Host: "$host",
    "X-Real-IP": "$remote_addr",
    "X-Forwarded-For": "$proxy_add_x_forwarded_for",
    "X-Forwarded-Proto": "$scheme",
  };
  for (const [header, value] of Object.entries(headers)) out.push(d("proxy_set_header", header, value));
  if (loc.websocket) {
    out.push(d("proxy_set_header", "Upgrade", "$http_upgrade"), d("proxy_set_header", "Connection", "$connection_upgrade"));
  } else {
    // An empty Connection header lets upstream keepalive work.
    out.push(d("proxy_set_header", "Connection", ""));
  }
  if (up.connect_timeout !== undefined) out.push(d("proxy_connect_timeout", duration(up.connect_timeout)));
  if (up.send_timeout !== undefined) out.push(d("proxy_send_timeout", duration(up.send_timeout)));
  if (up.read_timeout !== undefined) out.push(d("proxy_read_timeout", duration(up.read_timeout)));
  if (up.retries === 0) {
    out.push(d("proxy_next_upstream", "off"));
  } else {
    const conditions = ["error", "timeout", ...up.retry_statuses.map((s) => `http_${s}`)];
    if (up.retry_non_idempotent) conditions.push("non_idempotent");
    out.push(d("proxy_next_upstream", ...conditions), d("proxy_next_upstream_tries", up.retries + 1));
  }
  // Access phase, where a request may wait (balancer_by_lua cannot yield).
  // It costs about 2,200 instructions per request even once populated
  // (entering access_by_lua; bench/balancer-instructions.ts: gen 26.3k -> 28.5k);
  // a set_by_lua + `if` guard measured dearer. Fallback peers or
  // runtime.hold_for_peers: 0 leave it out (fallback host names do not: they are resolved after the start).
  // Without fallback peers a fresh start has none until Consul's first
  // answer: hold the request briefly rather than answer 502 at once.
  // Fail closed answers 503 before proxying: a balancer can only make nginx say 500 or 502.
  const access: string[] = [];
  if (holdsRequests(spec, up)) access.push(`require("gen_lb.discovery_hold").wait(${JSON.stringify(name)})`);
  if (consul && !up.fail_open) access.push(`require("gen_lb.balancer").access(${JSON.stringify(name)})`);
  if (access.length > 0) out.push(lua("access_by_lua_block", access.join(" ")));
  // Passive checks see an answer the upstream cut short (a reset or close
  // mid-body, chunked or not) by its last buffer never going through the
  // body filter: nothing else tells it apart once the status went out.
  if (ownsBodyFilter(up)) out.push(lua("body_filter_by_lua_block", 'require("gen_lb.balancer").body()'));
  return out;
}

/** Whether gen-lb puts its own body_filter_by_lua in a location proxying to `up`: passive checks on the Lua engine. */
export function ownsBodyFilter(up: Upstream): boolean {
  return luaEngine(up) && up.healthcheck.passive !== undefined;
}

/**
 * The status listener answers its path and nothing else: without a catch-all
 * location nginx would serve the prefix's html/ on it. The allow list is at
 * server level so that it covers every request to the listener; the
 * catch-all answers 404 in the content phase, after access has run (a
 * `return` would answer before the allow list is consulted).
 */
function planStatusServer(spec: Spec): NginxDirective {
  const s = spec.status;
  return block(
    "server",
    [],
    [
      d("listen", String(s.listen)),
      d("access_log", "off"),
      ...s.allow.map((a) => d("allow", a)),
      d("deny", "all"),
      block("location", ["=", s.path], [d("default_type", "application/json"), lua("content_by_lua_block", 'require("gen_lb.status").serve()')]),
      block("location", ["/"], [lua("content_by_lua_block", "ngx.exit(ngx.HTTP_NOT_FOUND)")]),
    ],
    "status",
  );
}

function planLuaConfig(spec: Spec): RuntimeConfig {
  const c = spec.consul;
  const ups = splitUpstreams(spec);
  return {
    dicts: { ...DICTS },
    log_level: spec.runtime.log_level,
    // nginx's own default worker user when the master is root and `user` is unset.
    worker_user: spec.nginx.user?.split(/\s+/)[0] ?? "nobody",
    dump_file: c.dump_file,
    hold_for_peers: holdForPeers(spec),
    consul: {
      addresses: c.addresses.map(parseConsulAddress),
      token_env: c.token_env,
      datacenter: c.datacenter,
      wait: seconds(c.wait),
      timeout: seconds(c.timeout),
      ssl_verify: c.ssl_verify,
      ca_file: c.ca_file,
      empty: c.empty,
    },
    upstream_names: ups.consul.map(([name]) => name),
    upstreams: Object.fromEntries(consulUpstreamEntries(spec).map(([name, up]) => [name, planLuaUpstream(name, up, spec)])),
    // Static upstreams are nginx's own; the runtime only lists them (status).
    ...planStaticLuaConfig(spec, ups.static),
    ...planDnsLuaConfig(spec, ups.dns),
    status: { enabled: spec.status.enabled, path: spec.status.path },
    resolver: resolverServers(spec.nginx.http.resolver ?? []),
  };
}

/** discovery: dns upstreams are nginx's own too; status lists them with source "dns". */
function planDnsLuaConfig(spec: Spec, list: Array<[string, Upstream]>): Pick<RuntimeConfig, "dns_upstream_names" | "dns_upstreams"> {
  const withService = list.filter((e): e is [string, Upstream & { service: string }] => e[1].service !== undefined);
  return {
    dns_upstream_names: withService.map(([name]) => name),
    dns_upstreams: Object.fromEntries(withService.map(([name, up]) => [name, planDnsStatus(up, spec)])),
  };
}

function planStaticLuaConfig(
  spec: Spec,
  list: Array<[string, Upstream]>,
): Pick<RuntimeConfig, "static_upstream_names" | "static_upstreams" | "upstream_module"> {
  return {
    static_upstream_names: list.map(([name]) => name),
    static_upstreams: Object.fromEntries(list.map(([name, up]) => [name, planStaticStatus(up)])),
    // lua-upstream-nginx-module (ngx.upstream): where the target has it, status shows the peers' state.
    upstream_module: hasUpstreamModule(spec),
  };
}

function planLuaUpstream(name: string, up: Upstream & { service: string }, spec: Spec): RuntimeUpstream {
  const active = up.healthcheck.active;
  const passive = up.healthcheck.passive;
  return {
    name,
    service: up.service,
    tags: up.tags,
    datacenter: up.datacenter ?? spec.consul.datacenter,
    balance: up.balance,
    hash_var: up.hash_key === undefined ? undefined : HASH_VAR,
    retries: up.retries,
    fail_open: up.fail_open,
    slow_start: up.slow_start === undefined ? undefined : seconds(up.slow_start),
    log_phase: needsLogPhase(up),
    fallback: up.fallback.map((p) => (typeof p === "string" ? { ...fallbackPeer(p), weight: 1 } : { ...fallbackPeer(p.address), weight: p.weight })),
    healthcheck: {
      active:
        active === undefined
          ? undefined
          : {
              type: active.type,
              path: active.path,
              host: active.host,
              headers: active.headers,
              interval: seconds(active.interval),
              timeout: seconds(active.timeout),
              fall: active.fall,
              rise: active.rise,
              valid_statuses: active.valid_statuses,
              concurrency: active.concurrency,
              ssl_verify: active.ssl_verify,
              probe_new: active.probe_new,
            },
      passive:
        passive === undefined
          ? undefined
          : { max_fails: passive.max_fails, fail_timeout: seconds(passive.fail_timeout), statuses: passive.statuses },
    },
  };
}

/** A fallback peer as the runtime takes it: canonical host (IPv6 without brackets, as Consul gives it) and port. */
function fallbackPeer(text: string): { host: string; port: number } {
  const a = peerOf(text);
  if (a.kind === "unix") throw new Error(`a unix socket reached the fallback peers: ${formatPeerAddress(a)}`);
  return { host: a.host, port: a.port };
}

/** The name servers of nginx's resolver directive (its valid=, ipv6= ... options left out); port 53 unless given. */
function resolverServers(args: string[]): Array<{ host: string; port: number }> {
  const out: Array<{ host: string; port: number }> = [];
  for (const a of args) {
    if (a.includes("=")) continue;
    const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(a);
    if (v6) out.push({ host: v6[1]!, port: v6[2] ? Number(v6[2]) : 53 });
    else if (/^[^:]+:\d+$/.test(a)) out.push(splitHostPort(a));
    else if (a.includes(":")) out.push({ host: a, port: 53 });
    else out.push({ host: a, port: 53 });
  }
  return out;
}

export function splitHostPort(hostPort: string): { host: string; port: number } {
  const at = hostPort.lastIndexOf(":");
  return { host: hostPort.slice(0, at).replace(/^\[(.*)\]$/, "$1"), port: Number(hostPort.slice(at + 1)) };
}

function parseConsulAddress(url: string): RuntimeConfig["consul"]["addresses"][number] {
  const u = new URL(url);
  const scheme = u.protocol === "https:" ? "https" : "http";
  return { scheme, host: u.hostname.replace(/^\[(.*)\]$/, "$1"), port: u.port ? Number(u.port) : scheme === "https" ? 8501 : 8500 };
}

