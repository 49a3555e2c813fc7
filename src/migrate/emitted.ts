/**
 * The directives gen-lb writes itself, per context, so that migrate never
 * carries a second copy of one nginx allows only once. What gen-lb writes
 * comes from the plan of a minimal spec; whether nginx takes a directive
 * more than once comes from the directive table generated from nginx's and
 * OpenResty's sources (src/nginx/directives/).
 */
import { loadDirectiveTable } from "../nginx/directives.js";
import { planBuild } from "../pipeline/plan.js";
import type { NginxDirective } from "../render/quote.js";
import { specSchema } from "../spec/schema.js";

export type EmitContext = "main" | "events" | "http";

/** Does nginx refuse a second `name` in one `context` block ("is duplicate")? OpenResty's table holds the Lua module's directives too. */
function onceOnly(name: string, context: EmitContext): boolean {
  const defs = loadDirectiveTable("openresty").directives[name] ?? loadDirectiveTable("nginx").directives[name] ?? [];
  return defs.some((d) => d.contexts.includes(context) && !d.repeatable);
}

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
    const collect = (list: readonly NginxDirective[], context: EmitContext) => {
      const m = new Map<string, string[]>();
      for (const d of list) if (!d.block && !d.entry && onceOnly(d.name, context)) m.set(d.name, d.args.map(String));
      return m;
    };
    cache = new Map([
      ["main", collect(model.main, "main")],
      ["events", collect(model.events, "events")],
      ["http", collect(model.http, "http")],
    ]);
  }
  return cache.get(context)!;
}
