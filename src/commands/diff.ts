/** `gen-lb diff --prefix DIR`: what `install` would change there, as a plan and a unified diff. Changes nothing. */
import path from "node:path";
import { RejectedError } from "../errors.js";
import { prepareSpec, type Target } from "../check/spec.js";
import { changesOf, formatPlan, planDiff, planInstall, planJson } from "../install/plan.js";
import { prefixProblem, resolvePrefix } from "../install/prefix.js";
import { recoverPrefix } from "../install/run.js";
import { readBuildId, readPrefixState } from "../install/state.js";
import { systemRunner } from "../util/proc.js";
import { report, type Io } from "./io.js";

interface DiffOptions {
  prefix: string;
  spec: string;
  target?: Target;
}

export default async function diff(opts: DiffOptions, io: Io): Promise<void> {
  const { prefix, note } = await resolvePrefix(path.resolve(io.cwd, opts.prefix));
  if (note && !io.json) io.err(`${note}\n`);
  const problem = await prefixProblem(prefix, { writable: false });
  if (problem) throw new RejectedError(problem);
  await recoverPrefix(prefix, { runner: systemRunner, env: io.env, note: io.json ? undefined : (line) => io.err(`${line}\n`) });
  const prepared = await prepareSpec(opts.spec, io.cwd, opts.target);
  const previousBuildId = await readBuildId(prefix);
  const plan = planInstall({
    prefix,
    set: prepared.set,
    state: await readPrefixState(prefix, prepared.set),
    keep: Number.MAX_SAFE_INTEGER,
    now: new Date(),
    specFile: prepared.file,
    ...(previousBuildId ? { previousBuildId } : {}),
    commands: [],
  });
  const text = planDiff(plan);
  const changes = changesOf(plan);
  report(io, { ok: true, changed: changes.length > 0, plan: planJson(plan), diff: text }, [
    ...formatPlan(plan).filter((l) => !/^ {2}(back up|delete backup)/.test(l)),
    ...(text === "" ? [] : [text.trimEnd()]),
  ]);
}
