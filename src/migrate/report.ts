/** The migration report, for people (text) and for tools (JSON). */
import { DEFECT_TITLES, type Finding } from "./types.js";

const SECTIONS: Array<[Finding["kind"], string]> = [
  ["todo", "To do"],
  ["lost", "Not carried (port these by hand)"],
  ["changed", "Changed on purpose (gen-lb's own settings, which the spec cannot keep as they were)"],
  ["suggestion", "Suggestions (secure defaults you can adopt; the spec as written keeps the old behaviour)"],
  ["lint", "Lint findings in the old config (gen-lb lint's checks)"],
  ["dropped", "Dropped (gen-lb generates the replacement)"],
  ["converted", "Converted to spec keys"],
  ["carried", "Carried through the directives escape hatch (arguments unchanged)"],
];

const where = (f: Finding) => `${f.file}:${f.line}${f.column ? `:${f.column}` : ""}`;

export function formatReport(findings: readonly Finding[], source: string, out: string): string {
  const lines: string[] = [`gen-lb migrate: ${source} -> ${out}`, ""];
  const defects = findings.filter((f) => f.kind === "defect");
  const numbers = [...new Set(defects.map((d) => d.defect!))].sort((a, b) => a - b);
  lines.push(`Defects found in the old setup (${numbers.length} of the 11 known; gen-lb avoids each by construction)`);
  if (numbers.length === 0) lines.push("  none");
  for (const n of numbers) {
    lines.push(`  [${n}] ${DEFECT_TITLES[n]}`);
    for (const d of defects.filter((x) => x.defect === n)) lines.push(`      ${where(d)}: ${d.message}`);
  }
  lines.push("");
  for (const [kind, title] of SECTIONS) {
    const list = findings.filter((f) => f.kind === kind);
    lines.push(`${title} (${list.length})`);
    for (const f of list) lines.push(`  ${f.blocking ? "LEFT OUT " : ""}${where(f)}: ${f.message}${f.to && kind !== "todo" ? ` -> ${f.to}` : ""}`);
    lines.push("");
  }
  return lines.join("\n");
}

export function reportJson(findings: readonly Finding[], source: string, out: string) {
  const defects = [...new Set(findings.filter((f) => f.kind === "defect").map((f) => f.defect!))].sort((a, b) => a - b);
  return { source, spec: out, defects, findings };
}
