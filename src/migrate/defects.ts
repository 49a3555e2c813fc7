/**
 * The eleven defects of the hand-built Consul + Lua setup (docs/design.md,
 * "Defects of hand-built setups"), each recognised from the code that carries it and
 * reported with the file:line to look at.
 */
import type { LuaToken } from "./lua-lexer.js";
import type { Directive } from "../nginx/types.js";
import { walk } from "./flatten.js";
import { consulFacts, findRequires, findSeq, type CheckerCall, type LuaSource } from "./lua.js";
import type { Finding } from "./types.js";

export interface DefectInput {
  tree: readonly Directive[];
  sources: readonly LuaSource[];
  checkers: readonly CheckerCall[];
  /** Upstreams whose peers are picked by balancer_by_lua (their servers are placeholders). */
  luaUpstreams: ReadonlyMap<string, Directive>;
  /** proxy_next_upstream_tries per upstream name, from the locations that proxy to it. */
  triesByUpstream: ReadonlyMap<string, number>;
}

function defect(n: number, source: { file: string }, tok: { line: number; column: number }, message: string): Finding {
  return { kind: "defect", defect: n, file: source.file, line: tok.line, column: tok.column, message };
}

const isBalancer = (s: LuaSource) => s.directive?.directive.startsWith("balancer_by_lua") ?? false;

