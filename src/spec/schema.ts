/**
 * The gen-lb spec: one strict zod schema. Every key carries a description;
 * they are the user's reference (README and `gen-lb schema` are generated
 * from them). Key names are a contract with users' CI: extend, never rename.
 *
 * Values that reach nginx.conf are quoted by the renderer, so the schema only
 * rejects what no quoting can make safe: control characters (newlines),
 * `${` (nginx would read it as a variable) and `]]`/NUL for Lua. Names that
 * become identifiers (upstream names, directive names) get a strict pattern.
 */
import { z } from "zod";
import { parsePeerAddress } from "./address.js";
import { isDuration, isSize } from "./units.js";

// ---------------------------------------------------------------- scalars

const UNSAFE_RE = /[\u0000-\u001f\u007f]|\$\{|\]\]/;

/** Free text that ends up as one quoted nginx argument or Lua string. */
export const safeText = (what = "value") =>
  z
    .string()
    .min(1, { message: `${what} must not be empty` })
    .refine((s) => !UNSAFE_RE.test(s), {
      message: `${what} must not contain control characters (newlines, tabs), "\${" or "]]": they cannot be expressed safely in nginx or Lua syntax`,
    });

/**
 * A return text: like safeText, but newlines, carriage returns and tabs are
 * allowed (`return 200 "ok\n"`); they are written as nginx's own \n, \r, \t
 * escapes inside quotes, which nginx reads back as those characters.
 */
const RETURN_UNSAFE_RE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]|\$\{/;
const returnText = (what: string) =>
  z
    .string()
    .min(1, { message: `${what} must not be empty` })
    .refine((s) => !RETURN_UNSAFE_RE.test(s), {
      message: `${what} must not contain control characters other than newline, carriage return and tab, or "\${"`,
    });

/** Like safeText, but '' is a valid map match or value. */
const mapText = (what: string) => z.union([z.literal(""), safeText(what)]);

const name = (what: string) =>
  z
    .string()
    .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, {
      message: `${what} may use only letters, digits, "_", "." and "-" (and not start with "." or "-")`,
    })
    .max(128);

const duration = (example: string) =>
  z.union([
    z.string().refine(isDuration, {
      message: `expected a duration such as "${example}" (units ms, s, m, h, d)`,
    }),
    z.number().nonnegative().describe("seconds"),
  ]);

const size = (example: string) =>
  z.union([
    z.string().refine(isSize, { message: `expected a size such as "${example}" (bytes, or k, m, g)` }),
    z.number().int().nonnegative().describe("bytes"),
  ]);

const port = z.number().int().min(1).max(65535);

const HOST_PORT_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):\d{1,5}$/;

const hostPort = z.string().refine((s) => HOST_PORT_RE.test(s) && Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535 && Number(s.slice(s.lastIndexOf(":") + 1)) > 0, {
  message: 'expected "host:port", such as "127.0.0.1:8080"',
});

const listenAddress = z
  .union([port, hostPort, z.string().regex(/^\d{1,5}$/).transform(Number).pipe(port)])
  .describe('a port (8080) or "address:port" ("127.0.0.1:8080", "[::1]:8080")');

/** The escape hatch: one extra directive, every argument quoted, never pasted raw. */
export interface Directive {
  name: string;
  args: string[];
  block?: Directive[] | undefined;
}

/** A directive as a spec file may write it (args may be left out). */
export interface DirectiveInput {
  name: string;
  args?: string[] | undefined;
  block?: DirectiveInput[] | undefined;
}

export const directiveSchema: z.ZodType<Directive, DirectiveInput> = z.lazy(() =>
  z.strictObject({
    name: z
      .string()
      .regex(/^[a-z_][a-z0-9_]*$/, { message: "directive names are lower-case letters, digits and _" })
      .describe("the nginx directive name, e.g. `proxy_buffering`"),
    args: z
      .array(z.union([z.literal(""), safeText("a directive argument")]))
      .default([])
      .describe("its arguments; each is emitted as one quoted nginx argument"),
    block: z
      .array(directiveSchema)
      .optional()
      .describe("for block directives (`map`, `if`, `limit_except`...): the directives inside"),
  }),
) as z.ZodType<Directive, DirectiveInput>;

const directives = z
  .array(directiveSchema)
  .default([])
  .describe("extra directives emitted at this level, in order (the escape hatch)");

// ---------------------------------------------------------------- consul

