/**
 * gixy-style checks on an nginx config tree (an existing config, or the one
 * gen-lb renders from a spec). Pure: a parse result in, findings out.
 */
import { memoryLoader } from "../nginx/load.js";
import { parseConfig } from "../nginx/parse.js";
import type { Directive, Loader, ParseResult } from "../nginx/types.js";
import { INTERMEDIATE_CIPHER_SET } from "../spec/tls-profiles.js";

export type Severity = "high" | "medium" | "low";

export interface Finding {
  id: string;
  severity: Severity;
  file: string;
  line: number;
  message: string;
  fix: string;
}

/** The checks, by id: what `lint` reports and how to read it. */
export const CHECKS: Record<string, { severity: Severity; summary: string }> = {
  add_header_redefinition: { severity: "medium", summary: "add_header in a block silently drops every add_header of its parents" },
  alias_traversal: { severity: "high", summary: "alias and its location disagree on the trailing slash (path traversal)" },
  proxy_pass_variable_no_resolver: { severity: "medium", summary: "proxy_pass with a variable needs a resolver" },
  host_in_redirect: { severity: "medium", summary: "$http_host / $host of an unchecked request in a redirect" },
  server_tokens: { severity: "low", summary: "server_tokens on: the nginx version in every header and error page" },
  weak_tls_protocols: { severity: "high", summary: "TLS protocols below 1.2" },
  weak_ssl_ciphers: { severity: "medium", summary: "ssl_ciphers weaker than Mozilla's intermediate profile" },
  request_splitting: { severity: "high", summary: "client-controlled value forwarded into a header (Host $http_host, decoded $uri)" },
  unprotected_admin: { severity: "medium", summary: "status or admin location without an allow-list" },
};

interface Scope {
  /** add_header directives of the nearest block that has any */
  headers: Directive[];
  resolver: boolean;
  allow: boolean;
  /** the enclosing server's names, when there is one */
  serverNames: string[] | undefined;
}

const REDIRECT_CODES = new Set(["301", "302", "303", "307", "308"]);
const DECODED_VARS = /\$(uri|document_uri|request_filename|\d)\b/;
const ADMIN_PATH = /(^|\/)(status|nginx_status|server-status|admin|metrics|_status)(\/|$)/i;

