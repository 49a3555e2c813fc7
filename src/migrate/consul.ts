/**
 * The Consul facts of a hand-built Lua setup, read from the code that talks
 * to Consul and from the calls that configure it: every address (scheme,
 * host, port), the datacenter, the tags, where the ACL token comes from and
 * which service each Lua-balanced upstream follows. What cannot be
 * determined is returned as a to-do, never filled with a default. Pure.
 */
import type { Directive } from "../nginx/types.js";
import { walk } from "./flatten.js";
import { consulFacts, findRequires, findSeq, readTableAt, type LuaSource, type LuaValue } from "./lua.js";
import type { Finding } from "./types.js";

const BASE_RE = /^(https?:\/\/(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)(?::\d{1,5})?)\/?$/;

export interface UpstreamService {
  service: string;
  tags: string[];
  datacenter?: string;
}

export interface ConsulPattern {
  addresses: string[];
  datacenter?: string;
  token_env?: string;
  /** Lua upstream name -> the service it follows. */
  services: Map<string, UpstreamService>;
  /** Lua upstream name -> how its old balancer picked a peer, where its code shows it. */
  balances: Map<string, { balance: "round_robin" | "random" | "chash"; hash_key?: string }>;
  findings: Finding[];
}

interface Descriptor {
  name: string;
  service: string;
  tag?: string;
  dc?: string;
}

const loc = (s: LuaSource, t: { line: number; column: number }) => ({ file: s.file, line: t.line, column: t.column });

/** Service descriptors passed to a library: {"a", {name=, service=, tag=, dc=}}. */
function descriptors(sources: readonly LuaSource[]): Descriptor[] {
  const out: Descriptor[] = [];
  for (const s of sources) {
    const t = s.tokens;
    for (let i = 0; i < t.length; i++) {
      if (t[i]!.value !== "{" || t[i]!.kind !== "op") continue;
      const r = readTableAt(t, i);
      if (!r || !Array.isArray(r)) continue;
      const list: Descriptor[] = [];
      for (const e of r as LuaValue[]) {
        if (typeof e === "string" && /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(e)) list.push({ name: e, service: e });
        else if (e && typeof e === "object" && !Array.isArray(e) && (typeof e.service === "string" || typeof e.name === "string")) {
          const svc = String(e.service ?? e.name);
          const d: Descriptor = { name: String(e.name ?? svc), service: svc };
          if (typeof e.tag === "string") d.tag = e.tag;
          if (typeof e.dc === "string") d.dc = e.dc;
          list.push(d);
        }
      }
      // A table of base URLs is an address list, not services.
      if (list.length && list.length === (r as LuaValue[]).length) out.push(...list);
    }
  }
  return out;
}

/** The strings a name was assigned or concatenated into a URL query: `"...dc=" .. DC` -> DC's value. */
function queryValue(s: LuaSource, key: string): string | undefined {
  const t = s.tokens;
  for (let i = 0; i < t.length; i++) {
    const x = t[i]!;
    if (x.kind !== "string") continue;
    const inline = new RegExp(`[?&]${key}=([A-Za-z0-9_.-]+)`).exec(x.value);
    if (inline) return inline[1];
    if (x.value.endsWith(`${key}=`) && t[i + 1]?.value === ".." && t[i + 2]?.kind === "name") {
      const name = t[i + 2]!.value;
      for (let j = 0; j + 2 < t.length; j++) {
        if (t[j]!.value === name && t[j + 1]!.value === "=" && t[j + 2]!.kind === "string") return t[j + 2]!.value;
      }
    }
  }
  return undefined;
}

/**
 * How a Lua balancer picks its peer: math.random, or a turn counter modulo
 * the peer count (`n % #list`), read from its block and the modules it
 * requires. Neither or both: undefined (the converter keeps its default).
 */
function pickRule(balancer: LuaSource, sources: readonly LuaSource[]): { balance: "round_robin" | "random" | "chash"; hash_key?: string; how: string; source: LuaSource; token: { line: number; column: number } } | undefined {
  const names = new Set(findRequires(balancer).map((r) => r.name));
  const code = [balancer, ...sources.filter((s) => s.module !== undefined && names.has(s.module))];
  let random: { how: string; source: LuaSource; token: { line: number; column: number } } | undefined;
  let turns: typeof random;
  for (const s of code) {
    const t = s.tokens;
    for (let i = 0; i + 2 < t.length; i++) {
      if (!random && t[i]!.value === "math" && t[i + 1]!.value === "." && t[i + 2]!.value === "random") random = { how: "math.random", source: s, token: t[i]! };
      if (!turns && t[i]!.kind === "op" && t[i]!.value === "%" && t[i + 1]!.value === "#") turns = { how: "a turn counter modulo the peer count", source: s, token: t[i]! };
    }
    // lua-resty-balancer's round robin (resty.roundrobin:new(nodes):find()) and consistent hash (:find(key)).
    const rr = findRequires(s).find((r) => r.name === "resty.roundrobin");
    if (!turns && rr) turns = { how: 'require "resty.roundrobin"', source: s, token: rr.token };
    const ch = findRequires(s).find((r) => r.name === "resty.chash");
    if (ch) {
      // The key: find(ngx.var.NAME) -> $NAME.
      const at = findSeq(t, [":", "find", "(", "ngx", ".", "var", "."])[0];
      const key = at !== undefined && t[at + 7]?.kind === "name" && t[at + 8]?.value === ")" ? `$${t[at + 7]!.value}` : undefined;
      return { balance: "chash", ...(key ? { hash_key: key } : {}), how: 'require "resty.chash"', source: s, token: ch.token };
    }
  }
  if (random && !turns) return { balance: "random", ...random };
  if (turns && !random) return { balance: "round_robin", ...turns };
  return undefined;
}

