/**
 * Target detection through the CLI, on the matrix binary: init writes the
 * target of the binary it is given, check names a target that does not
 * match the binary together with the fix.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ports, specObject, writeSpec } from "../install/helpers.js";
import { runCli } from "../support/cli.js";
import { NGINX_BIN, tempDir } from "../support/nginx.js";
import { TEST_TARGET } from "../support/target.js";

describe("target detection", () => {
  it(`init --bin ${NGINX_BIN} writes target: ${TEST_TARGET}, and says why`, () => {
    const dir = tempDir();
    const r = runCli(["init", "--bin", NGINX_BIN], { cwd: dir });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`wrote gen-lb.yaml (target: ${TEST_TARGET}; matches ${NGINX_BIN}:`);
    expect(readFileSync(path.join(dir, "gen-lb.yaml"), "utf8")).toMatch(new RegExp(`^target: ${TEST_TARGET}  # matches `, "m"));
  });

  it("check names a spec target that does not match the binary, with the fix", async () => {
    const dir = tempDir();
    const other = TEST_TARGET === "nginx" ? "openresty" : "nginx";
    const file = writeSpec(dir, "lb.json", { ...specObject(await ports(), "x"), target: other });
    const r = runCli(["check", "--spec", file, "--bin", NGINX_BIN], { cwd: dir });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${NGINX_BIN} is `);
    expect(r.stderr).toContain(`but the spec says target: ${other}`);
    expect(r.stderr).toContain(`set target: ${TEST_TARGET}`);
  });
});
