/**
 * What the per-context converters share: the input, the findings ledger, the
 * recognised Consul + Lua pattern, the spec's upstreams (read by locations'
 * proxy_pass), and what locations tell about each upstream's retries. Every
 * other value a converter builds it returns or writes into the typed spec
 * part it is handed.
 */
import type { Directive } from "../nginx/types.js";
import type { BinInfo } from "./bin.js";
import type { ModuleContext } from "./modules.js";
import { TlsConverter } from "./convert-tls.js";
import { Ledger } from "./ledger.js";
import type { LuaSource } from "./lua.js";
import { recognisePattern, type Pattern } from "./pattern.js";
import type { UpstreamInput } from "./spec-input.js";

export interface ConvertInput {
  tree: readonly Directive[];
  sources: readonly LuaSource[];
  /** The comments of each file (for the consul-template check). */
  comments: ReadonlyMap<string, string[]>;
  /** The parsed files each `include mime.types` pulled in, by the include's file:line:column. */
  mimeTypes?: ReadonlyMap<string, readonly Directive[]>;
  /** The main config file (relative certificate paths are taken from its directory). */
  mainFile: string;
  /** What a relative mainFile is relative to. */
  cwd: string;
  /** The old nginx prefix, absolute: what prefix-relative paths (cache and temp directories) meant. */
  prefix?: string;
  /** The nginx binary that will run the config (its -V), when known. */
  bin?: BinInfo;
  /** What the binary's modules directory holds and what the old prefix was (src/migrate/modules.ts); with bin. */
  modules?: ModuleContext;
}

/** What the upstream and location converters learn about each upstream, for its retries and the report. */
export interface UpstreamFacts {
  /** Each converted upstream's directive, for findings about it. */
  nodes: Map<string, Directive>;
  /** Upstreams converted from static server lists (and consul-template output): name -> servers a request may be retried on. */
  staticCount: Map<string, number>;
  /** proxy_next_upstream_tries per upstream (the highest of its locations'). */
  tries: Map<string, number>;
  /** The proxy_next_upstream settings seen per upstream (locations that set none count as nginx's default). */
  retryKinds: Map<string, Set<string>>;
}

/** An old status page location (a Lua handler printing the checker's status). */
export interface StatusPage {
  path: string;
  allow: string[];
  d: Directive;
}

export interface ConvertContext {
  readonly input: ConvertInput;
  readonly ledger: Ledger;
  readonly tls: TlsConverter;
  readonly pattern: Pattern;
  /** The spec's upstreams, as the http converter fills them in. */
  readonly upstreams: Record<string, UpstreamInput>;
  readonly facts: UpstreamFacts;
  readonly statusPages: StatusPage[];
}

export function createContext(input: ConvertInput): ConvertContext {
  const ledger = new Ledger();
  return {
    input,
    ledger,
    tls: new TlsConverter(ledger, input.bin?.version),
    pattern: recognisePattern(input.tree, input.sources),
    upstreams: {},
    facts: { nodes: new Map(), staticCount: new Map(), tries: new Map(), retryKinds: new Map() },
    statusPages: [],
  };
}
