/**
 * `gen-lb diff --prefix DIR`: what `install` would change there, as a plan and
 * a unified diff (nginx.conf first). Changes nothing. --exit-code: exit 1 when
 * install would change something, as `git diff --exit-code` does.
 */
import path from "node:path";
import { GenLbError, RejectedError } from "../errors.js";
import { changesOf, formatPlan, planDiff, planInstall, planJson } from "../install/plan.js";
import { prefixProblem, resolvePrefix } from "../install/prefix.js";
import { recoverPrefix } from "../install/run.js";
import { readBuildId, readPrefixState } from "../install/state.js";
import { systemRunner } from "../util/proc.js";
import { prepareSpec, type Target } from "../pipeline/index.js";
import { isRuntimeModule } from "../pipeline/render.js";
import { report, type Io } from "./io.js";

interface DiffOptions {
  prefix: string;
  spec: string;
  target?: Target;
  exitCode?: boolean;
  /** --no-runtime sets it false. */
  runtime?: boolean;
}

/** `diff --exit-code` found changes: exit 1, the diff already printed. */
export class ChangesFoundError extends GenLbError {
  constructor(message: string, data: Record<string, unknown>) {
    super(message, 1, [], data);
  }
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
  const runtime = opts.runtime !== false;
  const text = planDiff(plan, { runtime });
  const changes = changesOf(plan);
  const hidden = runtime ? 0 : changes.filter((f) => isRuntimeModule(f.path)).length;
  const json = { ok: true, changed: changes.length > 0, plan: planJson(plan), diff: text };
  const human = [
    ...formatPlan(plan).filter((l) => !/^ {2}(back up|delete backup)/.test(l)),
    ...(text === "" ? [] : [text.trimEnd()]),
    ...(hidden > 0 ? [`(${hidden} runtime Lua module(s) change too; not shown: --no-runtime)`] : []),
  ];
  if (opts.exitCode && changes.length > 0) {
    if (!io.json) io.out(human.join("\n") + "\n");
    throw new ChangesFoundError(`install would change ${changes.length} file(s) in ${prefix}`, { changed: true, plan: planJson(plan), diff: text });
  }
  report(io, json, human);
}