const consulAddress = z
  .string()
  .regex(/^https?:\/\/(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)(?::\d{1,5})?\/?$/, {
    message: 'expected "http://host:port" or "https://host:port"',
  });

export const consulSchema = z
  .strictObject({
    addresses: z
      .array(consulAddress)
      .min(1)
      .default(["http://127.0.0.1:8500"])
      .describe("Consul HTTP API addresses, tried in order on failure; https:// means TLS"),
    token_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: "an environment variable name, such as CONSUL_HTTP_TOKEN" })
      .optional()
      .describe(
        "name of the environment variable holding the ACL token, read at run time (nginx gets an `env` directive); the token itself never appears in any output",
      ),
    datacenter: name("a datacenter").optional().describe("Consul datacenter (`dc=`); default: the agent's own"),
    wait: duration("30s").default("30s").describe("blocking-query wait time (Consul caps it at 10m)"),
    timeout: duration("2s").default("2s").describe("connect and send timeout for Consul requests"),
    ssl_verify: z.boolean().default(true).describe("verify the Consul server certificate for https:// addresses"),
    ca_file: safeText("a CA file path")
      .optional()
      .describe("CA bundle for https:// addresses (lua_ssl_trusted_certificate); default: the system bundle /etc/ssl/certs/ca-certificates.crt when ssl_verify is on"),
    empty: z
      .enum(["keep", "accept"])
      .default("keep")
      .describe(
        "what an empty passing list does when the last good list was not empty: keep the last good peers, or accept it",
      ),
    dns: hostPort
      .default("127.0.0.1:8600")
      .describe('upstreams with `discovery: dns`: the Consul agent\'s DNS address ("host:port"), which nginx\'s own resolver asks for the services\' SRV records'),
    dns_valid: duration("1s")
      .default("1s")
      .describe("upstreams with `discovery: dns`: how long nginx keeps an answer before asking again (resolver valid=; Consul's DNS answers with TTL 0, so this is the re-resolution interval)"),
    dump_file: safeText("a dump file path")
      .default("state/gen_lb_peers.json")
      .describe(
        "last-known-good peer lists, written atomically, read at start before Consul answers; a path in a directory inside the prefix (absolute paths and paths that lead out of it are rejected, and the runtime refuses one that a symlink leads out)",
      ),
  })
  .describe("where and how the generated Lua talks to Consul at run time");

// ---------------------------------------------------------------- nginx (main/events/http)

const syslogTarget = z
  .strictObject({
    server: z.string().regex(/^(?:unix:\/[^\s,;]*|[A-Za-z0-9.[\]:-]+)$/, {
      message: 'expected a syslog server such as "127.0.0.1:514" or "unix:/dev/log"',
    }).describe("syslog server address"),
    facility: z.string().regex(/^[a-z0-9]+$/).optional().describe("syslog facility, e.g. local7"),
    tag: z.string().regex(/^[A-Za-z0-9_]+$/).optional().describe("syslog tag"),
    severity: z.string().regex(/^[a-z]+$/).optional().describe("syslog severity, e.g. info"),
    nohostname: z.boolean().optional().describe("omit the hostname from syslog messages"),
  })
  .describe("send this log to syslog instead of a file");

const accessLog = z
  .strictObject({
    path: safeText("an access_log path").optional().describe("file path (relative to the prefix)"),
    syslog: syslogTarget.optional(),
    format: name("a log format name").optional().describe("a name from nginx.http.log_formats (default: combined)"),
    buffer: size("32k").optional().describe("buffer size for file logs"),
    flush: duration("5s").optional().describe("flush interval for buffered logs"),
    if: safeText("an access_log condition").optional().describe("log only when this variable is non-empty and not 0, e.g. $loggable"),
  })
  .refine((l) => (l.path === undefined) !== (l.syslog === undefined), {
    message: "an access log has exactly one of `path` or `syslog`",
  });

const logFormat = z.union([
  safeText("a log format"),
  z.strictObject({
    format: safeText("a log format").describe("the format string, with nginx variables"),
    escape: z.enum(["default", "json", "none"]).optional().describe("escaping of variable values"),
  }),
]);

