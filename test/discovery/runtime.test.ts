/**
 * The runtime's start-up contract: a missing shared dict fails the start
 * naming it; the health modules are loaded in the master (so their errors
 * stop the start) and the checker is set up in every worker.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { waitFor } from "../support/ports.js";
import type { Backend } from "../support/backends.js";
import { request } from "../support/load.js";
import { Stack } from "../support/stack.js";

describe("runtime start-up", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });

  /** A discovery stack whose prefix `edit` changes before nginx starts. */
  const startEdited = async (edit: (prefix: string) => void) => {
    stack = await Stack.start({ profile: "discovery", beforeStart: ({ prefix }) => edit(prefix) });
    return stack;
  };

  /** Replaces what `pattern` matches in the prefix's `file`, checking that it matched. */
  const replaceIn = (prefix: string, file: string, pattern: RegExp, by: string) => {
    const p = path.join(prefix, file);
    const text = readFileSync(p, "utf8");
    const edited = text.replace(pattern, by);
    expect(edited).not.toBe(text);
    writeFileSync(p, edited);
  };

  for (const dict of ["gen_lb_peers", "gen_lb_health", "gen_lb_locks"]) {
    it(`refuses to start without lua_shared_dict ${dict}, naming it`, async () => {
      await expect(startEdited((prefix) => replaceIn(prefix, "conf/nginx.conf", new RegExp(`^\\s*lua_shared_dict ${dict} .*;\\n`, "m"), ""))).rejects.toThrow(
        new RegExp(`lua_shared_dict ${dict} is not declared`),
      );
    });
  }

  it("refuses to start when config.lua lacks a field the runtime reads, naming it", async () => {
    await expect(startEdited((prefix) => replaceIn(prefix, "lua/gen_lb/config.lua", /^\s*retries = \d+,\n/m, ""))).rejects.toThrow(
      /config\.lua does not match this runtime: upstreams\.\w+\.retries is missing/,
    );
  });

  it("calls the health checker's init_worker in every worker", async () => {
    // Wrap the real module to see the call (the balancer needs the real one).
    const s = await startEdited((prefix) => {
      const lua = path.join(prefix, "lua/gen_lb");
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
    });
    const workers = s.nginx.workerPids();
    expect(workers).toHaveLength(2);
    await waitFor(() => workers.every((pid) => s.errorLog().includes(`test: health init_worker in ${pid}`)), "every worker to start health");
    expect(s.errorLog()).not.toMatch(/init_worker_by_lua error/);
  });

  it("surfaces a health module that fails to load instead of skipping it", async () => {
    // Loaded by init_by_lua in the master: the start fails, naming the file.
    await expect(startEdited((prefix) => writeFileSync(path.join(prefix, "lua/gen_lb/health.lua"), "local _M = {}\nthis is not lua\nreturn _M\n"))).rejects.toThrow(
      /init_by_lua error.*health\.lua/s,
    );
  });

  it("a bug inside the watcher loop is logged and the loop goes on (no error ends discovery)", async () => {
    // One worker, so the hook patches the watcher's own copy of gen_lb.peers:
    // its next two publish calls throw, as a bug would.
    const s = (stack = await Stack.start({
      profile: "discovery",
      workers: 1,
      backends: ["a", "b"],
      consul: { wait: "1s" },
      luaLocations: {
        "/_break": [
          "local p = require('gen_lb.peers')",
          "local publish, n = p.publish, 0",
          "p.publish = function(...) n = n + 1 if n <= 2 then error('injected bug ' .. n) end return publish(...) end",
          "ngx.say('ok')",
        ].join(" "),
      },
    }));
    const [a, b] = s.backends as [Backend, Backend];
    s.register("web", a);
    await s.waitForPeers("web", [a.address]);
    expect((await request(s.url("/_break"))).body.trim()).toBe("ok");
    s.register("web", b);
    await s.waitForPeers("web", [a.address, b.address], 20_000);
    const bugs = s.genLbLines().filter((l) => /watcher step failed: .*injected bug/.test(l));
    expect(bugs.length).toBeGreaterThanOrEqual(1);
    expect(bugs.length).toBeLessThanOrEqual(2);
    expect(s.genLbLines().filter((l) => /is now the Consul watcher/.test(l))).toHaveLength(1);
  }, 40_000);
});
