/**
 * The status document: what the status endpoint (runtime/gen_lb/status.lua)
 * serves as JSON, and the Prometheus metric families it serves with
 * ?format=prometheus. `gen-lb install` reads build_id from it; tests read it
 * through this schema, and an end-to-end test validates the live document
 * and metric names against it. Fields marked optional are absent (cjson
 * drops nil) when there is nothing to say: no checker elected yet, a dump
 * never written, a peer never checked.
 */
import { z } from "zod";
import { runtimeStaticUpstreamSchema } from "./runtime-config.js";

const seconds = z.number().describe("Unix time, seconds");
const count = z.number().int().nonnegative();

export const peerStatusSchema = z.strictObject({
  address: z.string().describe('"host:port", "[v6]:port"'),
  weight: z.number().int().positive(),
  healthy: z.boolean(),
  state: z.enum(["healthy", "down"]),
  down_by: z.enum(["active", "passive"]).optional(),
  since: seconds.optional().describe("when the state last changed"),
  reason: z.string().optional().describe("why it changed then"),
  consecutive_successes: count,
  consecutive_failures: count,
  last_check: seconds.optional(),
  last_check_result: z.string().optional().describe('"ok" or what went wrong'),
  requests: count.describe("tries sent (added up by each worker once a second)"),
  failures: count.optional().describe("failed tries; absent when the upstream has no log phase (log_phase false)"),
  in_flight: count.optional().describe("tries in flight; absent when the upstream has no log phase"),
});

export const upstreamStatusSchema = z.strictObject({
  service: z.string(),
  balance: z.enum(["round_robin", "least_conn", "chash", "random"]),
  fail_open: z.boolean(),
  retries: count,
  log_phase: z.boolean().describe("gen-lb sees each request end (least_conn, passive checks or counters: true): peers have failures and in_flight"),
  health_checks: z.strictObject({ active: z.union([z.literal(false), z.enum(["http", "https", "tcp"])]), passive: z.boolean() }),
  source: z.enum(["consul", "dump", "fallback", "none"]),
  peers_version: count,
  consul_index: z.number().nonnegative(),
  updated_at: seconds,
  changed_at: seconds.optional(),
  last_error: z.string().optional(),
  consul_address: z.string().optional(),
  total: count,
  healthy: count,
  all_down: z.boolean(),
  failing: z.enum(["open", "closed"]).optional().describe("only when all_down"),
  peers: z.array(peerStatusSchema),
});

/** A peer of a static upstream: nginx's own view where the target has ngx.upstream, else as configured. */
export const staticPeerStatusSchema = z.strictObject({
  address: z.string(),
  backup: z.boolean(),
  weight: z.number().int().positive(),
  down: z.boolean(),
  healthy: z.boolean().nullable().describe("null: the target cannot tell (no ngx.upstream)"),
  fails: z.number().int().nonnegative().optional().describe("failed tries nginx counts within fail_timeout; absent without ngx.upstream"),
  max_fails: z.number().int().nonnegative(),
  fail_timeout: seconds,
  conns: z.number().int().nonnegative().optional().describe("active connections (zoned upstreams)"),
});

export const staticUpstreamStatusSchema = z.strictObject({
  balance: z.enum(["round_robin", "least_conn", "chash", "random"]),
  retries: z.number().int().nonnegative(),
  resolve: z.boolean(),
  state_source: z.enum(["none", "zone", "worker"]).describe("zone: shared by every worker; worker: this worker's view; none: configuration only"),
  state_error: z.string().optional(),
  total: z.number().int().nonnegative(),
  healthy: z.number().int().nonnegative().nullable(),
  servers: z.array(runtimeStaticUpstreamSchema.shape.servers.element),
  peers: z.array(staticPeerStatusSchema),
});

/** A peer of a `discovery: dns` upstream: nginx's own view of its zone (ngx.upstream). */
export const dnsPeerStatusSchema = z.strictObject({
  address: z.string(),
  weight: z.number().int().positive(),
  healthy: z.boolean(),
  state: z.enum(["healthy", "failed", "down"]),
  backup: z.boolean(),
  down: z.boolean(),
  fails: count,
  max_fails: count,
  fail_timeout: seconds,
  conns: count.optional(),
});

