/**
 * Runs once before the e2e project: compile the CLI (end-to-end tests spawn
 * the built lib/cli.js, as users do) and insist on the binary of the test
 * matrix with its Lua module, failing with what to install rather than
 * skipping.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { TEST_BIN, TEST_TARGET } from "./target.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

export const REQUIRED_PACKAGES =
  "nginx-core libnginx-mod-http-lua lua-resty-core lua-resty-lrucache lua-cjson luajit2";

export default function setup(): void {
  execFileSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: root, stdio: "inherit" });
  const missing: string[] = [];
  // Debian's nginx stays needed on both legs: some tests exercise target
  // nginx's own messages with /usr/sbin/nginx by name.
  if (!existsSync("/usr/sbin/nginx")) missing.push("nginx binary (/usr/sbin/nginx)");
  if (!existsSync("/usr/lib/nginx/modules/ngx_http_lua_module.so")) missing.push("the nginx Lua module");
  if (!existsSync("/usr/share/lua/5.1/resty/core.lua")) missing.push("lua-resty-core");
  if (missing.length > 0) {
    throw new Error(
      `The test suite needs the real nginx with the Lua module; missing: ${missing.join(", ")}.\n` +
        `Install: apt-get install -y ${REQUIRED_PACKAGES}  (or run: bash .ci/run)`,
    );
  }
  const v = spawnSync(TEST_BIN, ["-V"], { encoding: "utf8" });
  if (v.error || v.status !== 0) {
    throw new Error(`GEN_LB_TEST_BIN=${TEST_BIN} does not run (${v.error?.message ?? `exit ${v.status}`}); unset it for Debian's nginx, or build OpenResty: bash ../shared/openresty/build.sh /opt/openresty`);
  }
  const out = `${v.stdout}${v.stderr}`;
  if (TEST_TARGET === "openresty" && !/ngx_lua|lua-nginx-module/.test(out)) {
    throw new Error(`GEN_LB_TEST_TARGET=openresty but ${TEST_BIN} -V shows no built-in Lua module; point GEN_LB_TEST_BIN at OpenResty's bin/openresty`);
  }
  process.stderr.write(`gen-lb e2e: binary ${TEST_BIN} (${out.split("\n")[0]?.replace("nginx version: ", "")}), target ${TEST_TARGET}\n`);
}
