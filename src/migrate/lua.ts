/**
 * The Lua side of a hand-built setup: gather every piece of Lua the config
 * runs (inline *_by_lua_block bodies, *_by_lua_file files, and the modules
 * they require, found through lua_package_path and --lua-path), lex it, and
 * read off what migration needs: the Consul URL (address, service), the
 * spawn_checker{} options, and the evidence of the eleven known defects.
 * Pure apart from the Loader, which reads the Lua files.
 */
import path from "node:path";
import { LuaLexError, lexLua, type LuaToken } from "./lua-lexer.js";
import type { Directive, Loader } from "../nginx/types.js";
import { walk } from "./flatten.js";
import { MigrateError } from "./types.js";

export interface LuaSource {
  /** File the code is in (nginx.conf for inline blocks, the .lua file otherwise). */
  file: string;
  /** The directive that runs it (inline or *_by_lua_file), if any. */
  directive?: Directive;
  /** The module name it was required as, if any. */
  module?: string;
  tokens: LuaToken[];
}

/** Modules that come with OpenResty, LuaJIT or common rocks: never looked up. */
const LIBRARY = /^(ngx|ngx\..*|resty\..*|cjson(\..*)?|socket(\..*)?|ssl(\..*)?|ltn12|mime|ffi|bit|jit(\..*)?|string|table|math|os|io|coroutine|debug|package|lpeg|lfs|md5|zlib|table\..*)$/;

export interface LuaRequire {
  name: string;
  source: LuaSource;
  token: LuaToken;
}

/** `require "x"`, `require("x")`, `require('x')`. */
export function findRequires(source: LuaSource): LuaRequire[] {
  const out: LuaRequire[] = [];
  const t = source.tokens;
  for (let i = 0; i < t.length; i++) {
    if (t[i]!.kind !== "name" || t[i]!.value !== "require") continue;
    let j = i + 1;
    if (t[j]?.kind === "op" && t[j]!.value === "(") j++;
    const s = t[j];
    if (s?.kind === "string") out.push({ name: s.value, source, token: t[i]! });
  }
  return out;
}

function lex(code: string, file: string, at?: { line: number; column: number }): LuaToken[] {
  try {
    return lexLua(code, at);
  } catch (e) {
    if (e instanceof LuaLexError) {
      throw new MigrateError(`cannot read the Lua code in ${file}`, [`${file}:${e.line}:${e.column}: ${e.message}`]);
    }
    throw e;
  }
}

export interface GatherOptions {
  loader: Loader;
  /** The old prefix, for `$prefix` in lua_package_path and relative *_by_lua_file paths. */
  prefix: string;
  /** Extra module directories (--lua-path). */
  luaPath: readonly string[];
}

/** A required module migrate could not find: reported, and the rest is analysed without it. */
export interface MissingModule {
  require: LuaRequire;
  tried: string[];
}

