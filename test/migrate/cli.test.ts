/**
 * `gen-lb migrate` end to end through the built CLI: outputs, exit codes,
 * atomic writes (no temp files left, nothing written on failure).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { NGINX_BIN } from "../support/nginx.js";
import { fixtures, root } from "./helpers.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "gen-lb-migrate-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fx = (rel: string) => path.join(fixtures, rel);

describe("gen-lb migrate: modules on the --bin binary", () => {
  it("a module the binary does not have, that nothing tells migrate about, is LEFT OUT and migrate exits 1 (the spec is written)", () => {
    const conf = path.join(dir, "nothere.conf");
    writeFileSync(conf, "load_module modules/ngx_http_nothere_module.so;\nevents {}\nhttp { server { listen 127.0.0.1:8097; location / { return 204; } } }\n");
    const out = path.join(dir, "nothere.yaml");
    const r = runCli(["migrate", conf, "--out", out, "--bin", NGINX_BIN]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^ {2}LEFT OUT .*nothere\.conf:1:1: load_module modules\/ngx_http_nothere_module\.so: .* does not have ngx_http_nothere_module /m);
    expect(r.stderr).toMatch(/^gen-lb: migrate: 1 server\(s\), location\(s\), upstream\(s\) or module\(s\) were left out/m);
    expect(readFileSync(out, "utf8")).not.toContain("load_module");
  });

  it("--prefix is the old nginx's prefix: a relative load_module means a file there (Debian's nginx, which loads modules from anywhere)", () => {
    const old = mkdtempSync(path.join(dir, "old-prefix-"));
    mkdirSync(path.join(old, "modules"));
    writeFileSync(path.join(old, "modules/ngx_http_nothere_module.so"), "");
    const conf = path.join(dir, "prefixed.conf");
    writeFileSync(conf, "load_module modules/ngx_http_nothere_module.so;\nevents {}\nhttp { server { listen 127.0.0.1:8097; } }\n");
    const out = path.join(dir, "prefixed.yaml");
    const r = runCli(["migrate", conf, "--out", out, "--bin", "/usr/sbin/nginx", "--prefix", old]);
    expect(r.stdout).toContain(`load_module modules/ngx_http_nothere_module.so (relative to the old prefix ${old}, made absolute: ${old}/modules/ngx_http_nothere_module.so)`);
    expect(readFileSync(out, "utf8")).toContain(`${old}/modules/ngx_http_nothere_module.so`);
    expect(r.status, r.stderr).toBe(0);
  });
});

describe("gen-lb migrate", () => {
  it("writes the spec, prints the report, and --verify passes for the Consul + Lua setup", () => {
    const out = path.join(dir, "consul-lua.yaml");
    const r = runCli(["migrate", fx("consul-lua/conf/nginx.conf"), "--out", out, "--verify", "--bin", "/usr/sbin/nginx"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("Defects found in the old setup (11 of the 11 known; gen-lb avoids each by construction)");
    expect(r.stdout).toMatch(/\[1\] the Consul request is never made\n {6}.*consul-lua\/lua\/discovery\.lua:27:10: /);
    expect(r.stdout).toContain("/usr/sbin/nginx -t: ok");
    expect(r.stdout).toContain("differences not explained by the report: 0");
    const yaml = readFileSync(out, "utf8");
    expect(yaml).toMatch(/^# gen-lb spec migrated from /);
    expect(yaml).toContain("service: app");
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    // The spec builds.
    const b = runCli(["build", "--spec", out, "--out", path.join(dir, "dist"), "--target", "nginx"]);
    // The one warning: lint on server_tokens, which migrate keeps on (the old behaviour) and suggests turning off.
    expect(b.stderr.split("\n").filter((l) => l !== "" && !/^warning: lint: .*\] server_tokens: /.test(l))).toEqual([]);
    expect(b.status).toBe(0);
  });

  it("--report writes the report to a file; --lua-path finds modules outside lua_package_path", () => {
    const out = path.join(dir, "static.yaml");
    const report = path.join(dir, "static.report");
    const r = runCli(["migrate", fx("static/nginx.conf"), "--out", out, "--report", report, "--lua-path", fx("consul-lua/lua")]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*static\.yaml and the report .*static\.report \(1 to do, 0 known defects found\)\n$/);
    expect(readFileSync(report, "utf8")).toContain("Not carried (port these by hand) (1)");
  });

  it("--json prints the findings as one document", () => {
    const r = runCli(["migrate", fx("consul-template/nginx.conf"), "--out", path.join(dir, "ct.yaml"), "--json"]);
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.defects).toEqual([]);
    expect(doc.findings.some((f: { kind: string; message: string }) => f.kind === "todo" && /consul-template/.test(f.message))).toBe(true);
  });

  it("bad input: exit 1, a message with file:line, and the existing spec left untouched", () => {
    const out = path.join(dir, "keep.yaml");
    writeFileSync(out, "# the user's spec\n");
    const bin = path.join(dir, "bin.conf");
    writeFileSync(bin, Buffer.from([0x75, 0x73, 0x65, 0x72, 0x0a, 0x00, 0x01]));
    const r = runCli(["migrate", bin, "--out", out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${bin}:2:1: not a text file`);
    expect(readFileSync(out, "utf8")).toBe("# the user's spec\n");
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("a Lua module that cannot be found: the spec is written and the report names the require's position", () => {
    const conf = path.join(dir, "nomod.conf");
    writeFileSync(conf, 'events {}\nhttp {\n  lua_package_path "/nowhere/?.lua;;";\n  init_worker_by_lua_block {\n    require("discovery").start()\n  }\n}\n');
    const out = path.join(dir, "nomod.yaml");
    const r = runCli(["migrate", conf, "--out", out]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`${conf}:5:5: require "discovery": module not found (tried /nowhere/discovery.lua)`);
    expect(existsSync(out)).toBe(true);
  });

  it("a missing file or a directory is a usage error, exit 2", () => {
    expect(runCli(["migrate", path.join(dir, "nope.conf"), "--out", path.join(dir, "x.yaml")]).status).toBe(2);
    expect(runCli(["migrate", dir, "--out", path.join(dir, "x.yaml")]).status).toBe(2);
  });

  it("a 50 MB config is refused at once with a clear message, and no spec is written", () => {
    const conf = path.join(dir, "big.conf");
    const server = (i: number) => `  server {\n    listen 127.0.0.1:${10000 + (i % 50000)};\n    server_name s${i}.example.test;\n    location / { proxy_pass http://app; }\n  }\n`;
    const parts = ["events {}\nhttp {\n  upstream app { server 127.0.0.1:9000; }\n"];
    let size = 0;
    for (let i = 0; size < 50 * 1024 * 1024; i++) {
      const s = server(i);
      parts.push(s);
      size += s.length;
    }
    parts.push("}\n");
    writeFileSync(conf, parts.join(""));
    const out = path.join(dir, "big.yaml");
    const r = spawnSync(process.execPath, [path.join(root, "lib/cli.js"), "migrate", conf, "--out", out], {
      encoding: "utf8",
      timeout: 60_000,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/big\.conf:1: 50\.\d MiB is more than migrate reads \(8 MiB\)/);
    expect(existsSync(out)).toBe(false);
  });
});
