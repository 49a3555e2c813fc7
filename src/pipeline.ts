/**
 * The shared front half of every command: spec file -> validated Spec ->
 * render model -> file set. Only the reading of the spec touches disk.
 */
import path from "node:path";
import { readFileSync } from "node:fs";
import { RejectedError, UsageError } from "./errors.js";
import { planBuild } from "./plan.js";
import { renderFileSet, type FileSet } from "./render/render.js";
import { UnsafeValueError } from "./render/quote.js";
import { formatDiagnostic, type SpecDiagnostic } from "./spec/load.js";
import type { Spec } from "./spec/schema.js";
import { validateSpecText } from "./spec/validate.js";
import { readSpecFile } from "./util/files.js";

export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;
export const GENERATOR = `gen-lb ${VERSION}`;

export interface LoadedSpecFile {
  spec: Spec;
  /** As shown to the user (relative to cwd when possible). */
  file: string;
  absFile: string;
  /** The exact text validated (install hashes it to notice later edits). */
  text: string;
  warnings: SpecDiagnostic[];
}

/** Read and validate a spec file; every problem becomes one RejectedError listing them all. */
export async function loadSpecFile(file: string, cwd: string): Promise<LoadedSpecFile> {
  const resolved = path.resolve(cwd, file);
  const read = await readSpecFile(resolved);
  if ("problem" in read) {
    if (read.problem === "directory") throw new UsageError(read.detail);
    throw new RejectedError(read.detail);
  }
  const display = path.relative(cwd, resolved) || file;
  const result = validateSpecText(read.text, display);
  if (!result.spec) {
    const n = result.errors.length;
    throw new RejectedError(`${display}: ${n} error${n === 1 ? "" : "s"} in the spec`, result.errors.map(formatDiagnostic), {
      errors: result.errors,
    });
  }
  return { spec: result.spec, file: display, absFile: resolved, text: read.text, warnings: result.warnings };
}

/**
 * Render `spec`; `target` overrides the spec's target, `seenVersion` (the
 * binary's version, from `-V`) is rendered for when the spec names no
 * target_version.
 */
export function buildFileSet(spec: Spec, specFile: string, target?: "openresty" | "nginx", seenVersion?: string): FileSet {
  const effective = {
    ...spec,
    ...(target === undefined ? {} : { target }),
    ...(spec.target_version === undefined && seenVersion !== undefined ? { target_version: seenVersion } : {}),
  };
  try {
    return renderFileSet(planBuild(effective, { specFile: path.basename(specFile), generator: GENERATOR }));
  } catch (error) {
    if (error instanceof UnsafeValueError) throw new RejectedError(`the spec holds a value that cannot be written safely: ${error.message}`);
    throw error;
  }
}
