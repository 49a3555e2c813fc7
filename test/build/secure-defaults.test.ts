/**
 * Secure defaults: server_tokens off, Mozilla's intermediate TLS profile
 * unless ssl.profile or explicit keys say otherwise, optional HSTS and the
 * security_headers preset; served by the real nginx and checked on the wire.
 */
import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { buildFileSet } from "../../src/pipeline/index.js";
import type { SpecInput } from "../../src/spec/schema.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { TLS_PROFILES } from "../../src/spec/tls-profiles.js";
import { buildPrefix, Nginx, tempDir } from "../support/nginx.js";
import { freePort } from "../support/ports.js";

function conf(spec: SpecInput): string {
  const r = validateSpecText(JSON.stringify({ target: "nginx", status: { enabled: false }, ...spec }), "spec.json");
  expect(r.errors).toEqual([]);
  return buildFileSet(r.spec!, "spec.json").files.find((f) => f.path === "conf/nginx.conf")!.contents;
}

function selfSigned(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, "lb.crt");
  const key = path.join(dir, "lb.key");
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=gen-lb-test"], { stdio: "ignore" });
  return { cert, key };
}

/** Does a TLS handshake with only `proto` succeed against 127.0.0.1:port? */
function handshake(port: number, proto: "-tls1_1" | "-tls1_2" | "-tls1_3"): boolean {
  const r = spawnSync("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, proto, "-brief"], { input: "", encoding: "utf8", timeout: 10_000 });
  return /Protocol version/.test(r.stderr + r.stdout) && !/alert|error/i.test((r.stderr + r.stdout).split("\n").find((l) => /alert|handshake failure/i.test(l)) ?? "");
}

describe("secure defaults", () => {
  it("server_tokens off unless the spec says otherwise", () => {
    expect(conf({})).toMatch(/^\s+server_tokens off;$/m);
    expect(conf({ nginx: { http: { server_tokens: true } } })).toMatch(/^\s+server_tokens on;$/m);
  });

  it("ssl: intermediate by default; profile modern/old; explicit keys override", () => {
    const ssl = { certificate: "a.crt", certificate_key: "a.key" };
    const inter = conf({ servers: [{ listen: 8443, ssl }] });
    expect(inter).toContain("ssl_protocols TLSv1.2 TLSv1.3;");
    expect(inter).toMatch(/ssl_ciphers "?ECDHE-ECDSA-AES128-GCM-SHA256:.*DHE-RSA-CHACHA20-POLY1305"?;/);
    expect(inter.match(/ssl_ciphers "?([^";]+)"?;/)![1]).toBe(TLS_PROFILES.intermediate.ciphers);
    expect(inter).toContain("ssl_prefer_server_ciphers off;");
    expect(inter).toMatch(/ssl_session_timeout 1d;/);
    expect(inter).toMatch(/ssl_session_tickets off;/);
    const modern = conf({ servers: [{ listen: 8443, ssl: { ...ssl, profile: "modern" } }] });
    expect(modern).toContain("ssl_protocols TLSv1.3;");
    expect(modern).not.toContain("ssl_ciphers");
    const old = conf({ servers: [{ listen: 8443, ssl: { ...ssl, profile: "old" } }] });
    expect(old).toContain("ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;");
    expect(old).toContain("ssl_prefer_server_ciphers on;");
    const over = conf({ servers: [{ listen: 8443, ssl: { ...ssl, protocols: ["TLSv1.3"], prefer_server_ciphers: true } }] });
    expect(over).toContain("ssl_protocols TLSv1.3;");
    expect(over).toContain("ssl_prefer_server_ciphers on;");
  });

  it("the real nginx serves the intermediate profile: TLS 1.2 and 1.3 accepted, 1.1 refused; hsts and security headers on the wire", { timeout: 60_000 }, async () => {
    const dir = tempDir("gen-lb-tls-");
    const { cert, key } = selfSigned(dir);
    const port = await freePort();
    const { dir: prefix } = await buildPrefix({
      status: { enabled: false },
      servers: [
        {
          listen: `127.0.0.1:${port}`,
          ssl: { certificate: cert, certificate_key: key, hsts: { max_age: 600, include_subdomains: true } },
          security_headers: true,
          locations: [{ path: "/", return: { code: 200, text: "ok" } }],
        },
      ],
    });
    const nginx = await Nginx.start(prefix);
    try {
      expect(handshake(port, "-tls1_2")).toBe(true);
      expect(handshake(port, "-tls1_3")).toBe(true);
      expect(handshake(port, "-tls1_1")).toBe(false);
      const r = spawnSync("curl", ["-sk", "-D", "-", "-o", "/dev/null", `https://127.0.0.1:${port}/`], { encoding: "utf8", timeout: 10_000 });
      const headers = r.stdout.toLowerCase();
      expect(headers).toContain("strict-transport-security: max-age=600; includesubdomains");
      expect(headers).toContain("x-content-type-options: nosniff");
      expect(headers).toContain("x-frame-options: deny");
      expect(headers).toContain("referrer-policy: strict-origin-when-cross-origin");
      expect(headers).toMatch(/^server: (nginx|openresty)\r?$/m); // server_tokens off: no version
    } finally {
      await nginx.stop();
    }
  });
});
