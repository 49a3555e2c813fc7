/**
 * The escape hatch: an old directive carried into a spec `directives` list
 * with its arguments exactly as they were, or reported lost with the reason
 * the spec cannot take it. The one place that knows which directives gen-lb
 * writes itself (never carried twice), which paths nginx read against its
 * old prefix (made absolute), and what the target was built without
 * (src/migrate/modules.ts: lost with that reason).
 */
import path from "node:path";
import type { Directive } from "../nginx/types.js";
import { pos, text, UNSAFE_RE } from "./args.js";
import type { ConvertContext } from "./context.js";
import { emittedDirectives, type EmitContext } from "./emitted.js";
import type { HatchDirective } from "./spec-input.js";
import { carriedFrom } from "./target-fit.js";
import type { BinInfo } from "./bin.js";
import { lackingModule } from "./modules.js";

const NAME_RE = /^[a-z_][a-z0-9_]*$/;
const PREFIX_RELATIVE = /^((proxy|fastcgi|uwsgi|scgi)_(cache|temp)_path|client_body_temp_path)$/;

/** The spec paths of the escape hatch at each level. */
export type HatchAt = "nginx.directives" | "nginx.events_directives" | "nginx.http.directives" | "servers[].directives" | "servers[].locations[].directives";

const EMIT_CONTEXT: Partial<Record<HatchAt, EmitContext>> = {
  "nginx.directives": "main",
  "nginx.events_directives": "events",
  "nginx.http.directives": "http",
};

/** The escape hatch's form of `d`, or why it cannot take it (`bin`: the target, when its -V is known). */
export function hatch(d: Directive, bin?: BinInfo): { ok: HatchDirective } | { why: string; at: Directive } {
  if (d.directive.endsWith("_by_lua_block") || /_by_lua(_file)?$/.test(d.directive)) {
    return { why: "Lua code cannot be carried by the spec (it has no place for custom Lua)", at: d };
  }
  if (!NAME_RE.test(d.directive)) return { why: `the escape hatch takes only lower-case directive names, not "${d.directive}"`, at: d };
  const lacking = lackingModule(d.directive, bin);
  if (lacking !== undefined) return { why: lacking, at: d };
  let args = [...d.args];
  if (d.directive === "if" && args.length > 0) {
    // nginx wants the condition in parentheses; they may be glued to the
    // words, but not to an empty one: `")"` would lose the operand
    // (`if ($http_host != "")` became `if ($http_host != )`, which nginx refuses).
    const open = args[0] === "" ? ["(", ""] : [`(${args[0]}`];
    const last = args[args.length - 1]!;
    const close = args.length === 1 ? [] : last === "" ? ["", ")"] : [`${last})`];
    args = args.length === 1 ? (last === "" ? ["(", "", ")"] : [`(${last})`]) : [...open, ...args.slice(1, -1), ...close];
  }
  for (const a of args) {
    if (UNSAFE_RE.test(a)) return { why: `the argument ${JSON.stringify(a)} holds a control character, "\${" or "]]", which the spec rejects`, at: d };
  }
  const out: HatchDirective = { name: d.directive, args };
  if (d.block !== undefined) {
    out.block = [];
    for (const c of d.block) {
      if (c.directive === "#") continue;
      const r = hatch(c, bin);
      if ("why" in r) return r;
      out.block.push(r.ok);
    }
  }
  return { ok: out };
}

/** Carry `d` into `list` (the escape hatch at `to`), or report it lost. */
export function carry(ctx: ConvertContext, d: Directive, list: HatchDirective[], to: HatchAt): void {
  const { ledger } = ctx;
  const context = EMIT_CONTEXT[to];
  const own = context && emittedDirectives(context).get(d.directive);
  if (own) {
    // nginx takes it once per level; gen-lb writes its own, so a carried copy would fail nginx -t.
    const same = own.join(" ") === d.args.join(" ");
    ledger.add(same ? "dropped" : "lost", d, `${text(d)}: gen-lb sets ${d.directive} ${own.join(" ")} itself${same ? " (the same value)" : "; the old value is not kept"}`);
    return;
  }
  if (d.directive.startsWith("log_by_lua") && Object.keys(ctx.upstreams).length > 0) {
    ledger.add("lost", d, `${d.directive}: gen-lb runs its own log_by_lua in every server that proxies to an upstream (balancer accounting, passive health checks), and nginx keeps only one`);
    return;
  }
  const r = hatch(d, ctx.input.bin);
  // nginx reads cache and temp directories against its prefix, which the new prefix is not.
  const prefix = ctx.input.prefix;
  const rel = PREFIX_RELATIVE.test(d.directive) && d.args[0] && !path.isAbsolute(d.args[0]) && !d.args[0].includes("$") && prefix ? path.join(prefix, d.args[0]) : undefined;
  if ("ok" in r && rel !== undefined) {
    r.ok.args[0] = rel;
    list.push(r.ok);
    const f = ledger.add("carried", d, `${text(d)} (relative to the old prefix, made absolute: ${rel})`, to);
    f.newArgs = [rel, ...d.args.slice(1)];
    carriedFrom.set(r.ok, f);
  } else if ("ok" in r) {
    list.push(r.ok);
    carriedFrom.set(r.ok, ledger.add("carried", d, text(d), to));
  } else if (d.directive === "location") {
    // A location left out changes where requests go: the user must rewrite it (migrate exits 1).
    ledger.mustRewrite(d, `${text(d).slice(0, 120)}: left out: ${r.why}${r.at !== d ? ` (at ${pos(r.at)})` : ""}`);
  } else {
    ledger.add("lost", d, `${text(d).slice(0, 120)}: ${r.why}${r.at !== d ? ` (at ${pos(r.at)})` : ""}`);
  }
}

/** Carry each of `ds` (a group that is converted whole or not at all). */
export function carryAll(ctx: ConvertContext, ds: readonly Directive[], list: HatchDirective[], to: HatchAt): void {
  for (const d of ds) carry(ctx, d, list, to);
}
