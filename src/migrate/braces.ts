/**
 * `${name}`, nginx's braced variable: the same variable as `$name` wherever
 * no name character follows the closing brace. The spec refuses "${" (it
 * cannot be told apart from a template in the YAML or the Lua data), so
 * migrate writes the unbraced form where it means the same, and leaves the
 * rest as it was (the converters then report what they cannot express).
 * Lua code is never touched. Pure: the old tree is not changed; a directive
 * with a rewritten argument (and each block above it) is a copy.
 */
import type { Directive } from "../nginx/types.js";

const BRACED = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}(?![A-Za-z0-9_])/g;

/** `t=${msec}` -> `t=$msec`; `${host}name` stays (`$hostname` is another variable). */
export function unbrace(arg: string): string {
  return arg.includes("${") ? arg.replace(BRACED, "$$$1") : arg;
}

const isLua = (name: string) => /_by_lua(_block|_file)?$/.test(name);

/** The tree with braced variables unbraced, and the directives whose arguments changed (the old nodes). */
export function unbraceTree(tree: readonly Directive[]): { tree: Directive[]; changed: Directive[] } {
  const changed: Directive[] = [];
  const visit = (list: readonly Directive[]): Directive[] => {
    let out: Directive[] | undefined;
    list.forEach((d, i) => {
      let next = d;
      if (d.directive !== "#" && !isLua(d.directive)) {
        const args = d.args.map(unbrace);
        const block = d.block ? visit(d.block) : undefined;
        const argsChanged = args.some((a, k) => a !== d.args[k]);
        if (argsChanged) changed.push(d);
        if (argsChanged || block !== d.block) {
          const { written: _written, ...rest } = d;
          next = { ...(argsChanged ? rest : d), args, ...(block ? { block } : {}) };
        }
      }
      if (next !== d) (out ??= list.slice())[i] = next;
    });
    return out ?? (list as Directive[]);
  };
  return { tree: visit(tree), changed };
}
