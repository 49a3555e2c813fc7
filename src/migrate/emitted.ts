/**
 * The directives gen-lb writes itself, per context, so that migrate never
 * carries a second copy of one nginx allows only once. Derived from the plan
 * of a minimal spec (not a hand-kept list); the directive table of
 * src/nginx/directives/ can replace this function later.
 */
import { planBuild } from "../pipeline/plan.js";
import type { NginxDirective } from "../render/quote.js";
import { specSchema } from "../spec/schema.js";

export type EmitContext = "main" | "events" | "http";

/** Directives nginx takes any number of times at one level: never a duplicate. */
const REPEATABLE = new Set(["lua_shared_dict", "map", "upstream", "server", "include", "log_format", "access_log", "load_module", "env", "proxy_set_header", "add_header", "set"]);

let cache: Map<EmitContext, Map<string, string[]>> | undefined;

/** Name -> the arguments gen-lb gives it, for the once-only directives gen-lb emits in `context`. */
export function emittedDirectives(context: EmitContext): ReadonlyMap<string, string[]> {
  if (!cache) {
    const spec = specSchema.parse({
      target: "nginx",
      consul: { addresses: ["http://127.0.0.1:8500"] },
      upstreams: { app: { service: "app" } },
      servers: [{ listen: 8080, locations: [{ path: "/", upstream: "app" }] }],
    });
    const model = planBuild(spec, { specFile: "spec.yaml", generator: "gen-lb" });
    const collect = (list: readonly NginxDirective[]) => {
      const m = new Map<string, string[]>();
      for (const d of list) if (!REPEATABLE.has(d.name) && !d.block && !d.entry) m.set(d.name, d.args.map(String));
      return m;
    };
    cache = new Map([
      ["main", collect(model.main)],
      ["events", collect(model.events)],
      ["http", collect(model.http)],
    ]);
  }
  return cache.get(context)!;
}
