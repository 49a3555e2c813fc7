/**
 * Which binary checks and reloads the config: --bin, else `openresty` on
 * PATH, else `nginx` (sbin directories included: non-root PATHs often lack
 * them, and a check needs no privileges).
 */
import { UsageError } from "../errors.js";
import { findExecutable } from "../util/proc.js";

export function resolveBin(requested: string | undefined, env: NodeJS.ProcessEnv): string {
  if (requested !== undefined) {
    const found = findExecutable(requested, env);
    if (!found) throw new UsageError(`--bin ${requested}: no such executable${requested.includes("/") ? "" : " on PATH"}`);
    return found;
  }
  const searchEnv = { ...env, PATH: `${env.PATH ?? ""}:/usr/local/openresty/bin:/usr/local/sbin:/usr/sbin:/sbin` };
  const found = findExecutable("openresty", searchEnv) ?? findExecutable("nginx", searchEnv);
  if (!found) throw new UsageError("neither openresty nor nginx was found on PATH: install one, or pass --bin PATH");
  return found;
}
