/**
 * The directives migrate turns into typed spec keys one for one: spec key,
 * directive, context, and the kind of argument nginx takes there. A value is
 * converted only when its kind reads it exactly (a size with its unit, a
 * duration, on/off...); anything else is carried through the escape hatch
 * unchanged, so nothing nginx accepts becomes null. The generated directive
 * table of src/nginx/directives/ can supply contexts and kinds later.
 */
import { isDuration, isSize } from "../spec/units.js";
import type { HttpInput, NginxInput } from "./spec-input.js";

export type ArgKind = "flag" | "duration" | "size" | "count" | "workers" | "text" | "buffers";
export type Context = "main" | "events" | "http";

export interface TableEntry {
  directive: string;
  context: Context;
  /** The spec path it goes to. */
  key: string;
  kind: ArgKind;
}

/** What readArgs makes of each kind. */
interface KindValue {
  flag: boolean;
  duration: string | number;
  size: string | number;
  count: number;
  workers: "auto" | number;
  text: string;
  buffers: string;
}
/** For each key of a spec part, the kinds whose value that key takes: the compiler checks every entry below. */
type Kinds<T> = { [K in keyof T]?: { [A in ArgKind]: KindValue[A] extends NonNullable<T[K]> ? A : never }[ArgKind] };

// The spec key is the directive's name, in spec.nginx (main, events) or spec.nginx.http.
const MAIN: Kinds<NginxInput> = { worker_processes: "workers", worker_rlimit_nofile: "count" };
const EVENTS: Kinds<NginxInput> = { worker_connections: "count", multi_accept: "flag" };
const HTTP: Kinds<HttpInput> = {
  default_type: "text",
  sendfile: "flag",
  tcp_nopush: "flag",
  tcp_nodelay: "flag",
  server_tokens: "flag",
  keepalive_timeout: "duration",
  client_body_timeout: "duration",
  client_header_timeout: "duration",
  send_timeout: "duration",
  proxy_connect_timeout: "duration",
  proxy_send_timeout: "duration",
  proxy_read_timeout: "duration",
  client_max_body_size: "size",
  client_body_buffer_size: "size",
  client_header_buffer_size: "size",
  proxy_buffer_size: "size",
  proxy_busy_buffers_size: "size",
  keepalive_requests: "count",
  types_hash_max_size: "count",
  server_names_hash_bucket_size: "count",
  large_client_header_buffers: "buffers",
  proxy_buffers: "buffers",
};

const entries: Array<[Context, string, ArgKind]> = (
  [
    ["main", MAIN],
    ["events", EVENTS],
    ["http", HTTP],
  ] as const
).flatMap(([context, kinds]) => Object.entries(kinds).map(([directive, kind]): [Context, string, ArgKind] => [context, directive, kind!]));

export const DIRECTIVE_TABLE: ReadonlyMap<string, TableEntry> = new Map(
  entries.map(([context, directive, kind]) => [
    `${context}:${directive}`,
    { context, directive, kind, key: context === "http" ? `nginx.http.${directive}` : `nginx.${directive}` },
  ]),
);

/**
 * Write a value readArgs read for `entry` into the spec part of its context
 * (spec.nginx for main and events, spec.nginx.http for http). The one
 * untyped write of the converters: the key is the entry's directive, and
 * Kinds<> above has checked that the key takes the entry's kind.
 */
export function setTableValue(target: NginxInput | HttpInput, entry: TableEntry, value: string | number | boolean): void {
  (target as Record<string, unknown>)[entry.directive] = value;
}

export function tableEntry(context: Context, directive: string): TableEntry | undefined {
  return DIRECTIVE_TABLE.get(`${context}:${directive}`);
}

/** The spec value for these arguments, or undefined when the kind cannot say exactly what nginx was told. */
export function readArgs(kind: ArgKind, args: readonly string[]): string | number | boolean | undefined {
  if (kind === "buffers") return args.length === 2 && /^[1-9]\d*$/.test(args[0]!) && /^\d+[kKmM]?$/.test(args[1]!) ? args.join(" ") : undefined;
  if (args.length !== 1) return undefined;
  const v = args[0]!;
  switch (kind) {
    case "flag":
      return v === "on" ? true : v === "off" ? false : undefined;
    case "duration":
      return /^\d+$/.test(v) ? Number(v) : isDuration(v) ? v : undefined;
    case "size":
      return /^\d+$/.test(v) ? Number(v) : isSize(v) ? v : undefined;
    case "count":
      return /^[1-9]\d*$/.test(v) ? Number(v) : undefined;
    case "workers":
      return v === "auto" ? "auto" : /^[1-9]\d*$/.test(v) ? Number(v) : undefined;
    case "text":
      return v !== "" && !/[\u0000-\u001f\u007f]|\$\{|\]\]/.test(v) ? v : undefined;
  }
}