/** Every piece of Lua the config runs, modules included (each read once), and the modules not found. */
export function gatherLua(tree: readonly Directive[], opts: GatherOptions): { sources: LuaSource[]; missing: MissingModule[] } {
  const missing: MissingModule[] = [];
  const sources: LuaSource[] = [];
  const templates: string[] = [];
  walk(tree, (d) => {
    if (d.directive === "lua_package_path" && d.args[0] !== undefined) {
      for (const entry of d.args[0].split(";")) {
        if (entry !== "") templates.push(entry.replace(/\$prefix\/?/g, opts.prefix.replace(/\/?$/, "/")));
      }
    }
  });
  for (const dir of opts.luaPath) templates.push(path.join(dir, "?.lua"), path.join(dir, "?/init.lua"));

  walk(tree, (d) => {
    if (d.directive.endsWith("_by_lua_block") && d.lua) {
      const body = d.args[d.args.length - 1] ?? "";
      sources.push({ file: d.file, directive: d, tokens: lex(body, d.file, d.lua) });
    } else if (d.directive.endsWith("_by_lua_file") && d.args.length > 0) {
      const rel = d.args[d.args.length - 1]!;
      const file = path.isAbsolute(rel) ? rel : path.join(opts.prefix, rel);
      let text: string;
      try {
        text = readText(opts.loader, file);
      } catch {
        throw new MigrateError(`cannot read the Lua file of "${d.directive}"`, [`${d.file}:${d.line}:${d.column}: ${file}: no such file`]);
      }
      sources.push({ file, directive: d, tokens: lex(text, file) });
    } else if (/_by_lua$/.test(d.directive) && d.args.length > 0) {
      // The old string form: positions are only approximate (the directive's).
      sources.push({ file: d.file, directive: d, tokens: lex(d.args[d.args.length - 1]!, d.file, { line: d.line, column: d.column }) });
    }
  });

  const seen = new Set<string>();
  for (let k = 0; k < sources.length; k++) {
    for (const req of findRequires(sources[k]!)) {
      if (LIBRARY.test(req.name) || seen.has(req.name)) continue;
      seen.add(req.name);
      const rel = req.name.replace(/\./g, "/");
      const tried: string[] = [];
      let found: { file: string; text: string } | undefined;
      for (const tpl of templates) {
        const candidate = tpl.replace(/\?/g, rel);
        tried.push(candidate);
        try {
          found = { file: candidate, text: readText(opts.loader, candidate) };
          break;
        } catch {
          // next template
        }
      }
      if (found === undefined) {
        missing.push({ require: req, tried });
        continue;
      }
      sources.push({ file: found.file, module: req.name, tokens: lex(found.text, found.file) });
    }
  }
  return { sources, missing };
}

function readText(loader: Loader, file: string): string {
  const data = loader.readFile(file);
  return typeof data === "string" ? data : new TextDecoder().decode(data);
}

// ---------------------------------------------------------------- reading facts

export interface Located<T> {
  value: T;
  file: string;
  line: number;
  column: number;
}

const at = <T>(value: T, source: LuaSource, tok: LuaToken): Located<T> => ({ value, file: source.file, line: tok.line, column: tok.column });

/** The string a name was last assigned (`local NAME = "x"` or `NAME = "x"`) in a source. */
function constant(source: LuaSource, name: string): LuaToken | undefined {
  const t = source.tokens;
  let found: LuaToken | undefined;
  for (let i = 0; i + 2 < t.length; i++) {
    if (t[i]!.kind === "name" && t[i]!.value === name && t[i + 1]!.value === "=" && t[i + 1]!.kind === "op") {
      const v = t[i + 2]!;
      if (v.kind === "string" || v.kind === "number") found = v;
    }
  }
  return found;
}

export interface ConsulFacts {
  /** The request URL as the code builds it, e.g. "http://127.0.0.1:8500/v1/catalog/service/app". */
  url: Located<string>;
  endpoint: "catalog" | "health";
  address?: Located<string>;
  service?: Located<string>;
  datacenter?: string;
  tokenSeen: boolean;
}

const ENDPOINT_RE = /\/v1\/(catalog|health)\/service\/([A-Za-z0-9_.-]*)/;
const BASE_RE = /^(https?:\/\/[A-Za-z0-9.[\]:-]+)\/?$/;

/** lua-resty-consul's paths leave out the /v1 the library adds: consul:get("/health/service/" .. name, {...}). */
const LIBRARY_ENDPOINT_RE = /^\/?(?:v1\/)?(catalog|health)\/service\/([A-Za-z0-9_.-]*)/;

/** `key = <token>` fields anywhere in a source (the library takes its settings as tables). */
function field(t: readonly LuaToken[], key: string, kinds: readonly LuaToken["kind"][]): LuaToken | undefined {
  for (let i = 0; i + 2 < t.length; i++) {
    if (t[i]!.kind === "name" && t[i]!.value === key && t[i + 1]!.value === "=" && kinds.includes(t[i + 2]!.kind)) return t[i + 2];
  }
  return undefined;
}

