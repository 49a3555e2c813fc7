/**
 * The http block -> spec.nginx.http: the directive table's keys, mime types,
 * resolver, log formats and logs, gzip, maps, the Lua path, shared dicts the
 * old discovery used, and TLS set at http level (handed down to the servers).
 * Upstreams and servers are converted last, once the rest of http is known.
 */
import path from "node:path";
import type { Directive } from "../nginx/types.js";
import { EXTENSION_RE, MIME_TYPE_RE } from "../spec/schema.js";
import { bytes, flag, SPEC_NAME_RE, text, UNSAFE_RE } from "./args.js";
import type { ConvertContext } from "./context.js";
import { convertAccessLogs } from "./convert-logs.js";
import { convertServer } from "./convert-server.js";
import { convertUpstream } from "./convert-upstream.js";
import { isMimeTypesInclude } from "./flatten.js";
import { carry } from "./hatch.js";
import { compareMimeTypes } from "./mime.js";
import type { GzipInput, HatchDirective, HttpInput, MapInput, NginxInput, ServerInput, SslInput } from "./spec-input.js";
import { readArgs, setTableValue, tableEntry } from "./table.js";

const GEN_LB_LUA_PATH = "$prefix/lua/?.lua";
const AT = "nginx.http.directives";

/** What http level hands down to every server: TLS settings and proxy_set_header (for locations that set none). */
export interface HttpLevel {
  ssl: Partial<Pick<SslInput, "certificate" | "certificate_key" | "protocols" | "ciphers" | "prefer_server_ciphers">>;
  headers: Array<[string, string]>;
}

export interface HttpOut {
  /** spec.nginx, for lua_package_path. */
  nginx: NginxInput;
  http: HttpInput;
  servers: ServerInput[];
  level: HttpLevel;
}

type Formats = NonNullable<HttpInput["log_formats"]>;

