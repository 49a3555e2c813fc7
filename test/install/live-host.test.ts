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
import { Nginx, NGINX_BIN, tempDir } from "../support/nginx.js";
import { sleep, waitFor } from "../support/ports.js";
import { body, liveFiles, makePrefix, ports, type Ports, snapshot, SPEC_WORKERS as WORKERS, specObject, writeSpec } from "./helpers.js";

const BIN = ["--bin", NGINX_BIN];
const started: Nginx[] = [];
afterAll(async () => {
  for (const n of started) await n.stop();
});

async function startNginx(prefix: string): Promise<Nginx> {
  const n = await Nginx.start(prefix);
  started.push(n);
  return n;
}


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
    // Every worker up before the snapshot: Nginx.start returns once the first one is.
    await waitFor(() => otherNginx.workerPids().length === WORKERS, `${WORKERS} workers of the other master`);
    const workers = otherNginx.workerPids();
    // A stale pid file: this prefix's nginx is not running, the pid is another prefix's master.
    writeFileSync(path.join(mine, "logs/nginx.pid"), `${otherNginx.masterPid}\n`);
    const before = snapshot(mine, []);

    const r = install(mine, writeSpec(dir, "m2.json", specObject(pm, "mine-v2")), "--reload");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`gen-lb: cannot --reload: the pid file ${mine}/logs/nginx.pid names pid ${otherNginx.masterPid}, an nginx master that runs ${other}/conf/nginx.conf ("nginx: master process ${NGINX_BIN} -p ${other}/ -c conf/nginx.conf"), not ${mine}/conf/nginx.conf`);
    expect(r.stderr).toContain("nothing was signalled");
    expect(snapshot(mine, [])).toEqual(before);
    await sleep(300);
    expect(otherNginx.workerPids()).toEqual(workers);
    expect(await body(po)).toBe("other");
  }, 120_000);
});

describe("install: hand edits since the last install, and a config gen-lb did not write", () => {
  it("an edited Lua file and a server block added to nginx.conf: refused without --force, listing them; --force replaces them, backed up, and rollback returns them", async () => {
    const dir = tempDir();
    const prefix = makePrefix();
    const p = await ports();
    expect(install(prefix, writeSpec(dir, "v1.json", specObject(p, "v1"))).status).toBe(0);
    appendFileSync(path.join(prefix, "lua/gen_lb/config.lua"), "-- tuned by hand\n");
    const conf = path.join(prefix, "conf/nginx.conf");
    writeFileSync(conf, readFileSync(conf, "utf8").replace(/\n}\s*$/, "\n    server { listen 127.0.0.1:9; server_name admin.example; return 204; }\n}\n"));
    const edited = liveFiles(prefix);
    const before = snapshot(prefix, []);

    const v2 = writeSpec(dir, "v2.json", specObject(p, "v2"));
    const r = install(prefix, v2);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`gen-lb: 2 file(s) in ${prefix} changed since the last install: lua/gen_lb/config.lua, conf/nginx.conf; nothing was installed`);
    expect(r.stderr).toMatch(/--force replaces them/);
    expect(r.stderr).toMatch(/^ {4}listen 127\.0\.0\.1:9; server_name admin\.example \(line \d+\)$/m);
    expect(snapshot(prefix, [])).toEqual(before);

    const dry = install(prefix, v2, "--dry-run");
    expect(dry.status).toBe(0);
    expect(dry.stdout).toContain("changed by hand since the last install (install refuses without --force): lua/gen_lb/config.lua, conf/nginx.conf");

    const forced = install(prefix, v2, "--force");
    expect(forced.status, forced.stderr).toBe(0);
    expect(readFileSync(conf, "utf8")).not.toContain("admin.example");
    // The next install compares against what --force wrote: no edits now.
    expect(install(prefix, writeSpec(dir, "v3.json", specObject(p, "v3"))).status).toBe(0);
    expect(runCli(["rollback", "--prefix", prefix]).status).toBe(0);
    expect(runCli(["rollback", "--prefix", prefix]).status).toBe(0);
    expect(liveFiles(prefix)).toEqual(edited);
  }, 120_000);

  it("replacing a hand-written nginx.conf lists the server blocks (listen, server_name) that will no longer exist", async () => {
    const dir = tempDir();
    const prefix = makePrefix();
    const p = await ports();
    writeFileSync(
      path.join(prefix, "conf/nginx.conf"),
      `events {}\nhttp {\n  server { listen 127.0.0.1:${p.http}; server_name www.example; return 200 "site"; }\n  server {\n    listen 127.0.0.1:8443;\n    server_name api.example api2.example;\n  }\n}\n`,
    );
    const r = install(prefix, writeSpec(dir, "v1.json", specObject(p, "v1")));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("conf/nginx.conf was not written by gen-lb; these server blocks will no longer exist:");
    expect(r.stdout).toContain("listen 127.0.0.1:8443; server_name api.example api2.example (line 4)");
    expect(r.stdout).toContain(`listen 127.0.0.1:${p.http}; server_name www.example (line 3)`);
  }, 120_000);
});

