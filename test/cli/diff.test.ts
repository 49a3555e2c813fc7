/**
 * `gen-lb diff` as scripts use it: --exit-code (as git diff --exit-code),
 * nginx.conf first, --no-runtime, and a reader that stops early (`| head`):
 * no EPIPE stack trace from any command.
 */
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { CLI, ROOT, runCli } from "../support/cli.js";
import { tempDir } from "../support/nginx.js";

const BASIC = path.join(ROOT, "fixtures/examples/basic.yaml");

/** An empty nginx prefix: install would add every file. */
function emptyPrefix(): string {
  const dir = path.join(tempDir(), "prefix");
  mkdirSync(path.join(dir, "conf"), { recursive: true });
  mkdirSync(path.join(dir, "logs"));
  return dir;
}

/** Run the CLI with a stdout whose reader is already gone, as `gen-lb ... | head -0` leaves it. */
function runWithClosedStdout(args: string[]): Promise<{ status: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    child.on("error", reject);
    child.on("close", (status, signal) => resolve({ status, signal, stderr }));
  });
}

describe("gen-lb diff", () => {
  it("--exit-code exits 1 when install would change something and 0 when not; plain diff exits 0 either way", () => {
    const prefix = emptyPrefix();
    const changed = runCli(["diff", "--prefix", prefix, "--spec", BASIC, "--exit-code"]);
    expect(changed.status).toBe(1);
    expect(changed.stdout).toContain("+++ b/conf/nginx.conf");
    expect(changed.stderr).toMatch(/^gen-lb: install would change \d+ file\(s\) in /);
    const json = runCli(["diff", "--prefix", prefix, "--spec", BASIC, "--exit-code", "--json"]);
    expect(json.status).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ changed: true, error: { exitCode: 1 } });
    expect(runCli(["diff", "--prefix", prefix, "--spec", BASIC]).status).toBe(0);

    const built = runCli(["build", "--spec", BASIC, "--out", prefix]);
    expect(built.status, built.stderr).toBe(0);
    const same = runCli(["diff", "--prefix", prefix, "--spec", BASIC, "--exit-code"]);
    expect(same.status, same.stderr).toBe(0);
    expect(same.stdout).toContain("nothing to change");
  });

  it("prints nginx.conf first, and --no-runtime leaves out the runtime's Lua modules but not config.lua", () => {
    const prefix = emptyPrefix();
    const full = runCli(["diff", "--prefix", prefix, "--spec", BASIC]);
    expect(full.status, full.stderr).toBe(0);
    const files = [...full.stdout.matchAll(/^\+\+\+ b\/(\S+)$/gm)].map((m) => m[1]);
    expect(files[0]).toBe("conf/nginx.conf");
    expect(files).toContain("lua/gen_lb/balancer.lua");

    const lean = runCli(["diff", "--prefix", prefix, "--spec", BASIC, "--no-runtime"]);
    expect(lean.status, lean.stderr).toBe(0);
    const leanFiles = [...lean.stdout.matchAll(/^\+\+\+ b\/(\S+)$/gm)].map((m) => m[1]);
    expect(leanFiles).toEqual(["conf/nginx.conf", "conf/mime.types", "lua/gen_lb/config.lua"]);
    expect(lean.stdout).toMatch(/\(\d+ runtime Lua module\(s\) change too; not shown: --no-runtime\)/);
  });

  it("a reader that goes away early is no error: no EPIPE trace, the command's own exit code", async () => {
    const prefix = emptyPrefix();
    for (const [args, status] of [
      [["diff", "--prefix", prefix, "--spec", BASIC], 0],
      [["diff", "--prefix", prefix, "--spec", BASIC, "--exit-code"], 1],
      [["diff", "--prefix", prefix, "--spec", BASIC, "--json"], 0],
      [["schema"], 0],
      [["parse", "--json", path.join(ROOT, "fixtures/parser/include-missing/nginx.conf")], 1],
    ] as const) {
      const r = await runWithClosedStdout([...args]);
      expect(r.stderr, args.join(" ")).not.toMatch(/EPIPE|node:events|internal error/);
      expect(r.status, args.join(" ")).toBe(status);
    }
  });
});
