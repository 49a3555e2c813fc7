/**
 * issue 11, "zero failed requests when a first install meets a slow Consul":
 * a FRESH prefix that served a static site (never gen-lb, so no dump file),
 * the real nginx running it under a bounded loopback load, and a Consul
 * (stand-in) that answers every health query 1.5 s late. `gen-lb install
 * --reload` switches it to a gen-lb config whose upstream has no fallback
 * peers; every request before, during and after the reload is counted.
 *
 * Without the CLI seeding the dump, the new workers answer 502 ("no peers")
 * until their own first Consul answer comes, 1.5 s or more after the reload.
 */
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startBackends, type Backend } from "../support/backends.js";
import { ConsulStandin } from "../support/consul-standin.js";
import { request } from "../support/load.js";
import { Nginx, NGINX_BIN, tempDir } from "../support/nginx.js";
import { sleep } from "../support/ports.js";
import { TEST_TARGET } from "../support/target.js";
import { makePrefix, ports, runCliAsync, writeSpec } from "./helpers.js";

const started: Nginx[] = [];
let backends: Backend[] = [];
let standin: ConsulStandin | undefined;
afterAll(async () => {
  for (const n of started) await n.stop();
  for (const b of backends) await b.stop();
  await standin?.stop();
});

interface Tally {
  total: number;
  statuses: Record<string, number>;
  failures: Array<{ at: number; status?: number; error?: string; body?: string }>;
  byBackend: Record<string, number>;
}

/** Bounded loopback load until stop() (or 60 s): one connection per request, so a reload's closing of idle keep-alive connections is not counted. */
function loadUntilStopped(url: string, concurrency: number): { stop: () => Promise<Tally> } {
  const tally: Tally = { total: 0, statuses: {}, failures: [], byBackend: {} };
  const t0 = Date.now();
  let running = true;
  const deadline = t0 + 60_000;
  const agent = new http.Agent({ keepAlive: false });
  const client = async () => {
    while (running && Date.now() < deadline) {
      try {
        const r = await request(url, { agent, headers: { connection: "close" }, timeoutMs: 5_000 });
        tally.total++;
        tally.statuses[r.status] = (tally.statuses[r.status] ?? 0) + 1;
        if (r.status !== 200) tally.failures.push({ at: Date.now() - t0, status: r.status, body: r.body.slice(0, 120) });
        const b = r.headers["x-backend"];
        if (typeof b === "string") tally.byBackend[b] = (tally.byBackend[b] ?? 0) + 1;
      } catch (error) {
        tally.total++;
        tally.failures.push({ at: Date.now() - t0, error: (error as Error).message });
      }
    }
  };
  const clients = Promise.all(Array.from({ length: concurrency }, client));
  return {
    async stop() {
      running = false;
      await clients;
      agent.destroy();
      return tally;
    },
  };
}

describe("first install into a prefix that ran a static site, Consul answering 1.5 s late", () => {
  it("install --reload under load: 0 failed requests; the new workers start with the peers install read from Consul", async () => {
    const prefix = makePrefix();
    const dir = tempDir();
    const p = await ports();
    // What ran here before: a plain static site, no gen-lb, no state/.
    writeFileSync(
      path.join(prefix, "conf/nginx.conf"),
      `worker_processes 1;\npid logs/nginx.pid;\nerror_log logs/error.log;\nevents { worker_connections 256; }\n` +
        `http { access_log off; server { listen 127.0.0.1:${p.http}; root html; location / { try_files /index.html =404; } } }\n`,
    );
    const nginx = await Nginx.start(prefix);
    started.push(nginx);

    backends = await startBackends(["b1", "b2"]);
    standin = new ConsulStandin();
    await standin.start();
    for (const b of backends) standin.registerService({ ID: `web-${b.name}`, Name: "web", Address: b.host, Port: b.port });
    // Every health query (the CLI's and the new workers') is answered 1.5 s late.
    standin.fault({ kind: "delay", delayMs: 1500, path: /^\/v1\/health\/service\// });

    const spec = writeSpec(dir, "gen-lb.json", {
      target: TEST_TARGET,
      consul: { addresses: [standin.url], wait: "5s" },
      nginx: { worker_processes: 2, error_log: { path: "logs/error.log", level: "notice" } },
      upstreams: { app: { service: "web", keepalive: 0 } },
      servers: [{ listen: `127.0.0.1:${p.http}`, locations: [{ path: "/", upstream: "app" }] }],
      status: { listen: `127.0.0.1:${p.status}` },
    });

    const load = loadUntilStopped(`http://127.0.0.1:${p.http}/`, 4);
    await sleep(300);
    const r = await runCliAsync(["install", "--prefix", prefix, "--spec", spec, "--bin", NGINX_BIN, "--reload"]);
    // The window in which the new workers' own first Consul answer is still on its way, and then some.
    await sleep(3_000);
    const tally = await load.stop();

    console.log(`first install under load, Consul 1.5 s late: ${tally.failures.length} failed of ${tally.total} (statuses ${JSON.stringify(tally.statuses)})`);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/reloaded in \d+ ms/);
    expect(tally.failures).toEqual([]);
    expect(r.stderr).toMatch(/^upstream app: 2 passing peer\(s\) of service web from http:\/\/127\.0\.0\.1:\d+, seeded into state\/gen_lb_peers\.json$/m);
    // The load did reach the new config, on both backends.
    expect(Object.keys(tally.byBackend).sort()).toEqual(["b1", "b2"]);
    expect(tally.total).toBeGreaterThan(100);

    // The dump is the runtime's format; the runtime took it ("dump" until Consul answered, then "consul").
    const doc = JSON.parse(readFileSync(path.join(prefix, "state/gen_lb_peers.json"), "utf8"));
    expect(doc.format).toBe(1);
    expect(doc.upstreams.app.key).toBe("web||");
    expect(doc.upstreams.app.peers).toHaveLength(2);
    expect(nginx.errorLog()).toMatch(/peers changed to version \d+ from dump/);
    expect(nginx.errorLog()).not.toMatch(/\[(emerg|alert|crit)\]/);
  });
});