export function convertHttp(ctx: ConvertContext, h: Directive, out: HttpOut): void {
  const { ledger } = ctx;
  const { http, level } = out;
  const directives: HatchDirective[] = [];
  const accessLogs: Directive[] = [];
  const gzip: GzipInput = {};
  const formats: Formats = {};
  const maps: MapInput[] = [];
  let mime = false;
  const luaPath: string[] = [];
  const later: Directive[] = [];
  const children = h.block ?? [];

  // proxy_set_header at http level is inherited by locations that set none.
  for (const c of children) if (c.directive === "proxy_set_header" && c.args.length === 2) level.headers.push([c.args[0]!, c.args[1]!]);

  for (const c of children) {
    const a = c.args;
    const entry = tableEntry("http", c.directive);
    if (entry) {
      const v = readArgs(entry.kind, a);
      if (v === undefined) carry(ctx, c, directives, AT);
      else {
        setTableValue(http, entry, v);
        ledger.converted(c, entry.key);
      }
      continue;
    }
    if (ctx.tls.session(c)) continue;
    switch (c.directive) {
      case "#":
        ledger.comments++;
        break;
      case "include":
        if (isMimeTypesInclude(c)) {
          mime = true;
          includeMimeTypes(ctx, c, http);
        } else carry(ctx, c, directives, AT);
        break;
      case "types": {
        const entries = (c.block ?? []).filter((e) => e.directive !== "#");
        if (a.length === 0 && entries.every((e) => MIME_TYPE_RE.test(e.directive) && e.args.length > 0 && e.args.every((x) => EXTENSION_RE.test(x)))) {
          const types = (http.types ??= {});
          for (const e of entries) types[e.directive] = [...(types[e.directive] ?? []), ...e.args];
          ledger.converted(c, "nginx.http.types");
        } else carry(ctx, c, directives, AT);
        break;
      }
      case "resolver":
        if (a.length > 0 && a.every((x) => !x.includes("=") && !UNSAFE_RE.test(x))) {
          http.resolver = [...a];
          ledger.converted(c, "nginx.http.resolver");
        } else carry(ctx, c, directives, AT);
        break;
      case "log_format":
        logFormat(ctx, c, formats, directives);
        break;
      case "access_log":
        accessLogs.push(c);
        break;
      case "error_log":
        if (a.length === 1 && !UNSAFE_RE.test(a[0]!)) {
          http.error_log = a[0];
          ledger.converted(c, "nginx.http.error_log");
        } else carry(ctx, c, directives, AT);
        break;
      case "gzip":
      case "gzip_comp_level":
      case "gzip_min_length":
      case "gzip_types":
      case "gzip_proxied":
      case "gzip_vary":
      case "gzip_http_version":
      case "gzip_disable":
      case "gzip_buffers": {
        // Each only when the spec key can say exactly what nginx was told; else carried.
        const part = gzipPart(c);
        if (part === undefined) carry(ctx, c, directives, AT);
        else {
          Object.assign(gzip, part.value);
          ledger.converted(c, `nginx.http.gzip.${part.key}`, part.note);
        }
        break;
      }
      case "map":
        convertMap(ctx, c, http, maps, directives);
        break;
      case "lua_package_path":
        for (const entry of (a[0] ?? "").split(";")) {
          if (entry !== "" && entry !== GEN_LB_LUA_PATH && !UNSAFE_RE.test(entry)) luaPath.push(entry);
        }
        ledger.converted(c, "nginx.lua_package_path", "gen-lb puts its own modules first");
        break;
      case "lua_shared_dict":
        if (ctx.pattern.dicts.has(a[0] ?? "")) {
          ledger.add("dropped", c, `${text(c)}: used only by the old Consul discovery or health checker, which gen-lb replaces (it declares its own dicts)`);
        } else carry(ctx, c, directives, AT);
        break;
      case "upstream":
      case "server":
        later.push(c);
        break;
      case "ssl_certificate":
      case "ssl_certificate_key":
        if (a.length === 1 && a[0] !== "" && !UNSAFE_RE.test(a[0]!)) {
          const [value, note] = confPath(ctx, a[0]!);
          level.ssl[c.directive === "ssl_certificate" ? "certificate" : "certificate_key"] = value;
          ledger.converted(c, `servers[].ssl.${c.directive.slice(4)}`, `set at http level: every server with an ssl listen inherits it${note ? `; ${note}` : ""}`).newArgs = [value];
        } else carry(ctx, c, directives, AT);
        break;
      case "ssl_protocols":
      case "ssl_ciphers":
      case "ssl_prefer_server_ciphers": {
        const v = ctx.tls.option(c);
        if (v === undefined) carry(ctx, c, directives, AT);
        else {
          Object.assign(level.ssl, v);
          ledger.converted(c, `servers[].ssl.${Object.keys(v)[0]}`, "set at http level: every server with an ssl listen inherits it").newArgs = [...a];
        }
        break;
      }
      default:
        if (/^init(_worker)?_by_lua/.test(c.directive) && ctx.pattern.lua.has(c)) {
          ledger.add("dropped", c, `${c.directive}: the old Consul polling and health checker, replaced by gen-lb's runtime (discovery, health checks)`);
        } else {
          // proxy_set_header among them: kept at http level too, for locations gen-lb does not generate.
          carry(ctx, c, directives, AT);
        }
    }
  }

  if (accessLogs.length) convertAccessLogs(ctx, accessLogs, http, "nginx.http", directives, AT);
  nginxDefaults(ctx, h, http);
  if (Object.keys(gzip).length) {
    if (gzip.enabled === undefined) gzip.enabled = false;
    http.gzip = gzip;
  }
  if (Object.keys(formats).length) http.log_formats = formats;
  if (maps.length) http.maps = maps;
  http.include_mime_types = mime;
  if (luaPath.length) out.nginx.lua_package_path = luaPath;

  for (const c of later) if (c.directive === "upstream") upstream(ctx, c);
  for (const c of later) if (c.directive === "server") convertServer(ctx, c, out.servers, level);
  if (directives.length) http.directives = directives;
}

/**
 * nginx's defaults where gen-lb's differ, written out so that responses do
 * not change (default_type, server_tokens), and the secure default suggested.
 */
