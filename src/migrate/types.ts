/** What migrate returns: a spec (plain data, YAML-ready) and the report. */

export type FindingKind =
  /** turned into a typed spec key */
  | "converted"
  /** copied through the `directives` escape hatch, arguments exactly as they were */
  | "carried"
  /** left out on purpose, because gen-lb generates its replacement */
  | "dropped"
  /** could not be expressed in the spec: the user must port it by hand */
  | "lost"
  /** something the user must fill in or check */
  | "todo"
  /** one of the eleven known defects of hand-built setups (DESIGN.md) */
  | "defect"
  /** behaviour gen-lb sets itself that the spec cannot keep as it was (nothing to do unless you relied on it) */
  | "changed"
  /** a secure default the spec could adopt; the spec as written keeps the old behaviour */
  | "suggestion"
  /** what `gen-lb lint` finds in the old config (its gixy-style checks) */
  | "lint";

export interface Finding {
  kind: FindingKind;
  file: string;
  line: number;
  column?: number;
  /** The directive concerned, when there is one. */
  directive?: string;
  message: string;
  /** The spec path it went to (converted/carried). */
  to?: string;
  /** The arguments the directive has in the new config, when migrate changed them (e.g. a path made absolute). */
  newArgs?: string[];
  /** A server, location or upstream left out that the user must rewrite by hand: migrate exits 1. */
  blocking?: boolean;
  /**
   * Directives of the new config this finding accounts for, as
   * [name, ...args] ([name] alone: any arguments): --verify does not report
   * them as added or changed.
   */
  explains?: string[][];
  /** 1..11, for kind "defect". */
  defect?: number;
}

/** Why migrate cannot go on at all (unreadable config, missing Lua module...). */
export class MigrateError extends Error {
  constructor(
    message: string,
    readonly details: readonly string[] = [],
  ) {
    super(message);
    this.name = "MigrateError";
  }
}

export const DEFECT_TITLES: Record<number, string> = {
  1: "the Consul request is never made",
  2: "a blocking socket library inside nginx",
  3: "the catalog endpoint and the node address",
  4: "Consul address, service, datacenter and token hard-coded or missing",
  5: "every worker polls Consul",
  6: "the balancer indexes the wrong table",
  7: "the health checker checks nothing",
  8: "no retries or failover",
  9: "an error ends the polling timer chain",
  10: "a dead placeholder peer in rotation",
  11: "manual installation, checked only by nginx -t",
};