/**
 * A subrequest path ("/_consul/v1/health/service/web?passing") -> the
 * Consul base URL behind the prefix location it lands in, when that location
 * proxies to a literal http(s)://host:port and the path nginx sends there
 * starts with /v1/.
 */
function subrequestTarget(url: string, tree: readonly Directive[]): { base: string; location: Directive } | undefined {
  if (!url.startsWith("/")) return undefined;
  let best: { base: string; location: Directive; len: number } | undefined;
  walk(tree, (d) => {
    if (d.directive !== "location") return;
    const prefix = d.args.length === 1 ? d.args[0]! : d.args[0] === "^~" ? d.args[1]! : undefined;
    if (prefix === undefined || !url.startsWith(prefix) || (best && best.len >= prefix.length)) return;
    const pass = d.block?.find((c) => c.directive === "proxy_pass")?.args[0];
    const m = pass ? /^(https?:\/\/(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)(?::\d{1,5})?)(\/.*)?$/.exec(pass) : null;
    if (!m) return;
    const sent = m[2] === undefined ? url : m[2] + url.slice(prefix.length);
    if (sent.replace(/^\/+/, "/").startsWith("/v1/")) best = { base: m[1]!, location: d, len: prefix.length };
  });
  return best && { base: best.base, location: best.location };
}