export function lintParsed(result: ParseResult): Finding[] {
  const findings: Finding[] = [];
  const add = (id: string, d: Directive, message: string, fix: string) =>
    findings.push({ id, severity: CHECKS[id]!.severity, file: d.file, line: d.line, message, fix });

  // inline includes so inheritance follows nginx, not file boundaries
  const expand = (nodes: readonly Directive[], seen: ReadonlySet<number>): Directive[] =>
    nodes.flatMap((d) => {
      if (d.directive === "#") return [];
      if (d.includes !== undefined) return d.includes.filter((i) => !seen.has(i)).flatMap((i) => expand(result.config[i]!.parsed, new Set([...seen, i])));
      return d.block ? [{ ...d, block: expand(d.block, seen) }] : [d];
    });
  const root = expand(result.config[0]?.parsed ?? [], new Set([0]));

  let httpTokens: Directive | undefined;
  let httpBlock: Directive | undefined;

  const walk = (nodes: readonly Directive[], parent: Scope, owner: Directive | undefined) => {
    const own = nodes.filter((d) => d.directive === "add_header");
    if (own.length > 0 && parent.headers.length > 0 && owner) {
      const mine = new Set(own.map((h) => (h.args[0] ?? "").toLowerCase()));
      const dropped = parent.headers.map((h) => h.args[0] ?? "").filter((n) => !mine.has(n.toLowerCase()));
      if (dropped.length > 0) {
        add("add_header_redefinition", own[0]!, `add_header here drops the parent's ${dropped.join(", ")} (nginx inherits add_header only into blocks that have none)`, `repeat the parent's add_header lines in this ${owner.directive} block, or move these to the parent`);
      }
    }
    const scope: Scope = {
      headers: own.length > 0 ? own : parent.headers,
      resolver: parent.resolver || nodes.some((d) => d.directive === "resolver"),
      allow: parent.allow || (nodes.some((d) => d.directive === "allow") && nodes.some((d) => d.directive === "deny" && d.args[0] === "all")),
      serverNames: owner?.directive === "server" ? nodes.filter((d) => d.directive === "server_name").flatMap((d) => d.args) : parent.serverNames,
    };
    for (const d of nodes) {
      const a = d.args;
      switch (d.directive) {
        case "server_tokens":
          if ((a[0] ?? "").toLowerCase() !== "off") add("server_tokens", d, `server_tokens ${a[0]}: every response names the nginx version`, "server_tokens off; (gen-lb's default)");
          if (owner?.directive === "http") httpTokens = d;
          break;
        case "ssl_protocols": {
          const weak = a.filter((p) => /^(SSLv2|SSLv3|TLSv1|TLSv1\.1)$/.test(p));
          if (weak.length > 0) add("weak_tls_protocols", d, `ssl_protocols allows ${weak.join(", ")}`, "ssl_protocols TLSv1.2 TLSv1.3; (Mozilla intermediate: ssl.profile: intermediate)");
          break;
        }
        case "ssl_ciphers": {
          const weak = (a[0] ?? "").split(":").filter((c) => c !== "" && !/^[!-]/.test(c) && !INTERMEDIATE_CIPHER_SET.has(c));
          if (weak.length > 0) add("weak_ssl_ciphers", d, `ssl_ciphers has ${weak.slice(0, 5).join(", ")}${weak.length > 5 ? ", ..." : ""}, outside Mozilla's intermediate list`, "use the intermediate cipher list (gen-lb: leave ssl.ciphers unset)");
          break;
        }
        case "proxy_pass":
          if ((a[0] ?? "").includes("$") && !scope.resolver) add("proxy_pass_variable_no_resolver", d, `proxy_pass ${a[0]} has a variable and no resolver is in scope: a host name fails at run time`, "add a resolver (nginx.http.resolver) or proxy to an upstream by name");
          if (DECODED_VARS.test(a[0] ?? "")) add("request_splitting", d, `proxy_pass forwards a decoded variable (${a[0]}): %0d%0a in the URI splits the request`, "use $request_uri (still encoded) or a capture from a pattern without newlines");
          break;
        case "proxy_set_header":
        case "add_header":
          if (d.directive === "proxy_set_header" && /^host$/i.test(a[0] ?? "") && /\$http_host\b/.test(a[1] ?? "")) {
            add("request_splitting", d, "proxy_set_header Host $http_host forwards the client's Host header unchecked (absent, or any value)", "proxy_set_header Host $host; with a server_name that lists the valid names");
          } else if (DECODED_VARS.test(a[1] ?? "")) {
            add("request_splitting", d, `${d.directive} ${a[0]} uses a decoded variable (${a[1]}): %0d%0a becomes a new header line`, "use $request_uri or a capture from a pattern that excludes \\r\\n");
          }
          break;
        case "return":
        case "rewrite": {
          const target = d.directive === "return" ? (REDIRECT_CODES.has(a[0] ?? "") ? a[1] : undefined) : /^(redirect|permanent)$/.test(a[2] ?? "") || /^https?:\/\//.test(a[1] ?? "") ? a[1] : undefined;
          if (target === undefined) break;
          const names = scope.serverNames ?? [];
          const unchecked = names.length === 0 || names.some((n) => n === "_" || n === "" || n.includes("*") || n.startsWith("~"));
          if (/\$http_host\b/.test(target) || (/\$host\b/.test(target) && unchecked)) {
            add("host_in_redirect", d, `the redirect to ${target} takes the host from the request, which no server_name checks here`, "redirect to a fixed host name, or list the valid names in server_name (no catch-all)");
          }
          break;
        }
        case "alias":
          if (owner?.directive === "location") {
            const la = owner.args;
            const modifier = la.length > 1 ? la[0] : undefined;
            const loc = la[la.length - 1] ?? "";
            if (modifier === undefined || modifier === "^~" || modifier === "=") {
              const locSlash = loc.endsWith("/");
              const aliasSlash = (a[0] ?? "").endsWith("/");
              if (!locSlash && aliasSlash) add("alias_traversal", d, `location ${loc} without a trailing slash, alias ${a[0]} with one: ${loc}../ reaches the parent of ${a[0]}`, `location ${loc}/ { alias ${a[0]}; }`);
              else if (locSlash && !aliasSlash) add("alias_traversal", d, `location ${loc} with a trailing slash, alias ${a[0]} without: ${loc}x maps to ${a[0]}x, a sibling of ${a[0]}`, `alias ${a[0]}/;`);
            }
          }
          break;
        case "location": {
          const path = a[a.length - 1] ?? "";
          const body = d.block ?? [];
          const isAdmin = body.some((x) => x.directive === "stub_status") || ADMIN_PATH.test(path);
          const allowHere = body.some((x) => x.directive === "allow") && body.some((x) => x.directive === "deny" && x.args[0] === "all");
          if (isAdmin && !scope.allow && !allowHere && !body.some((x) => x.directive === "internal" || x.directive === "auth_basic" || x.directive === "auth_request")) {
            add("unprotected_admin", d, `location ${path} looks like a status/admin endpoint and anyone may reach it`, "allow the operators' addresses and deny all (gen-lb: status.allow)");
          }
          break;
        }
      }
      if (d.directive === "http") httpBlock = d;
      if (d.block) walk(d.block, scope, d);
    }
  };
  walk(root, { headers: [], resolver: false, allow: false, serverNames: undefined }, undefined);
  if (httpBlock && !httpTokens) {
    findings.push({ id: "server_tokens", severity: "low", file: httpBlock.file, line: httpBlock.line, message: "server_tokens is not set: nginx's default is on (the version in every response)", fix: "server_tokens off; in http {}" });
  }
  return findings.sort((x, y) => (x.file < y.file ? -1 : x.file > y.file ? 1 : x.line - y.line));
}

/** An nginx config on disk (or any loader), with its includes: what `migrate` and `lint FILE` run. */
export function lintNginxConfig(file: string, loader: Loader): { findings: Finding[]; parse: ParseResult } {
  const parse = parseConfig(file, loader, { comments: false });
  return { findings: lintParsed(parse), parse };
}

/** The config text gen-lb rendered (conf/nginx.conf), read as `file`. */
export function lintRenderedConfig(text: string, file = "conf/nginx.conf"): Finding[] {
  return lintParsed(parseConfig(file, memoryLoader({ [file]: text }), { comments: false, single: true }));
}

export function formatFinding(f: Finding): string {
  return `${f.file}:${f.line}: [${f.severity}] ${f.id}: ${f.message}; fix: ${f.fix}`;
}
