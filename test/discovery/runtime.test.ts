/**
 * The runtime's start-up contract: a missing shared dict fails the start
 * naming it; the health modules are loaded in the master (so their errors
 * stop the start) and the checker is set up in every worker.
 */
import { chmodSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConsulStandin } from "../support/consul-standin.js";
import { buildPrefix, Nginx } from "../support/nginx.js";
import { freePort, waitFor } from "../support/ports.js";
import { startBackends, type Backend } from "../support/backends.js";
import { request } from "../support/load.js";
import { instance, Stack } from "../support/stack.js";

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
    const { dir } = await buildPrefix(Stack.spec({ profile: "discovery" }, [standin.url], await freePort()) as never);
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

  it("refuses to start when config.lua lacks a field the runtime reads, naming it", async () => {
    const dir = await prefix();
    const file = path.join(dir, "lua/gen_lb/config.lua");
    const text = readFileSync(file, "utf8");
    const without = text.replace(/^\s*retries = \d+,\n/m, "");
    expect(without).not.toBe(text);
    writeFileSync(file, without);
    await expect(Nginx.start(dir)).rejects.toThrow(/config\.lua does not match this runtime: upstreams\.\w+\.retries is missing/);
  });

  it("calls the health checker's init_worker in every worker", async () => {
    const dir = await prefix();
    // Wrap the real module to see the call (the balancer needs the real one).
    const lua = path.join(dir, "lua/gen_lb");
    renameSync(path.join(lua, "health_checker.lua"), path.join(lua, "health_checker_real.lua"));
    writeFileSync(
      path.join(lua, "health_checker.lua"),
      [
        'local m = require "gen_lb.health_checker_real"',
        "local init_worker = m.init_worker",
        "function m.init_worker(...)",
        '  ngx.log(ngx.WARN, "test: health init_worker in ", ngx.worker.pid())',
        "  return init_worker(...)",
        "end",
        "return m",
        "",
      ].join("\n"),
    );
    nginx = await Nginx.start(dir);
    await Stack.allWorkers(nginx, 2);
    const workers = nginx.workerPids();
    await waitFor(() => workers.every((pid) => nginx!.errorLog().includes(`test: health init_worker in ${pid}`)), "every worker to start health");
    expect(nginx.errorLog()).not.toMatch(/init_worker_by_lua error/);
  });

  it("surfaces a health module that fails to load instead of skipping it", async () => {
    const dir = await prefix();
    const health = path.join(dir, "lua/gen_lb/health.lua");
    writeFileSync(health, "local _M = {}\nthis is not lua\nreturn _M\n");
    // Loaded by init_by_lua in the master: the start fails, naming the file.
    await expect(Nginx.start(dir)).rejects.toThrow(/init_by_lua error.*health\.lua/s);
  });

  it("a bug inside the watcher loop is logged and the loop goes on (no error ends discovery)", async () => {
    const backends = await startBackends(["a", "b"]);
    // One worker, so the hook patches the watcher's own copy of gen_lb.peers:
    // its next two publish calls throw, as a bug would.
    const stack = await Stack.start({
      profile: "discovery",
      workers: 1,
      consul: { wait: "1s" },
      luaLocations: {
        "/_break": [
          "local p = require('gen_lb.peers')",
          "local publish, n = p.publish, 0",
          "p.publish = function(...) n = n + 1 if n <= 2 then error('injected bug ' .. n) end return publish(...) end",
          "ngx.say('ok')",
        ].join(" "),
      },
    });
    try {
      const [a, b] = backends as [Backend, Backend];
      stack.register(instance("web", a.port));
      await stack.waitForPeers("web", [a.address]);
      expect((await request(stack.url("/_break"))).body.trim()).toBe("ok");
      stack.register(instance("web", b.port));
      await stack.waitForPeers("web", [a.address, b.address], 20_000);
      const bugs = stack.genLbLines().filter((l) => /watcher step failed: .*injected bug/.test(l));
      expect(bugs.length).toBeGreaterThanOrEqual(1);
      expect(bugs.length).toBeLessThanOrEqual(2);
      expect(stack.genLbLines().filter((l) => /is now the Consul watcher/.test(l))).toHaveLength(1);
    } finally {
      await stack.stop();
      await Promise.all(backends.map((x) => x.stop()));
    }
  }, 40_000);
});