const gzip = z
  .strictObject({
    enabled: z.boolean().default(true).describe("gzip on/off"),
    comp_level: z.number().int().min(1).max(9).optional().describe("gzip_comp_level"),
    min_length: z.number().int().nonnegative().optional().describe("gzip_min_length in bytes"),
    types: z.array(safeText("a MIME type")).optional().describe("gzip_types"),
    proxied: z.array(z.enum(["off", "expired", "no-cache", "no-store", "private", "no_last_modified", "no_etag", "auth", "any"])).optional().describe("gzip_proxied"),
    vary: z.boolean().optional().describe("gzip_vary"),
    buffers: safeText("gzip_buffers").optional().describe('gzip_buffers, e.g. "16 8k"'),
    http_version: z.enum(["1.0", "1.1"]).optional().describe("gzip_http_version"),
    disable: safeText("gzip_disable").optional().describe('gzip_disable regex, e.g. "msie6"'),
  })
  .describe("gzip compression settings");

const mapBlock = z.strictObject({
  source: safeText("a map source").describe("the value tested, e.g. $http_upgrade"),
  variable: z.string().regex(/^\$[A-Za-z_][A-Za-z0-9_]*$/, { message: "a variable such as $connection_upgrade" }).describe("the variable defined"),
  default: mapText("a map default").optional().describe("value when nothing matches"),
  hostnames: z.boolean().optional().describe("the map's `hostnames` flag"),
  entries: z
    .array(z.strictObject({ match: mapText("a map match").describe("match ('' matches empty; ~regex allowed)"), value: mapText("a map value").describe("resulting value") }))
    .default([])
    .describe("match/value pairs, in order"),
});

export const MIME_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$/;
export const EXTENSION_RE = /^[A-Za-z0-9_.+-]+$/;

export const httpSchema = z
  .strictObject({
    include_mime_types: z.boolean().default(true).describe("emit `include mime.types;` (conf/mime.types in the prefix)"),
    default_type: safeText("a MIME type").default("application/octet-stream").describe("default_type"),
    types: z
      .record(
        z.string().regex(MIME_TYPE_RE, { message: 'expected a MIME type such as "application/wasm"' }),
        z.array(z.string().regex(EXTENSION_RE, { message: 'expected a file extension such as "wasm"' })).min(1),
      )
      .default({})
      .describe("more MIME types, type -> extensions, in a `types {}` after mime.types (an extension listed there too takes this type)"),
    sendfile: z.boolean().optional().describe("sendfile on/off"),
    tcp_nopush: z.boolean().optional().describe("tcp_nopush on/off"),
    tcp_nodelay: z.boolean().optional().describe("tcp_nodelay on/off"),
    server_tokens: z.boolean().default(false).describe("show the nginx version in headers and error pages (default off)"),
    keepalive_timeout: duration("65s").optional().describe("client keepalive_timeout"),
    keepalive_requests: z.number().int().positive().optional().describe("client keepalive_requests"),
    types_hash_max_size: z.number().int().positive().optional().describe("types_hash_max_size"),
    server_names_hash_bucket_size: z.number().int().positive().optional().describe("server_names_hash_bucket_size"),
    client_max_body_size: size("10m").optional().describe("client_max_body_size (0 = unlimited)"),
    client_body_buffer_size: size("128k").optional().describe("client_body_buffer_size"),
    client_header_buffer_size: size("1k").optional().describe("client_header_buffer_size"),
    large_client_header_buffers: safeText("large_client_header_buffers").optional().describe('e.g. "4 8k"'),
    client_body_timeout: duration("60s").optional().describe("client_body_timeout"),
    client_header_timeout: duration("60s").optional().describe("client_header_timeout"),
    send_timeout: duration("60s").optional().describe("send_timeout"),
    proxy_connect_timeout: duration("5s").optional().describe("default proxy_connect_timeout for proxied locations"),
    proxy_send_timeout: duration("60s").optional().describe("default proxy_send_timeout"),
    proxy_read_timeout: duration("60s").optional().describe("default proxy_read_timeout"),
    proxy_buffer_size: size("4k").optional().describe("proxy_buffer_size"),
    proxy_buffers: safeText("proxy_buffers").optional().describe('proxy_buffers, e.g. "8 4k"'),
    proxy_busy_buffers_size: size("8k").optional().describe("proxy_busy_buffers_size"),
    resolver: z.array(safeText("a resolver address")).optional().describe("DNS resolvers (needed only for hostnames resolved at run time: static upstreams with `resolve`, and Consul Addresses and fallback peers that are host names, which gen-lb resolves through these name servers on OpenResty)"),
    log_formats: z
      .record(name("a log format name"), logFormat)
      .default({})
      .describe("named log formats (log_format NAME ...); a string or {format, escape}"),
    access_log: z
      .union([z.literal("off"), z.array(accessLog)])
      .optional()
      .describe('http-level access logs (files and/or syslog), or "off"'),
    error_log: safeText("an error_log target").optional().describe("http-level error_log (file path or syslog:...)"),
    gzip: gzip.optional(),
    upgrade_map: z
      .boolean()
      .default(false)
      .describe("emit `map $http_upgrade $connection_upgrade {default upgrade; '' close;}` for WebSocket proxying"),
    maps: z.array(mapBlock).default([]).describe("other `map` blocks"),
    directives,
  })
  .describe("http-level settings");

