/**
 * Durations and sizes as nginx and Consul write them ("30s", "1m30s",
 * "500ms"; "10m", "64k"). The spec keeps the user's text; the plan step turns
 * it into numbers for Lua and canonical text for nginx.
 */

const DURATION_UNITS: Record<string, number> = {
  ms: 0.001,
  s: 1,
  m: 60,
  h: 3600,
  d: 86400,
};

const DURATION_RE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const DURATION_PART_RE = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

export function isDuration(text: string): boolean {
  return DURATION_RE.test(text);
}

/** "1m30s" -> 90, "250ms" -> 0.25. Throws on text isDuration() rejects. */
export function parseDuration(text: string): number {
  if (!isDuration(text)) throw new Error(`not a duration: ${JSON.stringify(text)}`);
  let seconds = 0;
  for (const [, amount, unit] of text.matchAll(DURATION_PART_RE)) {
    seconds += Number(amount) * DURATION_UNITS[unit!]!;
  }
  return Math.round(seconds * 1000) / 1000;
}

/** Seconds -> the shortest nginx time literal ("2s", "500ms"). */
export function nginxDuration(seconds: number): string {
  const ms = Math.round(seconds * 1000);
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

const SIZE_RE = /^(\d+)([kKmMgG]?)$/;

export function isSize(text: string): boolean {
  return SIZE_RE.test(text);
}

/** "10m" -> 10485760 bytes. */
export function parseSize(text: string): number {
  const m = SIZE_RE.exec(text);
  if (!m) throw new Error(`not a size: ${JSON.stringify(text)}`);
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase()]!;
  return Number(m[1]) * mult;
}
