/**
 * The test matrix: which binary the end-to-end tests run and which spec
 * target they render for. `.ci/run` runs the e2e project once per binary:
 *
 *   GEN_LB_TEST_BIN=/usr/sbin/nginx GEN_LB_TEST_TARGET=nginx      (Debian nginx + lua module)
 *   GEN_LB_TEST_BIN=/opt/openresty/bin/openresty GEN_LB_TEST_TARGET=openresty
 *
 * Unset, the binary is Debian's nginx and the target follows the binary's
 * name, so a plain `npx vitest run` behaves as before. Helpers read these
 * (buildPrefix, Nginx.start, nginxTest, runCli's GEN_LB_TEST_* passthrough),
 * so test files need no edits to run on both.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { parseVersionOutput, type TargetInfo } from "../../src/target/index.js";

export type TestTarget = "nginx" | "openresty";

export const TEST_BIN: string = process.env.GEN_LB_TEST_BIN ?? process.env.GEN_LB_TEST_NGINX ?? "/usr/sbin/nginx";

function targetOf(bin: string): TestTarget {
  const t = process.env.GEN_LB_TEST_TARGET;
  if (t === "nginx" || t === "openresty") return t;
  if (t !== undefined && t !== "") throw new Error(`GEN_LB_TEST_TARGET=${t}: expected "nginx" or "openresty"`);
  return path.basename(bin) === "openresty" ? "openresty" : "nginx";
}

export const TEST_TARGET: TestTarget = targetOf(TEST_BIN);

let info: TargetInfo | undefined;
/** The matrix binary's `-V`, parsed (src/target); e.g. whether it has HTTP/2. */
export function testBinaryInfo(): TargetInfo {
  if (info === undefined) {
    const r = spawnSync(TEST_BIN, ["-V"], { encoding: "utf8" });
    info = parseVersionOutput(`${r.stderr}${r.stdout}`);
  }
  return info;
}
