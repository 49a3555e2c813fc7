/**
 * `gen-lb migrate FILE`: old nginx (+ Lua + Consul) setup -> gen-lb spec and
 * a report. The spec (and --report file) are written atomically: a temp file
 * beside the target, then a rename, so a failed run never leaves half a spec;
 * an existing file that gen-lb did not write (no migrate header) is replaced
 * only with --force.
 * --verify builds the new spec into a scratch prefix, compares its directive
 * tree with the old one, and runs `nginx -t` on it.
 */
import { statSync } from "node:fs";
import path from "node:path";
import { resolveBin } from "../check/bin.js";
import { RejectedError, UsageError } from "../errors.js";
import { migrate, MigrateError, specYaml, type Migration } from "../migrate/index.js";
import { binVersionCommand, parseBinInfo } from "../migrate/bin.js";
import { formatReport, reportJson } from "../migrate/report.js";
import { formatVerify, verifyMigration, type VerifyResult } from "../migrate/verify-build.js";
import { formatTraffic, verifyTraffic, type TrafficResult } from "../migrate/traffic.js";
import { showRequest } from "../migrate/traffic-plan.js";
import { fsLoader } from "../nginx/load.js";
import { formatDiagnostic } from "../pipeline/index.js";
import { validateSpecText } from "../pipeline/validate.js";
import { errnoMessage, isForeignFile, writeFileAtomic } from "../util/files.js";
import { systemRunner } from "../util/proc.js";
import type { Io } from "./io.js";

/**
 * Migration reports on every directive; past a few MiB that report is unreadable
 * and the run takes minutes. `gen-lb parse` still reads configs of any size.
 */
const MAX_MIGRATE_BYTES = 8 * 2 ** 20;

interface MigrateOpts {
  out?: string;
  luaPath?: string[];
  report?: string;
  /** true: the directive-tree comparison; "traffic": that, then both configs run and compared by traffic. */
  verify?: boolean | string;
  bin?: string;
  /** The old nginx's prefix (what its relative paths meant). */
  prefix?: string;
  force?: boolean;
}

/**
 * What `migrate` writes starts with these: the YAML spec's comment header and
 * the report's first line (a JSON spec has no comments: it is replaced only
 * when it already holds the same bytes, or with --force).
 */
const writtenByMigrate = (contents: string) => /^# gen-lb spec migrated from |^gen-lb migrate: /.test(contents);

