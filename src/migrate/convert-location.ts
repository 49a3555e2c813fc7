/**
 * One old location {} -> a spec location: its match, what serves it
 * (proxy_pass to a converted upstream, root, alias or return), index and
 * try_files, and for proxied locations the headers sent upstream (websocket
 * recognised, nginx's defaults made explicit) and what it says about its
 * upstream's retries (into the context's upstream facts). An old status
 * page becomes gen-lb's status endpoint.
 */
import type { Directive } from "../nginx/types.js";
import { text, UNSAFE_RE } from "./args.js";
import type { ConvertContext } from "./context.js";
import { carry } from "./hatch.js";
import type { HatchDirective, LocationInput, RetryStatus } from "./spec-input.js";

const MODS: Record<string, NonNullable<LocationInput["match"]>> = { "=": "exact", "~": "regex", "~*": "regex_case_insensitive", "^~": "prefix_no_regex" };
const RETURN_UNSAFE_RE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]|\$\{/;
const AT = "servers[].locations[]";
const HATCH = "servers[].locations[].directives";
const isRetryStatus = (n: number): n is RetryStatus => [500, 502, 503, 504, 403, 404, 429].includes(n);

export function convertLocation(ctx: ConvertContext, l: Directive, inherited: ReadonlyArray<[string, string]>): LocationInput | undefined {
  const { ledger } = ctx;
  let match: NonNullable<LocationInput["match"]> = "prefix";
  let p: string | undefined;
  if (l.args.length === 2 && MODS[l.args[0]!]) {
    match = MODS[l.args[0]!]!;
    p = l.args[1];
  } else if (l.args.length === 1) p = l.args[0];
  if (p === undefined || p === "" || UNSAFE_RE.test(p)) {
    ledger.mustRewrite(l, `${text(l)}: this location cannot be expressed, so it is left out`);
    return undefined;
  }
  const block = l.block ?? [];
  if (statusPage(ctx, l, p, block)) return undefined;

  const loc: LocationInput = { path: p };
  if (match !== "prefix") loc.match = match;
  const directives: HatchDirective[] = [];
  const proxy = block.find((c) => c.directive === "proxy_pass");
  const upstream = proxy && /^http:\/\/([A-Za-z0-9_.-]+)$/.exec(proxy.args[0] ?? "")?.[1];
  // A location-level return answers in the rewrite phase, before any proxying: then proxy_pass and its
  // headers are carried as they are (a header map for an upstream the location never reaches would be left unused).
  const returns = block.some((c) => c.directive === "return");
  const typed = upstream !== undefined && upstream in ctx.upstreams && !returns ? upstream : undefined;
  const headers: Array<[string, string, Directive]> = [];
  let content = false; // one of upstream, root, alias, return

  for (const c of block) {
    const a = c.args;
    switch (c.directive) {
      case "#":
        ledger.comments++;
        break;
      case "proxy_pass":
        if (typed !== undefined && c === proxy && !content) {
          loc.upstream = typed;
          content = true;
          ledger.converted(c, `${AT}.upstream`);
        } else carry(ctx, c, directives, HATCH);
        break;
      case "proxy_set_header":
        if (typed !== undefined && a.length === 2) headers.push([a[0]!, a[1]!, c]);
        else carry(ctx, c, directives, HATCH);
        break;
      case "proxy_http_version":
        if (typed !== undefined) ledger.add("dropped", c, `${text(c)}: gen-lb proxies with HTTP/1.1 (for upstream keepalive)`);
        else carry(ctx, c, directives, HATCH);
        break;
      case "proxy_next_upstream_tries":
        if (typed !== undefined && /^\d+$/.test(a[0] ?? "")) {
          const tries = Number(a[0]) === 0 ? 11 : Number(a[0]);
          ctx.facts.tries.set(typed, Math.max(ctx.facts.tries.get(typed) ?? 0, tries));
          ledger.converted(c, `upstreams.${typed}.retries`);
        } else carry(ctx, c, directives, HATCH);
        break;
      case "proxy_next_upstream":
        if (typed !== undefined) {
          retryKind(ctx, typed, a.join(" "));
          const up = ctx.upstreams[typed]!;
          if (a[0] === "off") up.retries = 0;
          else {
            up.retry_statuses = a.filter((x) => /^http_(500|502|503|504|403|404|429)$/.test(x)).map((x) => Number(x.slice(5))).filter(isRetryStatus);
            if (a.includes("non_idempotent")) up.retry_non_idempotent = true;
          }
          ledger.converted(c, `upstreams.${typed}.retry_statuses`);
        } else carry(ctx, c, directives, HATCH);
        break;
      case "root":
      case "alias":
        // With a proxy_pass to a converted upstream, that is the content (nginx proxies; root or alias only set
        // $document_root for what is nested): carried, so the headers converted for the upstream are not left unused.
        if (!content && typed === undefined && a.length === 1) {
          if (c.directive === "root") loc.root = a[0];
          else loc.alias = a[0];
          content = true;
          ledger.converted(c, `${AT}.${c.directive}`);
        } else carry(ctx, c, directives, HATCH);
        break;
      case "return":
        // A return text may hold newlines and tabs (nginx's \n, \t escapes), which the spec writes back as escapes.
        if (!content && /^\d{3}$/.test(a[0] ?? "") && a.length <= 2 && (a[1] === undefined || (a[1] !== "" && !RETURN_UNSAFE_RE.test(a[1])))) {
          loc.return = a[1] === undefined ? { code: Number(a[0]) } : { code: Number(a[0]), text: a[1] };
          content = true;
          ledger.converted(c, `${AT}.return`);
        } else carry(ctx, c, directives, HATCH);
        break;
      case "index":
      case "try_files":
        if (a.every((x) => x !== "" && !UNSAFE_RE.test(x))) {
          if (c.directive === "index") loc.index = [...a];
          else loc.try_files = [...a];
          ledger.converted(c, `${AT}.${c.directive}`);
        } else carry(ctx, c, directives, HATCH);
        break;
      default:
        carry(ctx, c, directives, HATCH);
    }
  }

  if (typed !== undefined) {
    // nginx's own default is "proxy_next_upstream error timeout".
    if (!block.some((c) => c.directive === "proxy_next_upstream")) retryKind(ctx, typed, "error timeout");
    proxyHeaders(ctx, l, loc, headers, inherited);
  }
  if (directives.length) loc.directives = directives;
  ledger.add("converted", l, `location ${l.args.join(" ")}`, AT);
  return loc;
}

function retryKind(ctx: ConvertContext, upstream: string, kind: string): void {
  const kinds = ctx.facts.retryKinds.get(upstream) ?? new Set<string>();
  kinds.add(kind);
  ctx.facts.retryKinds.set(upstream, kinds);
}

/** The old status page (a Lua content handler printing the checker's status) -> gen-lb's status server. */
function statusPage(ctx: ConvertContext, l: Directive, p: string, block: readonly Directive[]): boolean {
  const luaContent = block.find((c) => c.directive.startsWith("content_by_lua"));
  if (!luaContent || !/status_page\s*\(|get_status\s*\(|resty\.upstream\.healthcheck/.test(luaContent.args.join(" "))) return false;
  const allow = block.filter((c) => c.directive === "allow").map((c) => c.args[0]!);
  ctx.statusPages.push({ path: p, allow, d: l });
  for (const c of block) if (c.directive !== "#") ctx.ledger.add("dropped", c, `${text(c)}: part of the old status page`);
  ctx.ledger.add("converted", l, `location ${l.args.join(" ")}: the old status page, replaced by gen-lb's status endpoint`, "status");
  return true;
}

/**
 * The headers a proxied location sends: its own proxy_set_header, else the
 * server's or http's (nginx inherits them only into a level that sets none);
 * Upgrade/Connection as websocket, and nginx's default Host made explicit
 * when nothing else is left (gen-lb's default would add X-Forwarded-*).
 */
function proxyHeaders(ctx: ConvertContext, l: Directive, loc: LocationInput, headers: ReadonlyArray<[string, string, Directive]>, inherited: ReadonlyArray<[string, string]>): void {
  const { ledger } = ctx;
  const set = headers.length ? headers : inherited.map(([k, v]) => [k, v, undefined] as const);
  const record: Record<string, string> = {};
  for (const [k, v, d] of set) {
    if (k.toLowerCase() === "upgrade" && v === "$http_upgrade") {
      loc.websocket = true;
      if (d) ledger.converted(d, `${AT}.websocket`);
    } else if (k.toLowerCase() === "connection" && (v === "$connection_upgrade" || v === "")) {
      if (v === "$connection_upgrade") loc.websocket = true;
      if (d) ledger.add("dropped", d, `${text(d)}: gen-lb sets Connection itself (${v === "" ? '"" for keepalive' : "$connection_upgrade for websocket"})`);
    } else if (/^[A-Za-z0-9-]+$/.test(k) && !UNSAFE_RE.test(v)) {
      record[k] = v;
      if (d) ledger.converted(d, `${AT}.proxy_set_header.${k}`);
    } else if (d) {
      ledger.add("lost", d, `${text(d)}: this header cannot be expressed`);
    }
  }
  if (Object.keys(record).length) loc.proxy_set_header = record;
  else {
    // What nginx sent when no header of its own was left (none given, or
    // only Connection/Upgrade, which gen-lb sets): gen-lb's default would add X-Forwarded-*.
    loc.proxy_set_header = { Host: "$proxy_host" };
    ledger.add("converted", l, `location ${l.args.join(" ")} set no proxy headers ${set.length ? "besides Connection/Upgrade" : ""}: nginx's default (Host: $proxy_host) made explicit`.replace("  ", " "), `${AT}.proxy_set_header`);
  }
  if (!headers.length && inherited.length) {
    ledger.add("converted", l, `location ${l.args.join(" ")}: inherited proxy_set_header made explicit`, `${AT}.proxy_set_header`);
  }
}
