import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Directive } from "../../src/nginx/types.js";

export const root = fileURLToPath(new URL("../..", import.meta.url));
export const fixtures = path.join(root, "fixtures/parser");

export function readFixture(rel: string): string {
  return readFileSync(path.join(fixtures, rel), "utf8");
}

/** Every file under a fixtures/parser subdirectory, relative to fixtures/parser, sorted. */
export function fixtureFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(fixtures, rel)).sort()) {
      const r = path.join(rel, name);
      if (statSync(path.join(fixtures, r)).isDirectory()) walk(r);
      else out.push(r);
    }
  };
  walk(dir);
  return out;
}

export interface Shape {
  directive: string;
  args: string[];
  block?: Shape[];
  comment?: string;
}

/** The tree without positions, for round-trip comparisons. */
export function shape(nodes: readonly Directive[]): Shape[] {
  return nodes.map((d) => {
    const s: Shape = { directive: d.directive, args: d.args };
    if (d.block) s.block = shape(d.block);
    if (d.comment !== undefined) s.comment = d.comment;
    return s;
  });
}

/** [line:column directive args] for each node, depth first, indented by depth. */
export function outline(nodes: readonly Directive[], depth = 0): string[] {
  const out: string[] = [];
  for (const d of nodes) {
    const what = d.directive === "#" ? `#${d.comment}` : [d.directive, ...d.args].join(" ");
    out.push(`${"  ".repeat(depth)}${d.line}:${d.column} ${what}`);
    if (d.block) out.push(...outline(d.block, depth + 1));
  }
  return out;
}
