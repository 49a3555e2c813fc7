/**
 * The main use of migrate, end to end: the hand-built Consul + Lua setup of
 * fixtures/migrate/consul-lua is migrated, built and started with the real
 * nginx, and must send traffic to the instances registered in the Consul
 * stand-in (which the old setup never managed: its request was never made).
 * Everything listens on 127.0.0.1.
 */
import { chmodSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../../src/migrate/index.js";
import type { SpecInput } from "../../src/spec/schema.js";
import { startBackends, type Backend } from "../support/backends.js";
import { ConsulStandin } from "../support/consul-standin.js";
import { request } from "../support/load.js";
import { buildPrefix, Nginx } from "../support/nginx.js";
import { freePort, waitFor } from "../support/ports.js";
import { fixtureLoader, root } from "./helpers.js";

// Discovery is asynchronous after start: until the watcher's first answer the
// balancer routes to the fallback peers, so the traffic assertions wait for the
// Consul instances to be served; the discovery assertion does not.

async function sample(url: string, n: number): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const res = await request(url, { timeoutMs: 5000 }).catch(() => ({ status: 0, headers: {} as Record<string, unknown> }));
    const key = res.status === 200 ? String(res.headers["x-backend"]) : `status ${res.status}`;
    seen[key] = (seen[key] ?? 0) + 1;
  }
  return seen;
}

describe("a migrated Consul + Lua setup routes to the instances registered in Consul", () => {
  let standin: ConsulStandin;
  let backends: Backend[];
  let nginx: Nginx | undefined;
  let url: string;
  let prefix: string;

  beforeAll(async () => {
    standin = new ConsulStandin();
    const consulUrl = await standin.start();
    backends = await startBackends(["a", "b"]);
    const port = await freePort();
    url = `http://127.0.0.1:${port}/`;
    // The old setup, pointed at the stand-in and a free loopback port.
    const base = fixtureLoader("consul-lua");
    const read = (p: string) => Buffer.from(base.readFile(p) as Uint8Array).toString("utf8");
    const loader = fixtureLoader("consul-lua", {
      "consul-lua/lua/discovery.lua": read("consul-lua/lua/discovery.lua").replace("http://127.0.0.1:8500", consulUrl),
      "consul-lua/conf/nginx.conf": read("consul-lua/conf/nginx.conf").replace("listen 80;", `listen 127.0.0.1:${port};`),
    });
    const m = migrate("consul-lua/conf/nginx.conf", { loader });
    expect((m.spec.consul as { addresses: string[] }).addresses).toEqual([consulUrl]);
    const spec = m.spec as Record<string, Record<string, unknown>>;
    spec.status!.listen = `127.0.0.1:${await freePort()}`;

    for (const b of backends) standin.registerService({ ID: `app-${b.name}`, Name: "app", Address: b.host, Port: b.port });
    const { dir } = await buildPrefix(spec as SpecInput);
    prefix = dir;
    chmodSync(dir, 0o755);
    nginx = await Nginx.start(dir);
  });

  afterAll(async () => {
    await nginx?.stop();
    for (const b of backends ?? []) await b.stop();
    await standin?.stop();
  });

  it("discovers both registered instances from Consul (the last-good dump lists them)", async () => {
    const want = backends.map((b) => String(b.port));
    await waitFor(() => {
      try {
        const dump = readFileSync(path.join(prefix, "state/gen_lb_peers.json"), "utf8");
        return want.every((p) => dump.includes(p)) ? dump : undefined;
      } catch {
        return undefined;
      }
    }, "the peers dump to list both instances", 20_000);
  });

  it("sends traffic to both registered instances", async () => {
    const seen = await waitFor(async () => {
      const s = await sample(url, 20);
      return s.a && s.b && s.a + s.b === 20 ? s : undefined;
    }, "traffic to both instances", 20_000);
    expect(Object.keys(seen).sort()).toEqual(["a", "b"]);
  });

  it("follows a deregistration without a reload", async () => {
    standin.deregisterService("app-b");
    const seen = await waitFor(async () => {
      const s = await sample(url, 10);
      return s.a === 10 ? s : undefined;
    }, "traffic to a only", 20_000);
    expect(seen).toEqual({ a: 10 });
  });
});
