/**
 * Tokens -> tree. `parseString` parses one file's text (pure); `parseConfig`
 * follows `include` through a Loader and returns the whole crossplane-shaped
 * result. Blocks are built with an explicit stack, never recursion, so a huge
 * or deeply nested file cannot overflow the JS stack; nesting is still capped
 * (MAX_DEPTH) because everything downstream (printer, JSON) walks the tree
 * recursively and no real nginx config nests more than a handful of levels.
 */
import path from "node:path";
import { errnoMessage } from "../util/files.js";
import { expandGlob, hasMagic } from "./glob.js";
import { NginxSyntaxError, Tokenizer } from "./tokenize.js";
import {
  isLuaBlockDirective,
  type ConfigFile,
  type Directive,
  type Loader,
  type ParseError,
  type ParseResult,
} from "./types.js";

export const MAX_DEPTH = 200;

export interface ParseOptions {
  /** Keep `#` comments as nodes (default true; crossplane's --include-comments). */
  comments?: boolean;
  /** Do not follow includes (crossplane's --single-file). */
  single?: boolean;
}

export interface FileParse {
  /** Everything parsed; after a syntax error, what was parsed before it. */
  parsed: Directive[];
  /** Syntax errors: reading stops at the first, but for a directive a "}" ends without ";" (crossplane reads on). */
  errors: ParseError[];
  /** The file's `include` directives, in document order. */
  includes: Directive[];
}

/** crossplane's treatment of `if (...)`: drop the parentheses from the args. */
export function stripIfParens(args: string[]): void {
  const first = args[0];
  const last = args[args.length - 1];
  if (first === undefined || last === undefined || !first.startsWith("(") || !last.endsWith(")")) return;
  args[0] = first.slice(1).trimStart();
  args[args.length - 1] = args[args.length - 1]!.slice(0, -1).trimEnd();
  const start = args[0] === "" ? 1 : 0;
  const end = args.length - (args[args.length - 1] === "" ? 1 : 0);
  const kept = args.slice(start, Math.max(start, end));
  args.length = 0;
  args.push(...kept);
}

/** 1-based line and column of an offset (error paths only: it scans from the top). */
export function positionOf(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let k = text.indexOf("\n"); k >= 0 && k < offset; k = text.indexOf("\n", k + 1)) {
    line++;
    lineStart = k + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

const REGEX_QUANTIFIER = /^\d+(,\d*)?\}/;

interface Frame {
  list: Directive[];
  owner: Directive | null;
  line: number;
  column: number;
}

