/** TLS profile and security headers of one server (pure). */
import type { NginxDirective } from "../render/quote.js";
import type { Server } from "../spec/schema.js";
import { SECURITY_HEADERS, TLS_PROFILES, TLS_SESSION } from "../spec/tls-profiles.js";

const d = (name: string, ...args: Array<string | number | boolean>): NginxDirective => ({ name, args });

export function planTls(ssl: NonNullable<Server["ssl"]>): NginxDirective[] {
  const profile = TLS_PROFILES[ssl.profile];
  const out = [d("ssl_certificate", ssl.certificate), d("ssl_certificate_key", ssl.certificate_key)];
  out.push(d("ssl_protocols", ...(ssl.protocols ?? profile.protocols)));
  const ciphers = ssl.ciphers ?? profile.ciphers;
  if (ciphers !== undefined) out.push(d("ssl_ciphers", ciphers));
  out.push(d("ssl_prefer_server_ciphers", (ssl.prefer_server_ciphers ?? profile.preferServerCiphers) ? "on" : "off"));
  out.push(d("ssl_session_timeout", TLS_SESSION.timeout), d("ssl_session_cache", TLS_SESSION.cache), d("ssl_session_tickets", TLS_SESSION.tickets ? "on" : "off"));
  if (ssl.hsts !== undefined) {
    const h = ssl.hsts === true ? { max_age: 63072000, include_subdomains: false, preload: false } : ssl.hsts;
    const value = [`max-age=${h.max_age}`, ...(h.include_subdomains ? ["includeSubDomains"] : []), ...(h.preload ? ["preload"] : [])].join("; ");
    out.push(d("add_header", "Strict-Transport-Security", value, "always"));
  }
  return out;
}

export function planSecurityHeaders(server: Server): NginxDirective[] {
  return server.security_headers ? SECURITY_HEADERS.map(([name, value]) => d("add_header", name, value, "always")) : [];
}
