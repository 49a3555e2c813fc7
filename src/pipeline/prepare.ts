/**
 * The spec as check and install see it: the validated spec, the exact text
 * it came from (install hashes it to notice an edit between its check and
 * its swap), a locator from spec paths to file:line:col, and the rendered
 * file set.
 */
import { createHash } from "node:crypto";
import path from "node:path";
import type { Spec } from "../spec/schema.js";
import { buildFileSet, loadSpecFile } from "./index.js";
import type { SpecDiagnostic } from "./load.js";
import type { FileSet } from "./render.js";

export type Target = "openresty" | "nginx";

export interface PreparedSpec {
  spec: Spec;
  /** Effective target (the spec's, or --target). */
  target: Target;
  /** The binary's version (from -V) rendered for when the spec names no target_version; every re-render must pass it on. */
  seenVersion?: string;
  /** As shown to the user (relative to cwd when possible). */
  file: string;
  absFile: string;
  text: string;
  warnings: SpecDiagnostic[];
  set: FileSet;
  /** sha256 over the spec text and every rendered file: what check approved. */
  fingerprint: string;
  /** "servers[0].listen" -> "gen-lb.yaml:3:5" */
  locate(specPath: string): string | undefined;
}

/** Parse "servers[0].locations[1]" back into ["servers", 0, "locations", 1]. */
export function parseSpecPath(specPath: string): Array<string | number> {
  const out: Array<string | number> = [];
  for (const m of specPath.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}

export function fingerprintOf(text: string, set: FileSet): string {
  const hash = createHash("sha256").update(text).update("\0");
  for (const f of set.files) hash.update(f.path).update("\0").update(f.contents).update("\0");
  return hash.digest("hex");
}

/** Read, validate and render; every spec problem becomes one RejectedError (exit 1). */
export async function prepareSpec(file: string, cwd: string, targetOverride?: Target, seenVersion?: string): Promise<PreparedSpec> {
  const { spec, file: display, absFile, text, warnings, locate } = await loadSpecFile(file, cwd, targetOverride === undefined ? {} : { target: targetOverride });
  const set = buildFileSet(spec, display, targetOverride, seenVersion === undefined ? {} : { seenVersion });
  return {
    spec,
    target: targetOverride ?? spec.target,
    ...(seenVersion === undefined ? {} : { seenVersion }),
    file: display,
    absFile,
    text,
    warnings,
    set,
    fingerprint: fingerprintOf(text, set),
    locate(specPath) {
      const pos = locate(parseSpecPath(specPath));
      return `${pos.file}:${pos.line}:${pos.column}`;
    },
  };
}