/** Where the code asks Consul for a service, with the pieces resolved where they are constants. */
export function consulFacts(sources: readonly LuaSource[]): ConsulFacts[] {
  const out: ConsulFacts[] = [];
  for (const s of sources) {
    const t = s.tokens;
    // lua-resty-consul: resty_consul:new({ host =, port =, ssl =, default_args = { token = ... } }), get(path, { dc =, ... }).
    const library = findRequires(s).some((r) => r.name === "resty.consul");
    const tokenSeen = t.some((x) => x.kind === "string" && /X-Consul-Token|[?&]token=/i.test(x.value)) || (library && field(t, "token", ["name", "string"]) !== undefined);
    for (let i = 0; i < t.length; i++) {
      const tok = t[i]!;
      if (tok.kind !== "string") continue;
      const m = ENDPOINT_RE.exec(tok.value) ?? (library ? LIBRARY_ENDPOINT_RE.exec(tok.value) : null);
      if (!m) continue;
      const facts: ConsulFacts = { url: at(tok.value, s, tok), endpoint: m[1] as "catalog" | "health", tokenSeen };
      const dc = /[?&]dc=([A-Za-z0-9_.-]+)/.exec(tok.value);
      if (dc) facts.datacenter = dc[1];
      if (library) {
        const host = field(t, "host", ["string"]);
        const port = field(t, "port", ["number", "string"]);
        const ssl = field(t, "ssl", ["keyword"]);
        if (host && /^[A-Za-z0-9.[\]:-]+$/.test(host.value)) facts.address = at(`${ssl?.value === "true" ? "https" : "http"}://${host.value}:${port?.value ?? "8500"}`, s, host);
        const libDc = field(t, "dc", ["string"]);
        if (libDc && !facts.datacenter) facts.datacenter = libDc.value;
      }
      // The address: in the same string, or a constant concatenated before it.
      const inline = /^(https?:\/\/[^/]+)\/v1\//.exec(tok.value);
      if (inline) {
        facts.address = at(inline[1]!, s, tok);
      } else if (t[i - 1]?.value === ".." && t[i - 2]?.kind === "name") {
        const c = constant(s, t[i - 2]!.value);
        const base = c && BASE_RE.exec(c.value);
        if (c && base) facts.address = at(base[1]!, s, c);
      }
      // The service: in the string, or a constant concatenated after it.
      if (m[2] !== "") {
        facts.service = at(m[2]!, s, tok);
      } else if (t[i + 1]?.value === ".." && t[i + 2]?.kind === "string") {
        const next = t[i + 2]!;
        facts.service = at(next.value.split(/[?/]/)[0]!, s, next);
      } else if (t[i + 1]?.value === ".." && t[i + 2]?.kind === "name") {
        const c = constant(s, t[i + 2]!.value);
        if (c?.kind === "string") facts.service = at(c.value, s, c);
      }
      if (facts.address === undefined) {
        // host and port given to a connect() call, or a bare base URL anywhere in the source
        const base = t.find((x) => x.kind === "string" && BASE_RE.test(x.value));
        if (base) facts.address = at(BASE_RE.exec(base.value)![1]!, s, base);
      }
      out.push(facts);
    }
  }
  return out;
}

export type LuaValue = string | number | boolean | LuaValue[] | { [k: string]: LuaValue };

export interface CheckerCall {
  options: Record<string, LuaValue>;
  source: LuaSource;
  token: LuaToken;
}

/** The constant table constructor starting at t[i] ("{"), if it is one. */
export function readTableAt(t: readonly LuaToken[], i: number): LuaValue | undefined {
  return readTable(t, i)?.[0];
}