export const nginxSchema = z
  .strictObject({
    user: safeText("a user").optional().describe('worker user (and group), e.g. "www-data" or "nobody nogroup"; the dump directory is made writable for it'),
    worker_processes: z.union([z.literal("auto"), z.number().int().positive()]).default("auto").describe('"auto" or a number'),
    worker_connections: z.number().int().positive().default(1024).describe("events { worker_connections }"),
    worker_rlimit_nofile: z.number().int().positive().optional().describe("worker_rlimit_nofile"),
    multi_accept: z.boolean().optional().describe("events { multi_accept }"),
    error_log: z
      .strictObject({
        path: safeText("an error_log path").default("logs/error.log").describe("file (relative to the prefix) or syslog:..."),
        level: z.enum(["debug", "info", "notice", "warn", "error", "crit", "alert", "emerg"]).default("warn").describe("minimum level"),
      })
      .default({ path: "logs/error.log", level: "warn" })
      .describe("main error_log"),
    pid: safeText("a pid path").default("logs/nginx.pid").describe("pid file, relative to the prefix"),
    modules_dir: safeText("a modules directory")
      .default("/usr/lib/nginx/modules")
      .describe('target "nginx" only: directory holding ndk_http_module.so and ngx_http_lua_module.so'),
    lua_package_path: z.array(safeText("a Lua path")).default([]).describe("extra Lua search paths (`/x/?.lua`) after gen-lb's own"),
    http: httpSchema.default(() => httpSchema.parse({})),
    events_directives: z.array(directiveSchema).default([]).describe("extra directives inside events {}"),
    directives: z.array(directiveSchema).default([]).describe("extra main-level directives"),
  })
  .describe("main, events and http level settings");

// ---------------------------------------------------------------- upstreams

export const activeCheckSchema = z
  .strictObject({
    type: z.enum(["http", "https", "tcp"]).default("http").describe("check protocol"),
    path: z.string().regex(/^\/[^\s]*$/, { message: "a path starting with /" }).default("/").describe("HTTP path requested"),
    host: safeText("a Host header").optional().describe("Host header sent (default: the peer address)"),
    headers: z.record(z.string().regex(/^[A-Za-z0-9-]+$/), safeText("a header value")).optional().describe("extra request headers"),
    interval: duration("2s").default("2s").describe("time between checks of one peer"),
    timeout: duration("1s").default("1s").describe("connect/send/read timeout of one check"),
    fall: z.number().int().positive().default(3).describe("consecutive failures that mark a peer down"),
    rise: z.number().int().positive().default(2).describe("consecutive successes that bring it back"),
    valid_statuses: z.array(z.number().int().min(100).max(599)).default([200, 302]).describe("HTTP statuses that count as healthy"),
    concurrency: z.number().int().positive().default(10).describe("checks in flight at once, per upstream"),
    ssl_verify: z.boolean().default(false).describe("https checks: verify the peer certificate"),
    probe_new: z
      .boolean()
      .default(true)
      .describe("a peer that joins the list (or rejoins after it left) gets no traffic until its first check passes, and that check runs at once; a peer that stays in the list keeps its state. The first list after a start holds nobody back (there is no one else to serve)"),
  })
  .describe("active health checks, run by one worker per node against the discovered peers");


export const passiveCheckSchema = z
  .strictObject({
    max_fails: z.number().int().positive().default(3).describe("failures within fail_timeout that take a peer out"),
    fail_timeout: duration("10s").default("10s").describe("window for max_fails, and how long a peer stays out when there are no active checks"),
    statuses: z.array(z.number().int().min(500).max(599)).default([]).describe("upstream statuses that count as failures (connect errors and timeouts always do)"),
  })
  .describe("passive health checks from real traffic");

