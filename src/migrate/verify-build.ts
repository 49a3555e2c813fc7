/**
 * `migrate --verify`, the part that touches disk and runs nginx: build the
 * migrated spec into a scratch prefix, compare its directive tree with the
 * old config (src/migrate/verify.ts, pure) and run `BIN -t` on it.
 */
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { RejectedError } from "../errors.js";
import { fsLoader } from "../nginx/load.js";
import { parseConfig } from "../nginx/parse.js";
import { buildFileSet, formatDiagnostic } from "../pipeline/index.js";
import { validateSpecText } from "../pipeline/validate.js";
import { writeFileSet } from "../util/files.js";
import { nginxTestCommand, type ProcessRunner } from "../util/proc.js";
import type { Migration } from "./index.js";
import { compareConfigs, type Difference } from "./verify.js";

export interface VerifyResult {
  differences: Difference[];
  nginxTest: { ok: boolean; output: string; bin: string };
}

export async function verifyMigration(m: Migration, specText: string, specFile: string, bin: string, runner: ProcessRunner): Promise<VerifyResult> {
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
    const r = await runner.run(nginxTestCommand(bin, dir));
    const output = (r.spawnError ? `cannot run ${bin}: ${r.spawnError}` : `${r.stdout}${r.stderr}`).replaceAll(dir, "<prefix>");
    return { differences, nginxTest: { ok: r.exitCode === 0, output, bin } };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** The human lines of a verify result (also appended to --report). */
export function formatVerify(verified: VerifyResult, specFile: string, oldFile: string): string {
  return [
    `Verify: the config built from ${specFile} against ${oldFile}`,
    `  ${verified.nginxTest.bin} -t: ${verified.nginxTest.ok ? "ok" : "FAILED"}`,
    ...(verified.nginxTest.ok ? [] : verified.nginxTest.output.trim().split("\n").map((l) => `    ${l}`)),
    `  differences not explained by the report: ${verified.differences.length}`,
    ...verified.differences.map((d) => `    ${d.file}:${d.line}: ${d.kind}: ${d.message} [${d.scope}]`),
    "",
  ].join("\n");
}
