/**
 * One tree for the whole config: every `include` replaced by the directives
 * of the files it pulled in (the parser already parsed each once and cut
 * include cycles), so conversion sees what nginx sees. `include` of a
 * mime.types file stays, because the spec has a key for it.
 */
import path from "node:path";
import type { Directive, ParseResult } from "../nginx/types.js";

export interface Flattened {
  tree: Directive[];
  /** The include directives that were replaced, with the files they named. */
  inlined: Array<{ node: Directive; files: string[] }>;
}

export function isMimeTypesInclude(d: Directive): boolean {
  return d.directive === "include" && d.args.length === 1 && path.basename(d.args[0]!) === "mime.types";
}

export function flatten(result: ParseResult): Flattened {
  const inlined: Flattened["inlined"] = [];
  const expand = (nodes: readonly Directive[], depth: number): Directive[] => {
    const out: Directive[] = [];
    for (const d of nodes) {
      if (d.directive === "include" && d.includes !== undefined && !isMimeTypesInclude(d) && depth < 64) {
        inlined.push({ node: d, files: d.includes.map((i) => result.config[i]!.file) });
        for (const i of d.includes) out.push(...expand(result.config[i]!.parsed, depth + 1));
        continue;
      }
      out.push(d.block === undefined ? d : { ...d, block: expand(d.block, depth) });
    }
    return out;
  };
  return { tree: expand(result.config[0]?.parsed ?? [], 0), inlined };
}

/** Depth-first walk with the chain of enclosing directives. */
export function walk(nodes: readonly Directive[], fn: (d: Directive, parents: readonly Directive[]) => void, parents: Directive[] = []): void {
  for (const d of nodes) {
    fn(d, parents);
    if (d.block) {
      parents.push(d);
      walk(d.block, fn, parents);
      parents.pop();
    }
  }
}
