/**
 * `gen-lb migrate FILE`: old nginx (+ Lua + Consul) setup -> gen-lb spec and
 * a report. The spec (and --report file) are written atomically: a temp file
 * beside the target, then a rename, so a failed run never leaves half a spec.
 * --verify builds the new spec into a scratch prefix, compares its directive
 * tree with the old one, and runs `nginx -t` on it.
 */
import { randomBytes } from "node:crypto";
import { existsSync, promises as fs, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { RejectedError, UsageError } from "../errors.js";
import { migrate, MigrateError, specYaml, type Migration } from "../migrate/index.js";
import { binVersionCommand, parseBinInfo } from "../migrate/bin.js";
import { formatReport, reportJson } from "../migrate/report.js";
import { compareConfigs, type Difference } from "../migrate/verify.js";
import { fsLoader } from "../nginx/load.js";
import { parseConfig } from "../nginx/parse.js";
import { buildFileSet } from "../pipeline.js";
import { formatDiagnostic } from "../spec/load.js";
import { validateSpecText } from "../spec/validate.js";
import { writeFileSet } from "../util/files.js";
import { nginxTestCommand, systemRunner } from "../util/proc.js";
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
  verify?: boolean;
  bin?: string;
}

async function writeAtomically(file: string, contents: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`);
  try {
    await fs.writeFile(tmp, contents, { mode: 0o644 });
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw new RejectedError(`cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/** openresty on PATH, else the distro nginx. */
function defaultBin(env: NodeJS.ProcessEnv): string {
  for (const dir of (env.PATH ?? "").split(":")) {
    if (dir && existsSync(path.join(dir, "openresty"))) return path.join(dir, "openresty");
  }
  return "/usr/sbin/nginx";
}

interface VerifyResult {
  differences: Difference[];
  nginxTest: { ok: boolean; output: string; bin: string };
}

async function verify(m: Migration, specText: string, specFile: string, bin: string): Promise<VerifyResult> {
  const validated = validateSpecText(specText, `${specFile} (as JSON)`);
  if (!validated.spec) {
    throw new RejectedError("the migrated spec does not validate (please report this gen-lb bug)", validated.errors.map(formatDiagnostic));
  }
  // A distro nginx needs the load_module lines of target "nginx".
  const target = path.basename(bin).startsWith("openresty") ? undefined : "nginx";
  const set = buildFileSet(validated.spec, specFile, target);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "gen-lb-migrate-verify-"));
  try {
    await writeFileSet(dir, set);
    const parsed = parseConfig(path.join(dir, "conf/nginx.conf"), fsLoader());
    const differences = compareConfigs(m.tree, parsed.config[0]?.parsed ?? [], m.findings);
    const r = await systemRunner.run(nginxTestCommand(bin, dir));
    const output = (r.spawnError ? `cannot run ${bin}: ${r.spawnError}` : `${r.stdout}${r.stderr}`).replaceAll(dir, "<prefix>");
    return { differences, nginxTest: { ok: r.exitCode === 0, output, bin } };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

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
    throw new UsageError(`cannot read ${file}: no such file`);
  }
  if (size > MAX_MIGRATE_BYTES) {
    throw new RejectedError(
      `${file}:1: ${(size / 2 ** 20).toFixed(1)} MiB is more than migrate reads (${MAX_MIGRATE_BYTES / 2 ** 20} MiB); ` +
        "hand-written setups are far smaller, so this is likely generated: migrate its source, or split it with include",
    );
  }
  const out = opts.out ?? "gen-lb.yaml";
  const outAbs = path.resolve(io.cwd, out);
  if (outAbs === abs) throw new UsageError("--out would overwrite the config being migrated");

  // The binary the new config will run on decides the target (and what relative load_module paths meant).
  const binPath = opts.bin ?? defaultBin(io.env);
  const v = await systemRunner.run(binVersionCommand(binPath));
  const bin = v.spawnError === undefined && v.exitCode === 0 ? parseBinInfo(binPath, v.stderr + v.stdout) : undefined;

  let m: Migration;
  try {
    m = migrate(file, { loader: fsLoader(io.cwd), cwd: io.cwd, luaPath: (opts.luaPath ?? []).map((p) => path.resolve(io.cwd, p)), ...(bin ? { bin } : {}) });
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
  if (opts.verify) verified = await verify(m, JSON.stringify(m.spec), out, opts.bin ?? defaultBin(io.env));

  await writeAtomically(outAbs, yaml);
  const text = formatReport(m.findings, file, out);
  const verifyText = verified
    ? [
        `Verify: the config built from ${out} against ${file}`,
        `  ${verified.nginxTest.bin} -t: ${verified.nginxTest.ok ? "ok" : "FAILED"}`,
        ...(verified.nginxTest.ok ? [] : verified.nginxTest.output.trim().split("\n").map((l) => `    ${l}`)),
        `  differences not explained by the report: ${verified.differences.length}`,
        ...verified.differences.map((d) => `    ${d.file}:${d.line}: ${d.kind}: ${d.message} [${d.scope}]`),
        "",
      ].join("\n")
    : "";
  if (opts.report) await writeAtomically(path.resolve(io.cwd, opts.report), text + verifyText);

  if (io.json) {
    io.out(JSON.stringify({ ok: true, ...reportJson(m.findings, file, out), ...(verified ? { verify: verified } : {}) }, null, 2) + "\n");
  } else if (opts.report) {
    const defects = new Set(m.findings.filter((f) => f.kind === "defect").map((f) => f.defect)).size;
    io.out(`wrote ${out} and the report ${opts.report} (${m.findings.filter((f) => f.kind === "todo").length} to do, ${defects} known defects found)\n` + verifyText);
  } else {
    io.out(text + verifyText);
  }
  const blocking = m.findings.filter((f) => f.blocking);
  if (blocking.length > 0) {
    throw new RejectedError(
      `migrate: ${blocking.length} server(s), location(s) or upstream(s) were left out and must be rewritten by hand (the spec was written without them)`,
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
}
