/**
 * Unified diffs of text, for `build --check`, `install --dry-run` and `diff`.
 * Myers' O(ND) algorithm, so a one-line change in a 20,000-line config is
 * cheap; output in the familiar `--- a` / `+++ b` / `@@` shape.
 */

type Op = { kind: " " | "-" | "+"; line: string };

function myers(a: string[], b: string[]): Op[] {
  const n = a.length;
  const m = b.length;
  const max = n + m;
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  outer: for (let dist = 0; dist <= max; dist++) {
    trace.push(v.slice());
    for (let k = -dist; k <= dist; k += 2) {
      let x = k === -dist || (k !== dist && v[offset + k - 1]! < v[offset + k + 1]!) ? v[offset + k + 1]! : v[offset + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) break outer;
    }
  }
  // Walk the trace backwards to recover the edit script.
  const ops: Op[] = [];
  let x = n;
  let y = m;
  for (let dist = trace.length - 1; dist >= 0; dist--) {
    const vd = trace[dist]!;
    const k = x - y;
    const prevK = k === -dist || (k !== dist && vd[offset + k - 1]! < vd[offset + k + 1]!) ? k + 1 : k - 1;
    const prevX = vd[offset + prevK]!;
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      x--;
      y--;
      ops.push({ kind: " ", line: a[x]! });
    }
    if (dist > 0) {
      if (x === prevX) ops.push({ kind: "+", line: b[--y]! });
      else ops.push({ kind: "-", line: a[--x]! });
    }
  }
  return ops.reverse();
}

function splitLines(text: string): string[] {
  if (text === "") return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** A unified diff with 3 lines of context; "" when the texts are equal. */
export function unifiedDiff(before: string, after: string, fromName: string, toName: string, context = 3): string {
  if (before === after) return "";
  const a = splitLines(before);
  const b = splitLines(after);
  const ops = myers(a, b);
  const out = [`--- ${fromName}`, `+++ ${toName}`];
  let i = 0;
  let aLine = 1;
  let bLine = 1;
  while (i < ops.length) {
    if (ops[i]!.kind === " ") {
      i++;
      aLine++;
      bLine++;
      continue;
    }
    // A hunk: back up `context` lines, run until `2*context` unchanged lines follow.
    const start = Math.max(0, i - context);
    let end = i;
    let quiet = 0;
    while (end < ops.length && quiet <= 2 * context) {
      quiet = ops[end]!.kind === " " ? quiet + 1 : 0;
      end++;
    }
    end = Math.min(ops.length, end - Math.max(0, quiet - context));
    const back = i - start;
    const hunk = ops.slice(start, end);
    const aCount = hunk.filter((o) => o.kind !== "+").length;
    const bCount = hunk.filter((o) => o.kind !== "-").length;
    const aStart = aLine - back;
    const bStart = bLine - back;
    out.push(`@@ -${aCount === 0 ? aStart - 1 : aStart},${aCount} +${bCount === 0 ? bStart - 1 : bStart},${bCount} @@`);
    for (const op of hunk) out.push(op.kind + op.line);
    for (let j = i; j < end; j++) {
      if (ops[j]!.kind !== "+") aLine++;
      if (ops[j]!.kind !== "-") bLine++;
    }
    i = end;
  }
  return out.join("\n") + "\n";
}

/**
 * The order files are shown in diffs: conf/nginx.conf first (what a reviewer
 * reads), then the rest in their given order.
 */
export function inDiffOrder<T extends { path: string }>(files: readonly T[]): T[] {
  return [...files.filter((f) => f.path === "conf/nginx.conf"), ...files.filter((f) => f.path !== "conf/nginx.conf")];
}
