/** The check report in words (the --json form is the CheckReport itself). Pure. */
import type { CheckReport } from "./run.js";

export function formatCheckSteps(report: CheckReport): string[] {
  const width = Math.max(...report.steps.map((s) => s.name.length));
  const lines: string[] = [];
  for (const s of report.steps) {
    lines.push(`${s.ok ? "ok  " : "FAIL"}  ${s.name.padEnd(width)}  ${String(s.ms).padStart(5)} ms`);
    for (const m of s.messages) lines.push(`        ${m}`);
  }
  return lines;
}

export function failedStepNames(report: CheckReport): string {
  return report.steps.filter((s) => !s.ok && !s.messages[0]?.startsWith("not run:")).map((s) => s.name).join(", ");
}
