/**
 * Once every upstream and location is read: each upstream's retries (from
 * what its locations said, nginx's defaults otherwise), the old checker's
 * options (an active check on Consul upstreams; passive checks and a to-do
 * on static ones), and spec.consul from the Consul-pattern module (address,
 * datacenter, token, each Lua upstream's service).
 */
import { msDuration } from "./args.js";
import type { ConvertContext } from "./context.js";
import { readConsulPattern } from "./consul.js";
import { consulFacts, parseHttpReq, type CheckerCall, type LuaValue } from "./lua.js";
import type { ActiveCheckInput, ConsulInput, HatchDirective, NginxInput, UpstreamInput } from "./spec-input.js";

/** Retries: explicit tries win; a static upstream retried every server; a Lua one never retried (defect 8). */
export function finishRetries(ctx: ConvertContext): void {
  const { facts } = ctx;
  for (const [name, up] of Object.entries(ctx.upstreams)) {
    const tries = facts.tries.get(name);
    const staticCount = facts.staticCount.get(name);
    // nginx's own default is "proxy_next_upstream error timeout": no status retries.
    if (staticCount !== undefined && up.retry_statuses === undefined) up.retry_statuses = [];
    const kinds = facts.retryKinds.get(name);
    if (kinds && kinds.size > 1) {
      const d = ctx.pattern.luaUpstreams.get(name) ?? ctx.input.tree[0]!;
      ctx.ledger.add("todo", d, `upstream ${name}: its locations retry differently (${[...kinds].join(" | ")}); gen-lb has one retry policy per upstream, now ${up.retries === 0 ? "off" : "on"} for all of them; split the upstream if that matters`, `upstreams.${name}.retries`);
    }
    if (up.retries === undefined) {
      if (tries !== undefined) up.retries = Math.min(10, tries - 1);
      else if (staticCount !== undefined) up.retries = Math.min(10, Math.max(0, staticCount - 1));
      else up.retries = 1;
    }
  }
}

/**
 * A checker on a static upstream: gen-lb runs no active check on nginx's
 * own upstream {} (the spec refuses healthcheck there), so the nearest
 * nginx has, passive checks, are set from the checker and the rest is a to-do.
 */
export function staticCheckers(ctx: ConvertContext): void {
  for (const [name, up] of Object.entries(ctx.upstreams)) {
    if (up.servers === undefined) continue;
    const checker = ctx.pattern.checkers.find((c) => c.options.upstream === name);
    if (!checker) continue;
    const o = checker.options;
    const fall = typeof o.fall === "number" && o.fall >= 1 ? o.fall : 2;
    const interval = typeof o.interval === "number" && o.interval > 0 ? o.interval : 1000;
    const failTimeout = msDuration(Math.max(1000, Math.ceil((fall * interval) / 1000) * 1000));
    let set = 0;
    up.servers = up.servers.map((p) => {
      const peer = typeof p === "string" ? { address: p } : { ...p };
      if (peer.max_fails !== undefined || peer.fail_timeout !== undefined) return p;
      set++;
      return { ...peer, max_fails: fall, fail_timeout: failTimeout };
    });
    const active = activeCheck(o);
    const what = `${active.type ?? "http"} ${active.path ? `GET ${active.path}${active.host ? ` (Host ${active.host})` : ""} ` : ""}every ${String(active.interval ?? "1s")}, down after ${fall} failure${fall === 1 ? "" : "s"}${typeof o.rise === "number" ? `, up after ${o.rise} success${o.rise === 1 ? "" : "es"}` : ""}${Array.isArray(active.valid_statuses) ? `, valid ${active.valid_statuses.join(" ")}` : ""}`;
    ctx.ledger.push({
      kind: "todo",
      file: checker.source.file,
      line: checker.token.line,
      column: checker.token.column,
      message: `upstream ${name}: spawn_checker{} actively checked its static servers (${what}); gen-lb runs active checks only on Consul upstreams, so it is not carried. ${set ? `Passive checks set instead on ${set} server${set === 1 ? "" : "s"}: max_fails=${fall} fail_timeout=${failTimeout} (nginx takes a server out after ${fall} failed request${fall === 1 ? "" : "s"} within ${failTimeout})` : "Its servers keep their own max_fails/fail_timeout (passive checks)"}. To keep an active check, register the servers as a Consul service and make upstreams.${name} a Consul upstream (service: NAME, healthcheck.active)`,
      to: `upstreams.${name}.servers`,
    });
  }
}

/**
 * spec.consul, when anything talks to Consul (the Lua, a Lua balancer, a
 * consul-template upstream), and each Lua upstream's service and checker.
 * `main` is the main-level escape hatch: the token's `env` leaves it.
 */