export default async function run(opts: MigrateOpts, io: Io, args: string[]): Promise<void> {
  const file = args[0];
  if (file === undefined || file === "") throw new UsageError("migrate needs the old nginx config file");
  const abs = path.resolve(io.cwd, file);
  let size: number;
  try {
    const stat = statSync(abs);
    if (stat.isDirectory()) throw new UsageError(`${file} is a directory; give the main nginx config file`);
    size = stat.size;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot read ${file}: ${errnoMessage(e)}`);
  }
  if (size > MAX_MIGRATE_BYTES) {
    throw new RejectedError(
      `${file}:1: ${(size / 2 ** 20).toFixed(1)} MiB is more than migrate reads (${MAX_MIGRATE_BYTES / 2 ** 20} MiB); ` +
        "hand-written setups are far smaller, so this is likely generated: migrate its source, or split it with include",
    );
  }
  if (opts.verify !== undefined && opts.verify !== true && opts.verify !== "traffic" && opts.verify !== "config") {
    throw new UsageError(`--verify takes no value (the directive trees), =config (the same) or =traffic (both configs run side by side), not ${JSON.stringify(opts.verify)}; put the config file before --verify or write --verify=traffic`);
  }
  const out = opts.out ?? "gen-lb.yaml";
  const outAbs = path.resolve(io.cwd, out);
  if (outAbs === abs) throw new UsageError("--out would overwrite the config being migrated");

  // The binary the new config will run on decides the target, and which of the old modules (and HTTP/2) it has.
  const binPath = resolveBin(opts.bin, io.env);
  const v = await systemRunner.run(binVersionCommand(binPath));
  const bin = v.spawnError === undefined && v.exitCode === 0 ? parseBinInfo(binPath, v.stderr + v.stdout) : undefined;

  let m: Migration;
  try {
    m = migrate(file, {
      loader: fsLoader(io.cwd),
      cwd: io.cwd,
      luaPath: (opts.luaPath ?? []).map((p) => path.resolve(io.cwd, p)),
      ...(bin ? { bin } : {}),
      ...(opts.prefix !== undefined ? { prefix: path.resolve(io.cwd, opts.prefix) } : {}),
    });
  } catch (e) {
    if (e instanceof MigrateError) throw new RejectedError(e.message, e.details);
    throw e;
  }

  const yaml = specYaml(m, file, out.endsWith(".json"));
  // Validate the data (JSON takes the loader's fast path; a 50 MB config's
  // spec would spend a minute in YAML position tracking for nothing).
  const check = validateSpecText(JSON.stringify(m.spec), `${out} (as JSON)`);
  if (!check.spec) {
    throw new RejectedError("the migrated spec does not validate (please report this gen-lb bug)", check.errors.map(formatDiagnostic));
  }

  let verified: VerifyResult | undefined;
  if (opts.verify) verified = await verifyMigration(m, JSON.stringify(m.spec), out, binPath, systemRunner);
  let traffic: TrafficResult | undefined;
  if (opts.verify === "traffic") {
    traffic = await verifyTraffic(m, {
      mainFile: abs,
      bin: binPath,
      ...(bin ? { binInfo: bin } : {}),
      ...(opts.prefix !== undefined ? { oldPrefix: path.resolve(io.cwd, opts.prefix) } : {}),
      runner: systemRunner,
    });
  }

  const text = formatReport(m.findings, file, out);
  const verifyText = (verified ? formatVerify(verified, out, file) : "") + (traffic ? formatTraffic(traffic) : "");
  const reportAbs = opts.report ? path.resolve(io.cwd, opts.report) : undefined;
  if (!opts.force) {
    const foreign = [
      ...((await isForeignFile(outAbs, yaml, writtenByMigrate)) ? [out] : []),
      ...(reportAbs && (await isForeignFile(reportAbs, text + verifyText, writtenByMigrate)) ? [opts.report!] : []),
    ];
    if (foreign.length > 0) {
      throw new RejectedError(`${foreign.join(" and ")} already exist${foreign.length === 1 ? "s" : ""} and gen-lb did not write ${foreign.length === 1 ? "it" : "them"}; nothing was written: choose another --out/--report, or pass --force`);
    }
  }
  await writeFileAtomic(outAbs, yaml);
  if (reportAbs) await writeFileAtomic(reportAbs, text + verifyText);

  if (io.json) {
    io.out(JSON.stringify({ ok: true, ...reportJson(m.findings, file, out), ...(verified ? { verify: verified } : {}), ...(traffic ? { traffic: trafficJson(traffic) } : {}) }, null, 2) + "\n");
  } else if (opts.report) {
    const defects = new Set(m.findings.filter((f) => f.kind === "defect").map((f) => f.defect)).size;
    io.out(`wrote ${out} and the report ${opts.report} (${m.findings.filter((f) => f.kind === "todo").length} to do, ${defects} known defects found)\n` + verifyText);
  } else {
    io.out(text + verifyText);
  }
  const blocking = m.findings.filter((f) => f.blocking);
  if (blocking.length > 0) {
    throw new RejectedError(
      `migrate: ${blocking.length} server(s), location(s), upstream(s) or module(s) were left out and must be rewritten by hand (the spec was written without them)`,
      blocking.map((f) => `${f.file}:${f.line}: ${f.message}`),
    );
  }
  if (verified && (!verified.nginxTest.ok || verified.differences.length > 0)) {
    throw new RejectedError(
      verified.nginxTest.ok
        ? `verify: ${verified.differences.length} difference(s) between the old and the new config are not explained by the report`
        : `verify: the config built from ${out} fails ${verified.nginxTest.bin} -t`,
      verified.differences.map((d) => `${d.file}:${d.line}: ${d.kind}: ${d.message}`),
    );
  }
  if (traffic && (traffic.failure !== undefined || traffic.differences.length > 0)) {
    throw new RejectedError(
      traffic.failure !== undefined
        ? `verify=traffic: the old and the new config could not be run side by side: ${traffic.failure}`
        : `verify=traffic: ${traffic.differences.length} difference(s) in what clients and backends see are not explained by the report`,
      traffic.differences.map((d) => `${showRequest(d.request)}: ${d.what}`),
    );
  }
}

/** The traffic result for --json: each request in words, not the config nodes behind it. */
function trafficJson(t: TrafficResult) {
  const diff = (d: TrafficResult["differences"][number]) => ({
    request: showRequest(d.request),
    what: d.what,
    ...(d.explainedBy ? { explained_by: `${d.explainedBy.file}:${d.explainedBy.line}: ${d.explainedBy.message}` } : {}),
  });
  return { requests: t.requests, ...(t.failure !== undefined ? { failure: t.failure } : {}), differences: t.differences.map(diff), explained: t.explained.map(diff) };
}
