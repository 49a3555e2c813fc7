/**
 * `gen-lb check`: render into a scratch prefix and prove the config with the
 * real binary (-t, Lua syntax, a real start). Thin: src/check/ does the work.
 */
import path from "node:path";
import { RejectedError } from "../errors.js";
import { resolveBin } from "../check/bin.js";
import { failedStepNames, formatCheckSteps } from "../check/format.js";
import { runCheck } from "../check/run.js";
import { prepareSpec, type PreparedSpec, type Target } from "../pipeline/index.js";
import { consulTargetOf, createConsulAdapter } from "../consul/client.js";
import { runConsulPreflight, skippedPreflight, type PreflightReport } from "../consul/preflight.js";
import { prefixProblem } from "../install/prefix.js";
import { formatDiagnostic } from "../pipeline/load.js";
import { binaryRefusal, warningsFor } from "../pipeline/binary-check.js";
import { describeTarget, detectTarget, targetMismatch } from "../target/index.js";
import { systemRunner } from "../util/proc.js";
import { report, type Io } from "./io.js";

interface CheckOptions {
  spec: string;
  bin?: string;
  prefix?: string;
  target?: Target;
  /** --consul / --no-consul; undefined: on (the default). */
  consul?: boolean;
  strict?: boolean;
}

async function preflight(opts: CheckOptions, spec: PreparedSpec["spec"], io: Io, hostPrefix: string | undefined): Promise<PreflightReport> {
  if (opts.consul === false) return skippedPreflight("--no-consul");
  const consul = createConsulAdapter(consulTargetOf(spec, io.env, hostPrefix ? path.join(hostPrefix, "conf") : io.cwd));
  try {
    return await runConsulPreflight(spec, consul);
  } finally {
    consul.close();
  }
}

export default async function check(opts: CheckOptions, io: Io): Promise<void> {
  const hostPrefix = opts.prefix === undefined ? undefined : path.resolve(io.cwd, opts.prefix);
  if (hostPrefix !== undefined) {
    const problem = await prefixProblem(hostPrefix, { writable: false });
    if (problem) throw new RejectedError(problem);
  }
  const bin = resolveBin(opts.bin, io.env);
  // What -V says decides the version rendered for (unless the spec names
  // one) and names a target mismatch; a binary whose -V we cannot read is
  // still checked, against the baseline version.
  const seen = await detectTarget(bin, systemRunner).catch(() => undefined);
  const prepared = await prepareSpec(opts.spec, io.cwd, opts.target, seen?.version);
  const mismatch = seen ? targetMismatch(prepared.target, bin, seen) : undefined;
  if (!io.json) for (const w of warningsFor(prepared.warnings, seen)) io.err(`warning: ${formatDiagnostic(w)}\n`);
  // What -V says the binary cannot do is refused here, by spec key and line, not left to nginx -t.
  const lacking = mismatch ? undefined : binaryRefusal(prepared, bin, seen);
  if (lacking) throw lacking;

  const [result, consul] = await Promise.all([
    runCheck({ prepared, bin, ...(hostPrefix ? { hostPrefix } : {}) }, { runner: systemRunner, env: io.env }),
    preflight(opts, prepared.spec, io, hostPrefix),
  ]);
  const consulJson = { ran: consul.ran, reachable: consul.reachable, address: consul.address ?? null, upstreams: consul.upstreams, warnings: consul.warnings };
  const json = {
    ok: result.ok,
    spec: prepared.file,
    bin,
    ...(seen ? { binary: { target: seen.target, version: seen.version, lua: seen.lua } } : {}),
    ...(mismatch ? { mismatch } : {}),
    buildId: result.buildId,
    ms: result.ms,
    steps: result.steps,
    consul: consulJson,
  };
  if (!result.ok) {
    throw new RejectedError(
      `check of ${prepared.file} failed: ${failedStepNames(result)}`,
      [...(mismatch ? [mismatch] : []), ...formatCheckSteps(result), ...(consul.ran ? consul.lines : [])],
      json,
    );
  }
  if (opts.strict && consul.warnings.length > 0) {
    const n = consul.warnings.length;
    throw new RejectedError(`check of ${prepared.file} failed: the Consul preflight has ${n} warning${n === 1 ? "" : "s"} (--strict)`, [...consul.lines, ...consul.warnings.map((w) => `warning: consul: ${w}`)], { ...json, ok: false });
  }
  if (mismatch && !io.json) io.err(`warning: ${mismatch}\n`);
  if (!io.json) for (const w of consul.warnings) io.err(`warning: consul: ${w}\n`);
  report(io, json, [
    `check ${prepared.file} (build ${result.buildId}) with ${bin}${seen ? `, ${describeTarget(seen)}` : ""}${hostPrefix ? ` against ${hostPrefix}` : ""}`,
    ...formatCheckSteps(result),
    ...consul.lines,
    `check passed in ${result.ms} ms${consul.warnings.length > 0 ? ` (${consul.warnings.length} Consul warning(s))` : ""}`,
  ]);
}
