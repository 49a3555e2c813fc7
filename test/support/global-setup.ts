/**
 * Runs once before the suite: compile the CLI (end-to-end tests spawn the
 * built lib/cli.js, as users do) and insist on the real nginx with the Lua
 * module, failing with what to install rather than skipping.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

export const REQUIRED_PACKAGES =
  "nginx-core libnginx-mod-http-lua lua-resty-core lua-resty-lrucache lua-cjson luajit2";

export default function setup(): void {
  execFileSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: root, stdio: "inherit" });
  const missing: string[] = [];
  if (!existsSync("/usr/sbin/nginx")) missing.push("nginx binary (/usr/sbin/nginx)");
  if (!existsSync("/usr/lib/nginx/modules/ngx_http_lua_module.so")) missing.push("the nginx Lua module");
  if (!existsSync("/usr/share/lua/5.1/resty/core.lua")) missing.push("lua-resty-core");
  if (missing.length > 0) {
    throw new Error(
      `The test suite needs the real nginx with the Lua module; missing: ${missing.join(", ")}.\n` +
        `Install: apt-get install -y ${REQUIRED_PACKAGES}  (or run: bash .ci/run)`,
    );
  }
}
