/**
 * What binary gen-lb is pointed at, from its `-V` output: OpenResty or a
 * plain nginx, its nginx core version, whether the Lua module is built in or
 * loadable (and the load_module path), and its modules directory.
 *
 * API (used by init, check, and later install and migrate):
 * - `parseVersionOutput(text, exists?)`: pure; `-V` text to a `TargetInfo`.
 * - `detectTarget(bin, runner, exists?)`: runs `bin -V` and parses it.
 * - `targetMismatch(specTarget, info)`: the message naming the fix, or undefined.
 * - `compareVersions(a, b)`, `BASELINE_VERSION`, `versionAtLeast(v, min)`:
 *   what version-aware rendering uses.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { versionOutputCommand, type ProcessRunner } from "../util/proc.js";
import { configureArguments } from "./modules.js";

export type TargetKind = "openresty" | "nginx";

export interface TargetInfo {
  /** The spec target this binary matches. */
  target: TargetKind;
  /** nginx core version ("1.31.1"; OpenResty 1.31.1.1 is nginx 1.31.1). */
  version: string;
  /** OpenResty's own version ("1.31.1.1"), when it is OpenResty. */
  openrestyVersion?: string;
  /** builtin: compiled in (OpenResty); loadable: a module file exists; none: neither. */
  lua: "builtin" | "loadable" | "none";
  /** load_module path of ngx_http_lua_module.so, when loadable. */
  luaModulePath?: string;
  /** --modules-path, else PREFIX/modules; undefined when -V names no prefix. */
  modulesDir?: string;
  /** Built with the HTTP/2 module (--with-http_v2_module). */
  http2: boolean;
  /** The arguments of -V's "configure arguments:" line (what src/target/modules.ts reads). */
  configure: string[];
}

/**
 * The version rendered for when neither the spec nor a binary says: the
 * oldest nginx gen-lb supports (Debian 12's 1.22), whose forms newer
 * versions still accept.
 */
export const BASELINE_VERSION = "1.22.0";

/** Numeric dotted-version comparison: <0, 0, >0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function versionAtLeast(version: string, min: string): boolean {
  return compareVersions(version, min) >= 0;
}

export class TargetDetectionError extends Error {}

export function parseVersionOutput(text: string, exists: (file: string) => boolean = existsSync): TargetInfo {
  const m = /nginx version: (openresty|nginx)\/(\d+(?:\.\d+)+)/.exec(text);
  if (!m) throw new TargetDetectionError(`no "nginx version:" line in the -V output`);
  const openresty = m[1] === "openresty";
  const full = m[2]!;
  // OpenResty appends its own release number to nginx's three.
  const version = openresty ? full.split(".").slice(0, 3).join(".") : full;
  const configure = /configure arguments:(.*)/.exec(text)?.[1] ?? "";
  const opt = (name: string) => new RegExp(`--${name}=('[^']*'|\\S+)`).exec(configure)?.[1]?.replace(/^'|'$/g, "");
  const prefix = opt("prefix");
  const modulesDir = opt("modules-path") ?? (prefix !== undefined ? path.join(prefix, "modules") : undefined);
  const builtin = /--add-module=\S*(?:ngx_lua|lua-nginx-module)[^\s/]*(?:\s|$)/.test(configure);
  const luaModulePath = modulesDir !== undefined ? path.join(modulesDir, "ngx_http_lua_module.so") : undefined;
  const loadable = !builtin && luaModulePath !== undefined && exists(luaModulePath);
  return {
    target: openresty || builtin ? "openresty" : "nginx",
    version,
    ...(openresty ? { openrestyVersion: full } : {}),
    lua: builtin ? "builtin" : loadable ? "loadable" : "none",
    ...(loadable ? { luaModulePath } : {}),
    ...(modulesDir !== undefined ? { modulesDir } : {}),
    http2: /--with-http_v2_module/.test(configure),
    configure: configureArguments(text),
  };
}

export async function detectTarget(bin: string, runner: ProcessRunner, exists?: (file: string) => boolean): Promise<TargetInfo> {
  const r = await runner.run(versionOutputCommand(bin));
  if (r.spawnError) throw new TargetDetectionError(`cannot run ${bin} -V: ${r.spawnError}`);
  if (r.exitCode !== 0) throw new TargetDetectionError(`${bin} -V exited with ${r.exitCode}: ${r.stderr.trim()}`);
  try {
    return parseVersionOutput(`${r.stderr}${r.stdout}`, exists);
  } catch (error) {
    throw new TargetDetectionError(`${bin} -V: ${(error as Error).message}`);
  }
}

/** Describe the binary in a few words: "openresty 1.31.1.1 (nginx 1.31.1, Lua built in)". */
export function describeTarget(info: TargetInfo): string {
  const lua = info.lua === "builtin" ? "Lua built in" : info.lua === "loadable" ? `Lua module ${info.luaModulePath}` : "no Lua module";
  return info.openrestyVersion ? `openresty ${info.openrestyVersion} (nginx ${info.version}, ${lua})` : `nginx ${info.version} (${lua})`;
}

/** The spec's target against the binary's: a message naming the fix, or undefined when they agree. */
export function targetMismatch(specTarget: TargetKind, bin: string, info: TargetInfo): string | undefined {
  if (info.target === specTarget) return undefined;
  if (info.target === "openresty") {
    return `${bin} is ${describeTarget(info)} but the spec says target: nginx (which emits load_module lines OpenResty does not need): set target: openresty`;
  }
  if (info.lua === "loadable") {
    return `${bin} is ${describeTarget(info)} but the spec says target: openresty (which loads no Lua module): set target: nginx`;
  }
  return `${bin} is ${describeTarget(info)} and has no Lua module: install OpenResty (target: openresty), or the Debian/Ubuntu package libnginx-mod-http-lua and set target: nginx`;
}
