/**
 * How the converters read an old directive's arguments and name it in the
 * report: the one copy of the "unsafe for the spec" test, nginx's on/off,
 * durations and sizes as the spec takes them, and a directive's short text.
 * Pure.
 */
import type { Directive } from "../nginx/types.js";
import { isDuration, isSize } from "../spec/units.js";

/** What the spec rejects in free text: control characters, "${" and "]]". */
export const UNSAFE_RE = /[\u0000-\u001f\u007f]|\$\{|\]\]/;
/** The spec's names (upstreams, log formats): letters, digits, _ . - */
export const SPEC_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** A directive as the report names it (a Lua block as {...}). */
export const text = (d: Directive): string => [d.directive, ...d.args.map((a) => (a.includes("\n") ? "{...}" : a))].join(" ");
export const pos = (d: Directive): string => `${d.file}:${d.line}`;

export function flag(v: string | undefined): boolean | undefined {
  return v === "on" ? true : v === "off" ? false : undefined;
}
export function duration(v: string | undefined): string | number | undefined {
  if (v === undefined) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  return isDuration(v) ? v : undefined;
}
export function size(v: string | undefined): string | number | undefined {
  if (v === undefined) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  return isSize(v) ? v : undefined;
}
/** A size as nginx reads it (1024, 1k, 2m, 1g) in bytes. */
export function bytes(v: string | undefined): number | undefined {
  const m = /^(\d+)([kKmMgG]?)$/.exec(v ?? "");
  if (!m) return undefined;
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g"];
  return Number(m[1]) * unit;
}
export function msDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
