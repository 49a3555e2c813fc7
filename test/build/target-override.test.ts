/**
 * `build --target X` renders for X, so what nginx would refuse is judged by
 * X's directive table, not by the spec's own target: a directive only the
 * spec's target has is refused for X (with its spec path and line), one only
 * X has is accepted. The real binary of the matrix leg confirms both facts.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { nginxTest, tempDir } from "../support/nginx.js";
import { TEST_TARGET } from "../support/target.js";

const other = TEST_TARGET === "openresty" ? "nginx" : "openresty";
/** An http-level directive each target has and the other does not (src/nginx/directives/). */
const ONLY_IN = {
  openresty: { name: "log_escape_non_ascii", args: ["off"] }, // OpenResty's patched log module
  // nginx 1.25.1 removed it, so OpenResty 1.31's sources have no such directive. (Directives of a
  // module OpenResty's sources have but its reference build leaves out, such as addition_types, are
  // no longer refused by build: they are accepted with a warning naming the configure flag.)
  nginx: { name: "ssl", args: ["off"] },
} as const;

function spec(dir: string, target: string, directive: { name: string; args: readonly string[] }): string {
  const file = path.join(dir, "lb.yaml");
  writeFileSync(
    file,
    [
      `target: ${target}`,
      "consul: { addresses: [\"http://127.0.0.1:1\"] }",
      "nginx:",
      "  http:",
      "    directives:",
      `      - name: ${directive.name}`,
      `        args: [${directive.args.map((a) => JSON.stringify(a)).join(", ")}]`,
      "servers:",
      "  - listen: 127.0.0.1:18080",
      "    locations: [{ path: /, return: { code: 200, text: ok } }]",
      "",
    ].join("\n"),
  );
  return file;
}

/** The real binary's -t on a minimal config holding only `directive` at http level. */
function binaryAccepts(directive: { name: string; args: readonly string[] }): { ok: boolean; output: string } {
  const prefix = tempDir();
  mkdirSync(path.join(prefix, "conf"));
  mkdirSync(path.join(prefix, "logs"));
  writeFileSync(path.join(prefix, "conf/nginx.conf"), `error_log logs/error.log;\npid logs/nginx.pid;\nevents {}\nhttp {\n  ${directive.name} ${directive.args.join(" ")};\n}\n`);
  return nginxTest(prefix);
}

describe("build --target checks directives against the target it renders for", () => {
  it(`a spec for ${other} with ${ONLY_IN[other].name} (which ${TEST_TARGET} lacks): build --target ${TEST_TARGET} refuses it, naming the spec path and line`, () => {
    const dir = tempDir();
    const file = spec(dir, other, ONLY_IN[other]);
    const r = runCli(["build", "--spec", file, "--out", path.join(dir, "dist"), "--target", TEST_TARGET], { cwd: dir });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^  nginx\\.http\\.directives\\[0\\]\\.name \\(lb\\.yaml:6:\\d+\\): unknown directive "${ONLY_IN[other].name}": ${TEST_TARGET} \\S+ has no such directive`, "m"));
    // ...as the real binary does.
    const real = binaryAccepts(ONLY_IN[other]);
    expect(real.ok).toBe(false);
    expect(real.output).toContain(`unknown directive "${ONLY_IN[other].name}"`);
  });

  it(`a spec for ${other} with ${ONLY_IN[TEST_TARGET].name} (which only ${TEST_TARGET} has): refused for ${other}, built with --target ${TEST_TARGET}, and the real binary accepts the output`, () => {
    const dir = tempDir();
    const file = spec(dir, other, ONLY_IN[TEST_TARGET]);
    const own = runCli(["build", "--spec", file, "--out", path.join(dir, "own")], { cwd: dir });
    expect(own.status).toBe(1);
    expect(own.stderr).toContain(`unknown directive "${ONLY_IN[TEST_TARGET].name}"`);

    const out = path.join(dir, "dist");
    const r = runCli(["build", "--spec", file, "--out", out, "--target", TEST_TARGET], { cwd: dir });
    expect(r.status, r.stderr).toBe(0);
    const t = nginxTest(out);
    expect(t.ok, t.output).toBe(true);
  });
});
