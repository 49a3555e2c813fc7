/**
 * One old server {} -> one spec server per kind of listen: listens, names,
 * root and index, error pages, logs, TLS (its own and what http level set),
 * and its locations (through the location converter). A server whose
 * listens differ in their parameters becomes several spec servers with the
 * same content, as nginx treats it; one that cannot be expressed is left
 * out with a blocking finding, never silently.
 */
import type { Directive } from "../nginx/types.js";
import { LISTEN_OPTION_RE } from "../spec/schema.js";
import { pos, text, UNSAFE_RE } from "./args.js";
import type { ConvertContext } from "./context.js";
import { lackingModule } from "./modules.js";
import { confPath, type HttpLevel } from "./convert-http.js";
import { convertLocation } from "./convert-location.js";
import { convertAccessLogs } from "./convert-logs.js";
import { carry } from "./hatch.js";
import type { HatchDirective, LocationInput, ServerInput, SslInput } from "./spec-input.js";
import { cloneCarried } from "./target-fit.js";

/** One listen directive of an old server, as the spec can say it. */
interface Listen {
  addr: string | number;
  ssl: boolean;
  http2: boolean;
  def: boolean;
  reuseport: boolean;
  /** listen_options: the other parameters the spec knows. */
  options: string[];
  d: Directive;
}

const HOST_PORT_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):\d{1,5}$/;
const AT = "servers[].directives";

/** What every spec server made from one old server holds. */
type ServerBody = Omit<ServerInput, "listen">;

export function convertServer(ctx: ConvertContext, s: Directive, servers: ServerInput[], level: HttpLevel): void {
  const { ledger } = ctx;
  const base: ServerBody = {};
  const directives: HatchDirective[] = [];
  const locations: LocationInput[] = [];
  const listens: Listen[] = [];
  const ssl: Partial<SslInput> = {};
  const sslDirectives: Directive[] = [];
  const serverHeaders: Array<[string, string]> = [];
  const accessLogs: Directive[] = [];
  for (const c of s.block ?? []) if (c.directive === "proxy_set_header" && c.args.length === 2) serverHeaders.push([c.args[0]!, c.args[1]!]);
  const inherited = serverHeaders.length ? serverHeaders : level.headers;

  for (const c of s.block ?? []) {
    const a = c.args;
    if (ctx.tls.session(c)) continue;
    switch (c.directive) {
      case "#":
        ledger.comments++;
        break;
      case "listen": {
        const l = parseListen(ctx, c);
        if (l) listens.push(l);
        break;
      }
      case "server_name":
        base.server_name = [...a];
        ledger.converted(c, "servers[].server_name");
        break;
      case "ssl_certificate":
      case "ssl_certificate_key":
      case "ssl_protocols":
      case "ssl_ciphers":
      case "ssl_prefer_server_ciphers":
        sslDirectives.push(c);
        break;
      case "root":
        base.root = a[0];
        ledger.converted(c, "servers[].root");
        break;
      case "index":
        base.index = [...a];
        ledger.converted(c, "servers[].index");
        break;
      case "error_page": {
        const codes = a.slice(0, -1);
        const uri = a.at(-1);
        if (codes.length && codes.every((x) => /^[3-5]\d\d$/.test(x)) && uri && !UNSAFE_RE.test(uri)) {
          (base.error_pages ??= []).push({ codes: codes.map(Number), uri });
          ledger.converted(c, "servers[].error_pages");
        } else carry(ctx, c, directives, AT);
        break;
      }
      case "access_log":
        accessLogs.push(c);
        break;
      case "location": {
        const loc = convertLocation(ctx, c, inherited);
        if (loc) locations.push(loc);
        break;
      }
      default:
        carry(ctx, c, directives, AT);
    }
  }
  if (accessLogs.length) convertAccessLogs(ctx, accessLogs, base, "servers[]", directives, AT);
  if (locations.length) base.locations = locations;
  if (directives.length) base.directives = directives;
  serverSsl(ctx, sslDirectives, ssl);

  if (listens.length === 0) listens.push({ addr: 80, ssl: false, http2: false, def: false, reuseport: false, options: [], d: s });
  // The spec's listen flags (ssl, http2, default_server, reuseport,
  // listen_options) hold for every listen of a server; a server whose
  // listens differ becomes one server per kind, which nginx treats the same way.
  const groups = new Map<string, Listen[]>();
  for (const l of listens) {
    const key = `${l.ssl}|${l.http2}|${l.def}|${l.reuseport}|${l.options.join(" ")}`;
    groups.set(key, [...(groups.get(key) ?? []), l]);
  }
  const index = servers.length;
  const label = ledger.add("converted", s, "server", `servers[${index}]`);
  const anySsl = listens.some((l) => l.ssl);
  for (const group of groups.values()) {
    const server: ServerInput = { listen: group.length === 1 ? group[0]!.addr : group.map((l) => l.addr), ...cloneCarried(base) };
    const first = group[0]!;
    if (anySsl && !first.ssl && server.directives) {
      // ssl_* settings mean nothing to the plain-HTTP half of a split server.
      server.directives = server.directives.filter((x) => !x.name.startsWith("ssl_"));
      if (server.directives.length === 0) delete server.directives;
    }
    if (first.def) server.default_server = true;
    if (first.http2) server.http2 = true;
    if (first.reuseport) server.reuseport = true;
    if (first.options.length) server.listen_options = [...first.options];
    if (first.ssl) {
      const tls = { ...level.ssl, ...ssl };
      if (tls.certificate === undefined || tls.certificate_key === undefined) {
        ledger.mustRewrite(first.d, `server ${pos(s)} (${text(first.d)}): an ssl listen needs ssl_certificate and ssl_certificate_key (in the server or at http level), so this server is left out`);
        continue;
      }
      server.ssl = ctx.tls.keep(s, { ...tls, certificate: tls.certificate, certificate_key: tls.certificate_key }, servers.length);
    }
    if (!server.security_headers) {
      ledger.note("suggestion", s, `servers[${servers.length}].security_headers: true adds X-Content-Type-Options, X-Frame-Options and Referrer-Policy to every response${first.ssl ? "; ssl.hsts: true sends Strict-Transport-Security" : ""}`, `servers[${servers.length}].security_headers`);
    }
    servers.push(server);
  }
  // The label names the spec servers this one really became (none when all were left out).
  const made = servers.length - index;
  if (made === 0) {
    label.kind = "lost";
    label.message = "server: left out (see the findings of its listens)";
    label.blocking = true;
    delete label.to;
  } else if (made > 1 || groups.size > 1) {
    label.message = `server: its listens differ in their parameters (ssl, http2, default_server, reuseport, ...), so it becomes ${made} spec server${made === 1 ? "" : "s"} with the same content`;
    label.to = made === 1 ? `servers[${index}]` : `servers[${index}..${index + made - 1}]`;
  }
}

