/**
 * What becomes of the old config's modules on the binary that will run the
 * new one (its -V, src/target/modules.ts): a `load_module` of a module the
 * target has compiled in is not needed, one it has as a dynamic module is
 * pointed at its own file, one it lacks is lost (and blocks) unless nothing
 * in the config uses it; a directive whose nginx module the target was
 * built without (stub_status, http2) is lost with that reason. Relative
 * module paths mean the OLD nginx's prefix, never the new one. Pure: the
 * file system is seen through the ModuleContext the caller builds.
 */
import path from "node:path";
import { allDirectiveTables, type DirectiveContext } from "../nginx/directives.js";
import type { Directive, Loader } from "../nginx/types.js";
import { lacksEvery, moduleLink } from "../target/modules.js";
import { modulesDirOf, type BinInfo } from "./bin.js";
import { walk } from "./flatten.js";
import type { Finding } from "./types.js";

export interface ModuleContext {
  bin: BinInfo;
  /** The old nginx's prefix, what `load_module modules/x.so` meant, when known. */
  oldPrefix?: string;
  /** The .so files in the target's modules directory. */
  moduleFiles: readonly string[];
  /** Whether a file exists (through the migration's loader). */
  exists(file: string): boolean;
  /** Every directive the old config uses, as "name context" ("geoip_country http"). */
  used: ReadonlySet<string>;
}

/**
 * The context for `bin`: its modules directory listed and files looked up
 * through `loader`. `oldPrefix`: --prefix when given; else, for a plain
 * nginx target, its own compiled-in prefix (the old config most likely ran
 * on that nginx); else unknown.
 */
export function moduleContext(bin: BinInfo, loader: Loader, tree: readonly Directive[], oldPrefix?: string): ModuleContext {
  const list = (dir: string) => {
    try {
      return loader.readDir(dir);
    } catch {
      return [];
    }
  };
  const dir = modulesDirOf(bin);
  const used = new Set<string>();
  walk(tree, (d, parents) => {
    used.add(`${d.directive} ${contextOf(parents)}`);
  });
  const prefix = oldPrefix ?? (bin.target === "nginx" ? bin.prefix : undefined);
  return {
    bin,
    ...(prefix !== undefined ? { oldPrefix: prefix } : {}),
    moduleFiles: dir !== undefined ? list(dir).filter((f) => f.endsWith(".so")) : [],
    exists: (file) => list(path.dirname(file)).includes(path.basename(file)),
    used,
  };
}

const label = (bin: BinInfo) => `${bin.bin} (${bin.target === "openresty" ? "OpenResty, " : ""}nginx ${bin.version ?? "of unknown version"})`;

/** The modules a .so holds (the tables know which .so each dynamic module is in); at least the one it is named after. */
function modulesIn(file: string): Set<string> {
  const mods = new Set([file.replace(/\.so$/, "")]);
  for (const t of allDirectiveTables()) for (const [m, info] of Object.entries(t.modules)) if (info.loadModule && path.basename(info.loadModule) === file) mods.add(m);
  return mods;
}

/**
 * The directives of the old config (name and context) that the modules of
 * `file` provide; undefined when no committed table knows those modules.
 */
function usesOf(file: string, used: ReadonlySet<string>): string[] | undefined {
  const mods = modulesIn(file);
  let known = false;
  const hits = new Set<string>();
  for (const t of allDirectiveTables()) {
    for (const [name, defs] of Object.entries(t.directives)) {
      for (const def of defs) {
        if (!mods.has(def.module)) continue;
        known = true;
        if (def.contexts.some((c) => used.has(`${name} ${c}`))) hits.add(name);
      }
    }
  }
  return known ? [...hits] : undefined;
}

/** The directive-table context a directive sits in, from its parents. */
function contextOf(parents: readonly Directive[]): DirectiveContext {
  const names = parents.map((p) => p.directive);
  const top = names[0];
  const last = names.at(-1);
  if (top === undefined) return "main";
  if (top === "events") return "events";
  if (top === "stream" || top === "mail") return names.length === 1 ? top : last === "upstream" ? "stream_upstream" : (`${top}_server` as DirectiveContext);
  if (names.length === 1) return "http";
  if (last === "if") return names.includes("location") ? "location_if" : "server_if";
  if (last === "limit_except") return "limit_except";
  if (last === "upstream") return "upstream";
  return names.includes("location") ? "location" : "server";
}

/**
 * The nginx modules that define a directive, by the committed tables
 * (listen: http's, stream's and mail's; http2 on, which 1.25.1 added, by
 * its name); empty when no table knows it.
 */
function modulesOf(directive: string, bin: BinInfo): Array<{ module: string; needs?: string }> {
  if (/^http2(_|$)/.test(directive)) return [{ module: "ngx_http_v2_module" }];
  if (/^(http3|quic)(_|$)/.test(directive)) return [{ module: "ngx_http_v3_module" }];
  const seen = new Map<string, { module: string; needs?: string }>();
  // The binary's own kind of nginx first (which modules build beside which changes between versions), else every table.
  const own = allDirectiveTables().filter((t) => t.target === bin.target && (t.directives[directive] ?? []).length > 0);
  for (const d of (own.length > 0 ? own : allDirectiveTables()).flatMap((t) => t.directives[directive] ?? [])) {
    if (!seen.has(d.module)) seen.set(d.module, { module: d.module, ...(d.needs ? { needs: d.needs } : {}) });
  }
  return [...seen.values()];
}

