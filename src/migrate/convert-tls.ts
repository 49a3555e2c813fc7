/**
 * The TLS part of a server: the old ssl_* directives as servers[].ssl keys,
 * the old behaviour kept where gen-lb's defaults are stricter (nginx's own
 * protocols/ciphers written out, Mozilla's profile suggested), and gen-lb's
 * session settings, which the spec cannot undo, reported as changed.
 */
import type { Directive } from "../nginx/types.js";
import { TLS_PROFILES, TLS_SESSION } from "../spec/tls-profiles.js";
import { BASELINE_VERSION, versionAtLeast } from "../target/index.js";
import { flag, text, UNSAFE_RE } from "./args.js";
import type { Ledger } from "./ledger.js";
import type { SslInput } from "./spec-input.js";

/** The ssl_* settings servers[].ssl can hold besides the certificate. */
export type SslOption = Partial<Pick<SslInput, "protocols" | "ciphers" | "prefer_server_ciphers">>;
type Protocol = NonNullable<SslInput["protocols"]>[number];
/** The TLS session directives gen-lb writes in every ssl server, with its values. */
const OWN_SESSION: ReadonlyMap<string, string> = new Map([
  ["ssl_session_timeout", TLS_SESSION.timeout],
  ["ssl_session_cache", TLS_SESSION.cache],
  ["ssl_session_tickets", TLS_SESSION.tickets ? "on" : "off"],
]);
const isProtocol = (p: string): p is Protocol => /^TLSv1(\.[123])?$/.test(p);

export class TlsConverter {
  /** TLS session directives of the old config that gen-lb's own replace (reported once each). */
  private readonly oldSession = new Set<string>();

  constructor(
    private readonly ledger: Ledger,
    /** The nginx version that ran the old config (its defaults), when known. */
    private readonly version: string | undefined,
  ) {}

  /** ssl_protocols / ssl_ciphers / ssl_prefer_server_ciphers as servers[].ssl keys, when the spec can hold the value. */
  option(c: Directive): SslOption | undefined {
    const a = c.args;
    if (c.directive === "ssl_protocols") return a.length > 0 && a.every(isProtocol) ? { protocols: [...a] } : undefined;
    if (c.directive === "ssl_ciphers") return a.length === 1 && a[0] !== "" && !UNSAFE_RE.test(a[0]!) ? { ciphers: a[0] } : undefined;
    const f = a.length === 1 ? flag(a[0]) : undefined;
    return f === undefined ? undefined : { prefer_server_ciphers: f };
  }

  /**
   * gen-lb writes Mozilla's intermediate TLS profile by default; the old
   * server ran with what it set and nginx's defaults for the rest, so those
   * are written out and the profile is a suggestion.
   */
  keep(s: Directive, tls: SslInput, index: number): SslInput {
    const version = this.version ?? BASELINE_VERSION;
    // nginx 1.23.4 dropped TLSv1 and TLSv1.1 from its default.
    const nginxProtocols: Protocol[] = versionAtLeast(version, "1.23.4") ? ["TLSv1.2", "TLSv1.3"] : ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
    const filled: string[] = [];
    const explains: string[][] = [];
    const out: SslInput = { ...tls };
    if (out.protocols === undefined) {
      out.protocols = nginxProtocols;
      filled.push(`protocols ${nginxProtocols.join(" ")}`);
      explains.push(["ssl_protocols", ...nginxProtocols]);
    }
    if (out.ciphers === undefined) {
      out.ciphers = "HIGH:!aNULL:!MD5";
      filled.push("ciphers HIGH:!aNULL:!MD5");
      explains.push(["ssl_ciphers", "HIGH:!aNULL:!MD5"]);
    }
    if (out.prefer_server_ciphers === undefined) {
      out.prefer_server_ciphers = false;
      filled.push("prefer_server_ciphers off");
      explains.push(["ssl_prefer_server_ciphers", "off"]);
    }
    const at = `servers[${index}].ssl`;
    if (filled.length) {
      this.ledger.note("converted", s, `TLS: nginx ${version}'s defaults made explicit (${filled.join(", ")}), so clients negotiate as before`, at, explains);
    }
    const im = TLS_PROFILES.intermediate;
    if (out.protocols.join(" ") !== im.protocols.join(" ") || out.ciphers !== im.ciphers || out.prefer_server_ciphers !== im.preferServerCiphers) {
      this.ledger.note("suggestion", s, `${at}: remove protocols, ciphers and prefer_server_ciphers to adopt Mozilla's intermediate profile (gen-lb's default: ${im.protocols.join(" ")}, forward-secret AEAD ciphers); check your oldest clients first`, `${at}.profile`);
    }
    const session = [
      ["ssl_session_timeout", TLS_SESSION.timeout, "5m"],
      ["ssl_session_cache", TLS_SESSION.cache, "none"],
      ["ssl_session_tickets", TLS_SESSION.tickets ? "on" : "off", "on"],
    ].filter(([n]) => !this.oldSession.has(n!));
    if (session.length) {
      this.ledger.note("changed", s, `TLS sessions: gen-lb sets ${session.map(([n, v]) => `${n} ${v}`).join(", ")} in every ssl server (nginx's defaults: ${session.map(([n, , o]) => `${n} ${o}`).join(", ")}): clients resume from a shared cache instead of tickets`, at, session.map(([n, v]) => [n!, v!]));
    }
    return out;
  }

  /**
   * An old ssl_session_* directive (http or server level): gen-lb writes its
   * own in every ssl server. False for any other directive.
   */
  session(c: Directive): boolean {
    const own = OWN_SESSION.get(c.directive);
    if (own === undefined) return false;
    this.oldSession.add(c.directive);
    if (c.args.join(" ") === own) {
      // Set at http level, the old one is not where gen-lb writes its own: --verify must not call that one new.
      this.ledger.add("dropped", c, `${text(c)}: gen-lb sets the same in every ssl server`).explains = [[c.directive, own]];
      return true;
    }
    this.ledger.add("changed", c, `${text(c)}: gen-lb sets ${c.directive} ${own} in every ssl server; the old value is not kept`).explains = [[c.directive, own]];
    return true;
  }
}
