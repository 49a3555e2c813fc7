/**
 * What nginx would refuse, found without nginx: the whole render model (the
 * spec's escape-hatch directives and the ones gen-lb emits itself) is checked
 * against the target's directive table, the way ngx_conf_handler checks it:
 * unknown directive, not allowed in this context, wrong number of arguments,
 * a block where none is taken (or none where one is), a directive that
 * refuses a repeat given twice in one block, a dynamic module's directive
 * without its load_module. A directive of a module nginx's sources have but
 * the table's reference build leaves out (its `needs`: the configure flag)
 * is no refusal: without a binary, build warns once per flag; with one,
 * binary-check.ts asks its -V (through `visit`).
 */
import path from "node:path";
import { planBuild, type RenderModel } from "./plan.js";
import type { NginxDirective } from "../render/quote.js";
import {
  argCountFits,
  describeArgs,
  loadDirectiveTable,
  type DirectiveContext,
  type DirectiveDefinition,
  type DirectiveTable,
} from "../nginx/directives.js";
import type { Directive, Spec } from "../spec/schema.js";

export type PathDiag = (path: readonly PropertyKey[], message: string) => void;

/** A directive the table accepts where it is: the spec key it comes from, and the definitions that fit it. */
export interface CheckedDirective {
  directive: NginxDirective;
  at: readonly PropertyKey[];
  /** true when `at` is the spec's own escape-hatch entry (nginx.directives...), false for what gen-lb emits */
  fromSpec: boolean;
  fits: readonly DirectiveDefinition[];
}

export interface CheckOptions {
  table?: DirectiveTable;
  /** called once for every directive the table has in its context with that many arguments (and block or none) */
  visit?: (c: CheckedDirective) => void;
}

/** gen-lb's own directives that come straight from one spec key, so a refusal can name it. */
const OWN_SOURCES: Record<string, readonly PropertyKey[]> = {
  "main user": ["nginx", "user"],
  "main worker_processes": ["nginx", "worker_processes"],
  "main worker_rlimit_nofile": ["nginx", "worker_rlimit_nofile"],
  "main error_log": ["nginx", "error_log"],
  "main pid": ["nginx", "pid"],
  "events worker_connections": ["nginx", "worker_connections"],
  "events multi_accept": ["nginx", "multi_accept"],
};

const CONTEXT_WORDS: Record<DirectiveContext, string> = {
  main: "the main context",
  events: "events {}",
  http: "http {}",
  server: "server {}",
  location: "location {}",
  upstream: "upstream {}",
  server_if: "if {} in a server",
  location_if: "if {} in a location",
  limit_except: "limit_except {}",
  mail: "mail {}",
  mail_server: "server {} in mail",
  stream: "stream {}",
  stream_server: "server {} in stream",
  stream_upstream: "upstream {} in stream",
};

/**
 * Handlers whose "is duplicate" refuses only some repeats (the generated
 * table marks them as refusing every one, see scripts/gen-directives.ts):
 * when a later occurrence `b` is refused after an earlier `a` in one block.
 * limit_req and limit_conn refuse the same zone twice; proxy_redirect, the
 * proxy_cookie_* ones and mirror refuse `off` beside anything else.
 */
const zoneArg = (args: readonly (string | number | boolean)[]) => String(args.find((a) => String(a).startsWith("zone=")) ?? args[0]).replace(/^zone=/, "");
const offBeside = (a: readonly (string | number | boolean)[], b: readonly (string | number | boolean)[]) => String(a[0]) === "off" || String(b[0]) === "off" || a[0] === false || b[0] === false;
const PARTIAL_REPEAT: Record<string, (a: readonly (string | number | boolean)[], b: readonly (string | number | boolean)[]) => boolean> = {
  limit_req: (a, b) => zoneArg(a) === zoneArg(b),
  limit_conn: (a, b) => String(a[0]) === String(b[0]),
  proxy_redirect: offBeside,
  proxy_cookie_domain: offBeside,
  proxy_cookie_path: offBeside,
  mirror: (a, b) => offBeside(a, b) || String(a[0]) === String(b[0]),
};

