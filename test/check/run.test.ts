/**
 * runCheck in process, with the runner passed in: what it runs, in order,
 * and a Lua syntax error (which no spec can produce, so the file set is
 * edited after rendering) reported as file:line.
 */
import { describe, expect, it } from "vitest";
import { runCheck } from "../../src/check/run.js";
import { prepareSpec } from "../../src/pipeline/index.js";
import { systemRunner, type Command, type ProcessRunner } from "../../src/util/proc.js";
import { NGINX_BIN, tempDir } from "../support/nginx.js";
import { ports, specObject, writeSpec } from "../install/helpers.js";

function recording(): { runner: ProcessRunner; calls: Command[] } {
  const calls: Command[] = [];
  return {
    calls,
    runner: { ...systemRunner, run: (cmd) => (calls.push(cmd), systemRunner.run(cmd)) },
  };
}

describe("runCheck", () => {
  it("runs nginx -t, one luajit, then one start, all on the scratch prefix; the build id is the rendered one", async () => {
    const dir = tempDir();
    const prepared = await prepareSpec(writeSpec(dir, "lb.json", specObject(await ports(), "x")), dir);
    const { runner, calls } = recording();
    const report = await runCheck({ prepared, bin: NGINX_BIN }, { runner, env: process.env, tmpDir: dir });
    expect(report.ok).toBe(true);
    expect(report.buildId).toBe(prepared.set.buildId);
    expect(report.fingerprint).toBe(prepared.fingerprint);
    expect(calls.map((c) => [c.command, c.args[0]])).toEqual([
      [NGINX_BIN, "-t"],
      [expect.stringMatching(/luajit$/), "-e"],
      [NGINX_BIN, "-p"],
    ]);
    const scratch = calls[0]!.args[3]!;
    expect(scratch.startsWith(`${dir}/gen-lb-check-`)).toBe(true);
    expect(calls[2]!.args[1]).toBe(scratch);
  });

  it("a Lua syntax error fails the lua step with file:line, prefix-relative", async () => {
    const dir = tempDir();
    const prepared = await prepareSpec(writeSpec(dir, "lb.json", specObject(await ports(), "x")), dir);
    prepared.set.files.push({ path: "lua/gen_lb/broken.lua", contents: "local x = = 1\nreturn x\n" });
    const report = await runCheck({ prepared, bin: NGINX_BIN }, { runner: systemRunner, env: process.env });
    expect(report.ok).toBe(false);
    const lua = report.steps.find((s) => s.name === "lua syntax")!;
    expect(lua.ok).toBe(false);
    expect(lua.messages).toEqual(["lua/gen_lb/broken.lua:1: unexpected symbol near '='"]);
  });
});