/** A `discovery: dns` upstream, listed under `upstreams` beside the Lua engine's (source "dns"). */
export const dnsUpstreamStatusSchema = z.strictObject({
  service: z.string(),
  balance: z.enum(["round_robin", "least_conn", "chash", "random"]),
  retries: count,
  source: z.literal("dns"),
  dns_name: z.string().describe("the SRV name nginx resolves"),
  resolver: z.string(),
  valid: seconds,
  health_checks: z.strictObject({ active: z.literal(false), passive: z.boolean() }),
  state_error: z.string().optional(),
  total: count,
  healthy: count,
  all_down: z.boolean(),
  peers: z.array(dnsPeerStatusSchema),
});

export const statusDocumentSchema = z.strictObject({
  build_id: z.string(),
  generator: z.string(),
  time: seconds,
  pid: z.number().int().positive().describe("the worker that answered"),
  health_checker: z.number().int().positive().optional().describe("pid of the worker running the checks"),
  dump: z.strictObject({
    path: z.string().optional(),
    written_at: seconds.optional(),
    ok: z.boolean().optional(),
    error: z.string().optional(),
  }),
  upstreams: z.record(z.string(), z.union([upstreamStatusSchema, dnsUpstreamStatusSchema])),
  static_upstreams: z.record(z.string(), staticUpstreamStatusSchema),
});

export type PeerStatus = z.infer<typeof peerStatusSchema>;
export type UpstreamStatus = z.infer<typeof upstreamStatusSchema>;
export type DnsUpstreamStatus = z.infer<typeof dnsUpstreamStatusSchema>;
/** A status document whose upstreams are all the Lua engine's (no `discovery: dns` upstream). */
export type LuaStatusDocument = Omit<StatusDocument, "upstreams"> & { upstreams: Record<string, UpstreamStatus> };

/** Narrow a document to the Lua engine's upstreams; throws naming a `discovery: dns` one. */
export function luaEngineOnly(doc: StatusDocument): LuaStatusDocument {
  for (const [name, u] of Object.entries(doc.upstreams)) {
    if (u.source === "dns") throw new Error(`upstream ${name} is a discovery: dns upstream, not the Lua engine's`);
  }
  return doc as LuaStatusDocument;
}
export type StatusDocument = z.infer<typeof statusDocumentSchema>;
export type StaticUpstreamStatus = z.infer<typeof staticUpstreamStatusSchema>;

/** Every Prometheus metric family the endpoint serves, with its type and labels. */
export const PROMETHEUS_METRICS = {
  gen_lb_info: { type: "gauge", labels: ["build_id", "generator"] },
  gen_lb_upstream_info: { type: "gauge", labels: ["upstream", "service", "balance"] },
  gen_lb_upstream_peers: { type: "gauge", labels: ["upstream"] },
  gen_lb_upstream_healthy_peers: { type: "gauge", labels: ["upstream"] },
  gen_lb_upstream_all_down: { type: "gauge", labels: ["upstream"] },
  gen_lb_upstream_fail_open: { type: "gauge", labels: ["upstream"] },
  gen_lb_upstream_peers_version: { type: "gauge", labels: ["upstream"] },
  gen_lb_upstream_consul_index: { type: "gauge", labels: ["upstream"] },
  gen_lb_upstream_updated_timestamp_seconds: { type: "gauge", labels: ["upstream"] },
  gen_lb_peer_up: { type: "gauge", labels: ["upstream", "peer"] },
  gen_lb_peer_weight: { type: "gauge", labels: ["upstream", "peer"] },
  gen_lb_peer_consecutive_successes: { type: "gauge", labels: ["upstream", "peer"] },
  gen_lb_peer_consecutive_failures: { type: "gauge", labels: ["upstream", "peer"] },
  gen_lb_peer_requests_total: { type: "counter", labels: ["upstream", "peer"] },
  gen_lb_peer_failures_total: { type: "counter", labels: ["upstream", "peer"] },
  gen_lb_peer_in_flight: { type: "gauge", labels: ["upstream", "peer"] },
  // Served only when the spec has static upstreams; the peer families also need ngx.upstream.
  gen_lb_static_upstream_servers: { type: "gauge", labels: ["upstream"], requires: "static_upstreams" },
  gen_lb_static_peer_up: { type: "gauge", labels: ["upstream", "peer"], requires: "ngx.upstream" },
  gen_lb_static_peer_fails: { type: "gauge", labels: ["upstream", "peer"], requires: "ngx.upstream" },
  gen_lb_dump_ok: { type: "gauge", labels: [] },
  gen_lb_dump_written_timestamp_seconds: { type: "gauge", labels: [] },
} as const satisfies Record<string, { type: "gauge" | "counter"; labels: readonly string[]; requires?: "static_upstreams" | "ngx.upstream" }>;

export type PrometheusMetric = keyof typeof PROMETHEUS_METRICS;
