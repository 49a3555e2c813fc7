/**
 * crossplane's `parse` options over gen-lb's parse result: comments off
 * unless asked, --ignore, --combine, and the analyser (--strict,
 * --no-check-ctx, --no-check-args) driven by the directive tables generated
 * from the nginx and OpenResty sources instead of a hand-kept list.
 * Arguments keep their escape sequences as written, as crossplane gives them.
 */
import { argCountFits, loadDirectiveTable, type DirectiveContext, type DirectiveDefinition } from "./directives.js";
import type { Directive, ParseResult } from "./types.js";

export interface CrossplaneOptions {
  includeComments?: boolean;
  ignore?: readonly string[];
  combine?: boolean;
  strict?: boolean;
  checkCtx?: boolean;
  checkArgs?: boolean;
}

export interface CpNode {
  directive: string;
  file?: string;
  line: number;
  args: string[];
  includes?: number[];
  block?: CpNode[];
  comment?: string;
}

export interface CpError {
  file: string;
  error: string;
  line: number;
}

export interface CpPayload {
  status: "ok" | "failed";
  errors: CpError[];
  config: Array<{ file: string; status: "ok" | "failed"; errors: Array<{ error: string; line: number }>; parsed: CpNode[] }>;
}

let union: Record<string, DirectiveDefinition[]> | undefined;
/** Every directive either target knows: crossplane, too, knows more than one build has. */
function knownDirectives(): Record<string, DirectiveDefinition[]> {
  if (!union) {
    union = {};
    for (const target of ["openresty", "nginx"]) {
      for (const [name, defs] of Object.entries(loadDirectiveTable(target).directives)) (union[name] ??= []).push(...defs);
    }
  }
  return union;
}

const FLAG_RE = /^(on|off)$/i;

/** The reason crossplane's analyser gives, or undefined when the directive is fine here. */
function analyse(d: Directive, ctx: DirectiveContext | null, opts: CrossplaneOptions, hasBlock: boolean): string | undefined {
  const defs = knownDirectives()[d.directive];
  if (!defs) return opts.strict ? `unknown directive "${d.directive}"` : undefined;
  // inside blocks whose contents are not directives (map, types, ...) nothing is checked
  if (ctx === null) return undefined;
  const here = opts.checkCtx === false ? defs : defs.filter((def) => def.contexts.includes(ctx));
  if (here.length === 0) return `"${d.directive}" directive is not allowed here`;
  if (opts.checkArgs === false) return undefined;
  let reason: string | undefined;
  for (const def of here) {
    if (!def.block && hasBlock) reason = `directive "${d.directive}" is not terminated by ";"`;
    else if (def.block && !hasBlock) reason = `directive "${d.directive}" has no opening "{"`;
    else if (argCountFits(def.args, d.args.length - (d.lua ? 1 : 0))) {
      if (def.args.includes("FLAG") && !FLAG_RE.test(d.args[0] ?? "")) {
        reason = `invalid value "${d.args[0]}" in "${d.directive}" directive, it must be "on" or "off"`;
      } else return undefined;
    } else reason = `invalid number of arguments in "${d.directive}" directive`;
  }
  return reason;
}

function innerContext(d: Directive, ctx: DirectiveContext | null): DirectiveContext | null {
  if (ctx === null) return null;
  const def = (knownDirectives()[d.directive] ?? []).find((x) => x.contexts.includes(ctx) && x.opens);
  if (!def?.opens) return null;
  return def.opens.length === 1 ? def.opens[0]! : (def.opens.find((o) => o.startsWith(ctx)) ?? def.opens[0]!);
}

export function crossplanePayload(result: ParseResult, opts: CrossplaneOptions = {}): CpPayload {
  const ignore = new Set(opts.ignore ?? []);
  const errors: CpError[] = [];
  const perFile: Array<Array<{ error: string; line: number }>> = result.config.map(() => []);
  const indexOf = new Map(result.config.map((c, i) => [c.file, i]));
  const at = (file: string, line: number) => `${file}:${line}`;

  for (const e of result.errors) {
    const i = indexOf.get(e.file) ?? 0;
    const error = `${e.error} in ${at(e.file, e.line)}`;
    perFile[i]!.push({ error, line: e.line });
    errors.push({ file: e.file, error, line: e.line });
  }

  // each file is analysed in the context of the first include that pulls it in
  const fileCtx = new Map<number, DirectiveContext | null>([[0, "main"]]);
  const convert = (nodes: readonly Directive[], ctx: DirectiveContext | null, fi: number): CpNode[] => {
    const out: CpNode[] = [];
    for (const d of nodes) {
      if (d.directive === "#") {
        if (opts.includeComments) out.push({ directive: "#", line: d.line, args: [], comment: d.comment ?? "" });
        continue;
      }
      if (ignore.has(d.directive)) continue;
      const hasBlock = d.block !== undefined || d.lua !== undefined;
      const reason = analyse(d, ctx, opts, hasBlock);
      if (reason !== undefined) {
        const error = `${reason} in ${at(d.file, d.line)}`;
        perFile[fi]!.push({ error, line: d.line });
        errors.push({ file: d.file, error, line: d.line });
        continue;
      }
      const node: CpNode = { directive: d.directive, line: d.line, args: d.written ?? d.args };
      if (d.includes !== undefined) {
        node.includes = d.includes;
        for (const i of d.includes) if (!fileCtx.has(i)) fileCtx.set(i, ctx);
      }
      if (d.block !== undefined) node.block = convert(d.block, innerContext(d, ctx), fi);
      out.push(node);
    }
    return out;
  };
  const parsed = result.config.map((c, i) => convert(c.parsed, fileCtx.get(i) ?? "main", i));
  const payload: CpPayload = {
    status: errors.length > 0 ? "failed" : "ok",
    errors,
    config: result.config.map((c, i) => ({
      file: c.file,
      status: perFile[i]!.length > 0 ? "failed" : "ok",
      errors: perFile[i]!,
      parsed: parsed[i]!,
    })),
  };
  return opts.combine ? combine(payload) : payload;
}

/** --combine: one config, includes replaced by what they include, every node naming its file. */
function combine(p: CpPayload): CpPayload {
  const inline = (nodes: readonly CpNode[], file: string, seen: ReadonlySet<number>): CpNode[] => {
    const out: CpNode[] = [];
    for (const n of nodes) {
      if (n.includes !== undefined) {
        for (const i of n.includes) {
          if (seen.has(i)) continue;
          const c = p.config[i]!;
          out.push(...inline(c.parsed, c.file, new Set([...seen, i])));
        }
        continue;
      }
      const { directive, line, args, block, comment } = n;
      const m: CpNode = { directive, file, line, args };
      if (block !== undefined) m.block = inline(block, file, seen);
      if (comment !== undefined) m.comment = comment;
      out.push(m);
    }
    return out;
  };
  const first = p.config[0]!;
  const errors = p.errors.map((e) => ({ error: e.error, line: e.line }));
  return {
    status: p.status,
    errors: p.errors,
    config: [{ file: first.file, status: p.status, errors, parsed: inline(first.parsed, first.file, new Set([0])) }],
  };
}