const lacking = new WeakMap<BinInfo, Map<string, string | undefined>>();
/** Why the target cannot take `directive` (its nginx module was left out of the build), or undefined. */
export function lackingModule(directive: string, bin: BinInfo | undefined): string | undefined {
  if (!bin?.configure) return undefined;
  const seen = lacking.get(bin) ?? lacking.set(bin, new Map()).get(bin)!;
  if (seen.has(directive)) return seen.get(directive);
  // Unknown to the target only when every module that defines it was left out of the build.
  const modules = modulesOf(directive, bin);
  // lacksEvery also knows a module built by default only beside another (grpc needs http_v2 from nginx 1.25).
  const why = lacksEvery(bin.configure, modules) ? `${label(bin)} is built without ${modules.map((m) => m.module).join(" and ")} (not in its -V)` : undefined;
  seen.set(directive, why);
  return why;
}

export type LoadModuleResult =
  /** emit `load_module args[0]` (changed: the old path is not the one written) */
  | { kind: "carried"; args: string[]; note: string }
  /** not written: the target does not need it (built in, or nothing uses it) */
  | { kind: "dropped"; note: string; modulesDir?: string; target?: "nginx" }
  /** not written, and what uses it must be rewritten: migrate exits 1 */
  | { kind: "lost"; note: string; blocking: boolean };

const LUA = new Set(["ngx_http_lua_module.so", "ndk_http_module.so"]);

/**
 * `load_module FILE` of the old config on the new target. `target`: what
 * migrate has decided so far; without a binary, a config loading the Lua
 * module is for a distro nginx.
 */
export function convertLoadModule(file: string, target: "openresty" | "nginx", ctx: ModuleContext | undefined): LoadModuleResult {
  const base = path.basename(file);
  if (ctx === undefined) {
    // No -V: an absolute path is kept as it was; a relative one meant a prefix nobody named.
    const abs = path.isAbsolute(file) ? file : undefined;
    if (LUA.has(base)) return { kind: "dropped", note: `generated by gen-lb for target "nginx"`, target: "nginx", ...(abs ? { modulesDir: path.dirname(abs) } : {}) };
    if (abs === undefined) return { kind: "lost", note: "a path relative to the old nginx's prefix, which migrate does not know (pass --bin, and --prefix when the old nginx was another one); give its absolute path", blocking: true };
    return { kind: "carried", args: [abs], note: "" };
  }
  const { bin } = ctx;
  const old = path.isAbsolute(file) ? file : ctx.oldPrefix !== undefined ? path.join(ctx.oldPrefix, file) : undefined;
  const name = base.replace(/\.so$/, "");
  const link = bin.configure ? moduleLink(bin.configure, name) : undefined;
  const dir = modulesDirOf(bin);
  const own = dir !== undefined && ctx.moduleFiles.includes(base) ? path.join(dir, base) : undefined;
  if (LUA.has(base) && target === "nginx") {
    return { kind: "dropped", note: `generated by gen-lb for target "nginx"`, ...(own ? { modulesDir: dir! } : old ? { modulesDir: path.dirname(old) } : {}) };
  }
  if (link === "static" || (LUA.has(base) && target === "openresty")) return { kind: "dropped", note: `not needed: ${label(bin)} has ${name} compiled in` };
  const relative = path.isAbsolute(file) ? "" : old !== undefined ? `relative to the old prefix ${ctx.oldPrefix}, ` : "relative to the old nginx's prefix, ";
  if (own !== undefined) return { kind: "carried", args: [own], note: own === file ? "" : `${relative}the target's own module: ${own}` };
  if (old !== undefined && bin.target === "nginx" && ctx.exists(old)) return { kind: "carried", args: [old], note: old === file ? "" : `${relative}made absolute: ${old}` };
  const using = usesOf(base, ctx.used);
  const lacks = `${label(bin)} does not have ${name} (${link === "absent" ? "built without it" : "not compiled in"}, and ${dir ?? "its modules directory"} holds no ${base}; a module built for another nginx does not load into this one)`;
  if (using !== undefined && using.length === 0) return { kind: "dropped", note: `not needed: ${lacks}, and nothing in the config uses it` };
  return {
    kind: "lost",
    note: `${lacks}${using?.length ? `; the config uses its ${using.join(", ")}` : ""}: build it for this binary and add its load_module to nginx.directives, or rewrite what uses it`,
    blocking: true,
  };
}

/**
 * The old config as the target binary can start it, for --verify=traffic
 * (which runs the old config on the new binary): its load_module lines as
 * migrate decided them (dropped ones out, moved ones pointed at the
 * target's file), and what the target was built without (http2, stub_status)
 * left out, as the report says it is.
 */
export function adaptForTarget(tree: readonly Directive[], findings: readonly Finding[], bin: BinInfo | undefined): Directive[] {
  const at = new Map<string, Finding>();
  for (const f of findings) if (f.directive === "load_module" && f.column !== undefined) at.set(`${f.file}:${f.line}:${f.column}`, f);
  const noHttp2 = lackingModule("http2", bin) !== undefined;
  const adapt = (nodes: readonly Directive[]): Directive[] =>
    nodes.flatMap((d): Directive[] => {
      if (d.directive === "load_module") {
        const f = at.get(`${d.file}:${d.line}:${d.column}`);
        if (f?.kind === "dropped" || f?.kind === "lost") return [];
        return f?.newArgs ? [{ ...d, args: f.newArgs }] : [d];
      }
      if (lackingModule(d.directive, bin) !== undefined) return [];
      if (d.directive === "listen" && noHttp2) return [{ ...d, args: d.args.filter((a) => a !== "http2") }];
      return [d.block ? { ...d, block: adapt(d.block) } : d];
    });
  return adapt(tree);
}
