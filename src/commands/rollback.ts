/** `gen-lb rollback --prefix DIR`: restore the files of the latest install's backup. Thin: src/install/run.ts. */
import path from "node:path";
import { RejectedError } from "../errors.js";
import { changesOf, formatPlan, planJson } from "../install/plan.js";
import { resolveBin } from "../check/bin.js";
import { openrestyBin, prefixProblem, resolvePrefix } from "../install/prefix.js";
import { runRollback } from "../install/run.js";
import { systemRunner } from "../util/proc.js";
import { report, type Io } from "./io.js";

interface RollbackOptions {
  prefix: string;
  bin?: string;
  reload?: boolean;
  force?: boolean;
}

export default async function rollback(opts: RollbackOptions, io: Io): Promise<void> {
  const resolved = await resolvePrefix(path.resolve(io.cwd, opts.prefix));
  const prefix = resolved.prefix;
  if (resolved.note && !io.json) io.err(`${resolved.note}\n`);
  const problem = await prefixProblem(prefix, { writable: true });
  if (problem) throw new RejectedError(`${problem}; nothing was changed`);
  const result = await runRollback(
    // With --reload the restored files are tested (`BIN -t`) before the signal.
    { prefix, reload: Boolean(opts.reload), force: Boolean(opts.force), ...(opts.reload ? { bin: resolveBin(opts.bin ?? openrestyBin(resolved), io.env) } : {}) },
    { runner: systemRunner, env: io.env, note: io.json ? undefined : (line) => io.err(`${line}\n`) },
  );
  const restored = changesOf(result.plan).map((f) => ({ path: f.path, action: f.action }));
  const kept = result.plan.keepUndo ? result.plan.backupDir : undefined;
  report(
    io,
    {
      ok: true,
      prefix,
      backup: result.backupId,
      buildId: result.plan.buildId ?? null,
      restored,
      handEdited: result.plan.handEdited,
      handEditsKept: kept ?? null,
      plan: planJson(result.plan),
      reload: result.reload ?? null,
    },
    [
      ...formatPlan(result.plan).filter((l) => !l.startsWith("  run: ") && !l.startsWith("  changed by hand")),
      ...(kept ? [`replaced ${result.plan.handEdited.length} file(s) changed by hand (--force): ${result.plan.handEdited.join(", ")}; their edited copies are in ${kept}/files`] : []),
      `rolled ${prefix} back to ${result.plan.buildId ? `build ${result.plan.buildId}` : "the files before gen-lb's first install"} (backup ${result.backupId} used up)`,
      ...(result.reload ? [`reloaded in ${result.reload.ms} ms: ${result.reload.messages.join("; ")}`] : []),
    ],
  );
}
