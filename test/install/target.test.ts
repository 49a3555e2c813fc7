/**
 * install reads the binary's -V as check does: it renders for the nginx
 * version it sees unless the spec names target_version, and refuses a spec
 * whose target is the other kind of binary, naming the fix. Run on each leg
 * of the matrix (GEN_LB_TEST_BIN / GEN_LB_TEST_TARGET).
 */
import { cpSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { NGINX_BIN, tempDir } from "../support/nginx.js";
import { TEST_TARGET, testBinaryInfo } from "../support/target.js";
import { versionAtLeast } from "../../src/target/index.js";
import { FIXTURES, makePrefix, ports, snapshot, specObject, writeSpec } from "./helpers.js";

const other = TEST_TARGET === "openresty" ? "nginx" : "openresty";

function install(prefix: string, spec: string, ...more: string[]) {
  return runCli(["install", "--prefix", prefix, "--spec", spec, "--bin", NGINX_BIN, ...more]);
}

/** A prefix with the test certificates, and a spec whose second server is TLS with HTTP/2. */
async function tlsSetup(extra: Record<string, unknown> = {}) {
  const prefix = makePrefix();
  mkdirSync(path.join(prefix, "conf/certs"));
  cpSync(path.join(FIXTURES, "certs"), path.join(prefix, "conf/certs"), { recursive: true });
  const p = await ports();
  const tls = await ports();
  const spec = specObject(p, "v1", extra);
  (spec.servers as unknown[]).push({ listen: `127.0.0.1:${tls.http}`, http2: true, ssl: { certificate: "certs/lb.crt", certificate_key: "certs/lb.key" }, locations: [{ path: "/", return: { code: 200, text: "tls" } }] });
  return { prefix, spec, tlsPort: tls.http };
}

describe("install reads the binary's -V", () => {
  it(`a spec for target ${other} on ${TEST_TARGET}'s binary: refused before anything runs, naming the fix; the prefix as before`, async () => {
    const dir = tempDir();
    const prefix = makePrefix();
    const before = snapshot(prefix, []);
    const r = install(prefix, writeSpec(dir, "lb.json", { ...specObject(await ports(), "x"), target: other }));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`gen-lb: ${NGINX_BIN} is `);
    expect(r.stderr).toContain(`but the spec says target: ${other}`);
    expect(r.stderr).toContain(`set target: ${TEST_TARGET}; nothing was installed`);
    // Refused before check: no -t step ran.
    expect(r.stderr).not.toMatch(/check failed/);
    expect(snapshot(prefix, [])).toEqual(before);

    // --target overrides the spec's target, and is what is compared.
    const overridden = install(prefix, writeSpec(dir, "lb2.json", { ...specObject(await ports(), "x"), target: other }), "--target", TEST_TARGET);
    expect(overridden.status, overridden.stderr).toBe(0);
  }, 120_000);

  it("renders for the version -V shows (HTTP/2 as `http2 on;` from nginx 1.25.1, else the listen flag); the spec's target_version wins", async () => {
    const info = testBinaryInfo();
    const modern = versionAtLeast(info.version, "1.25.1");
    const dir = tempDir();
    /**
     * Which form of HTTP/2 install rendered: read from the installed
     * nginx.conf, or, on a binary built without ngx_http_v2_module (whose -t
     * refuses both forms), from the way its -t refused it.
     */
    const expectForm = (r: { status: number; stdout: string; stderr: string }, prefix: string, tlsPort: number, form: "directive" | "flag") => {
      const usable = info.http2 && (form === "flag" || modern);
      expect(r.status, r.stderr).toBe(usable ? 0 : 1);
      if (usable) {
        const conf = readFileSync(path.join(prefix, "conf/nginx.conf"), "utf8");
        if (form === "directive") expect(conf).toMatch(new RegExp(`listen 127\\.0\\.0\\.1:${tlsPort} ssl;\\n\\s*http2 on;`));
        else expect(conf).toMatch(new RegExp(`listen 127\\.0\\.0\\.1:${tlsPort} ssl http2;`));
      } else if (!info.http2) {
        // Either form: refused from -V, at the spec key and its line, before check runs nginx -t.
        expect(r.stderr).toMatch(/servers\[1\]\.http2 \([^)]*:\d+:\d+\): .* built without ngx_http_v2_module/);
        expect(r.stderr).toMatch(/cannot run; nothing was installed/);
        expect(r.stderr).not.toMatch(/check failed/);
      } else {
        // 1.22 has no `http2` directive: build's own refusal from the directive table, at servers[1].http2.
        expect(r.stderr).toMatch(/servers\[1\]\.http2 .*unknown directive "http2"/);
      }
    };

    const a = await tlsSetup();
    const ra = runCli(["--json", "install", "--prefix", a.prefix, "--spec", writeSpec(dir, "a.json", a.spec), "--bin", NGINX_BIN]);
    expectForm(ra, a.prefix, a.tlsPort, modern ? "directive" : "flag");
    if (ra.status === 0) expect(JSON.parse(ra.stdout).binary).toEqual({ target: TEST_TARGET, version: info.version, lua: TEST_TARGET === "openresty" ? "builtin" : "loadable" });

    // target_version on the other side of 1.25.1: rendered as the spec says, whatever the binary is.
    const b = await tlsSetup({ target_version: modern ? "1.22.0" : "1.25.1" });
    expectForm(install(b.prefix, writeSpec(dir, "b.json", b.spec)), b.prefix, b.tlsPort, modern ? "flag" : "directive");
  }, 120_000);
});
