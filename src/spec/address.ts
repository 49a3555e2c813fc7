/**
 * Peer addresses as nginx reads them: one parser and one canonical form for
 * every place a spec names a backend (fallback peers, static servers) and
 * for migrate and preflight, which meet the same strings in old configs and
 * in Consul answers. Pure, no DNS: a host name stays a name.
 *
 * Canonical forms, so one backend is one peer:
 *   IPv4  dotted decimal without leading zeros ("127.000.000.001" -> "127.0.0.1";
 *         nginx reads each octet as decimal, never octal)
 *   IPv6  RFC 5952 (lower case, longest zero run compressed), written
 *         "[addr]:port" wherever a port follows; an IPv4-mapped address
 *         ("::ffff:127.0.0.1") is the IPv4 address it maps, the same backend
 *   name  lower case, no trailing dot
 *   unix  "unix:/absolute/path", as nginx's `server` and `proxy_pass` take it
 *   port  decimal without leading zeros, 1-65535
 */

export type PeerAddress =
  | { kind: "ipv4"; host: string; port: number }
  /** host without brackets, canonical. */
  | { kind: "ipv6"; host: string; port: number }
  /** A DNS name: nginx resolves it at start (static upstreams) or needs a resolver at run time. */
  | { kind: "name"; host: string; port: number }
  | { kind: "unix"; path: string };

export type ParsedAddress = { ok: true; address: PeerAddress } | { ok: false; reason: string };

export interface ParseOptions {
  /** Accept "unix:/path" (nginx upstream servers do; the Lua balancer does not). Default false. */
  unix?: boolean;
}

const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** "1.2.3.4" with 1-3 decimal digits per octet, each <= 255 -> canonical text, else undefined. */
export function normaliseIPv4(text: string): string | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.map(Number).join(".");
}

/** An IPv6 literal without brackets or zone -> RFC 5952 text, else undefined. */
export function normaliseIPv6(text: string): string | undefined {
  if (!/^[0-9A-Fa-f:.]+$/.test(text) || !text.includes(":")) return undefined;
  try {
    // The WHATWG URL host serializer is RFC 5952's canonical form.
    const host = new URL(`http://[${text}]/`).hostname;
    return host.slice(1, -1);
  } catch {
    return undefined;
  }
}

/** "::ffff:7f00:1" (canonical IPv6, IPv4-mapped) -> "127.0.0.1", else undefined. */
function mappedIPv4(v6: string): string | undefined {
  const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6);
  if (!m) return undefined;
  const hi = parseInt(m[1]!, 16);
  const lo = parseInt(m[2]!, 16);
  return [hi >> 8, hi & 255, lo >> 8, lo & 255].join(".");
}

/** An IP literal -> the one text the runtime keys its peer by (IPv4 canonical, IPv6 RFC 5952, IPv4-mapped as IPv4), else undefined. */
export function canonicalIp(text: string): string | undefined {
  const v4 = normaliseIPv4(text);
  if (v4 !== undefined) return v4;
  const v6 = normaliseIPv6(text);
  return v6 === undefined ? undefined : (mappedIPv4(v6) ?? v6);
}

/** A DNS host name (RFC 1123 labels) -> lower case without a trailing dot, else undefined. */
export function normaliseHostName(text: string): string | undefined {
  const name = text.toLowerCase().replace(/\.$/, "");
  if (name.length === 0 || name.length > 253) return undefined;
  // All digits and dots is an IPv4 attempt, never a name: "256.1.1.1" must not become a DNS lookup.
  if (/^[\d.]+$/.test(name)) return undefined;
  return name.split(".").every((l) => LABEL_RE.test(l)) ? name : undefined;
}

function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/**
 * "host:port", "[v6]:port" or (with `unix`) "unix:/path" -> a PeerAddress,
 * or the reason it is not one, written to follow `expected ...` in a message.
 */
export function parsePeerAddress(text: string, opts: ParseOptions = {}): ParsedAddress {
  const fail = (reason: string): ParsedAddress => ({ ok: false, reason });
  if (text.startsWith("unix:")) {
    if (!opts.unix) return fail(`a unix socket (${JSON.stringify(text)}) cannot be used here; give "host:port"`);
    const path = text.slice(5);
    if (!path.startsWith("/")) return fail(`a unix socket path is absolute: "unix:/path/to.sock" (got ${JSON.stringify(text)})`);
    if (/[\s;{}]/.test(path)) return fail(`a unix socket path must not contain spaces, ";", "{" or "}" (got ${JSON.stringify(text)})`);
    return { ok: true, address: { kind: "unix", path } };
  }
  if (text.startsWith("[")) {
    const m = /^\[([^\]]*)\]:([^:]*)$/.exec(text);
    if (!m) return fail(`an IPv6 peer is written "[addr]:port", such as "[::1]:8080" (got ${JSON.stringify(text)})`);
    if (m[1]!.includes("%")) return fail(`an IPv6 zone ("%eth0") cannot be used in a peer address (got ${JSON.stringify(text)})`);
    const host = normaliseIPv6(m[1]!);
    if (host === undefined) return fail(`${JSON.stringify(m[1])} is not an IPv6 address`);
    const port = parsePort(m[2]!);
    if (port === undefined) return fail(`the port must be 1-65535 (got ${JSON.stringify(m[2])} in ${JSON.stringify(text)})`);
    const v4 = mappedIPv4(host);
    return { ok: true, address: v4 === undefined ? { kind: "ipv6", host, port } : { kind: "ipv4", host: v4, port } };
  }
  const colon = text.lastIndexOf(":");
  if (colon < 0) return fail(`a peer needs a port: "host:port", such as "127.0.0.1:8080" (got ${JSON.stringify(text)})`);
  const hostText = text.slice(0, colon);
  if (hostText.includes(":")) {
    return fail(`an IPv6 peer is written in brackets, "[addr]:port" such as "[::1]:8080" (got ${JSON.stringify(text)})`);
  }
  const port = parsePort(text.slice(colon + 1));
  if (port === undefined) return fail(`the port must be 1-65535 (got ${JSON.stringify(text.slice(colon + 1))} in ${JSON.stringify(text)})`);
  if (/^[\d.]+$/.test(hostText)) {
    const host = normaliseIPv4(hostText);
    if (host === undefined) return fail(`${JSON.stringify(hostText)} is not an IPv4 address (four numbers 0-255)`);
    return { ok: true, address: { kind: "ipv4", host, port } };
  }
  const host = normaliseHostName(hostText);
  if (host === undefined) return fail(`${JSON.stringify(hostText)} is neither an IP address nor a host name`);
  return { ok: true, address: { kind: "name", host, port } };
}

/** The canonical text: "127.0.0.1:80", "[::1]:80", "api.internal:80", "unix:/run/app.sock". */
export function formatPeerAddress(a: PeerAddress): string {
  switch (a.kind) {
    case "unix":
      return `unix:${a.path}`;
    case "ipv6":
      return `[${a.host}]:${a.port}`;
    default:
      return `${a.host}:${a.port}`;
  }
}

/** Canonical text of an address, or undefined when it does not parse (`unix` accepted). */
export function normalisePeerAddress(text: string, opts: ParseOptions = { unix: true }): string | undefined {
  const r = parsePeerAddress(text, opts);
  return r.ok ? formatPeerAddress(r.address) : undefined;
}

/** Is this a literal IP address (as opposed to a name or a socket)? */
export function isIpAddress(a: PeerAddress): a is Extract<PeerAddress, { kind: "ipv4" | "ipv6" }> {
  return a.kind === "ipv4" || a.kind === "ipv6";
}