/** A peer address with the reason it is wrong, written by the one address parser. */
function peerAddress(opts: { unix?: boolean } = {}) {
  return z.string().superRefine((text, ctx) => {
    const r = parsePeerAddress(text, opts);
    if (!r.ok) ctx.addIssue({ code: "custom", message: r.reason });
  });
}

export const staticServerSchema = z.strictObject({
  address: peerAddress({ unix: true }).describe('"ip:port", "[v6]:port", "host:port" (resolved by nginx at start) or "unix:/path"'),
  weight: z.number().int().min(1).max(1000).optional().describe("server weight= (default 1)"),
  max_fails: z.number().int().min(0).max(1000).optional().describe("server max_fails= : failed tries within fail_timeout that take it out (0 never; nginx's default 1)"),
  fail_timeout: duration("10s").optional().describe("server fail_timeout= : the window for max_fails and how long it stays out (nginx's default 10s)"),
  backup: z.boolean().default(false).describe("server backup: gets traffic only while every primary server is out (not with balance chash or random)"),
  down: z.boolean().default(false).describe("server down: listed but never used"),
  max_conns: z.number().int().min(0).optional().describe("server max_conns= : connections at once (per worker unless `resolve` adds a zone; 0 unlimited)"),
});

const staticServer = z.union([peerAddress({ unix: true }), staticServerSchema]);

export const upstreamSchema = z
  .strictObject({
    service: name("a Consul service name").optional().describe("Consul service name: the peers come from Consul (give either `service` or `servers`)"),
    servers: z
      .array(staticServer)
      .min(1)
      .optional()
      .describe('a static upstream instead of a Consul service: nginx\'s own `upstream {}` with these servers and no Lua on the request path; each "host:port", "[v6]:port", "unix:/path" or {address, weight, ...}'),
    resolve: z
      .boolean()
      .default(false)
      .describe("static upstreams: re-resolve host-name servers at run time through nginx.http.resolver (`zone` + `server ... resolve`; nginx 1.27.3 or later, OpenResty 1.31); without it nginx resolves them once at start"),
    discovery: z
      .enum(["blocking", "dns"])
      .default("blocking")
      .describe(
        "Consul upstreams: how peers are found. blocking: gen-lb's Lua runtime watches Consul with blocking queries and balances in Lua (every feature); dns: nginx's own resolver re-reads the service's SRV records from Consul's DNS (consul.dns, every consul.dns_valid) into a zoned `upstream {}` with no Lua on the request path (nginx 1.27.3+, OpenResty 1.31; no active checks, fallback or fail_open, at most one tag)",
      ),
    tags: z.array(name("a tag")).default([]).describe("Consul upstreams: only instances carrying all these tags (discovery dns: at most one, as Consul's DNS takes one)"),
    datacenter: name("a datacenter").optional().describe("Consul upstreams: overrides consul.datacenter for this service"),
    balance: z.enum(["round_robin", "least_conn", "chash", "random"]).default("round_robin").describe("balancing algorithm; static upstreams use nginx's: round_robin (default), least_conn, chash (`hash KEY consistent`), random (`random two`)"),
    hash_key: safeText("a hash key").optional().describe("chash only: nginx variable expression hashed, e.g. $remote_addr or $cookie_user"),
    retries: z.number().int().min(0).max(10).default(1).describe("extra attempts on another peer after a failure"),
    retry_non_idempotent: z.boolean().default(false).describe("also retry POST, LOCK, PATCH"),
    retry_statuses: z.array(z.union([z.literal(500), z.literal(502), z.literal(503), z.literal(504), z.literal(403), z.literal(404), z.literal(429)])).default([502, 503, 504]).describe("upstream statuses that trigger a retry (error and timeout always do)"),
    keepalive: z.number().int().min(0).default(32).describe("idle keepalive connections per worker (0 disables)"),
    keepalive_timeout: duration("60s").optional().describe("how long an idle upstream keepalive connection stays open"),
    keepalive_requests: z.number().int().positive().optional().describe("requests served over one upstream keepalive connection before it is closed"),
    connect_timeout: duration("2s").optional().describe("proxy_connect_timeout for this upstream"),
    read_timeout: duration("60s").optional().describe("proxy_read_timeout for this upstream"),
    send_timeout: duration("60s").optional().describe("proxy_send_timeout for this upstream"),
    fallback: z
      .array(
        z.union([
          peerAddress(),
          z.strictObject({
            address: peerAddress().describe('"ip:port", "[v6]:port", or "host:port" (a host name: target openresty with nginx.http.resolver)'),
            weight: z.number().int().min(1).max(1000).default(1).describe("its share of the traffic, as a Consul weight would give it"),
          }),
        ]),
      )
      .default([])
      .describe(
        'Consul upstreams: static peers, "ip:port", "[v6]:port", "host:port" or {address, weight}, used when Consul has never given any (and no dump exists), or lists none where consul.empty does not keep the last ones. A host name is resolved (A and AAAA, every address a peer, again when the TTL runs out) through nginx.http.resolver with lua-resty-dns, so only on target openresty with a resolver set (Debian\'s nginx ships no lua-resty-dns: write the IP, or use a static upstream); requests wait (runtime.hold_for_peers) until it has resolved',
      ),
    slow_start: duration("30s")
      .optional()
      .describe("Consul upstreams: a peer that joins, or returns to health, ramps its weight linearly from near 0 to its full weight over this time, as NGINX Plus's slow_start does. Honoured by round_robin and random (the algorithms with weights); least_conn and chash ignore it"),
    fail_open: z.boolean().default(true).describe("Consul upstreams: when every peer is unhealthy, use them all (true) or answer 503 (false)"),
    healthcheck: z
      .strictObject({
        active: activeCheckSchema.optional(),
        passive: passiveCheckSchema.optional(),
      })
      .default({})
      .describe("Consul upstreams: health checking (static servers use nginx's max_fails/fail_timeout)"),
    counters: z
      .boolean()
      .default(false)
      .describe(
        "Consul upstreams: count each peer's failed tries and tries in flight for the status endpoint (`failures`, `in_flight`). They need gen-lb's log phase in every server that proxies to this upstream, which costs about 1.3k instructions per request; least_conn and passive checks run it anyway (and then count them). Tries sent (`requests`) are counted either way",
      ),
  })
  .describe("one load-balanced service: a Consul `service`, or static `servers`");

