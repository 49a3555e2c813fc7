/**
 * Which modules a binary has, from the configure arguments its `-V` prints:
 * compiled in ("static"), built as a dynamic module ("dynamic", loaded with
 * load_module), or left out ("absent"). Pure: text in, answers out.
 *
 * nginx's own modules are known by their configure flags (some are on
 * unless --without-FLAG, the rest off unless --with-FLAG); third-party ones
 * by the directory --add-module names (OpenResty's bundle, as the committed
 * directive tables record where each module came from). Anything else is
 * undefined: not known, so not judged.
 */
import path from "node:path";
import { allDirectiveTables } from "../nginx/directives.js";

export type ModuleLink = "static" | "dynamic" | "absent";

/** The arguments of `-V`'s "configure arguments:" line ('quoted' ones kept whole, quotes removed). */
export function configureArguments(versionText: string): string[] {
  const line = /configure arguments:(.*)/.exec(versionText)?.[1] ?? "";
  return [...line.matchAll(/(?:[^\s']+|'[^']*')+/g)].map((m) => m[0].replace(/'/g, ""));
}

/** nginx's modules that are off unless configure gets --with-FLAG (auto/options). */
const OFF_BY_DEFAULT = new Set([
  "http_ssl_module", "http_v2_module", "http_v3_module", "http_realip_module", "http_addition_module", "http_xslt_module",
  "http_image_filter_module", "http_geoip_module", "http_sub_module", "http_dav_module", "http_flv_module", "http_mp4_module",
  "http_gunzip_module", "http_gzip_static_module", "http_auth_request_module", "http_random_index_module",
  "http_secure_link_module", "http_degradation_module", "http_slice_module", "http_stub_status_module", "http_perl_module",
  "mail", "mail_ssl_module", "stream", "stream_ssl_module", "stream_realip_module", "stream_geoip_module", "stream_ssl_preread_module",
]);

/** nginx's modules that are on unless configure gets --without-FLAG. */
const ON_BY_DEFAULT = new Set([
  "http_charset_module", "http_gzip_module", "http_ssi_module", "http_userid_module", "http_access_module", "http_auth_basic_module",
  "http_mirror_module", "http_autoindex_module", "http_geo_module", "http_map_module", "http_split_clients_module",
  "http_referer_module", "http_rewrite_module", "http_proxy_module", "http_fastcgi_module", "http_uwsgi_module", "http_scgi_module",
  "http_grpc_module", "http_memcached_module", "http_limit_conn_module", "http_limit_req_module", "http_empty_gif_module",
  "http_browser_module", "http_upstream_hash_module", "http_upstream_ip_hash_module", "http_upstream_least_conn_module",
  "http_upstream_random_module", "http_upstream_keepalive_module", "http_upstream_zone_module",
]);

/** Module names whose flag is not the name without ngx_ and _filter. */
const FLAG_OF: Record<string, string> = {
  ngx_stream_module: "stream",
  ngx_mail_module: "mail",
  ngx_http_image_filter_module: "http_image_filter_module",
  ngx_http_xslt_filter_module: "http_xslt_module",
};

/** The configure flag (no --with-/--without-) of one of nginx's own modules; undefined for any other. */
export function nginxModuleFlag(module: string): string | undefined {
  if (FLAG_OF[module]) return FLAG_OF[module];
  const m = /^ngx_((?:http|stream|mail)_.+?)(?:_filter)?_module$/.exec(module);
  const flag = m ? `${m[1]}_module` : undefined;
  return flag !== undefined && (OFF_BY_DEFAULT.has(flag) || ON_BY_DEFAULT.has(flag)) ? flag : undefined;
}

const stripVersion = (dir: string) => path.basename(dir.replace(/\/+$/, "")).replace(/-v?\d[\w.]*$/, "");

/** Repository names of modules OpenResty bundles under other directory names. */
const ALIASES: Record<string, string> = {
  "lua-nginx-module": "ngx_http_lua_module",
  "stream-lua-nginx-module": "ngx_stream_lua_module",
  "lua-upstream-nginx-module": "ngx_http_lua_upstream_module",
};

let fromDirs: Map<string, Set<string>> | undefined;
/** Source directory (version stripped) -> the modules it builds, from the committed directive tables. */
function modulesByDir(): Map<string, Set<string>> {
  if (fromDirs) return fromDirs;
  fromDirs = new Map();
  const add = (dir: string, module: string) => (fromDirs!.get(dir) ?? fromDirs!.set(dir, new Set()).get(dir)!).add(module);
  for (const table of allDirectiveTables()) {
    for (const [module, m] of Object.entries(table.modules)) {
      if (!m.from.startsWith("nginx-")) add(stripVersion(m.from), module);
    }
  }
  for (const [dir, module] of Object.entries(ALIASES)) add(dir, module);
  return fromDirs;
}

/**
 * How the binary has `module` ("ngx_stream_module", "ngx_http_v2_module",
 * "ndk_http_module"...), or undefined when its configure arguments do not say.
 */
export function moduleLink(configure: readonly string[], module: string): ModuleLink | undefined {
  const flag = nginxModuleFlag(module);
  if (flag !== undefined) {
    if (configure.includes(`--with-${flag}=dynamic`)) return "dynamic";
    if (configure.includes(`--with-${flag}`)) return "static";
    if (OFF_BY_DEFAULT.has(flag) || configure.includes(`--without-${flag}`)) return "absent";
    return "static";
  }
  for (const a of configure) {
    const m = /^--add-(dynamic-)?module=(.+)$/.exec(a);
    if (m && modulesByDir().get(stripVersion(m[2]!))?.has(module)) return m[1] ? "dynamic" : "static";
  }
  return undefined;
}

/**
 * Why a binary configured with `configure` lacks `module`, or undefined when
 * it has it or its -V does not say. `needs`: the flags the directive table
 * records for a module its reference build left out ("--with-mail
 * --with-mail_ssl_module"); a module nginx builds by default but only next
 * to another (grpc with http_v2, from nginx 1.25) is known by those.
 */
export function lackOf(configure: readonly string[], module: string, needs?: string): string | undefined {
  const flag = nginxModuleFlag(module);
  if (flag !== undefined && configure.includes(`--without-${flag}`)) return `built without ${module} (its -V has --without-${flag})`;
  const missing = (needs?.split(" ") ?? []).filter((f) => !configure.includes(f) && !configure.includes(`${f}=dynamic`));
  if (moduleLink(configure, module) === "absent" && flag !== undefined && !missing.includes(`--with-${flag}`)) missing.push(`--with-${flag}`);
  if (missing.length === 0) return undefined;
  return `built without ${module} (its -V has no ${missing.join(", no ")})`;
}

/**
 * Why a binary configured with `configure` can take none of `defs` (a
 * directive's definitions: each its module, and the flags the table records
 * for a module its reference build left out), or undefined when it has one
 * of them, or `defs` is empty. The one rule check/install (the spec) and
 * migrate (the old config) judge a directive by.
 */
export function lacksEvery(configure: readonly string[], defs: ReadonlyArray<{ module: string; needs?: string }>): string[] | undefined {
  if (defs.length === 0) return undefined;
  const why = defs.map((d) => lackOf(configure, d.module, d.needs));
  return why.every((w): w is string => w !== undefined) ? [...new Set(why)] : undefined;
}