function nginxDefaults(ctx: ConvertContext, h: Directive, http: HttpInput): void {
  if (http.default_type === undefined) {
    // gen-lb's default is application/octet-stream; nginx's own, which the old config ran with, is text/plain.
    http.default_type = "text/plain";
    ctx.ledger.note("converted", h, "default_type: not set, so nginx's default (text/plain) made explicit: responses keep their Content-Type", "nginx.http.default_type");
  }
  if (http.server_tokens === undefined) {
    // gen-lb's default is off; the old config ran with nginx's (on), and migrate changes no response.
    http.server_tokens = true;
    ctx.ledger.note("converted", h, "server_tokens: not set, so nginx's default (on) made explicit: responses keep the nginx version in Server and error pages", "nginx.http.server_tokens");
  }
  if (http.server_tokens === true) {
    ctx.ledger.note("suggestion", h, "nginx.http.server_tokens: false (gen-lb's default) hides the nginx version from the Server header and error pages", "nginx.http.server_tokens");
  }
}

/** include mime.types: gen-lb ships its own file; what only the old one maps is kept as nginx.http.types. */
function includeMimeTypes(ctx: ConvertContext, c: Directive, http: HttpInput): void {
  const old = ctx.input.mimeTypes?.get(`${c.file}:${c.line}:${c.column}`);
  const cmp = old && old.length ? compareMimeTypes(old) : undefined;
  const added = cmp ? Object.values(cmp.add).reduce((n, l) => n + l.length, 0) : 0;
  if (cmp && added) {
    // What the old file maps and gen-lb's 35-type file does not: kept as extra types.
    const types = (http.types ??= {});
    for (const [t, exts] of Object.entries(cmp.add)) types[t] = [...(types[t] ?? []), ...exts];
  }
  ctx.ledger.converted(c, "nginx.http.include_mime_types", cmp ? `gen-lb ships its own conf/mime.types; the ${added} extension${added === 1 ? "" : "s"} only the old file maps are kept in nginx.http.types` : "gen-lb ships its own conf/mime.types; the old file was not found, so check what it mapped");
  if (cmp && cmp.differ.length) {
    ctx.ledger.add("todo", c, `mime.types: ${cmp.differ.length} extension${cmp.differ.length === 1 ? "" : "s"} get a different type from gen-lb's file than from the old one (${cmp.differ.slice(0, 8).map((x) => `.${x.ext}: ${x.old} -> ${x.shipped}`).join(", ")}${cmp.differ.length > 8 ? ", ..." : ""}); install into the old prefix keeps its own conf/mime.types`, "nginx.http.include_mime_types");
  }
}

const PROXIED = ["off", "expired", "no-cache", "no-store", "private", "no_last_modified", "no_etag", "auth", "any"] as const;
const isProxied = (x: string): x is (typeof PROXIED)[number] => (PROXIED as readonly string[]).includes(x);

/** A gzip* directive as a spec gzip key, when that key can say exactly what nginx was told. */
function gzipPart(c: Directive): { key: string; value: GzipInput; note?: string } | undefined {
  const a = c.args;
  const key = c.directive === "gzip" ? "enabled" : c.directive.slice(5);
  const one = a.length === 1 ? a[0]! : undefined;
  switch (c.directive) {
    case "gzip":
      return flag(a[0]) === undefined ? undefined : { key, value: { enabled: flag(a[0])! } };
    case "gzip_comp_level":
      return one !== undefined && /^[1-9]$/.test(one) ? { key, value: { comp_level: Number(one) } } : undefined;
    case "gzip_min_length": {
      // gzip_min_length takes a size (1k); the spec key is bytes.
      const v = bytes(a[0]);
      if (v === undefined || one === undefined) return undefined;
      return { key, value: { min_length: v }, note: v !== Number(one) ? `${one} = ${v} bytes` : "" };
    }
    case "gzip_types":
      return a.length > 0 && a.every((x) => x !== "" && !UNSAFE_RE.test(x)) ? { key, value: { types: [...a] } } : undefined;
    case "gzip_proxied":
      return a.length > 0 && a.every(isProxied) ? { key, value: { proxied: [...a] } } : undefined;
    case "gzip_vary":
      return one !== undefined && flag(one) !== undefined ? { key, value: { vary: flag(one)! } } : undefined;
    case "gzip_http_version":
      return one === "1.0" || one === "1.1" ? { key, value: { http_version: one } } : undefined;
    case "gzip_disable":
      return one !== undefined && one !== "" && !UNSAFE_RE.test(one) ? { key, value: { disable: one } } : undefined;
    default:
      return a.length === 2 && /^\d+$/.test(a[0]!) && bytes(a[1]) !== undefined ? { key, value: { buffers: a.join(" ") } } : undefined;
  }
}

