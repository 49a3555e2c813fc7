/**
 * Plan of a `discovery: dns` upstream: nginx's own zoned `upstream {}` whose
 * one server line asks Consul's DNS for the service's SRV records and
 * re-resolves them every consul.dns_valid (nginx 1.27.3+), with no Lua on
 * the request path; and what the status endpoint lists for it. Pure.
 */
import type { NginxDirective } from "../render/quote.js";
import type { Spec, Upstream } from "../spec/schema.js";
import { nginxDuration, parseDuration } from "../spec/units.js";
import type { RuntimeDnsUpstream } from "../contract/runtime-config.js";
import { nginxBalanceMethod } from "./plan-static.js";

const d = (name: string, ...args: Array<string | number>): NginxDirective => ({ name, args });
const seconds = (v: string | number) => (typeof v === "number" ? v : parseDuration(v));
const duration = (v: string | number) => nginxDuration(seconds(v));

/** The zone holds the resolved peers and their state, shared by every worker. */
export const dnsZoneName = (name: string) => `gen_lb_dns_${name}`;

/**
 * Consul's RFC 2782 names: `_NAME._TAG.service[.DC].consul`, `_tcp` for no
 * tag. nginx builds the SRV name as `service=` + "." + the server name when
 * `service=` has a dot, so both halves are given here.
 */
export function dnsNames(up: Pick<Upstream, "service" | "tags" | "datacenter">, spec: Pick<Spec, "consul">): { host: string; service: string; srv: string } {
  const dc = up.datacenter ?? spec.consul.datacenter;
  const host = dc === undefined ? "service.consul" : `service.${dc}.consul`;
  const service = `_${up.service}._${up.tags[0] ?? "tcp"}`;
  return { host, service, srv: `${service}.${host}` };
}

/**
 * The resolver goes inside the upstream (nginx 1.27.3 takes `resolver` at
 * upstream level for its `resolve` servers): Consul's DNS answers only
 * `.consul`, so it must not become the http-level resolver that
 * nginx.http.resolver sets for everything else, and each upstream keeps its own.
 */
export function planDnsUpstream(name: string, up: Upstream, spec: Pick<Spec, "consul">): NginxDirective {
  const names = dnsNames(up, spec);
  const passive = up.healthcheck.passive;
  const server = [names.host, `service=${names.service}`, "resolve"];
  if (passive !== undefined) server.push(`max_fails=${passive.max_fails}`, `fail_timeout=${duration(passive.fail_timeout)}`);
  return {
    name: "upstream",
    args: [name],
    comment: `upstreams.${name}`,
    block: [
      ...nginxBalanceMethod(up),
      d("zone", dnsZoneName(name), "256k"),
      d("resolver", spec.consul.dns, `valid=${seconds(spec.consul.dns_valid)}s`),
      d("resolver_timeout", duration(spec.consul.timeout)),
      d("server", ...server),
      ...(up.keepalive > 0 ? [d("keepalive", up.keepalive)] : []),
      ...(up.keepalive > 0 && up.keepalive_timeout !== undefined ? [d("keepalive_timeout", duration(up.keepalive_timeout))] : []),
      ...(up.keepalive > 0 && up.keepalive_requests !== undefined ? [d("keepalive_requests", up.keepalive_requests)] : []),
    ],
  };
}

/** What the status endpoint says about a DNS upstream besides nginx's peers. */
export function planDnsStatus(up: Upstream & { service: string }, spec: Pick<Spec, "consul">): RuntimeDnsUpstream {
  const passive = up.healthcheck.passive;
  return {
    service: up.service,
    balance: up.balance,
    retries: up.retries,
    dns_name: dnsNames(up, spec).srv,
    resolver: spec.consul.dns,
    valid: seconds(spec.consul.dns_valid),
    health_checks: { active: false, passive: passive !== undefined },
  };
}
