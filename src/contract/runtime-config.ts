/**
 * The runtime config: what `plan` emits into lua/gen_lb/config.lua and the
 * Lua runtime reads (checked at init by runtime/gen_lb/config_check.lua,
 * which must name the same fields). Every default is applied before this
 * point, in the spec schema: a field here is either required or optional
 * meaning "none" (no Host header override, no ACL token, no active checks),
 * never "use the runtime's default". build_id and generator are added by
 * render's config.lua template.
 */
import { z } from "zod";

const int = z.number().int();
const seconds = z.number().nonnegative().describe("seconds");
const port = int.min(1).max(65535);

export const runtimeAddressSchema = z.strictObject({
  scheme: z.enum(["http", "https"]),
  host: z.string().min(1).describe("IP literal or name, without brackets"),
  port,
});

export const runtimeActiveCheckSchema = z.strictObject({
  type: z.enum(["http", "https", "tcp"]),
  path: z.string(),
  host: z.string().optional().describe("Host header; absent: the peer address"),
  headers: z.record(z.string(), z.string()).optional(),
  interval: seconds,
  timeout: seconds,
  fall: int.positive(),
  rise: int.positive(),
  valid_statuses: z.array(int),
  concurrency: int.positive(),
  ssl_verify: z.boolean(),
  probe_new: z.boolean().describe("a new peer gets traffic only after its first check passed"),
});

export const runtimePassiveCheckSchema = z.strictObject({
  max_fails: int.positive(),
  fail_timeout: seconds,
  statuses: z.array(int),
});

export const runtimeUpstreamSchema = z.strictObject({
  name: z.string(),
  service: z.string(),
  tags: z.array(z.string()),
  datacenter: z.string().optional().describe("absent: the agent's own"),
  balance: z.enum(["round_robin", "least_conn", "chash", "random"]),
  hash_var: z.string().optional().describe("nginx variable holding the chash key; absent unless chash with hash_key"),
  retries: int.nonnegative(),
  fail_open: z.boolean(),
  slow_start: seconds.optional().describe("absent: a joining peer gets its full weight at once"),
  log_phase: z
    .boolean()
    .describe("the servers proxying to it run gen-lb's log phase (least_conn, passive checks or counters: true): the balancer tracks each request to its end and counts failed tries and tries in flight"),
  fallback: z.array(z.strictObject({ host: z.string(), port, weight: int.positive() })),
  healthcheck: z.strictObject({
    active: runtimeActiveCheckSchema.optional().describe("absent: no active checks"),
    passive: runtimePassiveCheckSchema.optional().describe("absent: no passive checks"),
  }),
});

/** A static upstream as the status endpoint lists it: nginx's own upstream {}, not balanced by the runtime. */
export const runtimeStaticUpstreamSchema = z.strictObject({
  balance: z.enum(["round_robin", "least_conn", "chash", "random"]),
  retries: int.nonnegative(),
  resolve: z.boolean(),
  servers: z.array(
    z.strictObject({
      address: z.string(),
      weight: int.positive(),
      max_fails: int.nonnegative(),
      fail_timeout: seconds,
      max_conns: int.nonnegative(),
      backup: z.boolean(),
      down: z.boolean(),
    }),
  ),
});

/** A `discovery: dns` upstream as the status endpoint lists it: nginx resolves it, the runtime only reads its zone. */
export const runtimeDnsUpstreamSchema = z.strictObject({
  service: z.string(),
  balance: z.enum(["round_robin", "least_conn", "chash", "random"]),
  retries: int.nonnegative(),
  dns_name: z.string(),
  resolver: z.string(),
  valid: seconds,
  health_checks: z.strictObject({ active: z.literal(false), passive: z.boolean() }),
});

export const runtimeConfigSchema = z.strictObject({
  dicts: z.strictObject({ peers: z.string(), health: z.string(), locks: z.string() }),
  log_level: z.enum(["debug", "info", "notice", "warn", "error"]),
  worker_user: z.string().describe("the user workers run as when the master is root (nginx's default: nobody)"),
  dump_file: z.string(),
  hold_for_peers: seconds.describe("longest wait of a request for a never-populated upstream's first peers (0: none)"),
  consul: z.strictObject({
    addresses: z.array(runtimeAddressSchema).min(1),
    token_env: z.string().optional().describe("absent: no ACL token"),
    datacenter: z.string().optional(),
    wait: seconds,
    timeout: seconds,
    ssl_verify: z.boolean(),
    ca_file: z.string().optional(),
    empty: z.enum(["keep", "accept"]),
  }),
  upstream_names: z.array(z.string()),
  upstreams: z.record(z.string(), runtimeUpstreamSchema),
  static_upstream_names: z.array(z.string()),
  static_upstreams: z.record(z.string(), runtimeStaticUpstreamSchema),
  dns_upstream_names: z.array(z.string()),
  dns_upstreams: z.record(z.string(), runtimeDnsUpstreamSchema),
  upstream_module: z.boolean().describe("the target has lua-upstream-nginx-module (ngx.upstream): status shows static peers' state"),
  status: z.strictObject({ enabled: z.boolean(), path: z.string() }),
  resolver: z
    .array(z.strictObject({ host: z.string().describe("IP literal, without brackets"), port }))
    .describe("nginx.http.resolver's name servers: Consul addresses that are host names are resolved through them (empty: such entries are dropped)"),
});

export type RuntimeConfig = z.infer<typeof runtimeConfigSchema>;
export type RuntimeUpstream = z.infer<typeof runtimeUpstreamSchema>;
export type RuntimeStaticUpstream = z.infer<typeof runtimeStaticUpstreamSchema>;
export type RuntimeDnsUpstream = z.infer<typeof runtimeDnsUpstreamSchema>;
