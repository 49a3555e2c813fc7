/**
 * What migrate needs to know about the nginx that ran the old config and
 * will run the new one, read from its `-V` (parsing is pure; the command runs
 * the binary). testinfra's src/target/ can replace readBinInfo later.
 */
import { configureArguments } from "../target/modules.js";
import type { Command } from "../util/proc.js";

export interface BinInfo {
  bin: string;
  target: "openresty" | "nginx";
  /** --prefix: what relative paths such as `load_module modules/x.so` are relative to. */
  prefix?: string;
  /** --modules-path. */
  modulesPath?: string;
  /** nginx core version ("1.22.1"; OpenResty 1.31.1.1 is nginx 1.31.1). */
  version?: string;
  /** The configure arguments -V prints: which modules the binary has (src/target/modules.ts). */
  configure?: string[];
}

/** Its modules directory: --modules-path, else PREFIX/modules. */
export function modulesDirOf(bin: BinInfo): string | undefined {
  return bin.modulesPath ?? (bin.prefix !== undefined ? `${bin.prefix}/modules` : undefined);
}

export function binVersionCommand(bin: string): Command {
  return { command: bin, args: ["-V"], timeoutMs: 10_000 };
}

/** `nginx -V` output (it goes to stderr) -> target and paths. */
export function parseBinInfo(bin: string, output: string): BinInfo {
  const info: BinInfo = { bin, target: /nginx version: openresty\//.test(output) ? "openresty" : "nginx" };
  const prefix = /--prefix=(\S+)/.exec(output);
  if (prefix) info.prefix = prefix[1]!.replace(/\/$/, "");
  const version = /nginx version: (?:openresty|nginx)\/(\d+\.\d+\.\d+)/.exec(output);
  if (version) info.version = version[1]!;
  const modules = /--modules-path=(\S+)/.exec(output);
  if (modules) info.modulesPath = modules[1]!;
  if (/configure arguments:/.test(output)) info.configure = configureArguments(output);
  return info;
}
