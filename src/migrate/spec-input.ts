/**
 * The parts of the spec's input type (z.input of src/spec/schema.ts) the
 * converters build: what migrate writes is checked by the compiler against
 * what the schema takes, defaults left out as the user would leave them out.
 */
import type { Directive, SpecInput } from "../spec/schema.js";

export type { SpecInput };
/** One directive through the escape hatch, as migrate writes it (arguments always given). */
export type HatchDirective = Directive;
export type ConsulInput = NonNullable<SpecInput["consul"]>;
export type NginxInput = NonNullable<SpecInput["nginx"]>;
export type HttpInput = NonNullable<NginxInput["http"]>;
export type GzipInput = NonNullable<HttpInput["gzip"]>;
export type MapInput = NonNullable<HttpInput["maps"]>[number];
export type AccessLogInput = Exclude<NonNullable<HttpInput["access_log"]>, "off">[number];
export type SyslogInput = NonNullable<AccessLogInput["syslog"]>;
export type UpstreamInput = NonNullable<SpecInput["upstreams"]>[string];
export type StaticServerInput = NonNullable<UpstreamInput["servers"]>[number];
export type ActiveCheckInput = NonNullable<NonNullable<UpstreamInput["healthcheck"]>["active"]>;
export type RetryStatus = NonNullable<UpstreamInput["retry_statuses"]>[number];
export type ServerInput = NonNullable<SpecInput["servers"]>[number];
export type LocationInput = NonNullable<ServerInput["locations"]>[number];
export type SslInput = NonNullable<ServerInput["ssl"]>;
export type StatusInput = NonNullable<SpecInput["status"]>;
