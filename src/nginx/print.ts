/**
 * Tree -> nginx text. The inverse of parse for everything the tree keeps:
 * parse(print(tree)) gives back the same directives, arguments, blocks and
 * comments (positions aside). Arguments are quoted only when nginx would read
 * them differently bare; Lua bodies are put back between braces verbatim.
 */
import { isLuaBlockDirective } from "./types.js";

/** The part of a node the printer needs (so hand-built trees print too). */
export interface PrintNode {
  directive: string;
  args: readonly string[];
  block?: readonly PrintNode[];
  comment?: string;
  line?: number;
}

export interface PrintOptions {
  /** One indentation step (default four spaces, like crossplane). */
  indent?: string;
}

const ESCAPED_AFTER_BACKSLASH = new Set(['"', "'", "\\", "t", "r", "n"]);

/**
 * Write backslashes so nginx's unescaping gives them back: a backslash is
 * doubled only where nginx would otherwise read it as an escape (before
 * " ' \ t r n) or where it would swallow the closing quote or separator
 * (at the end), so regexes like \d stay as they are.
 */
function encodeBackslashes(v: string, quote: string): string {
  if (!v.includes("\\") && (quote === "" || !/["'\r\n]/.test(v))) return v;
  // Encode each character, then decide each backslash by what follows it in
  // the output (an encoded quote or line break starts with a backslash too).
  const pieces: string[] = [];
  for (const c of v) {
    if (quote !== "" && c === quote) pieces.push("\\" + c);
    // Line breaks inside quotes are legal, but escapes keep one directive per line.
    else if (quote !== "" && c === "\n") pieces.push("\\n");
    else if (quote !== "" && c === "\r") pieces.push("\\r");
    else pieces.push(c);
  }
  for (let i = pieces.length - 1; i >= 0; i--) {
    if (pieces[i] !== "\\") continue;
    const next = pieces[i + 1];
    if (next === undefined || ESCAPED_AFTER_BACKSLASH.has(next[0]!)) pieces[i] = "\\\\";
  }
  return pieces.join("");
}

/** Does the bare word `w` (already backslash-encoded) read back as one whole word? */
function readsAsOneWord(w: string): boolean {
  if (w.length === 0) return false;
  const c0 = w[0]!;
  if (c0 === '"' || c0 === "'" || c0 === "#" || c0 === "{" || c0 === "}" || c0 === ";") return false;
  let variable = false;
  for (let i = 0; i < w.length; i++) {
    const c = w[i]!;
    if (c === "{" && variable) continue;
    variable = false;
    if (c === "\\") {
      i++;
      continue;
    }
    if (c === "$") {
      variable = true;
      continue;
    }
    if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === ";" || c === "{") return false;
  }
  return true;
}

/** An argument as nginx text: bare when that reads back the same, else quoted. */
export function quoteArg(v: string): string {
  const bare = encodeBackslashes(v, "");
  if (readsAsOneWord(bare)) return bare;
  // Prefer the quote that needs no escaping (log formats are full of ").
  const q = v.includes('"') && !v.includes("'") ? "'" : '"';
  return q + encodeBackslashes(v, q) + q;
}

function ifCondition(args: readonly string[]): string {
  const words = args.map(quoteArg);
  if (words.length === 0) return "()";
  // "(" and ")" are glued to the first and last words, and the parser strips
  // them with the whitespace next to them. So keep them apart when the first
  // word is quoted ("(\"a\"" would make the quote an ordinary character) or
  // when an edge value starts or ends with whitespace.
  const first = words[0]!;
  const open = /^["']/.test(first) || /^\s/.test(args[0]!) ? "( " : "(";
  const close = /\s$/.test(args[args.length - 1]!) ? " )" : ")";
  return open + words.join(" ") + close;
}

/** Print a list of directives (one file's `parsed`, or any block). */
export function print(nodes: readonly PrintNode[], options: PrintOptions = {}): string {
  const step = options.indent ?? "    ";
  const lines: string[] = [];
  printBlock(nodes, "", step, lines);
  return lines.length === 0 ? "" : lines.join("\n") + "\n";
}

function printBlock(nodes: readonly PrintNode[], margin: string, step: string, lines: string[]): void {
  let prev: PrintNode | undefined;
  for (const node of nodes) {
    if (node.directive === "#") {
      const text = "#" + (node.comment ?? "");
      // A comment that shared a line with the directive before it stays there.
      if (prev !== undefined && prev.block === undefined && prev.line !== undefined && prev.line === node.line && lines.length > 0) {
        lines[lines.length - 1] += " " + text;
      } else {
        lines.push(margin + text);
      }
      prev = node;
      continue;
    }
    let head = quoteArg(node.directive);
    if (isLuaBlockDirective(node.directive) && node.block === undefined && node.args.length > 0) {
      const before = node.args.slice(0, -1).map(quoteArg);
      const body = node.args[node.args.length - 1]!;
      lines.push(margin + [head, ...before].join(" ") + " {" + body + "}");
      prev = node;
      continue;
    }
    if (node.directive === "if") head += " " + ifCondition(node.args);
    else if (node.args.length > 0) head += " " + node.args.map(quoteArg).join(" ");
    if (node.block === undefined) {
      lines.push(margin + head + ";");
    } else if (node.block.length === 0) {
      lines.push(margin + head + " {}");
    } else {
      lines.push(margin + head + " {");
      printBlock(node.block, margin + step, step, lines);
      lines.push(margin + "}");
    }
    prev = node;
  }
}