// ---------------------------------------------------------------- servers

const locationSchema = z
  .strictObject({
    path: safeText("a location path").describe("the location path or regex"),
    match: z
      .enum(["prefix", "exact", "regex", "regex_case_insensitive", "prefix_no_regex"])
      .default("prefix")
      .describe("location modifier: none, =, ~, ~*, ^~"),
    upstream: name("an upstream name").optional().describe("proxy to this upstream (a key of `upstreams`)"),
    root: safeText("a root").optional().describe("serve files from this directory (relative to the prefix)"),
    alias: safeText("an alias").optional().describe("alias directory"),
    index: z.array(safeText("an index file")).optional().describe("index files"),
    try_files: z.array(safeText("a try_files entry")).optional().describe("try_files arguments"),
    return: z
      .strictObject({ code: z.number().int().min(100).max(999), text: returnText("a return text or URL").optional() })
      .optional()
      .describe("return CODE [TEXT|URL]"),
    websocket: z.boolean().default(false).describe("proxy WebSocket upgrades (needs nginx.http.upgrade_map)"),
    proxy_set_header: z
      .record(z.string().regex(/^[A-Za-z0-9-]+$/), z.union([z.literal(""), safeText("a header value")]))
      .optional()
      .describe('headers set on proxied requests (default: Host, X-Real-IP, X-Forwarded-For, X-Forwarded-Proto); "" sends none (e.g. Proxy: "" against httpoxy)'),
    directives,
  })
  .refine((l) => [l.upstream, l.root, l.alias, l.return].filter((x) => x !== undefined).length <= 1, {
    message: "a location has at most one of `upstream`, `root`, `alias`, `return`",
  });

