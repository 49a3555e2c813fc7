/**
 * Static upstreams on OpenResty 1.31 (/opt/openresty/bin/openresty, target
 * openresty): the status endpoint shows nginx's own peer state through the
 * bundled lua-upstream-nginx-module, and `resolve: true` renders
 * `zone` + `server ... resolve`, which this nginx accepts.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { request, runLoad } from "../support/load.js";
import { buildPrefix, Nginx, tempDir } from "../support/nginx.js";
import { freePort, waitFor } from "../support/ports.js";
import { expectStatusContract, readStatus } from "../support/status-contract.js";
import { ConsulDns } from "../support/consul-dns.js";

const OPENRESTY = process.env.GEN_LB_TEST_OPENRESTY ?? "/opt/openresty/bin/openresty";

describe("static upstreams on OpenResty", () => {
  const dirs: string[] = [];
  let nginx: Nginx | undefined;
  const alive = new Backend({ name: "alive" });
  let deadPort = 0;
  let port = 0;
  let statusPort = 0;

  beforeAll(async () => {
    if (!existsSync(OPENRESTY)) throw new Error(`${OPENRESTY} is missing: build OpenResty into /opt/openresty (or set GEN_LB_TEST_OPENRESTY)`);
    await alive.start();
    deadPort = await freePort(); // nothing listens there
    port = await freePort();
    statusPort = await freePort();
    const dir = tempDir("gen-lb-static-or-");
    dirs.push(dir);
    chmodSync(dir, 0o755);
    await buildPrefix(
      {
        target: "openresty",
        nginx: { worker_processes: 1, http: { access_log: "off" } },
        upstreams: {
          app: { servers: [alive.address, { address: `127.0.0.1:${deadPort}`, max_fails: 1, fail_timeout: "30s" }, { address: `127.0.0.2:${deadPort}`, down: true }], retries: 2 },
        },
        servers: [{ listen: `127.0.0.1:${port}`, locations: [{ path: "/", upstream: "app" }] }],
        status: { listen: `127.0.0.1:${statusPort}` },
      },
      dir,
      "openresty",
    );
    nginx = await Nginx.start(dir, {}, OPENRESTY);
  }, 30_000);

  afterAll(async () => {
    await nginx?.stop();
    await alive.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const status = () => readStatus(`http://127.0.0.1:${statusPort}/status`);

  it("status shows each static peer's state as nginx sees it: a refused peer is out, a down one is down", async () => {
    await expectStatusContract(`http://127.0.0.1:${statusPort}/status`, { staticUpstreams: true, ngxUpstream: true });
    const before = (await status()).static_upstreams.app!;
    expect(before.state_source).toBe("worker");
    expect(before.peers.map((p) => [p.address, p.healthy, p.down])).toEqual([
      [alive.address, true, false],
      [`127.0.0.1:${deadPort}`, true, false],
      [`127.0.0.2:${deadPort}`, false, true],
    ]);

    const load = await runLoad({ url: `http://127.0.0.1:${port}/x`, requests: 20, concurrency: 1 });
    expect(load.failures).toEqual([]);
    expect(load.byBackend).toEqual({ alive: 20 });

    const after = (await status()).static_upstreams.app!;
    const dead = after.peers.find((p) => p.address === `127.0.0.1:${deadPort}`)!;
    expect(dead).toMatchObject({ healthy: false, max_fails: 1 });
    expect(dead.fails).toBeGreaterThanOrEqual(1);
    expect(after.peers.find((p) => p.address === alive.address)).toMatchObject({ healthy: true, fails: 0 });
    expect(after.healthy).toBe(1);

    const prom = (await request(`http://127.0.0.1:${statusPort}/status?format=prometheus`)).body;
    expect(prom).toContain(`gen_lb_static_peer_up{upstream="app",peer="127.0.0.1:${deadPort}"} 0\n`);
    expect(prom).toContain(`gen_lb_static_peer_up{upstream="app",peer="${alive.address}"} 1\n`);
  });

  it("resolve: true renders zone + resolve, and OpenResty's nginx takes it (-t and a real start)", async () => {
    const dir = tempDir("gen-lb-static-resolve-");
    dirs.push(dir);
    chmodSync(dir, 0o755);
    const p = await freePort();
    // The resolver address answers nothing: nginx only has to accept the config and start.
    await buildPrefix(
      {
        target: "openresty",
        nginx: { worker_processes: 1, http: { access_log: "off", resolver: [`127.0.0.1:${await freePort()}`] } },
        upstreams: { app: { servers: ["app.internal.test:8080", alive.address], resolve: true } },
        servers: [{ listen: `127.0.0.1:${p}`, locations: [{ path: "/", upstream: "app" }] }],
        status: { enabled: false },
      },
      dir,
      "openresty",
    );
    const conf = readFileSync(path.join(dir, "conf/nginx.conf"), "utf8");
    expect(conf).toContain("zone gen_lb_static_app 64k;");
    expect(conf).toContain("server app.internal.test:8080 resolve;");
    const t = spawnSync(OPENRESTY, ["-t", "-p", `${dir}/`, "-c", "conf/nginx.conf"], { encoding: "utf8" });
    expect(t.status, t.stderr).toBe(0);
    const started = await Nginx.start(dir, {}, OPENRESTY);
    try {
      // The IP server serves while the name is unresolved.
      const r = await waitFor(async () => (await request(`http://127.0.0.1:${p}/x`)).headers["x-backend"] === "alive", "a response from the IP server");
      expect(r).toBe(true);
    } finally {
      await started.stop();
    }
  });

  it("resolve: true follows the name: nginx's resolver turns it into the backend's address and the upstream serves there", async () => {
    // A name server on loopback that knows one node: app.node.dc1.consul -> 127.0.0.1.
    const dns = new ConsulDns({ datacenter: "dc1", healthEntries: () => undefined, nodeAddress: (n) => (n === "app" ? "127.0.0.1" : undefined) });
    await dns.start();
    const dir = tempDir("gen-lb-static-resolved-");
    dirs.push(dir);
    chmodSync(dir, 0o755);
    const p = await freePort();
    await buildPrefix(
      {
        target: "openresty",
        nginx: { worker_processes: 1, http: { access_log: "off", resolver: [dns.address] } },
        upstreams: { app: { servers: [`app.node.dc1.consul:${alive.port}`], resolve: true } },
        servers: [{ listen: `127.0.0.1:${p}`, locations: [{ path: "/", upstream: "app" }] }],
        status: { enabled: false },
      },
      dir,
      "openresty",
    );
    const started = await Nginx.start(dir, {}, OPENRESTY);
    try {
      const before = alive.requests;
      await waitFor(async () => (await request(`http://127.0.0.1:${p}/x`)).headers["x-backend"] === "alive", "a response through the resolved name", 10_000);
      const r = await runLoad({ url: `http://127.0.0.1:${p}/x`, requests: 20, concurrency: 2 });
      expect(r.failures).toEqual([]);
      expect(r.byBackend).toEqual({ alive: 20 });
      expect(alive.requests - before).toBeGreaterThanOrEqual(21);
      expect(dns.countQueries((q) => q.name.toLowerCase() === "app.node.dc1.consul")).toBeGreaterThan(0);
    } finally {
      await started.stop();
      await dns.stop();
    }
  });
});