/** The server's own ssl_* directives as servers[].ssl keys. */
function serverSsl(ctx: ConvertContext, sslDirectives: readonly Directive[], ssl: Partial<SslInput>): void {
  for (const c of sslDirectives) {
    const key = c.directive.slice(4);
    if (key === "certificate" || key === "certificate_key") {
      const [value, note] = confPath(ctx, c.args[0] ?? "");
      ssl[key] = value;
      const f = ctx.ledger.converted(c, `servers[].ssl.${key}`, note);
      if (note) f.newArgs = [value];
      continue;
    }
    const v = ctx.tls.option(c);
    if (v === undefined) {
      // gen-lb writes this directive in every ssl server: a carried copy would be a duplicate.
      ctx.ledger.add("lost", c, `${text(c)}: not a value servers[].ssl can hold, and gen-lb writes ${c.directive} itself; set servers[].ssl.${key} by hand`);
      continue;
    }
    Object.assign(ssl, v);
    ctx.ledger.converted(c, `servers[].ssl.${key}`);
  }
}

function parseListen(ctx: ConvertContext, c: Directive): Listen | undefined {
  const [addr0, ...params] = c.args;
  let addr: string | number;
  const a = addr0 ?? "";
  if (/^\d+$/.test(a)) addr = Number(a);
  else if (/^\*:\d+$/.test(a)) addr = Number(a.slice(2));
  else if (HOST_PORT_RE.test(a)) addr = a;
  else if (/^[\d.]+$/.test(a) || /^\[[0-9A-Fa-f:.]+\]$/.test(a)) addr = `${a}:80`;
  else {
    ctx.ledger.add("lost", c, `${text(c)}: only port and address:port listens can be expressed`);
    return undefined;
  }
  const flags = { ssl: false, http2: false, def: false, reuseport: false, options: [] as string[] };
  const lost: string[] = [];
  const noHttp2 = lackingModule("http2", ctx.input.bin);
  for (const p of params) {
    if (p === "ssl") flags.ssl = true;
    else if (p === "http2" && noHttp2) continue;
    else if (p === "http2") flags.http2 = true;
    else if (p === "default_server" || p === "default") flags.def = true;
    else if (p === "reuseport") flags.reuseport = true;
    else if (LISTEN_OPTION_RE.test(p)) flags.options.push(p);
    else lost.push(p);
  }
  const why = [
    ...(lost.length ? [`${lost.join(" ")} cannot be expressed (the listen itself is kept)`] : []),
    ...(noHttp2 && params.includes("http2") ? [`http2 is left out: ${noHttp2}, so clients get HTTP/1.1 (the listen itself is kept)`] : []),
  ].join("; ");
  ctx.ledger.add(why ? "lost" : "converted", c, `${text(c)}${why ? `: ${why}` : ""}`, "servers[].listen");
  return { addr, ...flags, d: c };
}
