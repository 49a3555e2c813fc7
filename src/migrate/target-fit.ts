/**
 * What the target's nginx refuses among the directives migrate carried
 * through the escape hatch (a module the binary was built without, such as
 * gzip_static on an OpenResty configured without http_gzip_static_module; a
 * dynamic module's directive with no load_module): left out of the spec and
 * reported as lost with nginx's reason, where it used to leave a spec that
 * does not validate ("please report this gen-lb bug") and no spec at all.
 * Owns the link from a carried spec directive to its finding; touches only
 * the spec's escape-hatch lists and those findings. Pure.
 */
import { validateSpecText } from "../pipeline/validate.js";
import type { Finding } from "./types.js";

/** The words a finding of this module holds: --verify=traffic leaves those directives out of the old config too. */
export const REFUSED_BY_TARGET = ": the target's nginx refuses it";

/** A carried escape-hatch entry -> the "carried" finding of the old directive (set by the converters). */
export const carriedFrom = new WeakMap<object, Finding>();

/** A deep copy of plain spec data that keeps the links of the carried entries (a server split by listen kind is two copies). */
export function cloneCarried<T>(value: T): T {
  if (Array.isArray(value)) return value.map(cloneCarried) as T;
  if (value === null || typeof value !== "object") return value;
  const out = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, cloneCarried(v)])) as T;
  const f = carriedFrom.get(value);
  if (f) carriedFrom.set(out as object, f);
  return out;
}

/** `servers[0].locations[2].directives[1].block[0].name` -> the spec keys up to the carried entry (`...directives[1]`). */
function entryPath(p: string): Array<string | number> | undefined {
  const keys = (p.match(/[^.[\]]+/g) ?? []).map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  const at = keys.findIndex((k, i) => (k === "directives" || k === "events_directives") && typeof keys[i + 1] === "number");
  return at < 0 ? undefined : keys.slice(0, at + 2);
}

export function fitToTarget(spec: Record<string, unknown>, findings: Finding[]): void {
  // Each round removes what the cross checks refused; the schema checks run first, so a second round sees the rest.
  for (let round = 0; round < 3; round++) {
    const v = validateSpecText(JSON.stringify(spec), "the migrated spec");
    if (v.spec) return;
    const refused = new Map<object, { list: unknown[]; why: string; finding: Finding }>();
    for (const e of v.errors) {
      const keys = entryPath(e.path);
      if (!keys) continue;
      let list: unknown = spec;
      for (const k of keys.slice(0, -1)) list = (list as Record<string | number, unknown> | undefined)?.[k];
      const entry = Array.isArray(list) ? list[keys[keys.length - 1] as number] : undefined;
      if (!entry || typeof entry !== "object" || refused.has(entry)) continue;
      const f = carriedFrom.get(entry);
      if (f) refused.set(entry, { list: list as unknown[], why: e.message, finding: f });
    }
    if (refused.size === 0) return;
    for (const [entry, { list, why, finding: f }] of refused) {
      list.splice(list.indexOf(entry), 1);
      if (f.kind === "lost") continue;
      f.kind = "lost";
      f.message = `${f.message}${REFUSED_BY_TARGET} (${why})${f.directive === "location" ? "; rewrite it by hand" : ""}`;
      if (f.directive === "location") f.blocking = true;
      delete f.to;
    }
  }
}
