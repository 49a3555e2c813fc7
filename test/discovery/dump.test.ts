/**
 * The dump file: last known good lists on disk, read at start before Consul
 * answers. Issue 3's scenario 4, plus what the file looks like, who may write
 * it, and what a damaged one does.
 */
import { chownSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startBackends, type Backend } from "../support/backends.js";
import { sleep, waitFor } from "../support/ports.js";
import { walkTree } from "../support/tree.js";
import { instance, Stack } from "../support/stack.js";
import { pacedLoad, sample } from "../support/load.js";

const NOBODY_UID = 65534;

describe("discovery: the dump file", () => {
  let stack: Stack;
  let backends: Backend[];

  beforeAll(async () => {
    backends = await startBackends(["a", "b", "fallback"]);
    const fb = backends[2]!;
    stack = await Stack.start({ profile: "discovery", workers: 2, upstreams: { web: { service: "web", fallback: [fb.address] } } });
  });
  afterAll(async () => {
    await stack?.stop();
    await Promise.all(backends.map((b) => b.stop()));
  });

  it("holds the last good lists, written atomically into a directory the worker user owns", async () => {
    const [a, b] = backends as [Backend, Backend];
    stack.register(instance("web", a.port));
    stack.register(instance("web", b.port, { Weights: { Passing: 2, Warning: 1 } }));
    await stack.waitForPeers("web", [a.address, b.address]);
    const dump = await waitFor(() => {
      const d = stack.readDump();
      return d?.upstreams.web?.peers.length === 2 ? d : undefined;
    }, "the dump to list both peers");
    expect(dump.upstreams.web).toMatchObject({
      key: "web||",
      peers: [
        ["127.0.0.1", Math.min(a.port, b.port), a.port < b.port ? 1 : 2],
        ["127.0.0.1", Math.max(a.port, b.port), a.port < b.port ? 2 : 1],
      ],
    });
    expect(dump.upstreams.web!.index).toBeGreaterThan(0);
    const view = await stack.view();
    expect(view.dump).toMatchObject({ ok: true, path: stack.dumpPath() });
    expect(view.dump.written_at).toBeGreaterThan(0);
    // Workers run as nobody (root master, no `user`): the master handed them the directory.
    const dir = path.dirname(stack.dumpPath());
    expect(statSync(dir).uid).toBe(NOBODY_UID);
    expect(readdirSync(dir)).toEqual(["gen_lb_peers.json"]);
  });

  it("supplies the peers when nginx restarts while Consul is down; no request fails", async () => {
    const [a, b] = backends as [Backend, Backend];
    await stack.standin.down();
    await stack.restart();
    const load = pacedLoad(stack.url("/"), { clients: 2, intervalMs: 20 });
    const view = await stack.view();
    expect(view.upstreams.web?.meta.source).toBe("dump");
    expect(view.upstreams.web?.peers.map((p) => p.replace(/\/\d+$/, "")).sort()).toEqual([a.address, b.address].sort());
    await sleep(2000);
    const result = await load.stop();
    expect(result.failures).toEqual([]);
    expect(result.total).toBeGreaterThan(50);
    expect(result.byBackend.fallback).toBeUndefined();
    expect(result.byBackend.a).toBeGreaterThan(0);
    expect(result.byBackend.b).toBeGreaterThan(0);

    // Consul returns: the same list, now confirmed by Consul; the version stays.
    await stack.standin.up();
    const back = await waitFor(async () => {
      const v = (await stack.view()).upstreams.web;
      return v?.meta.source === "consul" ? v : undefined;
    }, "Consul to confirm the list", 15_000);
    expect(back.version).toBe(view.upstreams.web?.version);
  });

  it("falls back to the static peers when the dump is damaged, and says so once", async () => {
    await stack.standin.down();
    await stack.nginx.stop();
    writeFileSync(stack.dumpPath(), '{"format": 1, "upstreams": {"web": {"peers": [["127.0.0.1", 1');
    await stack.restart();
    const view = await stack.view();
    expect(view.upstreams.web?.meta.source).toBe("fallback");
    const s = await sample(stack.url("/"), 10);
    expect(s).toMatchObject({ failures: 0, byBackend: { fallback: 10 } });
    expect(stack.genLbLines().filter((l) => /ignoring the dump file/.test(l))).toHaveLength(1);
    await stack.standin.up();
    await stack.waitForPeers("web", backends.slice(0, 2).map((b) => b.address), 15_000);
    // Once Consul answered, the dump is whole again.
    await waitFor(() => stack.readDump()?.upstreams.web?.peers.length === 2, "a rewritten dump");
  });
});

describe("discovery: dump file with a non-root master", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });

  it("the master creates the dump directory for its own workers", async () => {
    stack = await Stack.start({
      profile: "discovery",
      nginx: { http: { access_log: "off" } },
      backends: ["a"],
      // Everything the master needs, owned by nobody; then run it as nobody.
      beforeStart: ({ prefix }) => {
        for (const p of [prefix, ...walkTree(prefix).map((e) => e.path)]) chownSync(p, NOBODY_UID, NOBODY_UID);
      },
      launch: { uid: NOBODY_UID },
    });
    expect(readFileSync(`/proc/${stack.nginx.masterPid}/status`, "utf8")).toMatch(new RegExp(`^Uid:\\s+${NOBODY_UID}\\s`, "m"));
    const [backend] = stack.backends as [Backend];
    stack.register("web", backend);
    await waitFor(() => readFileSync(stack!.dumpPath(), "utf8").includes(String(backend.port)), "the dump", 10_000);
    expect(statSync(path.dirname(stack.dumpPath())).uid).toBe(NOBODY_UID);
    expect(stack.errorLog()).not.toMatch(/cannot write the dump|may not be writable/);
  });
});
