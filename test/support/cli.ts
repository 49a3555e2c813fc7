/** Spawn the built CLI as users do, with a clean environment. */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { TEST_BIN } from "./target.js";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CLI = `${ROOT}lib/cli.js`;

/** PATH with the matrix binary's directory first, so `init` and `check` without --bin find it. */
export const MATRIX_PATH = `${path.dirname(TEST_BIN)}:${process.env.PATH ?? "/usr/bin:/bin"}`;

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: opts.cwd ?? ROOT,
    encoding: "utf8",
    env: { PATH: MATRIX_PATH, HOME: process.env.HOME ?? "/root", ...opts.env },
    timeout: 120_000,
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
