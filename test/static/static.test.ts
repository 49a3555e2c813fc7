/**
 * Static upstreams (`servers:`, no `service:`) served by the real nginx
 * (Debian's, target nginx) to real backends on loopback: a host-name server
 * and a unix-socket server both serve, backup servers get traffic only when
 * the primaries are down, `hash $arg_k consistent` keeps a key on its peer,
 * and the status endpoint lists the configured servers. No Consul: the
 * upstreams never touch gen-lb's Lua.
 */
import { chmodSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { request, runLoad } from "../support/load.js";
import { buildPrefix, Nginx, tempDir } from "../support/nginx.js";
import { freePort } from "../support/ports.js";
import { expectStatusContract, readStatus } from "../support/status-contract.js";
import { TEST_TARGET } from "../support/target.js";

/** An HTTP backend on a unix socket, answering with its name like Backend does. */
async function unixBackend(socket: string, name: string): Promise<{ server: http.Server; requests: () => number }> {
  let n = 0;
  const server = http.createServer((_req, res) => {
    n++;
    res.writeHead(200, { "x-backend": name, "content-type": "text/plain" });
    res.end(`${name}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socket, () => resolve());
  });
  chmodSync(socket, 0o777); // workers run as nobody
  return { server, requests: () => n };
}

describe("static upstreams on the real nginx", () => {
  const dir = tempDir("gen-lb-static-");
  const socket = path.join(dir, "app.sock");
  let nginx: Nginx;
  let port = 0;
  let statusPort = 0;
  let named: Backend;
  let unix: Awaited<ReturnType<typeof unixBackend>>;
  const primaries = [new Backend({ name: "p1" }), new Backend({ name: "p2" })];
  const spare = new Backend({ name: "spare" });
  const ring = [new Backend({ name: "h1" }), new Backend({ name: "h2" }), new Backend({ name: "h3" })];
  let nginxConf = "";

  beforeAll(async () => {
    chmodSync(dir, 0o755);
    named = await new Backend({ name: "named" }).start();
    unix = await unixBackend(socket, "unix");
    await Promise.all([...primaries, spare, ...ring].map((b) => b.start()));
    port = await freePort();
    statusPort = await freePort();
    await buildPrefix(
      {
        nginx: { worker_processes: 1, error_log: { path: "logs/error.log", level: "info" }, http: { access_log: "off" } },
        upstreams: {
          mixed: { servers: [`localhost:${named.port}`, `unix:${socket}`] },
          failover: {
            servers: [...primaries.map((b) => b.address), { address: spare.address, backup: true }],
            retries: 3,
            connect_timeout: "1s",
          },
          keyed: { servers: ring.map((b) => b.address), balance: "chash", hash_key: "$arg_k" },
        },
        servers: [
          {
            listen: `127.0.0.1:${port}`,
            locations: [
              { path: "/mixed/", upstream: "mixed" },
              { path: "/failover/", upstream: "failover" },
              { path: "/keyed/", upstream: "keyed" },
            ],
          },
        ],
        status: { listen: `127.0.0.1:${statusPort}` },
      },
      dir,
    );
    nginxConf = readFileSync(path.join(dir, "conf/nginx.conf"), "utf8");
    nginx = await Nginx.start(dir);
  }, 30_000);

  afterAll(async () => {
    await nginx?.stop();
    await Promise.all([named, spare, ...primaries, ...ring].map((b) => b?.stop()));
    await new Promise<void>((resolve) => (unix ? unix.server.close(() => resolve()) : resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("renders nginx's own upstream {} with no Lua on the path of a static upstream", () => {
    const block = /upstream mixed \{([^}]*)\}/.exec(nginxConf)?.[1] ?? "";
    expect(block).toContain(`server localhost:${named.port};`);
    expect(block).toContain(`server unix:${socket};`);
    expect(block).not.toMatch(/lua/);
    expect(/upstream keyed \{([^}]*)\}/.exec(nginxConf)?.[1]).toMatch(/^\s*hash \$arg_k consistent;/);
    // No server here proxies to a Consul upstream, so no gen-lb log phase runs for these requests.
    expect(nginxConf).not.toContain("gen_lb.balancer");
  });

  it("a host-name server and a unix-socket server both serve", async () => {
    const r = await runLoad({ url: `http://127.0.0.1:${port}/mixed/x`, requests: 40, concurrency: 4 });
    expect(r.failures).toEqual([]);
    expect(r.byBackend.named).toBeGreaterThanOrEqual(10);
    expect(r.byBackend.unix).toBeGreaterThanOrEqual(10);
    expect(unix.requests()).toBe(r.byBackend.unix);
  });

  it("the backup server gets no traffic while a primary is up, and all of it once they are down", async () => {
    const before = await runLoad({ url: `http://127.0.0.1:${port}/failover/x`, requests: 40, concurrency: 4 });
    expect(before.failures).toEqual([]);
    expect(before.byBackend.spare ?? 0).toBe(0);
    expect(before.byBackend.p1).toBeGreaterThan(0);
    expect(before.byBackend.p2).toBeGreaterThan(0);

    await primaries[0]!.stop();
    const one = await runLoad({ url: `http://127.0.0.1:${port}/failover/x`, requests: 40, concurrency: 4 });
    expect(one.failures).toEqual([]);
    expect(one.byBackend).toEqual({ p2: 40 });

    await primaries[1]!.stop();
    const none = await runLoad({ url: `http://127.0.0.1:${port}/failover/x`, requests: 40, concurrency: 4 });
    expect(none.failures).toEqual([]);
    expect(none.byBackend).toEqual({ spare: 40 });
  });

  it("hash $arg_k consistent keeps each key on its peer", async () => {
    const owner = new Map<string, string>();
    for (let round = 0; round < 4; round++) {
      for (let k = 0; k < 30; k++) {
        const res = await request(`http://127.0.0.1:${port}/keyed/x?k=user${k}`);
        expect(res.status).toBe(200);
        const backend = String(res.headers["x-backend"]);
        const first = owner.get(`user${k}`);
        if (first === undefined) owner.set(`user${k}`, backend);
        else expect(backend, `key user${k}`).toBe(first);
      }
    }
    // Keys spread over the ring: every peer owns some (30 keys, 3 peers, 160 points each).
    expect(new Set(owner.values())).toEqual(new Set(["h1", "h2", "h3"]));
  });

  it("the status endpoint lists static upstreams with their servers (nginx's own state where the target has ngx.upstream)", async () => {
    // ngx.upstream (OpenResty) adds the static peer families.
    const { doc } = await expectStatusContract(`http://127.0.0.1:${statusPort}/status`, { staticUpstreams: true, ngxUpstream: TEST_TARGET === "openresty" });
    expect(doc.upstreams).toEqual({});
    expect(Object.keys(doc.static_upstreams).sort()).toEqual(["failover", "keyed", "mixed"]);
    const mixed = doc.static_upstreams.mixed!;
    if (TEST_TARGET === "openresty") {
      // lua-upstream-nginx-module: each worker's own view (no zone without resolve), names as nginx resolved them.
      expect(mixed.state_source).toBe("worker");
      expect(mixed.healthy).toBe(2);
      expect(mixed.peers.map((p) => p.address)).toEqual([expect.stringMatching(new RegExp(`:${named.port}$`)), `unix:${socket}`]);
    } else {
      expect(mixed.state_source).toBe("none");
      expect(mixed.healthy).toBeNull();
      expect(mixed.peers.map((p) => p.address)).toEqual([`localhost:${named.port}`, `unix:${socket}`]);
    }
    expect(doc.static_upstreams.failover!.peers.map((p) => p.backup)).toEqual([false, false, true]);
    expect(doc.static_upstreams.keyed!.balance).toBe("chash");

    const one = await readStatus(`http://127.0.0.1:${statusPort}/status?upstream=keyed`);
    expect(Object.keys(one.static_upstreams)).toEqual(["keyed"]);
    const prom = (await request(`http://127.0.0.1:${statusPort}/status?format=prometheus`)).body;
    expect(prom).toContain('gen_lb_static_upstream_servers{upstream="failover"} 3\n');
  });
});
