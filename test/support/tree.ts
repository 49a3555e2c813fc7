/** Every entry under a directory, for tests that look at a whole prefix or build. */
import { readdirSync } from "node:fs";
import path from "node:path";

export interface TreeEntry {
  /** Absolute (as `dir` is) path. */
  path: string;
  /** Relative to `dir`. */
  rel: string;
  dir: boolean;
}

/** Depth first, a directory before what it holds; `dir` itself is not listed. `skip`: top-level names left out. */
export function walkTree(dir: string, skip: readonly string[] = []): TreeEntry[] {
  const out: TreeEntry[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (d === dir && skip.includes(e.name)) continue;
      const p = path.join(d, e.name);
      out.push({ path: p, rel: path.relative(dir, p), dir: e.isDirectory() });
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}
