/**
 * The directives migrate turns into typed spec keys one for one: spec key,
 * directive, context, and the kind of argument nginx takes there. A value is
 * converted only when its kind reads it exactly (a size with its unit, a
 * duration, on/off...); anything else is carried through the escape hatch
 * unchanged, so nothing nginx accepts becomes null. The generated directive
 * table of src/nginx/directives/ can supply contexts and kinds later.
 */
import { isDuration, isSize } from "../spec/units.js";

export type ArgKind = "flag" | "duration" | "size" | "count" | "workers" | "text" | "buffers";
export type Context = "main" | "events" | "http";

export interface TableEntry {
  directive: string;
  context: Context;
  /** The spec path it goes to. */
  key: string;
  kind: ArgKind;
}

const entries: Array<[Context, string, ArgKind, string?]> = [
  ["main", "worker_processes", "workers"],
  ["main", "worker_rlimit_nofile", "count"],
  ["events", "worker_connections", "count"],
  ["events", "multi_accept", "flag"],
  ["http", "default_type", "text"],
  ["http", "sendfile", "flag"],
  ["http", "tcp_nopush", "flag"],
  ["http", "tcp_nodelay", "flag"],
  ["http", "server_tokens", "flag"],
  ["http", "keepalive_timeout", "duration"],
  ["http", "client_body_timeout", "duration"],
  ["http", "client_header_timeout", "duration"],
  ["http", "send_timeout", "duration"],
  ["http", "proxy_connect_timeout", "duration"],
  ["http", "proxy_send_timeout", "duration"],
  ["http", "proxy_read_timeout", "duration"],
  ["http", "client_max_body_size", "size"],
  ["http", "client_body_buffer_size", "size"],
  ["http", "client_header_buffer_size", "size"],
  ["http", "proxy_buffer_size", "size"],
  ["http", "proxy_busy_buffers_size", "size"],
  ["http", "keepalive_requests", "count"],
  ["http", "types_hash_max_size", "count"],
  ["http", "server_names_hash_bucket_size", "count"],
  ["http", "large_client_header_buffers", "buffers"],
  ["http", "proxy_buffers", "buffers"],
];

export const DIRECTIVE_TABLE: ReadonlyMap<string, TableEntry> = new Map(
  entries.map(([context, directive, kind]) => [
    `${context}:${directive}`,
    { context, directive, kind, key: context === "http" ? `nginx.http.${directive}` : `nginx.${directive}` },
  ]),
);

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
