/**
 * Glob expansion for `include`, as nginx does it through glob(3): `*`, `?` and
 * `[...]` (with `!` or `^` to negate) inside one path segment, wildcards never
 * matching a leading dot, matches sorted bytewise (glob(3) under the C locale
 * nginx runs in). Directory listing goes through the Loader, so this is pure.
 */
import path from "node:path";
import type { Loader } from "./types.js";

/** nginx's test for "this include is a pattern" (strpbrk(name, "*?[")). */
export function hasMagic(pattern: string): boolean {
  return /[*?[]/.test(pattern);
}

/** A matcher for one path segment. */
export function segmentMatcher(segment: string): (name: string) => boolean {
  let re = "^";
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else if (c === "[") {
      const close = segment.indexOf("]", i + 2);
      if (close < 0) {
        re += "\\[";
        continue;
      }
      let body = segment.slice(i + 1, close);
      let negate = false;
      if (body.startsWith("!") || body.startsWith("^")) {
        negate = true;
        body = body.slice(1);
      }
      re += `[${negate ? "^" : ""}${body.replace(/[\\\]^]/g, (m) => "\\" + m)}]`;
      i = close;
    } else if (c === "\\" && i + 1 < segment.length) {
      re += escapeRe(segment[++i]!);
    } else {
      re += escapeRe(c);
    }
  }
  const rx = new RegExp(re + "$", "s");
  const dotOk = segment.startsWith(".");
  return (name) => (dotOk || !name.startsWith(".")) && rx.test(name);
}

function escapeRe(c: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(c) ? "\\" + c : c;
}

function byteOrder(a: string, b: string): number {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return Buffer.compare(x, y);
}

/** Expand a pattern into the existing paths it names, sorted. */
export function expandGlob(pattern: string, loader: Loader): string[] {
  const absolute = path.isAbsolute(pattern);
  const segments = pattern.split("/").filter((s) => s !== "");
  let bases: string[] = [absolute ? "/" : ""];
  for (let k = 0; k < segments.length; k++) {
    const seg = segments[k]!;
    const next: string[] = [];
    for (const base of bases) {
      if (!hasMagic(seg)) {
        // A literal segment: keep the path; whether it exists is settled by
        // the listing of the last segment (or by reading the file).
        if (k < segments.length - 1) {
          next.push(base === "" ? seg : path.join(base, seg));
          continue;
        }
      }
      let entries: string[];
      try {
        entries = loader.readDir(base === "" ? "." : base);
      } catch {
        continue;
      }
      const match = hasMagic(seg) ? segmentMatcher(seg) : (name: string) => name === seg;
      for (const e of entries.filter(match)) {
        next.push(base === "" ? e : path.join(base, e));
      }
    }
    bases = next;
  }
  // glob(3) sorts the whole list, not each directory level.
  return bases.filter((b) => b !== "" && b !== "/").sort(byteOrder);
}