/** Parse one file's text. Never throws for bad input: problems come back in `errors`. */
export function parseString(text: string, file: string, options: ParseOptions = {}): FileParse {
  const keepComments = options.comments ?? true;
  const root: Directive[] = [];
  const includes: Directive[] = [];
  const errors: ParseError[] = [];

  const nul = text.indexOf("\0");
  if (nul >= 0) {
    const { line, column } = positionOf(text, nul);
    errors.push({ file, line, column, error: "not a text file (it contains a NUL byte): this is not an nginx config" });
    return { parsed: root, errors, includes };
  }

  const tz = new Tokenizer(text);
  const stack: Frame[] = [{ list: root, owner: null, line: 0, column: 0 }];
  let list = root;
  let cur: Directive | null = null;
  let lastLua: Directive | null = null;
  // Comments met between a directive's arguments go right after it (crossplane does the same).
  let pending: Directive[] = [];
  const finish = (d: Directive) => {
    list.push(d);
    if (pending.length > 0) {
      for (const c of pending) list.push(c);
      pending = [];
    }
  };
  const fail = (message: string, line = tz.tokLine, column = tz.tokColumn): never => {
    throw new NginxSyntaxError(message, line, column);
  };

  try {
    for (;;) {
      const kind = tz.next();
      if (kind === "word") {
        if (cur === null) cur = { directive: tz.value, line: tz.tokLine, column: tz.tokColumn, file, args: [] };
        else {
          // escapes as written, for crossplane's payload; kept only once one appears
          const w = tz.written;
          if (w !== undefined || cur.written !== undefined) (cur.written ??= cur.args.slice()).push(w ?? tz.value);
          cur.args.push(tz.value);
        }
      } else if (kind === "comment") {
        if (!keepComments) continue;
        const c: Directive = { directive: "#", line: tz.tokLine, column: tz.tokColumn, file, args: [], comment: tz.value };
        if (cur === null) list.push(c);
        else pending.push(c);
      } else if (kind === ";") {
        if (cur === null) fail('unexpected ";": there is no directive for it to end');
        const d = cur as Directive;
        if (isLuaBlockDirective(d.directive)) {
          fail(`"${d.directive}" needs its Lua code in a "{ }" block, not ";"`);
        }
        if (d.directive === "if") {
          stripIfParens(d.args);
          if (d.written) stripIfParens(d.written);
        }
        if (d.directive === "include") includes.push(d);
        finish(d);
        cur = null;
      } else if (kind === "{") {
        if (cur === null) fail('unexpected "{": a block must follow a directive name');
        const d = cur as Directive;
        if (isLuaBlockDirective(d.directive)) {
          const body = tz.readLuaBody();
          d.args.push(body.body);
          d.written?.push(body.body);
          d.lua = { line: body.line, column: body.column };
          lastLua = d;
          finish(d);
          cur = null;
          continue;
        }
        // nginx ends an unquoted word at "{" and opens a block, so an unquoted
        // regex such as ^/a{2}$ silently turns into nonsense (nginx then says
        // `unknown directive "2}$"`). Say what actually went wrong.
        const before = text.charCodeAt(tz.tokOffset - 1);
        const lastArg = d.args[d.args.length - 1];
        if (
          lastArg !== undefined &&
          before !== 32 && before !== 9 && before !== 10 && before !== 13 && before !== 34 && before !== 39 &&
          REGEX_QUANTIFIER.test(text.slice(tz.tokOffset + 1, tz.tokOffset + 24))
        ) {
          fail(
            `unquoted "{" in the argument "${lastArg}{...": nginx ends the argument here and opens a block; ` +
              `quote an argument that contains "{" (e.g. a regex with {n})`,
          );
        }
        if (stack.length > MAX_DEPTH) fail(`blocks nested more than ${MAX_DEPTH} levels deep`);
        if (d.directive === "if") {
          stripIfParens(d.args);
          if (d.written) stripIfParens(d.written);
        }
        d.block = [];
        finish(d);
        cur = null;
        stack.push({ list: d.block, owner: d, line: tz.tokLine, column: tz.tokColumn });
        list = d.block;
      } else if (kind === "}") {
        if (cur !== null) {
          // As crossplane: report the unterminated directive where it starts,
          // leave it out, close the block and read on.
          errors.push({ file, line: cur.line, column: cur.column, error: `directive "${cur.directive}" is not terminated by ";"` });
          cur = null;
          pending = [];
        }
        if (stack.length === 1) fail('unexpected "}": no block is open here');
        stack.pop();
        list = stack[stack.length - 1]!.list;
      } else {
        if (cur !== null) {
          fail(`unexpected end of file: the directive "${cur.directive}" is not terminated by ";"`, cur.line, cur.column);
        }
        if (stack.length > 1) {
          const top = stack[stack.length - 1]!;
          // Unbalanced braces in Lua code eat the "}" of the enclosing block;
          // the error shows at that block, so point at the likely culprit.
          const hint =
            lastLua !== null && (lastLua.line > top.line || (lastLua.line === top.line && lastLua.column > top.column))
              ? `; the Lua code of "${lastLua.directive}" at ${lastLua.line}:${lastLua.column} may have taken its "}" (check the braces in it)`
              : "";
          fail(
            `unexpected end of file, expecting "}": the block of "${top.owner!.directive}" opened here is never closed${hint}`,
            top.line,
            top.column,
          );
        }
        break;
      }
    }
  } catch (e) {
    if (!(e instanceof NginxSyntaxError)) throw e;
    errors.push({ file, line: e.line, column: e.column, error: e.message });
  }
  return { parsed: root, errors, includes };
}

const decoder = new TextDecoder("utf-8");

function decode(data: Uint8Array | string): string {
  return typeof data === "string" ? data : decoder.decode(data);
}

interface Edge {
  to: number;
  node: Directive;
}

/**
 * Parse a main config and everything it includes. Relative include paths are
 * resolved against the main file's directory (nginx's conf prefix), globs
 * expand sorted, each file is parsed once (and shared by every include that
 * names it), a missing non-glob include is an error on the include directive
 * that does not stop the rest, and an include cycle is an error on the
 * include that closes it.
 */
