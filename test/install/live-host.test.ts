/**
 * install on a live host, the edges users hit: a pid file naming another
 * prefix's master, a symlinked nginx.conf, files edited by hand since the
 * last install, a config gen-lb did not write, error.log lines left by an
 * earlier refused install. The built CLI, the real nginx.
 */
import { existsSync, lstatSync, readFileSync, readlinkSync, symlinkSync, writeFileSync, appendFileSync, renameSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { request } from "../support/load.js";
import { Nginx, tempDir } from "../support/nginx.js";
import { sleep } from "../support/ports.js";
import { liveFiles, makePrefix, ports, snapshot, specObject, writeSpec, type Ports } from "./helpers.js";

const BIN = ["--bin", "/usr/sbin/nginx"];
const started: Nginx[] = [];
afterAll(async () => {
  for (const n of started) await n.stop();
});

async function startNginx(prefix: string): Promise<Nginx> {
  const n = await Nginx.start(prefix);
  started.push(n);
  return n;
}

const fresh = { headers: { connection: "close" } };
const body = async (p: Ports) => (await request(`http://127.0.0.1:${p.http}/`, fresh)).body;

function install(prefix: string, spec: string, ...more: string[]) {
  return runCli(["install", "--prefix", prefix, "--spec", spec, ...BIN, ...more]);
}

describe("install --reload signals only this prefix's master", () => {
  it("a pid file naming another prefix's running master: refused, naming the pid and the config it runs; that master gets no signal", async () => {
    const dir = tempDir();
    const mine = makePrefix();
    const other = makePrefix();
    const pm = await ports();
    const po = await ports();
    expect(install(mine, writeSpec(dir, "m1.json", specObject(pm, "mine-v1"))).status).toBe(0);
    expect(install(other, writeSpec(dir, "o1.json", specObject(po, "other"))).status).toBe(0);
    const otherNginx = await startNginx(other);
    const workers = otherNginx.workerPids();
    // A stale pid file: this prefix's nginx is not running, the pid is another prefix's master.
    writeFileSync(path.join(mine, "logs/nginx.pid"), `${otherNginx.masterPid}\n`);
    const before = snapshot(mine, []);

    const r = install(mine, writeSpec(dir, "m2.json", specObject(pm, "mine-v2")), "--reload");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`gen-lb: cannot --reload: the pid file ${mine}/logs/nginx.pid names pid ${otherNginx.masterPid}, an nginx master that runs ${other}/conf/nginx.conf ("nginx: master process /usr/sbin/nginx -p ${other}/ -c conf/nginx.conf"), not ${mine}/conf/nginx.conf`);
    expect(r.stderr).toContain("nothing was signalled");
    expect(snapshot(mine, [])).toEqual(before);
    await sleep(300);
    expect(otherNginx.workerPids()).toEqual(workers);
    expect(await body(po)).toBe("other");
  }, 120_000);
});