/** "servers[0].locations[1]" -> ["servers", 0, "locations", 1] */
function parseSpecPath(p: string): PropertyKey[] {
  return (p.match(/[^.[\]]+/g) ?? []).map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function specDirectiveSources(spec: Spec): Map<object, PropertyKey[]> {
  const map = new Map<object, PropertyKey[]>();
  const add = (list: readonly Directive[], at: PropertyKey[]) =>
    list.forEach((d, i) => {
      map.set(d, [...at, i]);
      if (d.block) add(d.block, [...at, i, "block"]);
    });
  add(spec.nginx.directives, ["nginx", "directives"]);
  add(spec.nginx.events_directives, ["nginx", "events_directives"]);
  add(spec.nginx.http.directives, ["nginx", "http", "directives"]);
  spec.servers.forEach((s, si) => {
    add(s.directives, ["servers", si, "directives"]);
    s.locations.forEach((l, li) => add(l.directives, ["servers", si, "locations", li, "directives"]));
  });
  return map;
}

/** Checks `model` (planned from `spec`) against `spec.target`'s table; reports through `report`. */
export function checkDirectives(spec: Spec, model: RenderModel, report: PathDiag, opts: CheckOptions = {}): void {
  const t = opts.table ?? loadDirectiveTable(spec.target);
  const fromSpec = specDirectiveSources(spec);
  const loaded = new Set(model.modules.map((m) => path.basename(m)));
  const label = `${t.target} ${t.version}`;

  const walk = (list: readonly NginxDirective[], ctx: DirectiveContext, owner: readonly PropertyKey[]) => {
    for (const d of list) {
      if (d.name === "load_module" && ctx === "main" && d.args[0] !== undefined) loaded.add(path.basename(String(d.args[0])));
    }
    const seen = new Map<string, NginxDirective>();
    for (const d of list) {
      const specPath = fromSpec.get(d);
      // gen-lb's `http2 on;` comes from the server's http2 key.
      const own = OWN_SOURCES[`${ctx} ${d.name}`] ?? (ctx === "server" && d.name === "http2" && owner[0] === "servers" ? [...owner, "http2"] : undefined);
      const at = specPath ?? own ?? owner;
      const where = specPath ? "" : own ? (d.name === "http2" ? ' (http2: true renders "http2 on;" from nginx 1.25.1)' : "") : ` (gen-lb emits "${d.name}" here)`;
      const defs = t.directives[d.name];
      if (!defs) {
        report(specPath ? [...specPath, "name"] : at, `unknown directive "${d.name}": ${label} has no such directive${where}`);
        continue;
      }
      const here = defs.filter((def) => def.contexts.includes(ctx));
      if (here.length === 0) {
        const allowed = [...new Set(defs.flatMap((def) => def.contexts))].map((c) => CONTEXT_WORDS[c]).join(", ");
        report(specPath ? [...specPath, "name"] : at, `"${d.name}" is not allowed in ${CONTEXT_WORDS[ctx]}; nginx allows it in ${allowed}${where}`);
        continue;
      }
      const hasBlock = d.block !== undefined || d.lua !== undefined;
      const n = d.args.length;
      // what the reference build has first: its definition is the one judged
      const fits = [...here.filter((def) => def.needs === undefined), ...here.filter((def) => def.needs !== undefined)].filter((def) => def.block === hasBlock && argCountFits(def.args, n));
      if (fits.length === 0) {
        const def = here[0]!;
        const argPath = specPath ? [...specPath, "args"] : at;
        if (def.block !== hasBlock) {
          report(specPath ? [...specPath, def.block ? "name" : "block"] : at, def.block ? `"${d.name}" takes a block: give it block: [...]${where}` : `"${d.name}" takes no block: remove its block${where}`);
        } else {
          report(argPath, `invalid number of arguments in "${d.name}": got ${n}, nginx takes ${here.map((x) => describeArgs(x.args)).join(" or ")}${where}`);
        }
        continue;
      }
      const def: DirectiveDefinition = fits[0]!;
      opts.visit?.({ directive: d, at: specPath ? [...specPath, "name"] : at, fromSpec: specPath !== undefined, fits });
      if (def.loadModule && !loaded.has(path.basename(def.loadModule))) {
        report(specPath ? [...specPath, "name"] : at, `"${d.name}" comes from ${def.module}, which ${label} builds as a dynamic module: add load_module ${def.loadModule} (nginx.directives) first`);
      }
      if (fits.every((x) => !x.repeatable)) {
        const partial = PARTIAL_REPEAT[d.name];
        const first = partial ? list.slice(0, list.indexOf(d)).find((e) => e.name === d.name && partial(e.args, d.args)) : seen.get(d.name);
        if (first) {
          // name the spec's copy: gen-lb's own is the one the user cannot remove
          const firstSpec = fromSpec.get(first);
          const blame = specPath ?? firstSpec ?? at;
          const other = specPath && firstSpec ? `also at ${formatKeys(firstSpec)}` : specPath || firstSpec ? "gen-lb already emits it here" : "emitted twice by gen-lb";
          report([...blame, ...(specPath ?? firstSpec ? ["name"] : [])], `"${d.name}" directive is duplicate: nginx refuses it twice in one ${CONTEXT_WORDS[ctx]} (${other}); remove one`);
        } else {
          seen.set(d.name, d);
        }
      }
      if (d.block && def.opens) {
        const inner = def.opens.length === 1 ? def.opens[0]! : (def.opens.find((o) => o.startsWith(ctx)) ?? def.opens[0]!);
        walk(d.block, inner, d.comment !== undefined && /^[a-z_]+[.[]|^[a-z_]+$/.test(d.comment) ? parseSpecPath(d.comment) : specPath ?? at);
      }
    }
  };

  walk(model.main, "main", []);
  walk(model.events, "events", ["nginx"]);
  walk([...model.http, ...model.upstreams, ...model.servers], "http", ["nginx", "http"]);
}

function formatKeys(p: readonly PropertyKey[]): string {
  return p.map((k, i) => (typeof k === "number" ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`)).join("");
}

/** nginx compares upstream names case-insensitively ("duplicate upstream"). */
export function checkUpstreamNames(spec: Spec, report: PathDiag): void {
  const seen = new Map<string, string>();
  for (const name of Object.keys(spec.upstreams)) {
    const key = name.toLowerCase();
    const first = seen.get(key);
    if (first !== undefined) {
      report(["upstreams", name], `duplicate upstream "${name}": nginx compares upstream names case-insensitively and "${first}" is already defined; rename one`);
    } else {
      seen.set(key, name);
    }
  }
}

/**
 * Every check of this module on a spec that passed the schema and
 * cross-checks. `spec.target` must be the target rendered for: validate
 * puts `--target` there before calling this, or `build --target nginx` of an
 * OpenResty spec would be judged by OpenResty's table.
 */
export function nginxSideChecks(spec: Spec, report: PathDiag, warn: PathDiag = () => {}): void {
  checkUpstreamNames(spec, report);
  let model: RenderModel;
  try {
    model = planBuild(spec, { specFile: "spec", generator: "gen-lb" });
  } catch {
    return; // render reports what plan cannot do
  }
  const needed = new Map<string, { at: readonly PropertyKey[]; names: Set<string>; modules: Set<string> }>();
  checkDirectives(spec, model, report, {
    visit: ({ directive, at, fits }) => {
      if (fits.some((f) => f.needs === undefined)) return;
      const flag = fits[0]!.needs!;
      const n = needed.get(flag) ?? needed.set(flag, { at, names: new Set(), modules: new Set() }).get(flag)!;
      n.names.add(directive.name);
      for (const f of fits) n.modules.add(f.module);
    },
  });
  const t = loadDirectiveTable(spec.target);
  for (const [flag, { at, names, modules }] of needed) {
    const list = [...names].map((x) => `"${x}"`).join(", ");
    const packages = t.target === "openresty" ? " (openresty.org's packages are)" : "";
    warn(at, `${list} ${names.size === 1 ? "comes" : "come"} from ${[...modules].join(" and ")}, which ${t.target} has only when built with ${flag}${packages}: \`gen-lb check --bin BINARY\` tells whether your own binary has it`);
  }
}
