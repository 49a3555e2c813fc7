/**
 * Which parts of the old setup are the Consul + Lua discovery pattern that
 * gen-lb's runtime replaces: the upstreams balanced in Lua, the modules that
 * talk to Consul, the init blocks using them, the shared dicts only they use,
 * and the health checker's spawn_checker{} calls. Read once, before any
 * converter runs (proxy_pass decisions depend on it); read-only after. Pure.
 */
import type { Directive } from "../nginx/types.js";
import { walk } from "./flatten.js";
import { checkerCalls, consulFacts, type CheckerCall, type LuaSource } from "./lua.js";

export interface Pattern {
  checkers: readonly CheckerCall[];
  /** Upstreams whose balancer is Lua (the Consul + Lua pattern), by name. */
  luaUpstreams: ReadonlyMap<string, Directive>;
  /** Lua directives that belong to the discovery pattern (replaced by gen-lb's runtime). */
  lua: ReadonlySet<Directive>;
  /** Shared dicts only the pattern's code uses. */
  dicts: ReadonlySet<string>;
  /** The pattern's Lua: modules that talk to Consul, the init blocks using them, the balancers. */
  sources: ReadonlySet<LuaSource>;
}

export function recognisePattern(tree: readonly Directive[], sources: readonly LuaSource[]): Pattern {
  const checkers = checkerCalls(sources);
  const lua = new Set<Directive>();
  const dicts = new Set<string>();
  const patternSources = new Set<LuaSource>();
  const hasConsul = (s: LuaSource) => consulFacts([s]).length > 0 || checkers.some((c) => c.source === s);
  const patternModules = new Set(sources.filter((s) => s.module !== undefined && hasConsul(s)).map((s) => s.module!));
  const requiresPattern = (s: LuaSource) => s.tokens.some((t) => t.kind === "string" && patternModules.has(t.value));
  for (const s of sources) {
    if (s.module !== undefined) {
      if (patternModules.has(s.module)) patternSources.add(s);
      continue;
    }
    const d = s.directive;
    if (d === undefined) continue;
    if (/^init(_worker)?_by_lua/.test(d.directive) && (hasConsul(s) || requiresPattern(s))) {
      lua.add(d);
      patternSources.add(s);
    }
    if (d.directive.startsWith("balancer_by_lua")) patternSources.add(s);
  }
  // Shared dicts the pattern's own code uses (ngx.shared.NAME, ngx.shared["NAME"]) and the checker's shm.
  for (const s of patternSources) {
    const t = s.tokens;
    for (let i = 2; i + 2 < t.length; i++) {
      if (t[i]!.value === "shared" && t[i - 1]?.value === "." && t[i - 2]?.value === "ngx") {
        const n = t[i + 1]?.value === "." ? t[i + 2] : t[i + 1]?.value === "[" ? t[i + 2] : undefined;
        if (n) dicts.add(n.value);
      }
    }
  }
  for (const c of checkers) if (typeof c.options.shm === "string") dicts.add(c.options.shm);

  const luaUpstreams = new Map<string, Directive>();
  walk(tree, (d, parents) => {
    if (d.directive === "upstream" && parents.at(-1)?.directive === "http" && d.block?.some((c) => c.directive.startsWith("balancer_by_lua"))) {
      luaUpstreams.set(d.args[0] ?? "", d);
    }
  });
  return { checkers, luaUpstreams, lua, dicts, sources: patternSources };
}