export function parseConfig(mainFile: string, loader: Loader, options: ParseOptions = {}): ParseResult {
  const configs: ConfigFile[] = [];
  const edges: Edge[][] = [];
  const indexOf = new Map<string, number>();
  const prefetched = new Map<number, Uint8Array | string>();
  const queue: string[] = [mainFile];
  indexOf.set(path.resolve(mainFile), 0);
  const confDir = path.dirname(mainFile);

  for (let k = 0; k < queue.length; k++) {
    const file = queue[k]!;
    const cf: ConfigFile = { file, status: "ok", errors: [], parsed: [] };
    configs.push(cf);
    const out: Edge[] = [];
    edges.push(out);

    let data = prefetched.get(k);
    prefetched.delete(k);
    if (data === undefined) {
      try {
        data = loader.readFile(file);
      } catch (e) {
        cf.errors.push({ file, line: 1, column: 1, error: `cannot read ${file}: ${errnoMessage(e)}` });
        continue;
      }
    }
    const r = parseString(decode(data), file, options);
    cf.parsed = r.parsed;
    cf.errors.push(...r.errors);
    if (options.single) continue;

    for (const node of r.includes) {
      node.includes = [];
      const arg = node.args[0];
      if (arg === undefined || node.args.length !== 1) {
        cf.errors.push({ file, line: node.line, column: node.column, error: `"include" takes exactly one argument, got ${node.args.length}` });
        continue;
      }
      const pattern = path.isAbsolute(arg) ? arg : path.join(confDir, arg);
      let files: string[];
      let read: Uint8Array | string | undefined;
      if (hasMagic(pattern)) {
        // A pattern that matches nothing is fine, as in nginx.
        files = expandGlob(pattern, loader);
      } else {
        files = [pattern];
        if (!indexOf.has(path.resolve(pattern))) {
          // nginx opens a named include at once and fails without it; we
          // report it on the include directive and parse the rest.
          try {
            read = loader.readFile(pattern);
          } catch (e) {
            cf.errors.push({
              file,
              line: node.line,
              column: node.column,
              error: `include "${arg}": cannot read ${pattern}: ${errnoMessage(e)}`,
            });
            continue;
          }
        }
      }
      for (const f of files) {
        const key = path.resolve(f);
        let idx = indexOf.get(key);
        if (idx === undefined) {
          idx = queue.length;
          indexOf.set(key, idx);
          queue.push(f);
          if (read !== undefined) prefetched.set(idx, read);
        }
        node.includes.push(idx);
        out.push({ to: idx, node });
      }
    }
  }

  reportCycles(configs, edges);

  const errors: ParseError[] = [];
  for (const cf of configs) {
    cf.status = cf.errors.length > 0 ? "failed" : "ok";
    errors.push(...cf.errors);
  }
  return { status: errors.length > 0 ? "failed" : "ok", errors, config: configs };
}

/**
 * Each file is parsed once, so a cycle cannot loop the parser; but anything
 * that inlines includes (and nginx itself) would, so every include that
 * closes a cycle is reported and its back reference dropped from `includes`.
 */
function reportCycles(configs: ConfigFile[], edges: Edge[][]): void {
  const color = new Uint8Array(configs.length); // 0 unseen, 1 on the current path, 2 done
  const stack: Array<{ node: number; next: number }> = [{ node: 0, next: 0 }];
  color[0] = 1;
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const out = edges[top.node]!;
    if (top.next >= out.length) {
      color[top.node] = 2;
      stack.pop();
      continue;
    }
    const edge = out[top.next++]!;
    if (color[edge.to] === 1) {
      const from = stack.findIndex((f) => f.node === edge.to);
      const chain = [...stack.slice(from).map((f) => configs[f.node]!.file), configs[edge.to]!.file];
      const cf = configs[top.node]!;
      cf.errors.push({
        file: cf.file,
        line: edge.node.line,
        column: edge.node.column,
        error: `include cycle: ${chain.join(" -> ")}`,
      });
      const at = edge.node.includes!.indexOf(edge.to);
      if (at >= 0) edge.node.includes!.splice(at, 1);
    } else if (color[edge.to] === 0) {
      color[edge.to] = 1;
      stack.push({ node: edge.to, next: 0 });
    }
  }
}
