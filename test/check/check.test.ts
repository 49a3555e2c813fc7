/**
 * `gen-lb check` end to end: the built CLI, the real nginx with the Lua
 * module, a clean env. Each scratch prefix goes to a TMPDIR of the test's
 * own, so "the scratch is removed" is checked, not assumed.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync, cpSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { NGINX_BIN, tempDir } from "../support/nginx.js";
import { testBinaryInfo } from "../support/target.js";
import { FIXTURES, makePrefix, ports, snapshot, specObject, writeSpec } from "../install/helpers.js";

function scratchEnv(): { env: Record<string, string>; dir: string } {
  const dir = tempDir("gen-lb-tmp-");
  return { env: { TMPDIR: dir }, dir };
}

describe("gen-lb check", () => {
  it("passes a good spec through nginx -t, the Lua parse and a real start; --json has {ok, steps}; the scratch is gone", async () => {
    const dir = tempDir();
    const spec = writeSpec(dir, "lb.json", specObject(await ports(), "hello"));
    const { env, dir: tmp } = scratchEnv();
    const r = runCli(["--json", "check", "--spec", spec, "--bin", NGINX_BIN], { env });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ ok: true, bin: NGINX_BIN, buildId: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect(out.steps.map((s: { name: string }) => s.name)).toEqual(["nginx -t", "lua syntax", "smoke start"]);
    for (const s of out.steps) expect(s).toMatchObject({ ok: true, ms: expect.any(Number), messages: expect.any(Array) });
    expect(out.steps[1].messages[0]).toMatch(/^\d+ files parsed by .*luajit$/);
    expect(out.steps[2].messages[0]).toMatch(/^2 workers up; status endpoint serves build [0-9a-f]{16}$/);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("human report: one line per step, then the verdict", async () => {
    const dir = tempDir();
    const spec = writeSpec(dir, "lb.json", specObject(await ports(), "hello"));
    const r = runCli(["check", "--spec", spec, "--bin", NGINX_BIN], { cwd: dir });
    expect(r.status).toBe(0);
    // The binary and what its -V says: "openresty 1.31.1.1 (nginx 1.31.1, Lua built in)" or "nginx 1.22.1 (Lua module ...)".
    expect(r.stdout).toMatch(new RegExp(`^check lb\\.json \\(build [0-9a-f]{16}\\) with ${NGINX_BIN.replace(/[/.]/g, "\\$&")}, (openresty \\S+ \\(nginx \\S+, Lua built in\\)|nginx \\S+ \\(Lua module \\S+\\))$`, "m"));
    expect(r.stdout).toMatch(/^ok {4}nginx -t +\d+ ms$/m);
    expect(r.stdout).toMatch(/^ok {4}lua syntax +\d+ ms$/m);
    expect(r.stdout).toMatch(/^ok {4}smoke start +\d+ ms$/m);
    expect(r.stdout).toMatch(/^check passed in \d+ ms$/m);
  });

  it("a listen address nginx rejects fails nginx -t, mapped back to servers[0].listen at its spec line", async () => {
    const dir = tempDir();
    const p = await ports();
    const spec = specObject(p, "x");
    (spec.servers as Array<Record<string, unknown>>)[0]!.listen = "999.1.1.1:8080";
    const file = writeSpec(dir, "bad-listen.json", spec);
    const { env, dir: tmp } = scratchEnv();
    const r = runCli(["check", "--spec", file, "--bin", NGINX_BIN], { cwd: dir, env });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("gen-lb: check of bad-listen.json failed: nginx -t");
    expect(r.stderr).toMatch(/\[emerg\] host not found in "999\.1\.1\.1:8080" of the "listen" directive \(nginx\.conf:\d+, from servers\[0\]\.listen at bad-listen\.json:\d+:\d+\)/);
    expect(r.stderr).toContain("not run: nginx -t failed");
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("HTTP/2 on a binary whose -V lacks http_v2_module is refused at servers[N].http2 and its spec line, before nginx -t; with it, checked and passed", async () => {
    const dir = tempDir();
    const p = await ports();
    // Its own loopback address: a second ports() may hand back a port the first one gave.
    const tls = await ports();
    const spec = specObject(p, "h2");
    const certs = path.join(FIXTURES, "certs");
    (spec.servers as unknown[]).push({ listen: `127.0.0.2:${tls.http}`, http2: true, ssl: { certificate: path.join(certs, "lb.crt"), certificate_key: path.join(certs, "lb.key") }, locations: [{ path: "/", return: { code: 204 } }] });
    const file = writeSpec(dir, "h2.json", spec);
    const r = runCli(["check", "--spec", file, "--bin", NGINX_BIN, "--no-consul"], { cwd: dir });
    if (testBinaryInfo().http2) {
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^ok {4}nginx -t +\d+ ms$/m);
    } else {
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`gen-lb: h2.json: 1 setting ${NGINX_BIN} cannot run\n`);
      expect(r.stderr).toMatch(/^ {2}servers\[1\]\.http2 \(h2\.json:\d+:\d+\): .* built without ngx_http_v2_module .*: remove http2: true, or run a binary built with it$/m);
      // No step ran: no "FAIL  nginx -t" / "ok    nginx -t" line.
      expect(r.stdout + r.stderr).not.toMatch(/^\s*(FAIL|ok) +nginx -t/m);
    }
  });

  it("target openresty: build accepts http2 and stub_status with one warning per configure flag; check --bin /opt/openresty/bin/openresty (built without both) refuses each at its spec key and line", async () => {
    const OPENRESTY = "/opt/openresty/bin/openresty";
    const dir = tempDir();
    const spec: Record<string, unknown> = { ...specObject(await ports(), "h2"), target: "openresty", target_version: "1.31.1" };
    const certs = path.join(FIXTURES, "certs");
    // Its own loopback address: a second ports() may hand back a port the first one gave.
    (spec.servers as unknown[]).push({
      listen: `127.0.0.2:${(await ports()).http}`,
      http2: true,
      ssl: { certificate: path.join(certs, "lb.crt"), certificate_key: path.join(certs, "lb.key") },
      locations: [{ path: "/", return: { code: 204 } }, { path: "/stub", directives: [{ name: "stub_status", args: [] }] }],
    });
    const file = writeSpec(dir, "h2.json", spec);
    const lineOf = (needle: string) => readFileSync(file, "utf8").split("\n").findIndex((l) => l.includes(needle)) + 1;

    // build renders for OpenResty's nginx (1.31.1, so "http2 on;") and only warns
    const b = runCli(["build", "--spec", file, "--out", path.join(dir, "dist")], { cwd: dir });
    expect(b.status, b.stderr).toBe(0);
    // (lint also warns about an open status location: not what this test is about)
    const warnings = b.stderr.split("\n").filter((l) => l.startsWith("warning: ") && !l.startsWith("warning: lint:"));
    expect(warnings).toEqual([
      expect.stringMatching(new RegExp(`^warning: servers\\[1\\]\\.http2 \\(h2\\.json:${lineOf('"http2"')}:\\d+\\): "http2" comes from ngx_http_v2_module, which openresty has only when built with --with-http_v2_module .*\`gen-lb check --bin BINARY\``)),
      expect.stringMatching(new RegExp(`^warning: servers\\[1\\]\\.locations\\[1\\]\\.directives\\[0\\]\\.name \\(h2\\.json:${lineOf('"stub_status"')}:\\d+\\): "stub_status" .* --with-http_stub_status_module`)),
    ]);

    const r = runCli(["check", "--spec", file, "--bin", OPENRESTY, "--no-consul"], { cwd: dir });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`gen-lb: h2.json: 2 settings ${OPENRESTY} cannot run\n`);
    expect(r.stderr).toMatch(new RegExp(`^ {2}servers\\[1\\]\\.http2 \\(h2\\.json:${lineOf('"http2"')}:\\d+\\): .* built without ngx_http_v2_module .*: remove http2: true, or run a binary built with it$`, "m"));
    expect(r.stderr).toMatch(new RegExp(`^ {2}servers\\[1\\]\\.locations\\[1\\]\\.directives\\[0\\] \\(h2\\.json:${lineOf('"stub_status"') - 1}:\\d+\\): .* built without ngx_http_stub_status_module \\(its -V has no --with-http_stub_status_module\\), so nginx -t refuses "stub_status"`, "m"));
    // the binary is known: build's warning about the table's reference build is not repeated
    expect(r.stderr).not.toMatch(/^warning: .*gen-lb check --bin/m);
    expect(r.stdout + r.stderr).not.toMatch(/^\s*(FAIL|ok) +nginx -t/m);
  });

  it("an init_by_lua failure passes nginx -t and is caught by the smoke start", async () => {
    const dir = tempDir();
    // Replacing the C module search path makes `require "cjson.safe"` fail in
    // init_by_lua: a deterministic init failure that -t cannot see.
    const spec = specObject(await ports(), "x", {});
    (spec.nginx as Record<string, unknown>).http = { directives: [{ name: "lua_package_cpath", args: ["/nonexistent/?.so"] }] };
    const file = writeSpec(dir, "init-fails.json", spec);
    const r = runCli(["--json", "check", "--spec", file, "--bin", NGINX_BIN], { cwd: dir });
    expect(r.status).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.ok).toBe(false);
    expect(out.error.message).toBe("check of init-fails.json failed: smoke start");
    const [t, lua, smoke] = out.steps;
    expect(t).toMatchObject({ name: "nginx -t", ok: true });
    expect(lua).toMatchObject({ name: "lua syntax", ok: true });
    expect(smoke).toMatchObject({ name: "smoke start", ok: false });
    expect(smoke.messages.join("\n")).toMatch(/\[error\] init_by_lua error: lua\/gen_lb\/\w+\.lua:\d+: module 'cjson(\.safe)?' not found \(nginx\.conf:\d+\)/);
    expect(r.stderr).toContain("gen-lb: check of init-fails.json failed: smoke start");
  });

  it("a binary without the Lua module is named as the problem, with the package to install", async () => {
    const dir = tempDir();
    // target openresty on Debian's nginx: no load_module lines, so no Lua directives.
    const spec = { ...specObject(await ports(), "x"), target: "openresty" };
    const file = writeSpec(dir, "lb.json", spec);
    const r = runCli(["check", "--spec", file, "--bin", "/usr/sbin/nginx"], { cwd: dir });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      '/usr/sbin/nginx has no Lua module (ngx_http_lua_module): it does not know the directive "lua_package_path"; install OpenResty',
    );
    expect(r.stderr).toContain("libnginx-mod-http-lua");

    // target nginx with a modules directory that lacks the module files.
    const empty = tempDir("gen-lb-nomods-");
    const file2 = writeSpec(dir, "nomods.json", { ...specObject(await ports(), "x"), target: "nginx", nginx: { modules_dir: empty } });
    const r2 = runCli(["check", "--spec", file2, "--bin", "/usr/sbin/nginx"], { cwd: dir });
    expect(r2.status).toBe(1);
    expect(r2.stderr).toContain(`/usr/sbin/nginx cannot load ndk_http_module from ${empty} (no such module file): install the Debian/Ubuntu package libnginx-mod-http-ndk`);
  });

  it("--prefix brings the host's conf/ files into the scratch (a certificate the config needs)", async () => {
    const dir = tempDir();
    const p = await ports();
    const tls = await ports();
    const spec = specObject(p, "x");
    (spec.servers as unknown[]).push({ listen: `127.0.0.1:${tls.http}`, ssl: { certificate: "certs/lb.crt", certificate_key: "certs/lb.key" } });
    const file = writeSpec(dir, "tls.json", spec);
    const prefix = makePrefix();
    mkdirSync(path.join(prefix, "conf/certs"));
    cpSync(path.join(FIXTURES, "certs"), path.join(prefix, "conf/certs"), { recursive: true });
    const before = snapshot(prefix, []);

    const without = runCli(["check", "--spec", file, "--bin", NGINX_BIN], { cwd: dir });
    expect(without.status).toBe(1);
    expect(without.stderr).toMatch(/\[emerg\] cannot load certificate .*certs\/lb\.crt/);
    const withPrefix = runCli(["check", "--spec", file, "--bin", NGINX_BIN, "--prefix", prefix], { cwd: dir });
    expect(withPrefix.stderr).toBe("");
    expect(withPrefix.status).toBe(0);
    expect(withPrefix.stdout).toContain(`against ${prefix}`);
    // The check only reads the live prefix.
    expect(snapshot(prefix, [])).toEqual(before);
  });

  it("without luajit (Debian's nginx, none on PATH) the Lua step fails and says what to install", async () => {
    const dir = tempDir();
    const file = writeSpec(dir, "lb.json", { ...specObject(await ports(), "x"), target: "nginx" });
    const r = runCli(["--json", "check", "--spec", file, "--bin", "/usr/sbin/nginx"], { cwd: dir, env: { PATH: "/nonexistent" } });
    expect(r.status).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.error.message).toBe("check of lb.json failed: lua syntax");
    const lua = out.steps[1];
    expect(lua).toMatchObject({ name: "lua syntax", ok: false });
    expect(lua.messages[0]).toMatch(/^luajit not found beside \/usr\/sbin\/nginx nor on PATH: \d+ Lua files cannot be syntax-checked; install luajit2/);
  });

  it("bad input: an invalid spec, a missing --bin, a --prefix that is not a prefix", async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, "bad.yaml"), "servers:\n  - listen: nope\n");
    const invalid = runCli(["check", "--spec", "bad.yaml"], { cwd: dir });
    expect(invalid.status).toBe(1);
    expect(invalid.stderr).toMatch(/^gen-lb: bad\.yaml: 1 error in the spec\n {2}servers\[0\]\.listen \(bad\.yaml:2:5\): expected "host:port"/);

    const file = writeSpec(dir, "lb.json", specObject(await ports(), "x"));
    const nobin = runCli(["check", "--spec", file, "--bin", "/nonexistent/nginx"], { cwd: dir });
    expect(nobin.status).toBe(2);
    expect(nobin.stderr).toBe("gen-lb: --bin /nonexistent/nginx: no such executable\n");

    const notPrefix = runCli(["check", "--spec", file, "--prefix", dir], { cwd: dir });
    expect(notPrefix.status).toBe(1);
    expect(notPrefix.stderr).toContain(`${dir} does not look like an nginx prefix: conf/ and logs/ are missing`);
  });
});
