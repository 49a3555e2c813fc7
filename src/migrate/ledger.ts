/**
 * The findings ledger: the one place a converter records what became of a
 * directive (converted, carried, dropped, lost, to-do, changed, suggested).
 * Each entry returns the finding, so a converter adds what it knows
 * (newArgs, explains) without reaching into the list.
 */
import type { Directive } from "../nginx/types.js";
import { text } from "./args.js";
import type { Finding } from "./types.js";

export class Ledger {
  readonly findings: Finding[] = [];
  /** Comments met while converting (the spec has no place for them: one finding at the end). */
  comments = 0;

  /** What became of directive `d` (its position, column included, is the key --verify reads). */
  add(kind: Finding["kind"], d: Directive, message: string, to?: string): Finding {
    const f: Finding = { kind, file: d.file, line: d.line, column: d.column, directive: d.directive, message };
    if (to !== undefined) f.to = to;
    this.findings.push(f);
    return f;
  }

  /**
   * A finding about a server or the http block as a whole, not about what
   * became of that directive: no column, so --verify does not read it as the
   * directive's disposition.
   */
  note(kind: Finding["kind"], d: Directive, message: string, to?: string, explains?: string[][]): Finding {
    const f: Finding = { kind, file: d.file, line: d.line, message };
    if (to !== undefined) f.to = to;
    if (explains !== undefined) f.explains = explains;
    this.findings.push(f);
    return f;
  }

  converted(d: Directive, to: string, note = ""): Finding {
    return this.add("converted", d, `${text(d)}${note ? ` (${note})` : ""}`, to);
  }

  /** Left out, and the user must rewrite it by hand: the report names it and migrate exits 1. */
  mustRewrite(d: Directive, message: string): Finding {
    const f = this.add("lost", d, `${message}; rewrite it by hand`);
    f.blocking = true;
    return f;
  }

  /** Findings made elsewhere (the Consul-pattern module, the defect detector). */
  push(...fs: Finding[]): void {
    this.findings.push(...fs);
  }
}
