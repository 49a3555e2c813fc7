/**
 * The old setup's mime.types against the one gen-lb ships: what the old file
 * maps that gen-lb's would not (carried as nginx.http.types) and what gen-lb's
 * maps differently (reported: nginx would warn about a duplicate extension).
 */
import { readFileSync } from "node:fs";
import type { Directive } from "../nginx/types.js";
import { TEMPLATES_DIR } from "../pipeline/render.js";
import { EXTENSION_RE, MIME_TYPE_RE } from "../spec/schema.js";

let shipped: Map<string, string> | undefined;

/** Extension -> type in gen-lb's templates/mime.types. */
export function shippedMimeTypes(): ReadonlyMap<string, string> {
  if (!shipped) {
    shipped = new Map();
    const text = readFileSync(new URL("mime.types", TEMPLATES_DIR), "utf8").replace(/#[^\n]*/g, "");
    const body = /types\s*\{([\s\S]*)\}/.exec(text)?.[1] ?? "";
    for (const entry of body.split(";")) {
      const [type, ...exts] = entry.trim().split(/\s+/);
      if (type) for (const e of exts) shipped.set(e, type);
    }
  }
  return shipped;
}

export interface MimeComparison {
  /** type -> extensions gen-lb's file lacks (to add as nginx.http.types). */
  add: Record<string, string[]>;
  /** extension: old type vs gen-lb's. */
  differ: Array<{ ext: string; old: string; shipped: string }>;
  /** entries the spec cannot hold. */
  skipped: number;
}

export function compareMimeTypes(oldTypes: readonly Directive[]): MimeComparison {
  const ours = shippedMimeTypes();
  const add: Record<string, string[]> = {};
  const differ: MimeComparison["differ"] = [];
  let skipped = 0;
  const seen = new Set<string>();
  for (const t of oldTypes) {
    if (t.directive !== "types") continue;
    for (const e of t.block ?? []) {
      if (e.directive === "#") continue;
      for (const ext of e.args) {
        if (seen.has(ext)) continue;
        seen.add(ext);
        const mine = ours.get(ext);
        if (mine === e.directive) continue;
        if (mine !== undefined) differ.push({ ext, old: e.directive, shipped: mine });
        else if (MIME_TYPE_RE.test(e.directive) && EXTENSION_RE.test(ext)) (add[e.directive] ??= []).push(ext);
        else skipped++;
      }
    }
  }
  return { add, differ, skipped };
}
