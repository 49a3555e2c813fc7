/**
 * The crossplane-compatible JSON view of a parse result: node keys in
 * crossplane's order (directive, line, args, includes, block, comment),
 * internal fields (file, column, lua) left out so the output diffs cleanly
 * against `crossplane parse --include-comments`. Errors keep an extra
 * `column`, which crossplane lacks and which costs a consumer nothing.
 */
import type { Directive, ParseResult } from "./types.js";

export interface PayloadNode {
  directive: string;
  line: number;
  args: string[];
  includes?: number[];
  block?: PayloadNode[];
  comment?: string;
}

export interface Payload {
  status: "ok" | "failed";
  errors: Array<{ file: string; line: number; column: number; error: string }>;
  config: Array<{
    file: string;
    status: "ok" | "failed";
    errors: Array<{ line: number; column: number; error: string }>;
    parsed: PayloadNode[];
  }>;
}

function toNodes(nodes: readonly Directive[]): PayloadNode[] {
  return nodes.map((d) => {
    const out: PayloadNode = { directive: d.directive, line: d.line, args: d.args };
    if (d.includes !== undefined) out.includes = d.includes;
    if (d.block !== undefined) out.block = toNodes(d.block);
    if (d.comment !== undefined) out.comment = d.comment;
    return out;
  });
}

export function toPayload(result: ParseResult): Payload {
  return {
    status: result.status,
    errors: result.errors.map((e) => ({ file: e.file, line: e.line, column: e.column, error: e.error })),
    config: result.config.map((c) => ({
      file: c.file,
      status: c.status,
      errors: c.errors.map((e) => ({ line: e.line, column: e.column, error: e.error })),
      parsed: toNodes(c.parsed),
    })),
  };
}