const sslSchema = z
  .strictObject({
    certificate: safeText("a certificate path").describe("ssl_certificate"),
    certificate_key: safeText("a key path").describe("ssl_certificate_key"),
    profile: z
      .enum(["modern", "intermediate", "old"])
      .default("intermediate")
      .describe("Mozilla's TLS profile: protocols, ciphers, ssl_prefer_server_ciphers and session settings; the keys below override it"),
    protocols: z.array(z.enum(["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"])).optional().describe("ssl_protocols (default: the profile's)"),
    ciphers: safeText("ciphers").optional().describe("ssl_ciphers (default: the profile's)"),
    prefer_server_ciphers: z.boolean().optional().describe("ssl_prefer_server_ciphers (default: the profile's)"),
    hsts: z
      .union([
        z.literal(true),
        z.strictObject({
          max_age: z.number().int().min(0).default(63072000).describe("seconds (default two years)"),
          include_subdomains: z.boolean().default(false).describe("add includeSubDomains"),
          preload: z.boolean().default(false).describe("add preload"),
        }),
      ])
      .optional()
      .describe("send Strict-Transport-Security (true: max-age two years)"),
  })
  .describe("TLS for this server (adds `ssl` to its listen)");

// nginx's other listen parameters, each checked for its shape; ssl, http2,
// default_server and reuseport have keys of their own.
export const LISTEN_OPTION_RE =
  /^(?:proxy_protocol|deferred|bind|backlog=-?\d+|fastopen=\d+|rcvbuf=\d+[kKmM]?|sndbuf=\d+[kKmM]?|ipv6only=(?:on|off)|so_keepalive=(?:on|off|\d*[smh]?:\d*[smh]?:\d*)|setfib=\d+|accept_filter=(?:dataready|httpready))$/;
const listenOption = z.string().regex(LISTEN_OPTION_RE, {
  error: (issue) =>
    ["ssl", "http2", "default_server", "default", "reuseport"].includes(String(issue.input))
      ? `"${String(issue.input)}" has its own key on the server (ssl, http2, default_server, reuseport)`
      : `not a listen parameter gen-lb knows (got ${JSON.stringify(issue.input)}); known: proxy_protocol, deferred, bind, backlog=N, fastopen=N, rcvbuf=SIZE, sndbuf=SIZE, ipv6only=on|off, so_keepalive=on|off|IDLE:INTVL:CNT, setfib=N, accept_filter=NAME`,
});

export const serverSchema = z
  .strictObject({
    listen: z.union([listenAddress, z.array(listenAddress).min(1)]).describe("where to listen: a port, \"address:port\", or a list"),
    default_server: z.boolean().default(false).describe("mark the listen as default_server"),
    http2: z.boolean().default(false).describe("enable HTTP/2 on this server (with ssl)"),
    reuseport: z.boolean().default(false).describe("a listening socket per worker (listen ... reuseport): the kernel spreads connections evenly across workers; set it on one server per address"),
    listen_options: z
      .array(listenOption)
      .default([])
      .describe("more parameters for every listen of this server, e.g. proxy_protocol, backlog=4096, so_keepalive=on (socket options go on one server per address)"),
    ssl: sslSchema.optional(),
    security_headers: z
      .boolean()
      .default(false)
      .describe("add X-Content-Type-Options: nosniff, X-Frame-Options: DENY and Referrer-Policy: strict-origin-when-cross-origin to every response (a location with its own add_header drops them: nginx inherits add_header only when a block has none)"),
    server_name: z.array(safeText("a server name")).default([]).describe("server_name values"),
    root: safeText("a root").optional().describe("server-level root"),
    index: z.array(safeText("an index file")).optional().describe("server-level index"),
    error_pages: z
      .array(z.strictObject({ codes: z.array(z.number().int().min(300).max(599)).min(1), uri: safeText("an error page URI") }))
      .default([])
      .describe("error_page CODES URI"),
    access_log: z.union([z.literal("off"), z.array(accessLog)]).optional().describe("server-level access logs"),
    locations: z.array(locationSchema).default([]).describe("locations, in order"),
    directives,
  })
  .describe("one virtual server");

/**
 * Does this server proxy to a Lua-balanced Consul upstream (and so run
 * gen-lb's log phase)? Static upstreams (`servers`, no `service`) and
 * `discovery: dns` ones are nginx's own and need no Lua; without the
 * upstreams every proxying location counts.
 */
/** Whether gen-lb must see each request to this upstream end (its log phase): least_conn's in-flight counts, passive checks, counters. */
export function needsLogPhase(up: {
  service?: string | undefined;
  discovery?: string | undefined;
  balance: string;
  counters: boolean;
  healthcheck: { passive?: unknown };
}): boolean {
  // Only the Lua engine's: a discovery: dns upstream is nginx's own, passive checks included.
  if (up.service === undefined || up.discovery === "dns") return false;
  return up.balance === "least_conn" || up.healthcheck.passive !== undefined || up.counters;
}

