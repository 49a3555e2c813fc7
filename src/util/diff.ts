/**
 * Unified diffs of text, for `build --check`, `install --dry-run` and `diff`,
 * by jsdiff (Myers' O(ND) algorithm, so a one-line change in a 20,000-line
 * config is cheap), in the familiar `--- a` / `+++ b` / `@@` shape, with
 * "\ No newline at end of file" where the last line's newline changes.
 */
import { structuredPatch } from "diff";

/** A unified diff with 3 lines of context; "" when the texts are equal. */
export function unifiedDiff(before: string, after: string, fromName: string, toName: string, context = 3): string {
  if (before === after) return "";
  const patch = structuredPatch(fromName, toName, before, after, undefined, undefined, { context });
  const out = [`--- ${fromName}`, `+++ ${toName}`];
  for (const h of patch.hunks) {
    // An empty side starts "before line 1", as diff(1) and git write it.
    out.push(`@@ -${h.oldLines === 0 ? h.oldStart - 1 : h.oldStart},${h.oldLines} +${h.newLines === 0 ? h.newStart - 1 : h.newStart},${h.newLines} @@`);
    out.push(...h.lines);
  }
  return out.join("\n") + "\n";
}

/**
 * The order files are shown in diffs: conf/nginx.conf first (what a reviewer
 * reads), then the rest in their given order.
 */
export function inDiffOrder<T extends { path: string }>(files: readonly T[]): T[] {
  return [...files.filter((f) => f.path === "conf/nginx.conf"), ...files.filter((f) => f.path !== "conf/nginx.conf")];
}
