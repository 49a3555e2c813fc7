/**
 * install into the layout OpenResty's own `make install` creates
 * (PREFIX/bin/openresty, PREFIX/lualib, PREFIX/nginx/{conf,html,logs}): a
 * copy of /opt/openresty with its stock nginx.conf running (moved off port
 * 80 to a free loopback port), under traffic; then rollback. The real
 * OpenResty binary, real backends, the Consul stand-in.
 */
import { chmodSync, cpSync, existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { startBackends, type Backend } from "../support/backends.js";
import { ConsulStandin } from "../support/consul-standin.js";
import { request, runLoad } from "../support/load.js";
import { tempDir } from "../support/nginx.js";
import { freePort, sleep, waitFor } from "../support/ports.js";
import { fresh, liveFiles, runCliAsync, writeSpec } from "./helpers.js";

const OPENRESTY = "/opt/openresty";
const masters: number[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const pid of masters) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      /* gone */
    }
  }
  for (const c of cleanups) await c();
});


describe("install into OpenResty's own layout", () => {
  it("the stock OpenResty page before; --prefix ROOT (said: ROOT/nginx) routes to the Consul instances after, under traffic; rollback restores it byte for byte", async () => {
    if (!existsSync(`${OPENRESTY}/bin/openresty`)) throw new Error(`${OPENRESTY}/bin/openresty is missing: build it with ../shared/openresty/build.sh ${OPENRESTY}`);
    const root = path.join(tempDir("gen-lb-openresty-"), "openresty");
    cpSync(OPENRESTY, root, { recursive: true, verbatimSymlinks: true });
    // Workers run as nobody: they must reach html/.
    chmodSync(path.dirname(root), 0o755);
    // make install links bin/openresty to its own nginx/sbin/nginx.
    rmSync(path.join(root, "bin/openresty"));
    symlinkSync(path.join(root, "nginx/sbin/nginx"), path.join(root, "bin/openresty"));
    const prefix = path.join(root, "nginx");
    const port = await freePort();
    const statusPort = await freePort();
    const conf = path.join(prefix, "conf/nginx.conf");
    // The stock config, moved off port 80 (shared machine).
    writeFileSync(conf, readFileSync(conf, "utf8").replace(/listen\s+80;/, `listen 127.0.0.1:${port};`));

    await execa(path.join(root, "bin/openresty"), ["-p", `${prefix}/`, "-c", "conf/nginx.conf"]);
    const master = await waitFor(() => (existsSync(path.join(prefix, "logs/nginx.pid")) ? Number(readFileSync(path.join(prefix, "logs/nginx.pid"), "utf8")) : 0), "openresty pid");
    masters.push(master);
    const url = `http://127.0.0.1:${port}/`;
    expect((await request(url, fresh)).body).toContain("Welcome to OpenResty!");
    // After the start: the master makes its *_temp/ directories, which are nginx's, not the install's.
    const before = liveFiles(prefix);

    const backends: Backend[] = await startBackends(["a", "b"]);
    cleanups.push(async () => {
      for (const b of backends) await b.stop();
    });
    const consul = new ConsulStandin();
    const consulUrl = await consul.start();
    cleanups.push(() => consul.stop());
    for (const b of backends) consul.registerService({ ID: `web-${b.name}`, Name: "web", Address: "127.0.0.1", Port: b.port });

    const dir = tempDir();
    const spec = writeSpec(dir, "lb.json", {
      target: "openresty",
      consul: { addresses: [consulUrl], timeout: "1s" },
      upstreams: { web: { service: "web" } },
      servers: [{ listen: `127.0.0.1:${port}`, locations: [{ path: "/", upstream: "web" }] }],
      status: { listen: `127.0.0.1:${statusPort}` },
    });

    const load = runLoad({ url, concurrency: 4, durationMs: 5_000, timeoutMs: 5_000, headers: { connection: "close" } });
    await sleep(300);
    // No --bin: the OpenResty the prefix belongs to.
    const r = await runCliAsync(["install", "--prefix", root, "--spec", spec, "--reload"]);
    const traffic = await load;
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`using ${prefix}: ${root} is an OpenResty installation, its nginx prefix is nginx/`);
    expect(r.stdout).toContain(`installed build`);
    expect(r.stdout).toMatch(/reloaded in \d+ ms: \d new worker\(s\) up; http:\/\/127\.0\.0\.1:\d+\/status serves build [0-9a-f]{16}/);
    // Every request was answered (a connection error would be status 0).
    expect(traffic.total).toBeGreaterThan(20);
    expect(traffic.failures.filter((f) => f.status === undefined)).toEqual([]);

    const seen = new Set<string>();
    await waitFor(async () => {
      const res = await request(url, fresh);
      if (res.status === 200) seen.add(res.body.trim());
      return seen.has("a") && seen.has("b");
    }, "requests routed to both Consul instances", 10_000);
    expect([...seen].sort()).toEqual(["a", "b"]);

    // Rollback, given the nginx/ dir itself this time.
    const back = await runCliAsync(["rollback", "--prefix", prefix, "--reload"]);
    expect(back.status, back.stderr).toBe(0);
    expect(back.stderr).toContain(`using ${prefix}: the nginx prefix of the OpenResty in ${root}`);
    expect(liveFiles(prefix)).toEqual(before);
    await waitFor(async () => (await request(url, fresh)).body.includes("Welcome to OpenResty!"), "the stock page again", 10_000);
  }, 180_000);
});
