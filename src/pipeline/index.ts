/**
 * The pipeline every command shares: load (read the spec file, parse it with
 * source positions) -> validate (zod schema + cross checks) -> plan (the pure
 * render model) -> render (the pure file set). Only the reading of the spec
 * touches disk. Commands import this module, not each other's internals.
 */
import path from "node:path";
import { readFileSync } from "node:fs";
import { RejectedError, UsageError } from "../errors.js";
import { UnsafeValueError } from "../render/quote.js";
import type { Spec } from "../spec/schema.js";
import { readSpecFile } from "../util/files.js";
import { formatDiagnostic, loadSpecText, type SourcePosition, type SpecDiagnostic } from "./load.js";
import { planBuild } from "./plan.js";
import { renderFileSet, type FileSet, type RenderOptions } from "./render.js";
import { validateLoaded } from "./validate.js";

export { formatDiagnostic, type SpecDiagnostic } from "./load.js";
export type { FileSet, OutputFile } from "./render.js";
export { fingerprintOf, parseSpecPath, prepareSpec, type PreparedSpec, type Target } from "./prepare.js";

export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
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
  /** The loader's own map from a spec path to its place in `text` (kept, never rebuilt by re-parsing). */
  locate(path: readonly PropertyKey[]): SourcePosition;
}

/**
 * Read and validate a spec file; every problem becomes one RejectedError
 * listing them all. `target` (--target) is validated for in place of the
 * spec's own: what nginx would refuse depends on the binary rendered for.
 */
export async function loadSpecFile(file: string, cwd: string, opts: { target?: "openresty" | "nginx" } = {}): Promise<LoadedSpecFile> {
  const resolved = path.resolve(cwd, file);
  const read = await readSpecFile(resolved);
  if ("problem" in read) {
    if (read.problem === "directory") throw new UsageError(read.detail);
    throw new RejectedError(read.detail);
  }
  const display = path.relative(cwd, resolved) || file;
  const loaded = loadSpecText(read.text, display);
  const result = loaded.ok ? validateLoaded(loaded.spec, opts.target === undefined ? {} : { target: opts.target }) : { spec: undefined, warnings: [], errors: loaded.errors };
  if (!loaded.ok || !result.spec) {
    const n = result.errors.length;
    throw new RejectedError(`${display}: ${n} error${n === 1 ? "" : "s"} in the spec`, result.errors.map(formatDiagnostic), {
      errors: result.errors,
    });
  }
  return { spec: result.spec, file: display, absFile: resolved, text: read.text, warnings: result.warnings, locate: loaded.spec.locate };
}

/** Plan and render (both pure); a value no quoting helper can write safely rejects the spec. */
/**
 * Render `spec`; `target` overrides the spec's target; `seenVersion` (the
 * binary's version, from `-V`) is rendered for when the spec names no
 * target_version.
 */
export function buildFileSet(
  spec: Spec,
  specFile: string,
  target?: "openresty" | "nginx",
  opts: RenderOptions & { seenVersion?: string } = {},
): FileSet {
  const { seenVersion, ...renderOptions } = opts;
  const effective = {
    ...spec,
    ...(target === undefined ? {} : { target }),
    ...(spec.target_version === undefined && seenVersion !== undefined ? { target_version: seenVersion } : {}),
  };
  try {
    return renderFileSet(planBuild(effective, { specFile: path.basename(specFile), generator: GENERATOR }), renderOptions);
  } catch (error) {
    if (error instanceof UnsafeValueError) throw new RejectedError(`the spec holds a value that cannot be written safely: ${error.message}`);
    throw error;
  }
}