/** Read a table constructor of constants starting at t[i] ("{"); returns the value and the index after "}". */
function readTable(t: readonly LuaToken[], i: number): [LuaValue, number] | undefined {
  if (t[i]?.value !== "{") return undefined;
  const list: LuaValue[] = [];
  const record: Record<string, LuaValue> = {};
  let j = i + 1;
  while (j < t.length && t[j]!.value !== "}") {
    let key: string | undefined;
    if (t[j]!.kind === "name" && t[j + 1]?.value === "=" && t[j + 1]!.kind === "op") {
      key = t[j]!.value;
      j += 2;
    } else if (t[j]!.value === "[" && t[j + 1]?.kind === "string" && t[j + 2]?.value === "]" && t[j + 3]?.value === "=") {
      key = t[j + 1]!.value;
      j += 4;
    }
    const v = readValue(t, j);
    if (v === undefined) {
      // Not a constant: skip to the next field separator at this level.
      let depth = 0;
      while (j < t.length) {
        const x = t[j]!.value;
        if ((x === "," || x === ";" || x === "}") && depth === 0) break;
        if (x === "{" || x === "(" || x === "[") depth++;
        if (x === "}" || x === ")" || x === "]") depth--;
        j++;
      }
    } else {
      if (key === undefined) list.push(v[0]);
      else record[key] = v[0];
      j = v[1];
    }
    if (t[j]?.value === "," || t[j]?.value === ";") j++;
  }
  const value = Object.keys(record).length > 0 || list.length === 0 ? { ...record, ...(list.length ? { "": list } : {}) } : list;
  return [value as LuaValue, j + 1];
}

function readValue(t: readonly LuaToken[], j: number): [LuaValue, number] | undefined {
  const x = t[j];
  if (x === undefined) return undefined;
  const end = (k: number) => {
    const next = t[k]?.value;
    return next === "," || next === ";" || next === "}";
  };
  if (x.kind === "string" && end(j + 1)) return [x.value, j + 1];
  if (x.kind === "number" && end(j + 1)) return [Number(x.value), j + 1];
  if (x.kind === "keyword" && (x.value === "true" || x.value === "false") && end(j + 1)) return [x.value === "true", j + 1];
  if (x.value === "{") {
    const r = readTable(t, j);
    if (r && end(r[1])) return r;
  }
  return undefined;
}

/** Every `spawn_checker{...}` / `spawn_checker({...})` call with its constant options. */
export function checkerCalls(sources: readonly LuaSource[]): CheckerCall[] {
  const out: CheckerCall[] = [];
  for (const s of sources) {
    const t = s.tokens;
    for (let i = 0; i < t.length; i++) {
      if (t[i]!.kind !== "name" || t[i]!.value !== "spawn_checker") continue;
      const open = t[i + 1]?.value === "(" ? i + 2 : i + 1;
      const r = readTable(t, open);
      if (r && typeof r[0] === "object" && !Array.isArray(r[0])) {
        out.push({ options: r[0] as Record<string, LuaValue>, source: s, token: t[i]! });
      }
    }
  }
  return out;
}

/** Index of each token sequence match (values, with kind "op"/"name" ignored). */
export function findSeq(tokens: readonly LuaToken[], seq: readonly string[]): number[] {
  const hits: number[] = [];
  outer: for (let i = 0; i + seq.length <= tokens.length; i++) {
    for (let k = 0; k < seq.length; k++) {
      const tok = tokens[i + k]!;
      if (tok.kind === "string" || tok.kind === "comment" || tok.value !== seq[k]) continue outer;
    }
    hits.push(i);
  }
  return hits;
}

/** The raw HTTP request of a checker -> path and Host. */
export function parseHttpReq(req: string): { method: string; path: string; host?: string } | undefined {
  const m = /^([A-Z]+)\s+(\S+)\s+HTTP\/\d\.\d\r?\n/.exec(req);
  if (!m) return undefined;
  const host = /\r?\nHost:\s*([^\r\n]+)/i.exec(req);
  return { method: m[1]!, path: m[2]!, ...(host ? { host: host[1]!.trim() } : {}) };
}
