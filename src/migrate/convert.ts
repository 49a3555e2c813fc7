/**
 * The old config tree -> a gen-lb spec, and a finding for every directive:
 * converted to a typed key, carried through the `directives` escape hatch
 * (arguments exactly as they were), dropped because gen-lb generates the
 * replacement, or lost because the spec cannot say it. Pure: the tree and the
 * Lua sources come in, data goes out.
 */
import path from "node:path";
import { EXTENSION_RE, LISTEN_OPTION_RE, MIME_TYPE_RE, type Directive as SpecDirective } from "../spec/schema.js";
import { isDuration, isSize } from "../spec/units.js";
import type { Directive } from "../nginx/types.js";
import { readConsulPattern } from "./consul.js";
import { detectDefects } from "./defects.js";
import { emittedDirectives } from "./emitted.js";
import { compareMimeTypes } from "./mime.js";
import { readArgs, tableEntry } from "./table.js";
import { isMimeTypesInclude, walk } from "./flatten.js";
import { checkerCalls, consulFacts, parseHttpReq, type CheckerCall, type LuaSource, type LuaValue } from "./lua.js";
import { Ledger } from "./ledger.js";
import { convertUpstream, type StaticPeer } from "./convert-upstream.js";
import { TlsConverter } from "./convert-tls.js";
import { convertLoadModule, lackingModule, type ModuleContext } from "./modules.js";
import type { Finding } from "./types.js";
import type { BinInfo } from "./bin.js";

type Obj = Record<string, unknown>;

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

export interface ConvertInput {
  tree: readonly Directive[];
  sources: readonly LuaSource[];
  /** The comments of each file (for the consul-template check). */
  comments: ReadonlyMap<string, string[]>;
  /** The parsed files each `include mime.types` pulled in, by the include's file:line:column. */
  mimeTypes?: ReadonlyMap<string, readonly Directive[]>;
  /** The main config file (relative certificate paths are taken from its directory). */
  mainFile: string;
  /** What a relative mainFile is relative to. */
  cwd: string;
  /** The old nginx prefix, absolute: what prefix-relative paths (cache and temp directories) meant. */
  prefix?: string;
  /** The nginx binary that will run the config (its -V), when known. */
  bin?: BinInfo;
  /** What the binary's modules directory holds and what the old prefix was (src/migrate/modules.ts); with bin. */
  modules?: ModuleContext;
}

export interface ConvertResult {
  spec: Obj;
  findings: Finding[];
}

const NAME_RE = /^[a-z_][a-z0-9_]*$/;
const SPEC_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const UNSAFE_RE = /[\u0000-\u001f\u007f]|\$\{|\]\]/;
const HOST_PORT_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):\d{1,5}$/;

