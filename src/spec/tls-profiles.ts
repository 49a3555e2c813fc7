/**
 * Mozilla's server-side TLS profiles (ssl-config.mozilla.org, guidelines 5.7)
 * and the security headers preset: data only, rendered by plan.ts, known to
 * lint.
 */
export type TlsProfileName = "modern" | "intermediate" | "old";

export interface TlsProfile {
  protocols: string[];
  /** undefined: leave ssl_ciphers to OpenSSL (TLSv1.3 suites are not set by ssl_ciphers) */
  ciphers: string | undefined;
  preferServerCiphers: boolean;
}

const INTERMEDIATE_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
  "DHE-RSA-AES128-GCM-SHA256",
  "DHE-RSA-AES256-GCM-SHA384",
  "DHE-RSA-CHACHA20-POLY1305",
];

const OLD_EXTRA_CIPHERS = [
  "ECDHE-ECDSA-AES128-SHA256",
  "ECDHE-RSA-AES128-SHA256",
  "ECDHE-ECDSA-AES128-SHA",
  "ECDHE-RSA-AES128-SHA",
  "ECDHE-ECDSA-AES256-SHA384",
  "ECDHE-RSA-AES256-SHA384",
  "ECDHE-ECDSA-AES256-SHA",
  "ECDHE-RSA-AES256-SHA",
  "DHE-RSA-AES128-SHA256",
  "DHE-RSA-AES256-SHA256",
  "AES128-GCM-SHA256",
  "AES256-GCM-SHA384",
  "AES128-SHA256",
  "AES256-SHA256",
  "AES128-SHA",
  "AES256-SHA",
  "DES-CBC3-SHA",
];

export const TLS_PROFILES: Record<TlsProfileName, TlsProfile> = {
  modern: { protocols: ["TLSv1.3"], ciphers: undefined, preferServerCiphers: false },
  intermediate: { protocols: ["TLSv1.2", "TLSv1.3"], ciphers: INTERMEDIATE_CIPHERS.join(":"), preferServerCiphers: false },
  old: { protocols: ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"], ciphers: [...INTERMEDIATE_CIPHERS, ...OLD_EXTRA_CIPHERS].join(":"), preferServerCiphers: true },
};

/** Every profile's session settings (the generator's nginx output). */
export const TLS_SESSION = { timeout: "1d", cache: "shared:gen_lb_ssl:10m", tickets: false } as const;

/** The intermediate profile's ciphers: lint measures ssl_ciphers against them. */
export const INTERMEDIATE_CIPHER_SET: ReadonlySet<string> = new Set(INTERMEDIATE_CIPHERS);

/** security_headers: true adds these to every response of the server. */
export const SECURITY_HEADERS: ReadonlyArray<[string, string]> = [
  ["X-Content-Type-Options", "nosniff"],
  ["X-Frame-Options", "DENY"],
  ["Referrer-Policy", "strict-origin-when-cross-origin"],
];