/** Whether gen-lb runs its server-level log phase in this server: it proxies to an upstream that needs it. */
export function runsLogPhase(server: { locations: ReadonlyArray<{ upstream?: string | undefined }> }, upstreams: Readonly<Record<string, Parameters<typeof needsLogPhase>[0]>>): boolean {
  return server.locations.some((loc) => loc.upstream !== undefined && upstreams[loc.upstream] !== undefined && needsLogPhase(upstreams[loc.upstream]!));
}

export function proxiesToUpstream(
  server: { locations: ReadonlyArray<{ upstream?: string | undefined }> },
  upstreams?: Readonly<Record<string, { service?: string | undefined; discovery?: string | undefined }>>,
): boolean {
  return server.locations.some((loc) => {
    if (loc.upstream === undefined) return false;
    if (upstreams === undefined) return true;
    const up = upstreams[loc.upstream];
    // discovery: dns is nginx's own upstream too: no gen-lb Lua on its request path.
    return up?.service !== undefined && up.discovery !== "dns";
  });
}

// ---------------------------------------------------------------- status, runtime, root

export const statusSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe("emit the status server"),
    listen: listenAddress.default("127.0.0.1:8081").describe("where the status server listens"),
    path: z.string().regex(/^\/[A-Za-z0-9_./-]*$/, { message: "a path such as /status" }).default("/status").describe("status endpoint path (JSON; ?format=prometheus for Prometheus text)"),
    allow: z.array(z.string().regex(/^(?:[0-9a-fA-F:.]+(?:\/\d{1,3})?|unix:)$/, { message: "an address or CIDR such as 127.0.0.1 or 10.0.0.0/8" })).default(["127.0.0.1"]).describe("addresses allowed; everyone else gets 403"),
  })
  .describe("the status endpoint");

export const runtimeSchema = z
  .strictObject({
    peers_dict_size: size("10m").optional().describe("lua_shared_dict for peer lists (default grows with the number of upstreams)"),
    health_dict_size: size("10m").optional().describe("lua_shared_dict for health state"),
    log_level: z.enum(["debug", "info", "notice", "warn", "error"]).default("notice").describe("level of gen-lb's own change log lines"),
    hold_for_peers: duration("2s")
      .optional()
      .describe(
        "how long a request to a Consul upstream without fallback peers (or whose fallback peers include a host name, not yet resolved) waits, on a fresh start with no dump file, for the first Consul answer (or the fallback's) before the balancer answers 502 (0: answer at once); default: consul.timeout",
      ),
  })
  .describe("sizes and knobs of the generated Lua runtime");

export const specSchema = z
  .strictObject({
    $schema: z.string().optional().describe("JSON Schema reference for editors; ignored"),
    target: z
      .enum(["openresty", "nginx"])
      .default("openresty")
      .describe('"openresty", or "nginx" (distro nginx + the dynamic Lua module: emits load_module lines)'),
    target_version: z
      .string()
      .regex(/^\d+\.\d+\.\d+$/, { message: "an nginx version such as 1.22.1 (OpenResty 1.31.1.1 is nginx 1.31.1)" })
      .optional()
      .describe(
        "nginx core version to render for (OpenResty 1.31.1.1 is nginx 1.31.1); default: the version `check` sees in `-V`, else 1.22.0. From 1.25.1, HTTP/2 is `http2 on;` rather than a listen flag",
      ),
    consul: consulSchema.default(() => consulSchema.parse({})),
    nginx: nginxSchema.default(() => nginxSchema.parse({})),
    upstreams: z.record(name("an upstream name"), upstreamSchema).default({}).describe("load-balanced services, by name"),
    servers: z.array(serverSchema).default([]).describe("virtual servers"),
    status: statusSchema.default(() => statusSchema.parse({})),
    runtime: runtimeSchema.default(() => runtimeSchema.parse({})),
  })
  .describe("gen-lb spec: one OpenResty load balancer in front of Consul-registered services");

export type Spec = z.infer<typeof specSchema>;
export type SpecInput = z.input<typeof specSchema>;
export type Upstream = z.infer<typeof upstreamSchema>;
export type StaticServer = z.infer<typeof staticServerSchema>;
export type Server = z.infer<typeof serverSchema>;
export type Location = Server["locations"][number];
export type AccessLog = z.infer<typeof accessLog>;
