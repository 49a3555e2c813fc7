/** `gen-lb diff --prefix DIR`: what `install` would change there, as a plan and a unified diff. Changes nothing. */
import path from "node:path";
import { RejectedError } from "../errors.js";
import { prepareSpec, type Target } from "../pipeline/index.js";
import { changesOf, formatPlan, planDiff, planInstall, planJson } from "../install/plan.js";
import { prefixProblem } from "../install/prefix.js";
import { readBuildId, readPrefixState } from "../install/state.js";
import { report, type Io } from "./io.js";

interface DiffOptions {
  prefix: string;
  spec: string;
  target?: Target;
}

export default async function diff(opts: DiffOptions, io: Io): Promise<void> {
  const prefix = path.resolve(io.cwd, opts.prefix);
  const problem = await prefixProblem(prefix, { writable: false });
  if (problem) throw new RejectedError(problem);
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
