/**
 * `gen-lb install --prefix DIR`: check, then install atomically with a
 * backup, optionally reload and verify. Thin: src/install/run.ts does it.
 */
import path from "node:path";
import { RejectedError, UsageError } from "../errors.js";
import { resolveBin } from "../check/bin.js";
import { formatCheckSteps } from "../check/format.js";
import { prepareSpec, type Target } from "../pipeline/index.js";
import { changesOf, formatPlan, planDiff, planJson } from "../install/plan.js";
import { openrestyBin, prefixProblem, resolvePrefix } from "../install/prefix.js";
import { runInstall } from "../install/run.js";
import { seedFromConsul } from "../install/seed.js";
import { formatDiagnostic } from "../pipeline/load.js";
import { detectTarget, targetMismatch } from "../target/index.js";
import { binaryRefusal, warningsFor } from "../pipeline/binary-check.js";
import { systemRunner } from "../util/proc.js";
import { report, type Io } from "./io.js";

interface InstallOptions {
  prefix: string;
  spec: string;
  bin?: string;
  target?: Target;
  reload?: boolean;
  dryRun?: boolean;
  keep: string;
  force?: boolean;
}

export function parseKeep(value: string): number {
  const keep = Number(value);
  if (!/^\d+$/.test(value) || keep < 1) throw new UsageError(`--keep ${value}: expected a whole number of backups, 1 or more`);
  return keep;
}

export default async function install(opts: InstallOptions, io: Io): Promise<void> {
  const keep = parseKeep(String(opts.keep));
  const resolved = await resolvePrefix(path.resolve(io.cwd, opts.prefix));
  const prefix = resolved.prefix;
  if (resolved.note && !io.json) io.err(`${resolved.note}\n`);
  const problem = await prefixProblem(prefix, { writable: !opts.dryRun });
  if (problem) throw new RejectedError(`${problem}; nothing was installed`);
  const bin = resolveBin(opts.bin ?? openrestyBin(resolved), io.env);
  // As check does: the binary's -V decides the version rendered for (unless
  // the spec names target_version), and a spec for the other kind of binary
  // is refused before anything runs: target nginx emits load_module lines
  // OpenResty has no module for, target openresty loads no Lua module at all.
  const seen = await detectTarget(bin, systemRunner).catch((error: Error) => {
    if (!io.json) io.err(`warning: ${error.message}: rendering for target_version or the baseline, and the target is not compared with the binary\n`);
    return undefined;
  });
  const prepared = await prepareSpec(opts.spec, io.cwd, opts.target, seen?.version);
  const mismatch = seen ? targetMismatch(prepared.target, bin, seen) : undefined;
  if (mismatch) {
    throw new RejectedError(`${mismatch}; nothing was installed`, [], {
      bin,
      binary: { target: seen!.target, version: seen!.version, lua: seen!.lua },
      specTarget: prepared.target,
    });
  }
  const lacking = binaryRefusal(prepared, bin, seen, "; nothing was installed");
  if (lacking) throw lacking;
  if (!io.json) for (const w of warningsFor(prepared.warnings, seen)) io.err(`warning: ${formatDiagnostic(w)}\n`);

  const result = await runInstall(
    {
      prefix,
      prepared,
      reprepare: () => prepareSpec(opts.spec, io.cwd, opts.target, seen?.version),
      bin,
      reload: Boolean(opts.reload),
      dryRun: Boolean(opts.dryRun),
      keep,
      force: Boolean(opts.force),
    },
    {
      runner: systemRunner,
      env: io.env,
      note: io.json ? undefined : (line) => io.err(`${line}\n`),
      seed: (dir, p) => seedFromConsul(dir, p.spec, p.set.buildId, io.env),
    },
  );
  const { plan, check } = result;
  const changed = changesOf(plan).map((f) => f.path);

  if (opts.dryRun) {
    const diff = planDiff(plan);
    report(io, { ok: true, dryRun: true, check: { ok: check.ok, ms: check.ms, steps: check.steps }, plan: planJson(plan), diff }, [
      ...formatCheckSteps(check),
      ...formatPlan(plan),
      ...(diff === "" ? [] : [diff.trimEnd()]),
      "dry run: nothing was changed",
    ]);
    return;
  }
  const backup = result.applied ? path.relative(prefix, result.applied.backupDir) : undefined;
  report(
    io,
    {
      ok: true,
      prefix,
      ...(seen ? { binary: { target: seen.target, version: seen.version, lua: seen.lua } } : {}),
      buildId: plan.buildId,
      previousBuildId: plan.previousBuildId ?? null,
      changed,
      lostServers: plan.lostServers,
      backup: backup ?? null,
      pruned: result.applied ? plan.prune : [],
      check: { ok: check.ok, ms: check.ms, steps: check.steps },
      reload: result.reload ?? null,
      seed: result.seed ?? null,
    },
    [
      `check passed in ${check.ms} ms (${check.steps.map((s) => `${s.name} ${s.ms} ms`).join(", ")})`,
      ...(changed.length === 0
        ? [`${prefix} already has build ${plan.buildId}: no files changed`]
        : [...formatPlan(plan).filter((l) => !l.startsWith("  run: ")), `installed build ${plan.buildId} into ${prefix} (backup ${backup}; \`gen-lb rollback --prefix ${opts.prefix}\` restores the previous files)`]),
      ...(result.reload ? [`reloaded in ${result.reload.ms} ms: ${result.reload.messages.join("; ")}`] : []),
    ],
  );
}