export function convertConsul(ctx: ConvertContext, nginx: NginxInput, main: HatchDirective[]): ConsulInput | undefined {
  const { ledger, pattern: lua, upstreams } = ctx;
  const luaUpstreams = lua.luaUpstreams;
  const needsConsul = Object.values(upstreams).some((u) => u.service !== undefined);
  if (consulFacts(ctx.input.sources).length === 0 && luaUpstreams.size === 0 && !needsConsul) return undefined;
  const pattern = readConsulPattern({ sources: ctx.input.sources, patternSources: lua.sources, luaUpstreams, tree: ctx.input.tree });
  ledger.push(...pattern.findings);
  const consul: ConsulInput = {};
  if (pattern.addresses.length) consul.addresses = pattern.addresses;
  if (pattern.datacenter) consul.datacenter = pattern.datacenter;
  if (pattern.token_env) {
    consul.token_env = pattern.token_env;
    dropTokenEnv(ctx, nginx, main, pattern.token_env);
  }
  if (!pattern.addresses.length && luaUpstreams.size === 0) {
    // consul-template output: the address lives in consul-template's own config, not here.
    const first = Object.entries(upstreams).find(([, u]) => u.service !== undefined);
    const d = first ? ctx.facts.nodes.get(first[0]) : undefined;
    if (d) ledger.add("todo", d, "the Consul address is not in the nginx config (consul-template reads it from its own config or CONSUL_HTTP_ADDR); set consul.addresses, and consul.token_env if it uses a token", "consul.addresses");
  }

  for (const [name] of luaUpstreams) {
    const up = upstreams[name];
    if (!up) continue;
    const svc = pattern.services.get(name);
    const balance = pattern.balances.get(name);
    if (balance) {
      up.balance = balance.balance;
      if (balance.hash_key !== undefined) up.hash_key = balance.hash_key;
    }
    if (svc) {
      up.service = svc.service;
      if (svc.tags.length) up.tags = svc.tags;
      if (svc.datacenter && svc.datacenter !== pattern.datacenter) up.datacenter = svc.datacenter;
    }
    const checker = lua.checkers.find((c) => c.options.upstream === name) ?? (lua.checkers.length === 1 ? lua.checkers[0] : undefined);
    if (checker) consulChecker(ctx, name, up, checker);
  }
  return Object.keys(consul).length || needsConsul || luaUpstreams.size ? consul : undefined;
}

function consulChecker(ctx: ConvertContext, name: string, up: UpstreamInput, checker: CheckerCall): void {
  const active = activeCheck(checker.options);
  up.healthcheck = { ...(up.healthcheck ?? {}), active };
  ctx.ledger.push({ kind: "converted", file: checker.source.file, line: checker.token.line, column: checker.token.column, message: `spawn_checker{} options as an active check of the discovered peers`, to: `upstreams.${name}.healthcheck.active` });
}

/** `env NAME;` for the token: gen-lb writes it itself for consul.token_env. */
function dropTokenEnv(ctx: ConvertContext, nginx: NginxInput, main: HatchDirective[], name: string): void {
  if (!nginx.directives) return;
  const i = main.findIndex((d) => d.name === "env" && d.args.length === 1 && d.args[0] === name);
  if (i < 0) return;
  main.splice(i, 1);
  if (main.length === 0) delete nginx.directives;
  const f = ctx.ledger.findings.find((x) => x.kind === "carried" && x.directive === "env" && x.message === `env ${name}`);
  if (f) {
    f.kind = "dropped";
    f.message = `env ${name}: gen-lb declares it itself for consul.token_env`;
    delete f.to;
  }
}

/** spawn_checker{} options as the spec's active check. */
function activeCheck(o: Record<string, LuaValue>): ActiveCheckInput {
  const a: ActiveCheckInput = {};
  if (o.type === "http" || o.type === "https" || o.type === "tcp") a.type = o.type;
  if (typeof o.http_req === "string") {
    const req = parseHttpReq(o.http_req);
    if (req) {
      a.path = req.path;
      if (req.host) a.host = req.host;
    }
  }
  if (typeof o.interval === "number") a.interval = msDuration(o.interval);
  if (typeof o.timeout === "number") a.timeout = msDuration(o.timeout);
  if (typeof o.fall === "number") a.fall = o.fall;
  if (typeof o.rise === "number") a.rise = o.rise;
  if (typeof o.concurrency === "number") a.concurrency = o.concurrency;
  if (Array.isArray(o.valid_statuses)) a.valid_statuses = o.valid_statuses.filter((x) => typeof x === "number");
  return a;
}
