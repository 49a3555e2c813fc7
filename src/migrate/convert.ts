/**
 * The old config tree -> a gen-lb spec (typed as the spec schema's input),
 * and a finding for every directive: converted to a typed key, carried
 * through the `directives` escape hatch (arguments exactly as they were),
 * dropped because gen-lb generates the replacement, or lost because the spec
 * cannot say it. Pure: the tree and the Lua sources come in, data goes out.
 *
 * One converter per context, sharing the context (src/migrate/context.ts):
 * convert-main (main, events) -> convert-http -> convert-upstream,
 * convert-server -> convert-location; then convert-consul (retries,
 * checkers, spec.consul), the status server and the defect detector.
 */
import { pos } from "./args.js";
import { createContext, type ConvertContext, type ConvertInput } from "./context.js";
import { convertConsul, finishRetries, staticCheckers } from "./convert-consul.js";
import { convertMain } from "./convert-main.js";
import { detectDefects } from "./defects.js";
import type { ServerInput, SpecInput, StatusInput } from "./spec-input.js";
import type { Finding } from "./types.js";

export type { ConvertInput } from "./context.js";

export interface ConvertResult {
  spec: SpecInput;
  findings: Finding[];
}

export function convert(input: ConvertInput): ConvertResult {
  const ctx = createContext(input);
  const { ledger } = ctx;
  const { target, nginx, servers, main } = convertMain(ctx);

  const spec: SpecInput = { target };
  finishRetries(ctx);
  staticCheckers(ctx);
  const consul = convertConsul(ctx, nginx, main);
  if (consul) spec.consul = consul;
  spec.nginx = nginx;
  spec.upstreams = ctx.upstreams;
  spec.servers = servers;
  spec.status = convertStatus(ctx, servers);

  ledger.push(
    ...detectDefects({
      tree: input.tree,
      sources: input.sources,
      checkers: ctx.pattern.checkers,
      luaUpstreams: ctx.pattern.luaUpstreams,
      triesByUpstream: ctx.facts.tries,
    }),
  );
  if (ledger.comments > 0) {
    ledger.push({ kind: "lost", file: input.tree[0]?.file ?? "", line: 1, message: `${ledger.comments} comment${ledger.comments === 1 ? "" : "s"} (the spec has no place for nginx comments; the YAML has its own)` });
  }
  return { spec, findings: ledger.findings };
}

/** gen-lb's status server on a free loopback port; an old status page moves there. */
function convertStatus(ctx: ConvertContext, servers: readonly ServerInput[]): StatusInput {
  const used = new Set<string>();
  for (const s of servers) {
    for (const l of [s.listen].flat()) used.add(typeof l === "number" ? `*:${l}` : String(l));
  }
  let port = 8081;
  while (used.has(`127.0.0.1:${port}`) || used.has(`*:${port}`)) port++;
  const status: StatusInput = { listen: `127.0.0.1:${port}` };
  const old = ctx.statusPages[0];
  if (old) {
    status.enabled = true;
    if (/^\/[A-Za-z0-9_./-]*$/.test(old.path)) status.path = old.path;
    if (old.allow.length) status.allow = old.allow;
    ctx.ledger.add("todo", old.d, `the status page moves from ${pos(old.d)} to its own server: http://127.0.0.1:${port}${status.path ?? "/status"} (JSON; ?format=prometheus)`, "status");
  } else {
    status.enabled = false;
  }
  return status;
}