export function readConsulPattern(input: {
  sources: readonly LuaSource[];
  /** The pattern's own code: modules that talk to Consul and the init blocks that call them. */
  patternSources: ReadonlySet<LuaSource>;
  luaUpstreams: ReadonlyMap<string, Directive>;
  /** The config: a subrequest path (ngx.location.capture) reaches Consul through one of its locations. */
  tree?: readonly Directive[];
}): ConsulPattern {
  const findings: Finding[] = [];
  const facts = consulFacts(input.sources);
  const pattern = [...input.patternSources];
  const factSources = new Set(input.sources.filter((s) => facts.some((f) => f.url.file === s.file)));
  const scan = [...new Set([...factSources, ...pattern])];

  // Addresses: every base URL the pattern's code holds (a list of them means several), in order.
  const addresses: string[] = [];
  let first: { file: string; line: number; column: number } | undefined;
  for (const f of facts) if (f.address && !addresses.includes(f.address.value)) {
    addresses.push(f.address.value.replace(/\/$/, ""));
    first ??= f.address;
  }
  for (const f of facts) {
    const via = f.address ? undefined : subrequestTarget(f.url.value, input.tree ?? []);
    if (via && !addresses.includes(via.base)) {
      addresses.push(via.base);
      first ??= f.url;
      findings.push({ kind: "converted", file: via.location.file, line: via.location.line, message: `location ${via.location.args.join(" ")}: the Lua reaches Consul through it (ngx.location.capture("${f.url.value}")), at ${via.base}`, to: "consul.addresses" });
    }
  }
  for (const s of scan) {
    for (const t of s.tokens) {
      const m = t.kind === "string" ? BASE_RE.exec(t.value) : null;
      if (m && !addresses.includes(m[1]!)) {
        addresses.push(m[1]!);
        first ??= loc(s, t);
      }
    }
  }
  const anchor = first ?? (facts[0] ? facts[0].url : undefined);

  // Datacenter and tags from the query strings.
  const dcs = new Set<string>();
  const tags = new Set<string>();
  for (const s of scan) {
    const dc = queryValue(s, "dc");
    if (dc) dcs.add(dc);
    const tag = queryValue(s, "tag");
    if (tag) tags.add(tag);
  }
  for (const f of facts) if (f.datacenter) dcs.add(f.datacenter);

  // The token: an X-Consul-Token header or ?token=, and where its value comes from.
  let token_env: string | undefined;
  const tokenUsed = scan.some((s) => s.tokens.some((t) => t.kind === "string" && /^X-Consul-Token$|[?&]token=/i.test(t.value))) || facts.some((f) => f.tokenSeen);
  if (tokenUsed) {
    for (const s of scan) {
      const t = s.tokens;
      for (let i = 0; i + 4 < t.length; i++) {
        if (t[i]!.value === "os" && t[i + 1]!.value === "." && t[i + 2]!.value === "getenv" && t[i + 4]?.kind === "string") token_env = t[i + 4]!.value;
        else if (t[i]!.value === "os" && t[i + 1]!.value === "." && t[i + 2]!.value === "getenv" && t[i + 3]?.kind === "string") token_env = t[i + 3]!.value;
      }
    }
  }

  // Services: descriptors handed to the library, matched to upstreams by the name their balancer passes.
  const descs = descriptors(pattern);
  const services = new Map<string, UpstreamService>();
  const factServices = [...new Set(facts.flatMap((f) => (f.service ? [f.service.value] : [])))];
  const required = new Set(input.sources.flatMap((s) => findRequires(s).map((r) => r.name)));
  const initStrings = new Set(pattern.filter((s) => s.directive && /^init(_worker)?_by_lua/.test(s.directive.directive)).flatMap((s) => s.tokens.filter((t) => t.kind === "string").map((t) => t.value)));
  const balances: ConsulPattern["balances"] = new Map();
  for (const [name, u] of input.luaUpstreams) {
    const balancer = input.sources.find((s) => s.directive && s.directive.directive.startsWith("balancer_by_lua") && u.block?.includes(s.directive));
    const picked = balancer ? pickRule(balancer, input.sources) : undefined;
    if (picked?.balance === "chash" && picked.hash_key === undefined) {
      findings.push({ kind: "todo", ...loc(picked.source, picked.token), message: `upstream ${name}: the old Lua balancer hashed (${picked.how}) on a key migrate cannot read; set upstreams.${name}.balance: chash and its hash_key (until then requests no longer stick to one peer)`, to: `upstreams.${name}.hash_key` });
    } else if (picked) {
      balances.set(name, picked.hash_key === undefined ? { balance: picked.balance } : { balance: picked.balance, hash_key: picked.hash_key });
      findings.push({ kind: "converted", ...loc(picked.source, picked.token), message: `upstream ${name}: balance ${picked.balance}${picked.hash_key ? ` on ${picked.hash_key}` : ""}, as its old Lua balancer picks (${picked.how})`, to: `upstreams.${name}.balance` });
    }
    const args = balancer ? balancer.tokens.filter((t) => t.kind === "string" && !required.has(t.value)).map((t) => t.value) : [];
    const desc = descs.find((d) => args.includes(d.name)) ?? descs.find((d) => d.name === name);
    let svc: UpstreamService | undefined;
    let how = "";
    if (desc) {
      svc = { service: desc.service, tags: desc.tag ? [desc.tag] : [] };
      if (desc.dc) svc.datacenter = desc.dc;
      how = `the service descriptor ${JSON.stringify(desc.name)} passed to the library`;
    } else {
      const named = factServices.find((f) => f === name || args.includes(f)) ?? args.find((a) => initStrings.has(a) && /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(a));
      const only = named ?? (factServices.length === 1 ? factServices[0] : undefined);
      if (only) {
        svc = { service: only, tags: [...tags] };
        how = named ? `the name its balancer passes ("${only}")` : "the only service the Lua asks Consul for";
      }
    }
    if (svc) {
      services.set(name, svc);
      findings.push({ kind: "converted", file: u.file, line: u.line, column: u.column, message: `upstream ${name}: Consul service "${svc.service}"${svc.tags.length ? ` with tag ${svc.tags.join(", ")}` : ""}${svc.datacenter ? ` in ${svc.datacenter}` : ""}, from ${how}`, to: `upstreams.${name}.service` });
    } else {
      findings.push({ kind: "todo", file: u.file, line: u.line, column: u.column, message: `upstream ${name}: no Consul service found in its Lua; set upstreams.${name}.service (now "${name}")`, to: `upstreams.${name}.service` });
    }
  }

  const at = anchor ?? (() => {
    const u = [...input.luaUpstreams.values()][0];
    return u ? { file: u.file, line: u.line, column: u.column } : undefined;
  })();
  if (at) {
    if (addresses.length) findings.push({ kind: "converted", ...at, message: `Consul address${addresses.length > 1 ? "es" : ""} ${addresses.join(", ")}`, to: "consul.addresses" });
    else findings.push({ kind: "todo", ...at, message: "the Consul address could not be determined from the Lua; set consul.addresses", to: "consul.addresses" });
    if (token_env) findings.push({ kind: "converted", ...at, message: `ACL token from the environment variable ${token_env}`, to: "consul.token_env" });
    else if (tokenUsed) findings.push({ kind: "todo", ...at, message: "the old code sends an ACL token (X-Consul-Token or ?token=) from a value migrate cannot trace; set consul.token_env to the variable that holds it", to: "consul.token_env" });
    else findings.push({ kind: "todo", ...at, message: "the old code sent no ACL token; if Consul enforces ACLs, set consul.token_env to the variable that holds it", to: "consul.token_env" });
    if (dcs.size > 1) findings.push({ kind: "todo", ...at, message: `the Lua asks more than one datacenter (${[...dcs].join(", ")}); set consul.datacenter or upstreams.*.datacenter`, to: "consul.datacenter" });
  }
  const out: ConsulPattern = { addresses, services, balances, findings };
  if (dcs.size === 1) out.datacenter = [...dcs][0];
  if (token_env) out.token_env = token_env;
  return out;
}