const PREFIX_RELATIVE = /^((proxy|fastcgi|uwsgi|scgi)_(cache|temp)_path|client_body_temp_path)$/;
const RETURN_UNSAFE_RE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]|\$\{/;
const GEN_LB_LUA_PATH = "$prefix/lua/?.lua";

const pos = (d: Directive) => `${d.file}:${d.line}`;
const text = (d: Directive) => [d.directive, ...d.args.map((a) => (a.includes("\n") ? "{...}" : a))].join(" ");

function duration(v: string | undefined): string | number | undefined {
  if (v === undefined) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  return isDuration(v) ? v : undefined;
}
function size(v: string | undefined): string | number | undefined {
  if (v === undefined) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  return isSize(v) ? v : undefined;
}
/** A size as nginx reads it (1024, 1k, 2m, 1g) in bytes. */
export function bytes(v: string | undefined): number | undefined {
  const m = /^(\d+)([kKmMgG]?)$/.exec(v ?? "");
  if (!m) return undefined;
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g"];
  return Number(m[1]) * unit;
}
function flag(v: string | undefined): boolean | undefined {
  return v === "on" ? true : v === "off" ? false : undefined;
}
function msDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

class Converter {
  /** ssl_certificate / ssl_certificate_key set at http level, inherited by every server (as nginx does). */
  httpSsl: { certificate?: string; certificate_key?: string; protocols?: string[]; ciphers?: string; prefer_server_ciphers?: boolean } = {};
  /** Each converted upstream's directive, for findings about it. */
  upstreamNodes = new Map<string, Directive>();
  readonly ledger = new Ledger();
  readonly tls: TlsConverter;
  get findings(): Finding[] {
    return this.ledger.findings;
  }
  spec: Obj = {};
  nginx: Obj = {};
  http: Obj = {};
  upstreams: Record<string, Obj> = {};
  servers: Obj[] = [];
  /** Upstreams whose balancer is Lua (the Consul + Lua pattern). */
  luaUpstreams = new Map<string, Directive>();
  /** Upstreams converted from static server lists: name -> server count. */
  staticUpstreams = new Map<string, number>();
  triesByUpstream = new Map<string, number>();
  /** The proxy_next_upstream settings seen per upstream (locations that set none count as nginx's default). */
  retryByUpstream = new Map<string, Set<string>>();
  checkers: CheckerCall[];
  /** Lua directives that belong to the discovery pattern (replaced by gen-lb's runtime). */
  patternLua = new Set<Directive>();
  patternDicts = new Set<string>();
  /** The pattern's Lua: modules that talk to Consul, the init blocks using them, the balancers. */
  patternSources = new Set<LuaSource>();
  statusPaths: Array<{ path: string; allow: string[]; d: Directive }> = [];
  httpHeaders: Array<[string, string]> = [];
  comments = 0;

  constructor(readonly input: ConvertInput) {
    this.checkers = checkerCalls(input.sources);
    this.tls = new TlsConverter(this.ledger, input.bin?.version);
  }

  add(kind: Finding["kind"], d: Directive, message: string, to?: string): Finding {
    return this.ledger.add(kind, d, message, to);
  }

  note(kind: Finding["kind"], d: Directive, message: string, to?: string, explains?: string[][]): Finding {
    return this.ledger.note(kind, d, message, to, explains);
  }

  mustRewrite(d: Directive, message: string): Finding {
    return this.ledger.mustRewrite(d, message);
  }

  converted(d: Directive, to: string, note = ""): Finding {
    return this.ledger.converted(d, to, note);
  }

  /** The escape hatch, or why it cannot take this directive. */
  hatch(d: Directive): { ok: SpecDirective } | { why: string; at: Directive } {
    if (d.directive.endsWith("_by_lua_block") || /_by_lua(_file)?$/.test(d.directive)) {
      return { why: "Lua code cannot be carried by the spec (it has no place for custom Lua)", at: d };
    }
    if (!NAME_RE.test(d.directive)) return { why: `the escape hatch takes only lower-case directive names, not "${d.directive}"`, at: d };
    const lacking = lackingModule(d.directive, this.input.bin);
    if (lacking !== undefined) return { why: lacking, at: d };
    let args = [...d.args];
    if (d.directive === "if" && args.length > 0) {
      // nginx wants the condition in parentheses; they may be glued to the words.
      args = [`(${args[0]}`, ...args.slice(1)];
      args[args.length - 1] = `${args[args.length - 1]})`;
    }
    for (const a of args) {
      if (UNSAFE_RE.test(a)) return { why: `the argument ${JSON.stringify(a)} holds a control character, "\${" or "]]", which the spec rejects`, at: d };
    }
    const out: SpecDirective = { name: d.directive, args };
    if (d.block !== undefined) {
      out.block = [];
      for (const c of d.block) {
        if (c.directive === "#") continue;
        const r = this.hatch(c);
        if ("why" in r) return r;
        out.block.push(r.ok);
      }
    }
    return { ok: out };
  }

  /** Carry `d` into `list` (the escape hatch at `to`), or report it lost. */
  carry(d: Directive, list: SpecDirective[], to: string): void {
    const context = to === "nginx.directives" ? "main" : to === "nginx.events_directives" ? "events" : to === "nginx.http.directives" ? "http" : undefined;
    const own = context && emittedDirectives(context).get(d.directive);
    if (own) {
      // nginx takes it once per level; gen-lb writes its own, so a carried copy would fail nginx -t.
      const same = own.join(" ") === d.args.join(" ");
      this.add(same ? "dropped" : "lost", d, `${text(d)}: gen-lb sets ${d.directive} ${own.join(" ")} itself${same ? " (the same value)" : "; the old value is not kept"}`);
      return;
    }
    if (d.directive.startsWith("log_by_lua") && Object.keys(this.upstreams).length > 0) {
      this.add("lost", d, `${d.directive}: gen-lb runs its own log_by_lua in every server that proxies to an upstream (balancer accounting, passive health checks), and nginx keeps only one`);
      return;
    }
    const r = this.hatch(d);
    // nginx reads cache and temp directories against its prefix, which the new prefix is not.
    const rel = PREFIX_RELATIVE.test(d.directive) && d.args[0] && !path.isAbsolute(d.args[0]) && !d.args[0].includes("$") && this.input.prefix ? path.join(this.input.prefix, d.args[0]) : undefined;
    if ("ok" in r && rel !== undefined) {
      r.ok.args[0] = rel;
      list.push(r.ok);
      this.add("carried", d, `${text(d)} (relative to the old prefix, made absolute: ${rel})`, to).newArgs = [rel, ...d.args.slice(1)];
    } else if ("ok" in r) {
      list.push(r.ok);
      this.add("carried", d, text(d), to);
    } else {
      this.add("lost", d, `${text(d).slice(0, 120)}: ${r.why}${r.at !== d ? ` (at ${pos(r.at)})` : ""}`);
    }
  }

  // ------------------------------------------------------------ the pattern

  recognisePattern(): void {
    const sources = this.input.sources;
    const hasConsul = (s: LuaSource) => consulFacts([s]).length > 0 || this.checkers.some((c) => c.source === s);
    const patternModules = new Set(sources.filter((s) => s.module !== undefined && hasConsul(s)).map((s) => s.module!));
    const requiresPattern = (s: LuaSource) => s.tokens.some((t) => t.kind === "string" && patternModules.has(t.value));
    const patternSources = this.patternSources;
    for (const s of sources) {
      if (s.module !== undefined) {
        if (patternModules.has(s.module)) patternSources.add(s);
        continue;
      }
      const d = s.directive;
      if (d === undefined) continue;
      if (/^init(_worker)?_by_lua/.test(d.directive) && (hasConsul(s) || requiresPattern(s))) {
        this.patternLua.add(d);
        patternSources.add(s);
      }
      if (d.directive.startsWith("balancer_by_lua")) patternSources.add(s);
    }
    // Shared dicts the pattern's own code uses (ngx.shared.NAME, ngx.shared["NAME"]) and the checker's shm.
    for (const s of patternSources) {
      const t = s.tokens;
      for (let i = 2; i + 2 < t.length; i++) {
        if (t[i]!.value === "shared" && t[i - 1]?.value === "." && t[i - 2]?.value === "ngx") {
          const n = t[i + 1]?.value === "." ? t[i + 2] : t[i + 1]?.value === "[" ? t[i + 2] : undefined;
          if (n) this.patternDicts.add(n.value);
        }
      }
    }
    for (const c of this.checkers) if (typeof c.options.shm === "string") this.patternDicts.add(c.options.shm);
  }

  // ------------------------------------------------------------ main

  run(): ConvertResult {
    this.recognisePattern();
    const main: SpecDirective[] = [];
    const events: SpecDirective[] = [];
    // The binary's -V decides; without it, a config loading the lua module is for a distro nginx.
    let target: "openresty" | "nginx" = this.input.bin?.target ?? "openresty";

    // Upstreams and servers are read after the rest of http, so first find
    // the Lua upstreams (proxy_pass decisions depend on them).
    walk(this.input.tree, (d, parents) => {
      if (d.directive === "upstream" && parents.at(-1)?.directive === "http" && d.block?.some((c) => c.directive.startsWith("balancer_by_lua"))) {
        this.luaUpstreams.set(d.args[0] ?? "", d);
      }
    });

    for (const d of this.input.tree) {
      if (d.directive === "#") {
        this.comments++;
        continue;
      }
      switch (d.directive) {
        case "user":
          this.nginx.user = d.args.join(" ");
          this.converted(d, "nginx.user");
          break;
        case "worker_processes":
        case "worker_rlimit_nofile": {
          const entry = tableEntry("main", d.directive)!;
          const v = readArgs(entry.kind, d.args);
          if (v === undefined) this.carry(d, main, "nginx.directives");
          else {
            this.nginx[d.directive] = v;
            this.converted(d, entry.key);
          }
          break;
        }
        case "error_log": {
          const level = d.args[1] ?? "error";
          if (d.args.length <= 2 && /^(debug|info|notice|warn|error|crit|alert|emerg)$/.test(level) && d.args[0] && !UNSAFE_RE.test(d.args[0])) {
            this.nginx.error_log = { path: d.args[0], level };
            this.converted(d, "nginx.error_log", d.args[1] === undefined ? "nginx's default level error made explicit" : "");
          } else {
            this.carry(d, main, "nginx.directives");
          }
          break;
        }
        case "pid":
          this.nginx.pid = d.args[0];
          this.converted(d, "nginx.pid");
          break;
        case "load_module": {
          const r = d.args.length === 1 && !UNSAFE_RE.test(d.args[0]!) ? convertLoadModule(d.args[0]!, target, this.input.modules) : undefined;
          if (r === undefined) this.carry(d, main, "nginx.directives");
          else if (r.kind === "carried") {
            main.push({ name: "load_module", args: r.args });
            const f = this.add("carried", d, `${text(d)}${r.note ? ` (${r.note})` : ""}`, "nginx.directives");
            if (r.args[0] !== d.args[0]) f.newArgs = r.args;
          } else {
            if (r.kind === "dropped" && r.target) target = r.target;
            if (r.kind === "dropped" && r.modulesDir && target === "nginx") this.nginx.modules_dir = r.modulesDir;
            const f = this.add(r.kind, d, `${text(d)}: ${r.note}`, r.kind === "dropped" ? "target" : undefined);
            if (r.kind === "lost" && r.blocking) f.blocking = true;
          }
          break;
        }
        case "events":
          for (const e of d.block ?? []) {
            if (e.directive === "#") {
              this.comments++;
            } else if (tableEntry("events", e.directive) && readArgs(tableEntry("events", e.directive)!.kind, e.args) !== undefined) {
              const entry = tableEntry("events", e.directive)!;
              this.nginx[e.directive] = readArgs(entry.kind, e.args);
              this.converted(e, entry.key);
            } else {
              this.carry(e, events, "nginx.events_directives");
            }
          }
          break;
        case "http":
          this.convertHttp(d);
          break;
        default:
          this.carry(d, main, "nginx.directives");
      }
    }

    if (main.length) this.nginx.directives = main;
    if (events.length) this.nginx.events_directives = events;
    if (Object.keys(this.http).length) this.nginx.http = this.http;

    this.spec.target = target;
    const consul = this.convertConsul();
    if (consul) this.spec.consul = consul;
    this.spec.nginx = this.nginx;
    this.spec.upstreams = this.upstreams;
    this.spec.servers = this.servers;
    this.spec.status = this.convertStatus();

    this.findings.push(
      ...detectDefects({
        tree: this.input.tree,
        sources: this.input.sources,
        checkers: this.checkers,
        luaUpstreams: this.luaUpstreams,
        triesByUpstream: this.triesByUpstream,
      }),
    );
    return { spec: this.spec, findings: this.findings };
  }

  // ------------------------------------------------------------ http

  convertHttp(h: Directive): void {
    const http = this.http;
    const directives: SpecDirective[] = [];
    const accessLogs: Directive[] = [];
    const gzip: Obj = {};
    const formats: Obj = {};
    const maps: Obj[] = [];
    let mime = false;
    const luaPath: string[] = [];
    const later: Directive[] = [];
    const children = h.block ?? [];

    // proxy_set_header at http level is inherited by locations that set none.
    for (const c of children) if (c.directive === "proxy_set_header" && c.args.length === 2) this.httpHeaders.push([c.args[0]!, c.args[1]!]);

    for (const c of children) {
      const a = c.args;
      const entry = tableEntry("http", c.directive);
      if (entry) {
        const v = readArgs(entry.kind, a);
        if (v === undefined) this.carry(c, directives, "nginx.http.directives");
        else {
          http[c.directive] = v;
          this.converted(c, entry.key);
        }
        continue;
      }
      const simple = <T>(key: string, value: T | undefined, note = "") => {
        if (value === undefined || a.length !== 1) {
          this.carry(c, directives, "nginx.http.directives");
        } else {
          http[key] = value;
          this.converted(c, `nginx.http.${key}`, note);
        }
      };
      switch (c.directive) {
        case "#":
          this.comments++;
          break;
        case "include":
          if (isMimeTypesInclude(c)) {
            mime = true;
            const old = this.input.mimeTypes?.get(`${c.file}:${c.line}:${c.column}`);
            const cmp = old && old.length ? compareMimeTypes(old) : undefined;
            const added = cmp ? Object.values(cmp.add).reduce((n, l) => n + l.length, 0) : 0;
            if (cmp && added) {
              // What the old file maps and gen-lb's 35-type file does not: kept as extra types.
              const types = (http.types ??= {}) as Record<string, string[]>;
              for (const [t, exts] of Object.entries(cmp.add)) types[t] = [...(types[t] ?? []), ...exts];
            }
            this.converted(c, "nginx.http.include_mime_types", cmp ? `gen-lb ships its own conf/mime.types; the ${added} extension${added === 1 ? "" : "s"} only the old file maps are kept in nginx.http.types` : "gen-lb ships its own conf/mime.types; the old file was not found, so check what it mapped");
            if (cmp && cmp.differ.length) {
              this.add("todo", c, `mime.types: ${cmp.differ.length} extension${cmp.differ.length === 1 ? "" : "s"} get a different type from gen-lb's file than from the old one (${cmp.differ.slice(0, 8).map((x) => `.${x.ext}: ${x.old} -> ${x.shipped}`).join(", ")}${cmp.differ.length > 8 ? ", ..." : ""}); install into the old prefix keeps its own conf/mime.types`, "nginx.http.include_mime_types");
            }
          } else {
            this.carry(c, directives, "nginx.http.directives");
          }
          break;
        case "types": {
          const entries = (c.block ?? []).filter((e) => e.directive !== "#");
          if (a.length === 0 && entries.every((e) => MIME_TYPE_RE.test(e.directive) && e.args.length > 0 && e.args.every((x) => EXTENSION_RE.test(x)))) {
            const types = (http.types ??= {}) as Record<string, string[]>;
            for (const e of entries) types[e.directive] = [...(types[e.directive] ?? []), ...e.args];
            this.converted(c, "nginx.http.types");
          } else this.carry(c, directives, "nginx.http.directives");
          break;
        }
        case "resolver":
          if (a.length > 0 && a.every((x) => !x.includes("=") && !UNSAFE_RE.test(x))) {
            http.resolver = [...a];
            this.converted(c, "nginx.http.resolver");
          } else this.carry(c, directives, "nginx.http.directives");
          break;
        case "log_format": {
          const [name, ...rest] = a;
          const escape = rest[0]?.startsWith("escape=") ? rest.shift()!.slice(7) : undefined;
          const format = rest.join("");
          if (name && SPEC_NAME_RE.test(name) && format !== "" && !UNSAFE_RE.test(format) && (escape === undefined || /^(default|json|none)$/.test(escape))) {
            formats[name] = escape === undefined ? format : { format, escape };
            this.converted(c, `nginx.http.log_formats.${name}`, rest.length > 1 ? "its strings joined, as nginx joins them" : "");
          } else this.carry(c, directives, "nginx.http.directives");
          break;
        }
        case "access_log":
          accessLogs.push(c);
          break;
        case "error_log":
          if (a.length === 1 && !UNSAFE_RE.test(a[0]!)) simple("error_log", a[0]);
          else this.carry(c, directives, "nginx.http.directives");
          break;
        case "gzip":
          if (flag(a[0]) === undefined) this.carry(c, directives, "nginx.http.directives");
          else {
            gzip.enabled = flag(a[0]);
            this.converted(c, "nginx.http.gzip.enabled");
          }
          break;
        case "gzip_comp_level":
        case "gzip_min_length": {
          // gzip_min_length takes a size (1k); the spec key is bytes.
          const v = c.directive === "gzip_min_length" ? bytes(a[0]) : /^[1-9]$/.test(a[0] ?? "") ? Number(a[0]) : undefined;
          if (v === undefined || a.length !== 1) this.carry(c, directives, "nginx.http.directives");
          else {
            gzip[c.directive.slice(5)] = v;
            this.converted(c, `nginx.http.gzip.${c.directive.slice(5)}`, v !== Number(a[0]) ? `${a[0]} = ${v} bytes` : "");
          }
          break;
        }
        case "gzip_types":
        case "gzip_proxied":
        case "gzip_vary":
        case "gzip_http_version":
        case "gzip_disable":
        case "gzip_buffers": {
          // Each only when the spec key can say exactly what nginx was told; else carried.
          const key = c.directive.slice(5);
          const PROXIED = /^(off|expired|no-cache|no-store|private|no_last_modified|no_etag|auth|any)$/;
          const v =
            key === "types" ? (a.length > 0 && a.every((x) => x !== "" && !UNSAFE_RE.test(x)) ? [...a] : undefined)
            : key === "proxied" ? (a.length > 0 && a.every((x) => PROXIED.test(x)) ? [...a] : undefined)
            : key === "vary" ? (a.length === 1 ? flag(a[0]) : undefined)
            : key === "http_version" ? (a.length === 1 && /^1\.[01]$/.test(a[0]!) ? a[0] : undefined)
            : key === "disable" ? (a.length === 1 && a[0] !== "" && !UNSAFE_RE.test(a[0]!) ? a[0] : undefined)
            : a.length === 2 && /^\d+$/.test(a[0]!) && bytes(a[1]) !== undefined ? a.join(" ") : undefined;
          if (v === undefined) this.carry(c, directives, "nginx.http.directives");
          else {
            gzip[key] = v;
            this.converted(c, `nginx.http.gzip.${key}`);
          }
          break;
        }
        case "map":
          this.convertMap(c, maps, directives);
          break;
        case "lua_package_path":
          for (const entry of (a[0] ?? "").split(";")) {
            if (entry !== "" && entry !== GEN_LB_LUA_PATH && !UNSAFE_RE.test(entry)) luaPath.push(entry);
          }
          this.converted(c, "nginx.lua_package_path", "gen-lb puts its own modules first");
          break;
        case "lua_shared_dict":
          if (this.patternDicts.has(a[0] ?? "")) {
            this.add("dropped", c, `${text(c)}: used only by the old Consul discovery or health checker, which gen-lb replaces (it declares its own dicts)`);
          } else this.carry(c, directives, "nginx.http.directives");
          break;
        case "upstream":
        case "server":
          later.push(c);
          break;
        case "ssl_certificate":
        case "ssl_certificate_key":
          if (a.length === 1 && a[0] !== "" && !UNSAFE_RE.test(a[0]!)) {
            const [value, note] = this.confPath(a[0]!);
            this.httpSsl[c.directive === "ssl_certificate" ? "certificate" : "certificate_key"] = value;
            this.converted(c, `servers[].ssl.${c.directive.slice(4)}`, `set at http level: every server with an ssl listen inherits it${note ? `; ${note}` : ""}`).newArgs = [value];
          } else this.carry(c, directives, "nginx.http.directives");
          break;
        case "ssl_protocols":
        case "ssl_ciphers":
        case "ssl_prefer_server_ciphers": {
          const v = this.tls.option(c);
          if (v === undefined) this.carry(c, directives, "nginx.http.directives");
          else {
            Object.assign(this.httpSsl, v);
            this.converted(c, `servers[].ssl.${Object.keys(v)[0]}`, "set at http level: every server with an ssl listen inherits it").newArgs = [...a];
          }
          break;
        }
        case "ssl_session_timeout":
        case "ssl_session_cache":
        case "ssl_session_tickets":
          this.tls.session(c);
          break;
        default:
          if (/^init(_worker)?_by_lua/.test(c.directive) && this.patternLua.has(c)) {
            this.add("dropped", c, `${c.directive}: the old Consul polling and health checker, replaced by gen-lb's runtime (discovery, health checks)`);
          } else if (c.directive === "proxy_set_header") {
            // Kept at http level too, for locations gen-lb does not generate.
            this.carry(c, directives, "nginx.http.directives");
          } else {
            this.carry(c, directives, "nginx.http.directives");
          }
      }
    }

    if (accessLogs.length) this.convertAccessLogs(accessLogs, http, "nginx.http", directives, "nginx.http.directives");
    if (http.default_type === undefined) {
      // gen-lb's default is application/octet-stream; nginx's own, which the old config ran with, is text/plain.
      http.default_type = "text/plain";
      this.note("converted", h, "default_type: not set, so nginx's default (text/plain) made explicit: responses keep their Content-Type", "nginx.http.default_type");
    }
    if (http.server_tokens === undefined) {
      // gen-lb's default is off; the old config ran with nginx's (on), and migrate changes no response.
      http.server_tokens = true;
      this.note("converted", h, "server_tokens: not set, so nginx's default (on) made explicit: responses keep the nginx version in Server and error pages", "nginx.http.server_tokens");
    }
    if (http.server_tokens === true) {
      this.note("suggestion", h, "nginx.http.server_tokens: false (gen-lb's default) hides the nginx version from the Server header and error pages", "nginx.http.server_tokens");
    }
    if (Object.keys(gzip).length) {
      if (gzip.enabled === undefined) gzip.enabled = false;
      http.gzip = gzip;
    }
    if (Object.keys(formats).length) http.log_formats = formats;
    if (maps.length) http.maps = maps;
    http.include_mime_types = mime;
    if (luaPath.length) this.nginx.lua_package_path = luaPath;

    for (const c of later) if (c.directive === "upstream") this.convertUpstream(c);
    for (const c of later) if (c.directive === "server") this.convertServer(c);
    if (directives.length) http.directives = directives;
  }

  convertMap(c: Directive, maps: Obj[], directives: SpecDirective[]): void {
    const [source, variable] = c.args;
    const entries = (c.block ?? []).filter((e) => e.directive !== "#");
    if (
      source === "$http_upgrade" && variable === "$connection_upgrade" && entries.length === 2 &&
      entries.some((e) => e.directive === "default" && e.args[0] === "upgrade") && entries.some((e) => e.directive === "" && e.args[0] === "close")
    ) {
      this.http.upgrade_map = true;
      this.converted(c, "nginx.http.upgrade_map");
      return;
    }
    if (!source || !variable || !/^\$[A-Za-z_][A-Za-z0-9_]*$/.test(variable) || UNSAFE_RE.test(source)) {
      this.carry(c, directives, "nginx.http.directives");
      return;
    }
    const m: Obj = { source, variable };
    const list: Obj[] = [];
    for (const e of entries) {
      if (e.directive === "hostnames" && e.args.length === 0) m.hostnames = true;
      else if (e.directive === "default" && e.args.length === 1) m.default = e.args[0];
      else if (e.args.length === 1 && !["volatile", "include"].includes(e.directive)) list.push({ match: e.directive, value: e.args[0] });
      else {
        this.add("lost", e, `${text(e)}: map entries of this form have no place in the spec's maps`);
      }
    }
    if (list.length) m.entries = list;
    maps.push(m);
    this.converted(c, `nginx.http.maps[${maps.length - 1}]`, `${list.length} entries`);
  }

  convertAccessLogs(logs: Directive[], into: Obj, at: string, directives: SpecDirective[], hatchAt: string): void {
    if (logs.length === 1 && logs[0]!.args.length === 1 && logs[0]!.args[0] === "off") {
      into.access_log = "off";
      this.converted(logs[0]!, `${at}.access_log`);
      return;
    }
    const typed: Obj[] = [];
    for (const l of logs) {
      const [target, format, ...params] = l.args;
      if (target === undefined || target === "off" || UNSAFE_RE.test(l.args.join(" "))) return this.carryAll(logs, directives, hatchAt);
      const entry: Obj = {};
      if (target.startsWith("syslog:")) {
        const sys: Obj = {};
        for (const part of target.slice(7).split(",")) {
          const [k, v] = part.split("=");
          if (k === "server" || k === "facility" || k === "tag" || k === "severity") sys[k] = v;
          else if (k === "nohostname") sys.nohostname = true;
          else return this.carryAll(logs, directives, hatchAt);
        }
        entry.syslog = sys;
      } else entry.path = target;
      if (format !== undefined) entry.format = format;
      for (const p of params) {
        const [k, v] = [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)];
        if (k === "buffer" && size(v) !== undefined) entry.buffer = size(v);
        else if (k === "flush" && duration(v) !== undefined) entry.flush = duration(v);
        else if (k === "if") entry.if = v;
        else return this.carryAll(logs, directives, hatchAt);
      }
      typed.push(entry);
    }
    into.access_log = typed;
    logs.forEach((l, i) => this.converted(l, `${at}.access_log[${i}]`));
  }

  carryAll(logs: Directive[], directives: SpecDirective[], at: string): void {
    for (const l of logs) this.carry(l, directives, at);
  }

  // ------------------------------------------------------------ upstreams

  convertUpstream(u: Directive): void {
    const r = convertUpstream(u, { ledger: this.ledger, luaUpstreams: this.luaUpstreams, comments: this.input.comments });
    this.comments += r.comments;
    if (!r.converted) return;
    const { name, up, staticCount } = r.converted;
    this.upstreamNodes.set(name, u);
    this.upstreams[name] = up;
    if (staticCount !== undefined) this.staticUpstreams.set(name, staticCount);
  }

  // ------------------------------------------------------------ servers

  convertServer(s: Directive): void {
    const base: Obj = {};
    const directives: SpecDirective[] = [];
    const locations: Obj[] = [];
    const listens: Listen[] = [];
    const ssl: Obj = {};
    const sslDirectives: Directive[] = [];
    const serverHeaders: Array<[string, string]> = [];
    const accessLogs: Directive[] = [];
    for (const c of s.block ?? []) if (c.directive === "proxy_set_header" && c.args.length === 2) serverHeaders.push([c.args[0]!, c.args[1]!]);
    const inherited = serverHeaders.length ? serverHeaders : this.httpHeaders;

    for (const c of s.block ?? []) {
      const a = c.args;
      switch (c.directive) {
        case "#":
          this.comments++;
          break;
        case "listen": {
          const l = this.parseListen(c);
          if (l) listens.push(l);
          break;
        }
        case "server_name":
          base.server_name = [...a];
          this.converted(c, "servers[].server_name");
          break;
        case "ssl_certificate":
        case "ssl_certificate_key":
        case "ssl_protocols":
        case "ssl_ciphers":
        case "ssl_prefer_server_ciphers":
          sslDirectives.push(c);
          break;
        case "ssl_session_timeout":
        case "ssl_session_cache":
        case "ssl_session_tickets":
          this.tls.session(c);
          break;
        case "root":
          base.root = a[0];
          this.converted(c, "servers[].root");
          break;
        case "index":
          base.index = [...a];
          this.converted(c, "servers[].index");
          break;
        case "error_page": {
          const codes = a.slice(0, -1);
          if (codes.length && codes.every((x) => /^[3-5]\d\d$/.test(x)) && a.at(-1) && !UNSAFE_RE.test(a.at(-1)!)) {
            ((base.error_pages ??= []) as Obj[]).push({ codes: codes.map(Number), uri: a.at(-1) });
            this.converted(c, "servers[].error_pages");
          } else this.carry(c, directives, "servers[].directives");
          break;
        }
        case "access_log":
          accessLogs.push(c);
          break;
        case "location": {
          const loc = this.convertLocation(c, inherited);
          if (loc) locations.push(loc);
          break;
        }
        default:
          this.carry(c, directives, "servers[].directives");
      }
    }
    if (accessLogs.length) this.convertAccessLogs(accessLogs, base, "servers[]", directives, "servers[].directives");
    if (locations.length) base.locations = locations;
    if (directives.length) base.directives = directives;

    for (const c of sslDirectives) {
      const key = c.directive.slice(4);
      if (key === "certificate" || key === "certificate_key") {
        const [value, note] = this.confPath(c.args[0] ?? "");
        ssl[key] = value;
        const f = this.converted(c, `servers[].ssl.${key}`, note);
        if (note) f.newArgs = [value];
        continue;
      }
      const v = this.tls.option(c);
      if (v === undefined) {
        // gen-lb writes this directive in every ssl server: a carried copy would be a duplicate.
        this.add("lost", c, `${text(c)}: not a value servers[].ssl can hold, and gen-lb writes ${c.directive} itself; set servers[].ssl.${key} by hand`);
        continue;
      }
      Object.assign(ssl, v);
      this.converted(c, `servers[].ssl.${key}`);
    }

    if (listens.length === 0) listens.push({ addr: 80, ssl: false, http2: false, def: false, reuseport: false, options: [], d: s });
    // The spec's listen flags (ssl, http2, default_server, reuseport,
    // listen_options) hold for every listen of a server; a server whose
    // listens differ becomes one server per kind, which nginx treats the same way.
    const groups = new Map<string, typeof listens>();
    for (const l of listens) {
      const key = `${l.ssl}|${l.http2}|${l.def}|${l.reuseport}|${l.options.join(" ")}`;
      groups.set(key, [...(groups.get(key) ?? []), l]);
    }
    const index = this.servers.length;
    const label = this.findings.length;
    this.add("converted", s, "server", `servers[${index}]`);
    const anySsl = listens.some((l) => l.ssl);
    for (const group of groups.values()) {
      const server: Obj = { listen: group.length === 1 ? group[0]!.addr : group.map((l) => l.addr), ...structuredClone(base) };
      const first = group[0]!;
      if (anySsl && !first.ssl && Array.isArray(server.directives)) {
        // ssl_* settings mean nothing to the plain-HTTP half of a split server.
        server.directives = (server.directives as SpecDirective[]).filter((x) => !x.name.startsWith("ssl_"));
        if ((server.directives as SpecDirective[]).length === 0) delete server.directives;
      }
      if (first.def) server.default_server = true;
      if (first.http2) server.http2 = true;
      if (first.reuseport) server.reuseport = true;
      if (first.options.length) server.listen_options = [...first.options];
      if (first.ssl) {
        const tls = { ...this.httpSsl, ...ssl };
        if (tls.certificate === undefined || tls.certificate_key === undefined) {
          this.mustRewrite(first.d, `server ${pos(s)} (${text(first.d)}): an ssl listen needs ssl_certificate and ssl_certificate_key (in the server or at http level), so this server is left out`);
          continue;
        }
        server.ssl = this.tls.keep(s, tls, this.servers.length);
      }
      if (!server.security_headers) {
        this.note("suggestion", s, `servers[${this.servers.length}].security_headers: true adds X-Content-Type-Options, X-Frame-Options and Referrer-Policy to every response${first.ssl ? "; ssl.hsts: true sends Strict-Transport-Security" : ""}`, `servers[${this.servers.length}].security_headers`);
      }
      this.servers.push(server);
    }
    // The label names the spec servers this one really became (none when all were left out).
    const made = this.servers.length - index;
    const f = this.findings[label]!;
    if (made === 0) {
      f.kind = "lost";
      f.message = "server: left out (see the findings of its listens)";
      f.blocking = true;
      delete f.to;
    } else if (made > 1 || groups.size > 1) {
      f.message = `server: its listens differ in their parameters (ssl, http2, default_server, reuseport, ...), so it becomes ${made} spec server${made === 1 ? "" : "s"} with the same content`;
      f.to = made === 1 ? `servers[${index}]` : `servers[${index}..${index + made - 1}]`;
    }
  }

  /**
   * nginx reads certificate paths relative to the directory of nginx.conf;
   * the new config lives elsewhere, so a relative one is made absolute.
   */
  confPath(p: string): [string, string] {
    if (p === "" || path.isAbsolute(p) || p.startsWith("data:") || p.includes("$")) return [p, ""];
    const abs = path.resolve(this.input.cwd, path.dirname(this.input.mainFile), p);
    return [abs, `relative to the old conf directory, made absolute: ${abs}`];
  }

  parseListen(c: Directive): Listen | undefined {
    const [addr0, ...params] = c.args;
    let addr: string | number;
    const a = addr0 ?? "";
    if (/^\d+$/.test(a)) addr = Number(a);
    else if (/^\*:\d+$/.test(a)) addr = Number(a.slice(2));
    else if (HOST_PORT_RE.test(a)) addr = a;
    else if (/^[\d.]+$/.test(a) || /^\[[0-9A-Fa-f:.]+\]$/.test(a)) addr = `${a}:80`;
    else {
      this.add("lost", c, `${text(c)}: only port and address:port listens can be expressed`);
      return undefined;
    }
    const flags = { ssl: false, http2: false, def: false, reuseport: false, options: [] as string[] };
    const lost: string[] = [];
    let noHttp2 = "";
    for (const p of params) {
      if (p === "ssl") flags.ssl = true;
      else if (p === "http2" && lackingModule("http2", this.input.bin)) noHttp2 = `http2 is left out: ${lackingModule("http2", this.input.bin)}, so clients get HTTP/1.1 (the listen itself is kept)`;
      else if (p === "http2") flags.http2 = true;
      else if (p === "default_server" || p === "default") flags.def = true;
      else if (p === "reuseport") flags.reuseport = true;
      else if (LISTEN_OPTION_RE.test(p)) flags.options.push(p);
      else lost.push(p);
    }
    const why = [...(lost.length ? [`${lost.join(" ")} cannot be expressed (the listen itself is kept)`] : []), ...(noHttp2 ? [noHttp2] : [])].join("; ");
    this.add(why ? "lost" : "converted", c, `${text(c)}${why ? `: ${why}` : ""}`, "servers[].listen");
    return { addr, ...flags, d: c };
  }

  // ------------------------------------------------------------ locations

  convertLocation(l: Directive, inherited: Array<[string, string]>): Obj | undefined {
    const MODS: Record<string, string> = { "=": "exact", "~": "regex", "~*": "regex_case_insensitive", "^~": "prefix_no_regex" };
    let match = "prefix";
    let p: string | undefined;
    if (l.args.length === 2 && MODS[l.args[0]!]) {
      match = MODS[l.args[0]!]!;
      p = l.args[1];
    } else if (l.args.length === 1) p = l.args[0];
    if (p === undefined || p === "" || UNSAFE_RE.test(p)) {
      this.mustRewrite(l, `${text(l)}: this location cannot be expressed, so it is left out`);
      return undefined;
    }
    const block = l.block ?? [];

    // The old status page (a Lua content handler printing the checker's status) -> gen-lb's status server.
    const luaContent = block.find((c) => c.directive.startsWith("content_by_lua"));
    if (luaContent && /status_page\s*\(|get_status\s*\(|resty\.upstream\.healthcheck/.test(luaContent.args.join(" "))) {
      const allow = block.filter((c) => c.directive === "allow").map((c) => c.args[0]!);
      this.statusPaths.push({ path: p, allow, d: l });
      for (const c of block) if (c.directive !== "#") this.add("dropped", c, `${text(c)}: part of the old status page`);
      this.add("converted", l, `location ${l.args.join(" ")}: the old status page, replaced by gen-lb's status endpoint`, "status");
      return undefined;
    }

    const loc: Obj = { path: p };
    if (match !== "prefix") loc.match = match;
    const directives: SpecDirective[] = [];
    const proxy = block.find((c) => c.directive === "proxy_pass");
    const upstream = proxy && /^http:\/\/([A-Za-z0-9_.-]+)$/.exec(proxy.args[0] ?? "")?.[1];
    const typedUpstream = upstream !== undefined && upstream in this.upstreams;
    const headers: Array<[string, string, Directive]> = [];
    let content = false; // one of upstream, root, alias, return
    const at = "servers[].locations[]";

    for (const c of block) {
      const a = c.args;
      switch (c.directive) {
        case "#":
          this.comments++;
          break;
        case "proxy_pass":
          if (typedUpstream && c === proxy && !content) {
            loc.upstream = upstream;
            content = true;
            this.converted(c, `${at}.upstream`);
          } else this.carry(c, directives, `${at}.directives`);
          break;
        case "proxy_set_header":
          if (typedUpstream && a.length === 2) headers.push([a[0]!, a[1]!, c]);
          else this.carry(c, directives, `${at}.directives`);
          break;
        case "proxy_http_version":
          if (typedUpstream) this.add("dropped", c, `${text(c)}: gen-lb proxies with HTTP/1.1 (for upstream keepalive)`);
          else this.carry(c, directives, `${at}.directives`);
          break;
        case "proxy_next_upstream_tries":
          if (typedUpstream && /^\d+$/.test(a[0] ?? "")) {
            const tries = Number(a[0]) === 0 ? 11 : Number(a[0]);
            this.triesByUpstream.set(upstream!, Math.max(this.triesByUpstream.get(upstream!) ?? 0, tries));
            this.converted(c, `upstreams.${upstream}.retries`);
          } else this.carry(c, directives, `${at}.directives`);
          break;
        case "proxy_next_upstream":
          if (typedUpstream) {
            const kinds = this.retryByUpstream.get(upstream!) ?? new Set<string>();
            kinds.add(a.join(" "));
            this.retryByUpstream.set(upstream!, kinds);
            const up = this.upstreams[upstream!]!;
            if (a[0] === "off") up.retries = 0;
            else {
              const statuses = a.filter((x) => /^http_(500|502|503|504|403|404|429)$/.test(x)).map((x) => Number(x.slice(5)));
              up.retry_statuses = statuses;
              if (a.includes("non_idempotent")) up.retry_non_idempotent = true;
            }
            this.converted(c, `upstreams.${upstream}.retry_statuses`);
          } else this.carry(c, directives, `${at}.directives`);
          break;
        case "root":
        case "alias":
          if (!content && a.length === 1) {
            loc[c.directive] = a[0];
            content = true;
            this.converted(c, `${at}.${c.directive}`);
          } else this.carry(c, directives, `${at}.directives`);
          break;
        case "return":
          // A return text may hold newlines and tabs (nginx's \n, \t escapes), which the spec writes back as escapes.
          if (!content && /^\d{3}$/.test(a[0] ?? "") && a.length <= 2 && (a[1] === undefined || (a[1] !== "" && !RETURN_UNSAFE_RE.test(a[1])))) {
            loc.return = a[1] === undefined ? { code: Number(a[0]) } : { code: Number(a[0]), text: a[1] };
            content = true;
            this.converted(c, `${at}.return`);
          } else this.carry(c, directives, `${at}.directives`);
          break;
        case "index":
        case "try_files":
          if (a.every((x) => x !== "" && !UNSAFE_RE.test(x))) {
            loc[c.directive] = [...a];
            this.converted(c, `${at}.${c.directive}`);
          } else this.carry(c, directives, `${at}.directives`);
          break;
        default:
          this.carry(c, directives, `${at}.directives`);
      }
    }

    if (typedUpstream && !block.some((c) => c.directive === "proxy_next_upstream")) {
      const kinds = this.retryByUpstream.get(upstream!) ?? new Set<string>();
      kinds.add("error timeout");
      this.retryByUpstream.set(upstream!, kinds);
    }
    if (typedUpstream) {
      const own = headers.map(([k, v]) => [k, v] as [string, string]);
      const set = own.length ? own : inherited;
      const record: Record<string, string> = {};
      for (const [k, v, d] of headers.length ? headers : set.map(([k, v]) => [k, v, undefined] as const)) {
        if (k.toLowerCase() === "upgrade" && v === "$http_upgrade") {
          loc.websocket = true;
          if (d) this.converted(d, `${at}.websocket`);
        } else if (k.toLowerCase() === "connection" && (v === "$connection_upgrade" || v === "")) {
          if (v === "$connection_upgrade") loc.websocket = true;
          if (d) this.add("dropped", d, `${text(d)}: gen-lb sets Connection itself (${v === "" ? '"" for keepalive' : "$connection_upgrade for websocket"})`);
        } else if (/^[A-Za-z0-9-]+$/.test(k) && !UNSAFE_RE.test(v)) {
          record[k] = v;
          if (d) this.converted(d, `${at}.proxy_set_header.${k}`);
        } else if (d) {
          this.add("lost", d, `${text(d)}: this header cannot be expressed`);
        }
      }
      if (Object.keys(record).length) loc.proxy_set_header = record;
      else {
        // What nginx sent when no header of its own was left (none given, or
        // only Connection/Upgrade, which gen-lb sets): gen-lb's default would add X-Forwarded-*.
        loc.proxy_set_header = { Host: "$proxy_host" };
        this.add("converted", l, `location ${l.args.join(" ")} set no proxy headers ${headers.length || set.length ? "besides Connection/Upgrade" : ""}: nginx's default (Host: $proxy_host) made explicit`.replace("  ", " "), `${at}.proxy_set_header`);
      }
      if (!headers.length && set.length && own.length === 0 && inherited.length) {
        this.add("converted", l, `location ${l.args.join(" ")}: inherited proxy_set_header made explicit`, `${at}.proxy_set_header`);
      }
    }
    if (directives.length) loc.directives = directives;
    this.add("converted", l, `location ${l.args.join(" ")}`, at);
    return loc;
  }

  // ------------------------------------------------------------ consul, status, retries

  convertConsul(): Obj | undefined {
    const facts = consulFacts(this.input.sources);
    // Retries: explicit tries win; a static upstream retried every server; a Lua one never retried (defect 8).
    for (const [name, up] of Object.entries(this.upstreams)) {
      const tries = this.triesByUpstream.get(name);
      // nginx's own default is "proxy_next_upstream error timeout": no status retries.
      if (this.staticUpstreams.has(name) && up.retry_statuses === undefined) up.retry_statuses = [];
      const kinds = this.retryByUpstream.get(name);
      if (kinds && kinds.size > 1) {
        const d = this.luaUpstreams.get(name) ?? this.input.tree[0]!;
        this.add("todo", d, `upstream ${name}: its locations retry differently (${[...kinds].join(" | ")}); gen-lb has one retry policy per upstream, now ${up.retries === 0 ? "off" : "on"} for all of them; split the upstream if that matters`, `upstreams.${name}.retries`);
      }
      if (up.retries === undefined) {
        if (tries !== undefined) up.retries = Math.min(10, tries - 1);
        else if (this.staticUpstreams.has(name)) up.retries = Math.min(10, Math.max(0, this.staticUpstreams.get(name)! - 1));
        else up.retries = 1;
      }
    }
    // A checker on a static upstream: gen-lb runs no active check on nginx's
    // own upstream {} (the spec refuses healthcheck there), so the nearest
    // nginx has, passive checks, are set from the checker and the rest is a to-do.
    for (const [name, up] of Object.entries(this.upstreams)) {
      if (up.servers === undefined) continue;
      const checker = this.checkers.find((c) => c.options.upstream === name);
      if (!checker) continue;
      const o = checker.options;
      const fall = typeof o.fall === "number" && o.fall >= 1 ? o.fall : 2;
      const interval = typeof o.interval === "number" && o.interval > 0 ? o.interval : 1000;
      const failTimeout = msDuration(Math.max(1000, Math.ceil((fall * interval) / 1000) * 1000));
      const servers = up.servers as StaticPeer[];
      let set = 0;
      up.servers = servers.map((p) => {
        const peer = typeof p === "string" ? { address: p } : { ...p };
        if (peer.max_fails !== undefined || peer.fail_timeout !== undefined) return p;
        set++;
        return { ...peer, max_fails: fall, fail_timeout: failTimeout };
      });
      const active = this.activeCheck(o);
      const what = `${String(active.type ?? "http")} ${active.path ? `GET ${String(active.path)}${active.host ? ` (Host ${String(active.host)})` : ""} ` : ""}every ${String(active.interval ?? "1s")}, down after ${fall} failure${fall === 1 ? "" : "s"}${typeof o.rise === "number" ? `, up after ${o.rise} success${o.rise === 1 ? "" : "es"}` : ""}${Array.isArray(active.valid_statuses) ? `, valid ${(active.valid_statuses as number[]).join(" ")}` : ""}`;
      this.findings.push({
        kind: "todo",
        file: checker.source.file,
        line: checker.token.line,
        column: checker.token.column,
        message: `upstream ${name}: spawn_checker{} actively checked its static servers (${what}); gen-lb runs active checks only on Consul upstreams, so it is not carried. ${set ? `Passive checks set instead on ${set} server${set === 1 ? "" : "s"}: max_fails=${fall} fail_timeout=${failTimeout} (nginx takes a server out after ${fall} failed request${fall === 1 ? "" : "s"} within ${failTimeout})` : "Its servers keep their own max_fails/fail_timeout (passive checks)"}. To keep an active check, register the servers as a Consul service and make upstreams.${name} a Consul upstream (service: NAME, healthcheck.active)`,
        to: `upstreams.${name}.servers`,
      });
    }
    const needsConsul = Object.values(this.upstreams).some((u) => u.service !== undefined);
    if (facts.length === 0 && this.luaUpstreams.size === 0 && !needsConsul) return undefined;
    const pattern = readConsulPattern({ sources: this.input.sources, patternSources: this.patternSources, luaUpstreams: this.luaUpstreams });
    this.findings.push(...pattern.findings);
    const consul: Obj = {};
    if (pattern.addresses.length) consul.addresses = pattern.addresses;
    if (pattern.datacenter) consul.datacenter = pattern.datacenter;
    if (pattern.token_env) {
      consul.token_env = pattern.token_env;
      this.dropTokenEnv(pattern.token_env);
    }
    if (!pattern.addresses.length && this.luaUpstreams.size === 0) {
      // consul-template output: the address lives in consul-template's own config, not here.
      const first = Object.entries(this.upstreams).find(([, u]) => u.service !== undefined);
      const d = first ? this.upstreamNodes.get(first[0]) : undefined;
      if (d) this.add("todo", d, "the Consul address is not in the nginx config (consul-template reads it from its own config or CONSUL_HTTP_ADDR); set consul.addresses, and consul.token_env if it uses a token", "consul.addresses");
    }

    for (const [name] of this.luaUpstreams) {
      const up = this.upstreams[name];
      if (!up) continue;
      const svc = pattern.services.get(name);
      if (svc) {
        up.service = svc.service;
        if (svc.tags.length) up.tags = svc.tags;
        if (svc.datacenter && svc.datacenter !== pattern.datacenter) up.datacenter = svc.datacenter;
      }
      const checker = this.checkers.find((c) => c.options.upstream === name) ?? (this.checkers.length === 1 ? this.checkers[0] : undefined);
      if (checker) {
        const active = this.activeCheck(checker.options);
        up.healthcheck = { ...((up.healthcheck as Obj | undefined) ?? {}), active };
        this.findings.push({ kind: "converted", file: checker.source.file, line: checker.token.line, column: checker.token.column, message: `spawn_checker{} options as an active check of the discovered peers`, to: `upstreams.${name}.healthcheck.active` });
      }
    }
    return Object.keys(consul).length || needsConsul || this.luaUpstreams.size ? consul : undefined;
  }

  /** `env NAME;` for the token: gen-lb writes it itself for consul.token_env. */
  dropTokenEnv(name: string): void {
    const list = this.nginx.directives as SpecDirective[] | undefined;
    if (!list) return;
    const i = list.findIndex((d) => d.name === "env" && d.args.length === 1 && d.args[0] === name);
    if (i < 0) return;
    list.splice(i, 1);
    if (list.length === 0) delete this.nginx.directives;
    const f = this.findings.find((x) => x.kind === "carried" && x.directive === "env" && x.message === `env ${name}`);
    if (f) {
      f.kind = "dropped";
      f.message = `env ${name}: gen-lb declares it itself for consul.token_env`;
      delete f.to;
    }
  }

  activeCheck(o: Record<string, LuaValue>): Obj {
    const a: Obj = {};
    if (o.type === "http" || o.type === "https" || o.type === "tcp") a.type = o.type;
    if (typeof o.http_req === "string") {
      const req = parseHttpReq(o.http_req);
      if (req) {
        a.path = req.path;
        if (req.host) a.host = req.host;
      }
    }
    if (typeof o.interval === "number") a.interval = msDuration(o.interval);
    if (typeof o.timeout === "number") a.timeout = msDuration(o.timeout);
    for (const k of ["fall", "rise", "concurrency"]) if (typeof o[k] === "number") a[k] = o[k];
    if (Array.isArray(o.valid_statuses)) a.valid_statuses = o.valid_statuses.filter((x) => typeof x === "number");
    return a;
  }

  convertStatus(): Obj {
    const used = new Set<string>();
    for (const s of this.servers) {
      for (const l of [s.listen].flat()) used.add(typeof l === "number" ? `*:${l}` : String(l));
    }
    let port = 8081;
    while (used.has(`127.0.0.1:${port}`) || used.has(`*:${port}`)) port++;
    const status: Obj = { listen: `127.0.0.1:${port}` };
    const old = this.statusPaths[0];
    if (old) {
      status.enabled = true;
      if (/^\/[A-Za-z0-9_./-]*$/.test(old.path)) status.path = old.path;
      if (old.allow.length) status.allow = old.allow;
      this.add("todo", old.d, `the status page moves from ${pos(old.d)} to its own server: http://127.0.0.1:${port}${status.path ?? "/status"} (JSON; ?format=prometheus)`, "status");
    } else {
      status.enabled = false;
    }
    return status;
  }
}

export function convert(input: ConvertInput): ConvertResult {
  const c = new Converter(input);
  const r = c.run();
  if (c.comments > 0) {
    r.findings.push({ kind: "lost", file: input.tree[0]?.file ?? "", line: 1, message: `${c.comments} comment${c.comments === 1 ? "" : "s"} (the spec has no place for nginx comments; the YAML has its own)` });
  }
  return r;
}