export function detectDefects(input: DefectInput): Finding[] {
  const out: Finding[] = [];
  const { sources } = input;

  // 1. `http.request = {...}`: a table assigned where a call was meant.
  for (const s of sources) {
    for (const i of findSeq(s.tokens, [".", "request", "=", "{"])) {
      const obj = s.tokens[i - 1]?.value ?? "http";
      out.push(
        defect(1, s, s.tokens[i + 1]!, `\`${obj}.request\` is assigned a table instead of being called: the Consul request is never made, so the peer list never holds more than the placeholder`),
      );
    }
  }

  // 2. LuaSocket: blocking I/O in the event loop.
  for (const s of sources) {
    for (const r of findRequires(s)) {
      if (/^socket(\.|$)/.test(r.name)) {
        out.push(defect(2, s, r.token, `require "${r.name}" (LuaSocket) blocks the nginx worker's event loop; only cosockets (ngx.socket.tcp) are safe, and they are not available in init_by_lua`));
      }
    }
  }

  const facts = consulFacts(sources);
  // 3. The catalog endpoint (no health filter) and the node address.
  for (const f of facts) {
    if (f.endpoint === "catalog") {
      out.push({ kind: "defect", defect: 3, file: f.url.file, line: f.url.line, column: f.url.column, message: `"${f.url.value}" is the catalog endpoint: it lists unhealthy instances too (gen-lb uses /v1/health/service/NAME?passing)` });
    }
  }
  for (const s of sources) {
    // `e.Service.Address ~= "" and e.Service.Address or e.Node.Address` (or ServiceAddress) is the right fallback, not this defect.
    const own = findSeq(s.tokens, ["Service", ".", "Address"]).length > 0 || s.tokens.some((t) => t.value === "ServiceAddress");
    const hit = findSeq(s.tokens, [".", "Address"]).find((i) => s.tokens[i - 1]?.value !== "Service");
    if (hit !== undefined && !own && facts.length > 0) {
      out.push(defect(3, s, s.tokens[hit + 1]!, "the node's `Address` is used as the peer address instead of the service's own `ServiceAddress` (gen-lb uses Service.Address, falling back to Node.Address)"));
    }
  }

  // 4. Hard-coded or missing Consul settings.
  for (const f of facts) {
    const parts: string[] = [];
    if (f.address) parts.push(`the Consul address ${f.address.value} is hard-coded (${f.address.file}:${f.address.line})`);
    else parts.push("the Consul address is not configurable");
    if (f.service) parts.push(`the service name "${f.service.value}" is hard-coded (${f.service.file}:${f.service.line})`);
    if (f.datacenter === undefined) parts.push("no datacenter is given");
    if (!f.tokenSeen) parts.push("no ACL token is sent");
    const where = f.address ?? f.url;
    out.push({ kind: "defect", defect: 4, file: where.file, line: where.line, column: where.column, message: parts.join("; ") });
  }

  // 5. Per-worker polling; 9. a timer chain that an error ends.
  const workerAware = sources.some((s) => findSeq(s.tokens, ["ngx", ".", "worker", ".", "id"]).length > 0);
  for (const s of sources) {
    const at = findSeq(s.tokens, ["ngx", ".", "timer", ".", "at"]);
    const every = findSeq(s.tokens, ["ngx", ".", "timer", ".", "every"]);
    const timers = [...at, ...every].sort((a, b) => a - b);
    if (timers.length === 0) continue;
    if (!workerAware) {
      const todo = s.tokens.find((t) => t.kind === "comment" && /todo/i.test(t.value) && /worker/i.test(t.value));
      out.push(
        defect(5, s, s.tokens[timers[0]!]!, `every worker starts its own poller (nothing checks ngx.worker.id()): N workers x M services requests, and up to a full interval of staleness${todo ? `; see the "${todo.value.trim()}" at line ${todo.line}` : ""}`),
      );
    }
    const guarded = findSeq(s.tokens, ["pcall"]).length > 0 || findSeq(s.tokens, ["xpcall"]).length > 0;
    if (at.length > 0 && every.length === 0 && !guarded) {
      const last = s.tokens[at[at.length - 1]!]!;
      out.push(defect(9, s, last, "the poller re-arms itself with ngx.timer.at at the end of its callback and nothing catches errors: one error (a bad answer, a decode failure) ends polling for good"));
    }
  }

  // 6. The balancer: table.getn on a JSON string, wrong table, ERR logs per request.
  for (const s of sources) {
    for (const i of findSeq(s.tokens, ["table", ".", "getn"])) {
      out.push(defect(6, s, s.tokens[i]!, "table.getn is called on the shared dict's value, which is a JSON string, and the string is then indexed as if it were the peer list: every request fails"));
    }
    if (isBalancer(s)) {
      const err = findSeq(s.tokens, ["ngx", ".", "ERR"])[0];
      if (err !== undefined) out.push(defect(6, s, s.tokens[err]!, "the balancer logs at ERR on every request"));
    }
  }

  // 7. The checker: watches placeholder peers, undeclared dict, `#` comments.
  const dicts = new Set<string>();
  walk(input.tree, (d) => {
    if (d.directive === "lua_shared_dict" && d.args[0]) dicts.add(d.args[0]);
  });
  for (const c of input.checkers) {
    const up = typeof c.options.upstream === "string" ? c.options.upstream : undefined;
    if (up !== undefined && input.luaUpstreams.has(up)) {
      out.push(defect(7, c.source, c.token, `spawn_checker watches the static peers of upstream "${up}", which are only its placeholder server: it checks nothing`));
    }
    const shm = typeof c.options.shm === "string" ? c.options.shm : undefined;
    if (shm !== undefined && !dicts.has(shm)) {
      out.push(defect(7, c.source, c.token, `spawn_checker's shm "${shm}" is not declared (no \`lua_shared_dict ${shm}\`): the checker cannot start`));
    }
  }
  for (const s of sources) {
    let prev: LuaToken | undefined;
    for (const t of s.tokens) {
      if (t.kind === "op" && t.value === "#" && (prev === undefined || prev.line < t.line)) {
        out.push(defect(7, s, t, "a `#` comment inside Lua code is a syntax error (Lua comments start with --); nginx -t does not notice"));
      }
      prev = t;
    }
  }

  // 8. No retries.
  for (const [name, up] of input.luaUpstreams) {
    const bal = sources.filter((s) => s.directive !== undefined && isBalancer(s) && isInside(s.directive, up));
    const moreTries = bal.some((s) => findSeq(s.tokens, ["set_more_tries"]).length > 0);
    if (!moreTries && (input.triesByUpstream.get(name) ?? 0) <= 1) {
      out.push({ kind: "defect", defect: 8, file: up.file, line: up.line, column: up.column, message: `upstream "${name}" never retries (no set_more_tries in its balancer): a dead peer means a 502 for the client` });
    }
  }

  // 10. A hard-coded placeholder peer list.
  for (const s of sources) {
    for (const t of s.tokens) {
      if (t.kind === "string" && /"(Service)?Address"\s*:/.test(t.value) && /Port"\s*:\s*\d+/.test(t.value)) {
        out.push(defect(10, s, t, `a hard-coded peer (${t.value}) is stored as the initial list and stays in rotation until a successful poll, which never comes`));
      }
    }
  }

  // 11. Manual install, checked only by nginx -t.
  let init: Directive | undefined;
  walk(input.tree, (d) => {
    if (init === undefined && /^init(_worker)?_by_lua/.test(d.directive)) init = d;
  });
  if (init !== undefined) {
    out.push({
      kind: "defect",
      defect: 11,
      file: init.file,
      line: init.line,
      column: init.column,
      message: `"${init.directive}" code is not run by nginx -t, so its errors surface only at start or reload, and installs have no rollback (gen-lb check starts the config for real; gen-lb install rolls back)`,
    });
  }
  return out;
}

function isInside(d: Directive, parent: Directive): boolean {
  return parent.block?.includes(d) ?? false;
}
