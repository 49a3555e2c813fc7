import { cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, ROOT } from "../support/cli.js";
import { nginxTest, tempDir } from "../support/nginx.js";
import { TEST_TARGET } from "../support/target.js";
import { walkTree } from "../support/tree.js";

const BASIC = path.join(ROOT, "fixtures/examples/basic.yaml");

function snapshot(dir: string): Record<string, string> {
  if (!existsSync(dir)) return {};
  return Object.fromEntries(walkTree(dir).filter((e) => !e.dir).map((e) => [e.rel, readFileSync(e.path, "utf8")]));
}

describe("gen-lb CLI", () => {
  it("--version prints the package version, --help lists commands and exit codes", () => {
    const version = runCli(["--version"]);
    expect(version).toMatchObject({ status: 0, stderr: "" });
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).version);
    const help = runCli(["--help"]);
    expect(help.status).toBe(0);
    for (const cmd of ["init", "build", "schema", "check", "install", "rollback", "diff", "parse", "migrate"]) expect(help.stdout).toContain(cmd);
    expect(help.stdout).toContain("Exit codes: 0 ok, 1 spec or config rejected, 2 usage error or crash.");
  });

  it("usage errors exit 2", () => {
    const r = runCli(["build", "--no-such-option"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown option '--no-such-option'");
    expect(runCli(["frobnicate"]).status).toBe(2);
  });

  it("build writes an nginx prefix that nginx accepts, and --json describes it", () => {
    const out = tempDir();
    const r = runCli(["--json", "build", "--spec", BASIC, "--out", out, "--target", TEST_TARGET]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ ok: true, buildId: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect(result.files).toEqual(expect.arrayContaining(["conf/nginx.conf", "lua/gen_lb/config.lua", "lua/gen_lb/balancer.lua"]));
    expect(existsSync(path.join(out, "logs"))).toBe(true);
    expect(nginxTest(out).ok).toBe(true);
    expect(readdirSync(out).filter((n) => n.startsWith(".gen-lb-staging"))).toEqual([]);
  });

  it("build --check passes on fresh output and fails with a diff when stale", () => {
    const out = tempDir();
    expect(runCli(["build", "--spec", BASIC, "--out", out]).status).toBe(0);
    const fresh = runCli(["build", "--check", "--spec", BASIC, "--out", out]);
    expect(fresh.status).toBe(0);
    expect(fresh.stdout).toContain("is up to date");

    const conf = path.join(out, "conf/nginx.conf");
    writeFileSync(conf, readFileSync(conf, "utf8").replace("keepalive 32;", "keepalive 16;"));
    writeFileSync(path.join(out, "lua/gen_lb/old_module.lua"), "return {}\n");
    const before = snapshot(out);
    const stale = runCli(["build", "--check", "--spec", BASIC, "--out", out]);
    expect(stale.status).toBe(1);
    expect(stale.stdout).toContain("--- a/conf/nginx.conf");
    expect(stale.stdout).toMatch(/^-\s+keepalive 16;$/m);
    expect(stale.stdout).toMatch(/^\+\s+keepalive 32;$/m);
    expect(stale.stdout).toContain("lua/gen_lb/old_module.lua (no longer generated)");
    expect(stale.stderr).toContain("is stale: 2 file(s) differ");
    expect(snapshot(out)).toEqual(before); // --check writes nothing
  });

  it("init writes a starter spec that builds as is", () => {
    const dir = tempDir();
    expect(runCli(["init"], { cwd: dir }).status).toBe(0);
    const again = runCli(["init"], { cwd: dir });
    expect(again.status).toBe(1);
    expect(again.stderr).toContain("already exists; pass --force");
    const build = runCli(["build"], { cwd: dir });
    expect(build.status).toBe(0);
    expect(nginxTest(path.join(dir, "dist")).ok).toBe(true);
  });

  it("schema prints the JSON Schema, and the committed copy is in step", () => {
    const r = runCli(["schema"]);
    expect(r.status).toBe(0);
    const schema = JSON.parse(r.stdout);
    expect(schema.properties.upstreams.description).toContain("load-balanced services");
    expect(r.stdout).toBe(readFileSync(path.join(ROOT, "schema/gen-lb.schema.json"), "utf8"));
  });
});

describe("bad input: one clear message, the right exit code, nothing written", () => {
  function expectUntouched(args: string[], status: number, stderr: RegExp, cwd?: string) {
    const out = tempDir();
    cpSync(path.join(ROOT, "fixtures/examples"), path.join(out, "keep"), { recursive: true });
    const before = snapshot(out);
    const r = runCli([...args, "--out", out], { cwd });
    expect(r.status).toBe(status);
    expect(r.stderr).toMatch(stderr);
    expect(r.stdout).toBe("");
    expect(snapshot(out)).toEqual(before);
  }

  it("malformed YAML: file:line:col", () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, "gen-lb.yaml"), "upstreams:\n  web: {service: web\n");
    expectUntouched(["build"], 1, /^gen-lb: gen-lb\.yaml: 1 error in the spec\n {2}gen-lb\.yaml:\d+:\d+: invalid YAML/, dir);
  });

  it("a wrong type and an unknown key, both reported", () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, "gen-lb.yaml"), "nginx:\n  worker_connections: lots\nservrs: []\n");
    expectUntouched(["build"], 1, /2 errors in the spec\n {2}nginx\.worker_connections \(gen-lb\.yaml:2:3\): expected number.*\n {2}servrs \(gen-lb\.yaml:3:1\): unknown key "servrs"/, dir);
  });

  it("an empty file", () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, "gen-lb.yaml"), "");
    expectUntouched(["build"], 1, /the spec is empty/, dir);
  });

  it("a missing file", () => {
    expectUntouched(["build", "--spec", "/nonexistent/gen-lb.yaml"], 1, /does not exist; run `gen-lb init`/);
  });

  it("a directory passed as the spec is a usage error", () => {
    expectUntouched(["build", "--spec", tempDir()], 2, /is a directory; pass the spec file itself/);
  });

  it("an unwritable output directory", () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, "blocker"), "a file where a directory should be\n");
    const r = runCli(["build", "--spec", BASIC, "--out", path.join(dir, "blocker", "out")]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^gen-lb: cannot write .*blocker\/out: a path component is a file, not a directory/);
    expect(readFileSync(path.join(dir, "blocker"), "utf8")).toBe("a file where a directory should be\n");
  });

  it("a failure part-way leaves every old file as it was, never half an output", () => {
    const out = tempDir();
    expect(runCli(["build", "--spec", BASIC, "--out", out]).status).toBe(0);
    // lua/gen_lb becomes a file: conf/ could be written, lua/ cannot.
    rmSync(path.join(out, "lua"), { recursive: true });
    writeFileSync(path.join(out, "lua"), "in the way\n");
    const before = snapshot(out);
    const r = runCli(["build", "--spec", path.join(ROOT, "fixtures/examples/legacy-equivalent.yaml"), "--out", out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^gen-lb: cannot write .*: a path component is a file, not a directory/);
    expect(snapshot(out)).toEqual(before);
  });
});
