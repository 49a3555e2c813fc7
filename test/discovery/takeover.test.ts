/**
 * One watcher per node, and a new one when it dies or the config is
 * reloaded. Issue 3's scenario 5.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startBackends, type Backend } from "../support/backends.js";
import { isAlive } from "../support/nginx.js";
import { sleep, waitFor } from "../support/ports.js";
import { instance, Stack } from "../support/stack.js";
import { sample } from "../support/load.js";

describe("discovery: watcher takeover", () => {
  let stack: Stack | undefined;
  let backends: Backend[] = [];
  afterEach(async () => {
    await stack?.stop();
    await Promise.all(backends.map((b) => b.stop()));
    stack = undefined;
    backends = [];
  });

  it("another worker takes over within seconds when the watcher's worker is killed", async () => {
    backends = await startBackends(["a", "b"]);
    const [a, b] = backends as [Backend, Backend];
    stack = await Stack.start({ profile: "discovery", workers: 3, consul: { wait: "5s" } });
    stack.register(instance("web", a.port));
    await stack.waitForPeers("web", [a.address]);
    const watcher = await stack.watcherPid();
    await stack.standin.waitForBlocked("web", 1);

    process.kill(watcher, "SIGKILL");
    const killedAt = Date.now();
    const next = await waitFor(async () => {
      const pid = await stack!.watcherPid();
      return pid !== watcher ? pid : undefined;
    }, "a new watcher", 8000);
    const tookMs = Date.now() - killedAt;
    expect(next).not.toBe(watcher);
    expect(isAlive(watcher)).toBe(false);
    expect(tookMs).toBeLessThan(6000);

    // Traffic never depended on the watcher, and a registration still propagates.
    stack.register(instance("web", b.port));
    await stack.waitForPeers("web", [a.address, b.address]);
    const s = await sample(stack.url("/"), 20);
    expect(s.failures).toBe(0);
    expect(Object.keys(s.byBackend).sort()).toEqual(["a", "b"]);

    // Still one watcher: one blocking query on the service.
    await sleep(500);
    expect(stack.standin.blockedQueries("web")).toBe(1);
    const views = await stack.viewsOfAllWorkers();
    expect([...views.values()].filter((v) => v.watcher).map((v) => v.pid)).toEqual([next]);
  });

  it("a reload hands the watcher to a new worker at once and old workers exit promptly", async () => {
    backends = await startBackends(["a", "b"]);
    const [a, b] = backends as [Backend, Backend];
    // A long wait: the old watcher's blocking query must not hold its worker.
    stack = await Stack.start({ profile: "discovery", workers: 2, consul: { wait: "30s" } });
    stack.register(instance("web", a.port));
    const before = await stack.waitForPeers("web", [a.address]);
    await stack.standin.waitForBlocked("web", 1);
    const oldWorkers = stack.nginx.workerPids();

    await stack.nginx.reload();
    await waitFor(() => oldWorkers.every((p) => !isAlive(p)), "old workers to exit", 5000);
    await Stack.allWorkers(stack.nginx, 2);
    const newWatcher = await stack.watcherPid();
    expect(oldWorkers).not.toContain(newWatcher);
    // The live list survived the reload (no re-seed, same version).
    const after = await stack.waitForPeers("web", [a.address]);
    expect(after.version).toBe(before.version);

    stack.register(instance("web", b.port));
    await stack.waitForPeers("web", [a.address, b.address]);
    expect(stack.standin.blockedQueries("web")).toBeLessThanOrEqual(1);
  });
});