function logFormat(ctx: ConvertContext, c: Directive, formats: Formats, directives: HatchDirective[]): void {
  const [name, ...rest] = c.args;
  const escape = rest[0]?.startsWith("escape=") ? rest.shift()!.slice(7) : undefined;
  const format = rest.join("");
  if (name && SPEC_NAME_RE.test(name) && format !== "" && !UNSAFE_RE.test(format) && (escape === undefined || escape === "default" || escape === "json" || escape === "none")) {
    formats[name] = escape === undefined ? format : { format, escape };
    ctx.ledger.converted(c, `nginx.http.log_formats.${name}`, rest.length > 1 ? "its strings joined, as nginx joins them" : "");
  } else carry(ctx, c, directives, AT);
}

function convertMap(ctx: ConvertContext, c: Directive, http: HttpInput, maps: MapInput[], directives: HatchDirective[]): void {
  const [source, variable] = c.args;
  const entries = (c.block ?? []).filter((e) => e.directive !== "#");
  if (
    source === "$http_upgrade" && variable === "$connection_upgrade" && entries.length === 2 &&
    entries.some((e) => e.directive === "default" && e.args[0] === "upgrade") && entries.some((e) => e.directive === "" && e.args[0] === "close")
  ) {
    http.upgrade_map = true;
    ctx.ledger.converted(c, "nginx.http.upgrade_map");
    return;
  }
  if (!source || !variable || !/^\$[A-Za-z_][A-Za-z0-9_]*$/.test(variable) || UNSAFE_RE.test(source)) {
    carry(ctx, c, directives, AT);
    return;
  }
  const m: MapInput = { source, variable };
  const list: NonNullable<MapInput["entries"]> = [];
  for (const e of entries) {
    if (e.directive === "hostnames" && e.args.length === 0) m.hostnames = true;
    else if (e.directive === "default" && e.args.length === 1) m.default = e.args[0];
    else if (e.args.length === 1 && !["volatile", "include"].includes(e.directive)) list.push({ match: e.directive, value: e.args[0]! });
    else {
      ctx.ledger.add("lost", e, `${text(e)}: map entries of this form have no place in the spec's maps`);
    }
  }
  if (list.length) m.entries = list;
  maps.push(m);
  ctx.ledger.converted(c, `nginx.http.maps[${maps.length - 1}]`, `${list.length} entries`);
}

function upstream(ctx: ConvertContext, u: Directive): void {
  const r = convertUpstream(u, { ledger: ctx.ledger, luaUpstreams: ctx.pattern.luaUpstreams, comments: ctx.input.comments });
  ctx.ledger.comments += r.comments;
  if (!r.converted) return;
  const { name, up, staticCount } = r.converted;
  ctx.facts.nodes.set(name, u);
  ctx.upstreams[name] = up;
  if (staticCount !== undefined) ctx.facts.staticCount.set(name, staticCount);
}

/**
 * nginx reads certificate paths relative to the directory of nginx.conf;
 * the new config lives elsewhere, so a relative one is made absolute.
 */
export function confPath(ctx: ConvertContext, p: string): [string, string] {
  if (p === "" || path.isAbsolute(p) || p.startsWith("data:") || p.includes("$")) return [p, ""];
  const abs = path.resolve(ctx.input.cwd, path.dirname(ctx.input.mainFile), p);
  return [abs, `relative to the old conf directory, made absolute: ${abs}`];
}
