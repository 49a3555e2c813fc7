/**
 * The runtime's start-up contract: a missing shared dict fails the start
 * naming it; the health module is started when present, its errors surface,
 * and its absence is fine.
 */
import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConsulStandin } from "../support/consul-standin.js";
import { buildPrefix, Nginx } from "../support/nginx.js";
import { freePort, sleep } from "../support/ports.js";
import { Stack } from "./harness.js";

describe("runtime start-up", () => {
  let standin: ConsulStandin | undefined;
  let nginx: Nginx | undefined;
  afterEach(async () => {
    await nginx?.stop();
    await standin?.stop();
    nginx = undefined;
    standin = undefined;
  });

  async function prefix(): Promise<string> {
    standin = new ConsulStandin();
    await standin.start();
    const { dir } = await buildPrefix(Stack.spec({}, [standin.url], await freePort()) as never);
    chmodSync(dir, 0o755);
    return dir;
  }

  for (const dict of ["gen_lb_peers", "gen_lb_health", "gen_lb_locks"]) {
    it(`refuses to start without lua_shared_dict ${dict}, naming it`, async () => {
      const dir = await prefix();
      const conf = path.join(dir, "conf/nginx.conf");
      const text = readFileSync(conf, "utf8");
      const without = text.replace(new RegExp(`^\\s*lua_shared_dict ${dict} .*;\\n`, "m"), "");
      expect(without).not.toBe(text);
      writeFileSync(conf, without);
      await expect(Nginx.start(dir)).rejects.toThrow(new RegExp(`lua_shared_dict ${dict} is not declared`));
    });
  }

  it("starts without a health module", async () => {
    const dir = await prefix();
    rmSync(path.join(dir, "lua/gen_lb/health.lua"), { force: true });
    nginx = await Nginx.start(dir);
    await sleep(300);
    expect(nginx.errorLog()).not.toMatch(/init_worker_by_lua error|gen_lb\.health/);
    expect(nginx.errorLog()).toMatch(/is now the Consul watcher/);
  });

  it("surfaces a health module that fails to load instead of skipping it", async () => {
    const dir = await prefix();
    const health = path.join(dir, "lua/gen_lb/health.lua");
    writeFileSync(health, "local _M = {}\nthis is not lua\nreturn _M\n");
    // Loaded by init_by_lua in the master: the start fails, naming the file.
    await expect(Nginx.start(dir)).rejects.toThrow(/init_by_lua error.*health\.lua/s);
  });
});