describe("install: a symlinked conf/nginx.conf", () => {
  it("is written through (the link stays, its target gets the new config, backed up); two rollbacks return the link and its target byte for byte", async () => {
    const dir = tempDir();
    const prefix = makePrefix();
    const p = await ports();
    // The config lives elsewhere (config management), the prefix links to it.
    const managed = path.join(tempDir(), "lb-nginx.conf");
    renameSync(path.join(prefix, "conf/nginx.conf"), managed);
    const link = path.join(prefix, "conf/nginx.conf");
    symlinkSync(managed, link);
    const original = readFileSync(managed);

    const v1 = install(prefix, writeSpec(dir, "v1.json", specObject(p, "v1")));
    expect(v1.status, v1.stderr).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe(managed);
    expect(readFileSync(managed, "utf8")).toContain("generated by gen-lb");
    const afterV1 = readFileSync(managed);
    const nginx = await startNginx(prefix);
    expect(await body(p)).toBe("v1");
    await nginx.stop();

    expect(install(prefix, writeSpec(dir, "v2.json", specObject(p, "v2"))).status).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(runCli(["rollback", "--prefix", prefix]).status).toBe(0);
    expect(readlinkSync(link)).toBe(managed);
    expect(readFileSync(managed).equals(afterV1)).toBe(true);
    expect(runCli(["rollback", "--prefix", prefix]).status).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe(managed);
    expect(readFileSync(managed).equals(original)).toBe(true);
    expect(existsSync(path.join(prefix, ".gen-lb/journal.json"))).toBe(false);
  }, 120_000);
});

describe("install --reload reads only what its own reload wrote to error.log", () => {
  it("[emerg] lines an earlier refused install left in error.log do not fail the next install's reload", async () => {
    const dir = tempDir();
    const prefix = makePrefix();
    const p = await ports();
    // A prefix that never ran gen-lb: the hand-written site, running.
    writeFileSync(path.join(prefix, "conf/nginx.conf"), `pid logs/nginx.pid;\nerror_log logs/error.log;\nevents {}\nhttp {\n  server { listen 127.0.0.1:${p.http}; return 200 "site"; }\n}\n`);
    await startNginx(prefix);
    expect(await body(p)).toBe("site");
    // What a refused reload leaves behind.
    appendFileSync(path.join(prefix, "logs/error.log"), `2026/01/01 00:00:00 [emerg] 1#1: cannot load certificate "/x/lb.crt" from an earlier install\n`);
    const r = install(prefix, writeSpec(dir, "v1.json", specObject(p, "v1")), "--reload");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/reloaded in \d+ ms: \d new worker\(s\) up; .* serves build [0-9a-f]{16}/);
    // The old worker may take one more connection before it closes its listener.
    await waitFor(async () => (await body(p)) === "v1", "the new config serving", 5_000);
  }, 120_000);
});
