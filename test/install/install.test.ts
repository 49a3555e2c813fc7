/**
 * install / rollback / diff end to end: the built CLI against a real prefix
 * in a temp dir (conf/mime.types, logs/, html/ from fixtures/install/prefix)
 * and the real nginx with the Lua module. Every port is a free loopback
 * port; every load is bounded.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { runLoad } from "../support/load.js";
import { Nginx, NGINX_BIN, tempDir } from "../support/nginx.js";
import { sleep } from "../support/ports.js";
import { readStatus } from "../support/status-contract.js";
import { body, FIXTURES, fresh, liveFiles, makePrefix, mountTmpfs, ports, type Ports, remountReadOnly, runCliAsync, snapshot, specObject, wrapperBin, writeSpec } from "./helpers.js";

const BIN = ["--bin", NGINX_BIN];
const started: Nginx[] = [];
const unmounts: Array<() => void> = [];
afterAll(async () => {
  for (const n of started) await n.stop();
  for (const u of unmounts) u();
});

async function startNginx(prefix: string): Promise<Nginx> {
  const n = await Nginx.start(prefix);
  started.push(n);
  return n;
}


async function status(p: Ports): Promise<string> {
  return (await readStatus(`http://127.0.0.1:${p.status}/status`, fresh)).build_id;
}


function install(prefix: string, spec: string, ...more: string[]) {
  return runCli(["install", "--prefix", prefix, "--spec", spec, ...BIN, ...more]);
}

function installJson(prefix: string, spec: string, ...more: string[]) {
  const r = runCli(["--json", "install", "--prefix", prefix, "--spec", spec, ...BIN, ...more]);
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout) as { buildId: string; backup: string; changed: string[]; reload: { ok: boolean; messages: string[] } | null };
}

describe("gen-lb install", () => {
  it("install --reload under a bounded load: zero failed requests, the new build id is served", async () => {
    const prefix = makePrefix();
    const dir = tempDir();
    const p = await ports();
    const v1 = writeSpec(dir, "v1.json", specObject(p, "v1"));
    const v2 = writeSpec(dir, "v2.json", specObject(p, "v2"));
    const first = installJson(prefix, v1);
    const nginx = await startNginx(prefix);
    expect(await status(p)).toBe(first.buildId);

    // One connection per request. A client that reuses keep-alive connections
    // sees a reset when an old worker closes its idle connections at any
    // graceful nginx reload (RFC 9112 9.3.1: such clients retry idempotent
    // requests); that is nginx's behaviour, not the install's.
    const load = runLoad({
      url: `http://127.0.0.1:${p.http}/`,
      concurrency: 8,
      durationMs: 6_000,
      timeoutMs: 5_000,
      headers: { connection: "close" },
    });
    await sleep(500);
    const r = await runCliAsync(["--json", "install", "--prefix", prefix, "--spec", v2, ...BIN, "--reload"]);
    const result = await load;

    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.previousBuildId).toBe(first.buildId);
    expect(out.reload.ok).toBe(true);
    expect(out.reload.messages[0]).toMatch(new RegExp(`new worker\\(s\\) up; http://127.0.0.1:${p.status}/status serves build ${out.buildId}$`));
    expect(result.failures).toEqual([]);
    expect(result.total).toBeGreaterThan(200);
    expect(result.ok).toBe(result.total);
    expect(await status(p)).toBe(out.buildId);
    expect(await body(p)).toBe("v2");
    expect(nginx.errorLog()).not.toMatch(/\[(emerg|alert|crit)\]/);
    await nginx.stop();
  });

  it("a spec failing nginx -t, one failing at start and one needing a missing Lua module: install refuses, live files byte-identical", async () => {
    const prefix = makePrefix();
    const dir = tempDir();
    const p = await ports();
    installJson(prefix, writeSpec(dir, "v1.json", specObject(p, "v1")));
    const before = snapshot(prefix, []);

    const badListen = specObject(p, "x");
    (badListen.servers as Array<Record<string, unknown>>)[0]!.listen = "999.1.1.1:8080";
    const t = install(prefix, writeSpec(dir, "bad-listen.json", badListen));
    expect(t.status).toBe(1);
    expect(t.stdout).toBe("");
    expect(t.stderr).toContain(`gen-lb: check failed (nginx -t): nothing was installed in ${prefix}`);
    expect(t.stderr).toMatch(/host not found in "999\.1\.1\.1:8080" of the "listen" directive \(nginx\.conf:\d+, from servers\[0\]\.listen at .*bad-listen\.json:\d+:\d+\)/);
    expect(snapshot(prefix, [])).toEqual(before);

    const initFails = specObject(p, "x", { nginx: { http: { directives: [{ name: "lua_package_cpath", args: ["/nonexistent/?.so"] }] } } });
    const s = install(prefix, writeSpec(dir, "init-fails.json", initFails));
    expect(s.status).toBe(1);
    expect(s.stderr).toContain(`gen-lb: check failed (smoke start): nothing was installed in ${prefix}`);
    expect(s.stderr).toMatch(/\[error\] init_by_lua error: .*module 'cjson(\.safe)?' not found/);
    expect(snapshot(prefix, [])).toEqual(before);

    // Debian's nginx by name on both legs of the matrix: a spec for OpenResty (no load_module) is refused from -V, naming the fix.
    const openresty = runCli(["install", "--prefix", prefix, "--spec", writeSpec(dir, "openresty.json", { ...specObject(p, "x"), target: "openresty" }), "--bin", "/usr/sbin/nginx"]);
    expect(openresty.status).toBe(1);
    expect(openresty.stderr).toContain("but the spec says target: openresty (which loads no Lua module): set target: nginx; nothing was installed");
    expect(snapshot(prefix, [])).toEqual(before);
  });

  it("a reload that fails after the swap: the backup is restored, the old config keeps serving, exit 1", async () => {
    const prefix = makePrefix();
    const dir = tempDir();
    const p = await ports();
    const tls = await ports();
    mkdirSync(path.join(prefix, "conf/certs"));
    cpSync(path.join(FIXTURES, "certs"), path.join(prefix, "conf/certs"), { recursive: true });
    const v1 = installJson(prefix, writeSpec(dir, "v1.json", specObject(p, "v1")));
    await startNginx(prefix);
    const v3 = specObject(p, "v3");
    (v3.servers as unknown[]).push({ listen: `127.0.0.1:${tls.http}`, ssl: { certificate: "certs/lb.crt", certificate_key: "certs/lb.key" } });
    const before = snapshot(prefix, ["logs", "conf"]);
    const confBefore = snapshot(path.join(prefix, "conf"), ["certs"]);

    // The check passes (it copies conf/certs into its scratch); then the
    // certificate disappears from the live prefix before the reload.
    const wrapper = wrapperBin(dir, `rm -f ${prefix}/conf/certs/lb.crt`);
    const r = runCli(["install", "--prefix", prefix, "--spec", writeSpec(dir, "v3.json", v3), "--bin", wrapper, "--reload"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^gen-lb: the reload of build [0-9a-f]{16} failed; restored the previous files and reloaded them \(\d new worker\(s\) up; http:\/\/127\.0\.0\.1:\d+\/status serves build [0-9a-f]{16}\)$/m);
    expect(r.stderr).toContain(`serves build ${v1.buildId})`);
    expect(r.stderr).toMatch(/^ {2}\[emerg\] cannot load certificate ".*conf\/certs\/lb\.crt"/m);
    expect(snapshot(prefix, ["logs", "conf"])).toEqual(before);
    expect(snapshot(path.join(prefix, "conf"), ["certs"])).toEqual(confBefore);
    expect(readdirSync(path.join(prefix, ".gen-lb/backups"))).toEqual([v1.backup.split("/").pop()]);
    expect(await status(p)).toBe(v1.buildId);
    expect(await body(p)).toBe("v1");
  });

  it("rollback restores the previous install byte for byte (and reloads), then the hand-written files before gen-lb", async () => {
    const prefix = makePrefix();
    const dir = tempDir();
    const p = await ports();
    const s0 = liveFiles(prefix);
    const v1 = installJson(prefix, writeSpec(dir, "v1.json", specObject(p, "v1")));
    expect(v1.changed).toContain("conf/nginx.conf");
    expect(v1.changed).not.toContain("conf/mime.types"); // the host's own is never replaced
    const s1 = liveFiles(prefix);
    expect(s1["conf/mime.types"]).toBe(s0["conf/mime.types"]);
    await startNginx(prefix);
    const v2 = installJson(prefix, writeSpec(dir, "v2.json", specObject(p, "v2", { runtime: { log_level: "info" } })), "--reload");
    expect(await status(p)).toBe(v2.buildId);

    const back = runCli(["rollback", "--prefix", prefix, "--reload"]);
    expect(back.stderr).toBe("");
    expect(back.status).toBe(0);
    expect(back.stdout).toContain(`rolled ${prefix} back to build ${v1.buildId}`);
    expect(back.stdout).toMatch(new RegExp(`reloaded in \\d+ ms: \\d new worker\\(s\\) up; .* serves build ${v1.buildId}`));
    expect(liveFiles(prefix)).toEqual(s1);
    expect(await status(p)).toBe(v1.buildId);
    expect(await body(p)).toBe("v1");

    const again = runCli(["--json", "rollback", "--prefix", prefix]);
    expect(again.status).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ ok: true, buildId: null });
    expect(liveFiles(prefix)).toEqual(s0);
    expect(existsSync(path.join(prefix, "lua"))).toBe(false);

    const none = runCli(["rollback", "--prefix", prefix]);
    expect(none.status).toBe(1);
    expect(none.stderr).toBe(`gen-lb: no install backup in ${prefix}/.gen-lb/backups: there is nothing to roll back to\n`);
  });

  it("rollback --reload tests the restored files first: if nginx -t refuses them, nothing changes and nothing is reloaded", async () => {
    const prefix = makePrefix();
    const dir = tempDir();
    const p = await ports();
    // v1 includes a host file that is gone by the time of the rollback.
    const extra = path.join(prefix, "conf/extra.conf");
    writeFileSync(extra, "# kept by the host\n");
    const v1 = installJson(prefix, writeSpec(dir, "v1.json", specObject(p, "v1", { nginx: { worker_processes: 2, http: { directives: [{ name: "include", args: [extra] }] } } })));
    await startNginx(prefix);
    const v2 = installJson(prefix, writeSpec(dir, "v2.json", specObject(p, "v2")), "--reload");
    expect(await status(p)).toBe(v2.buildId);
    rmSync(extra);
    const s2 = liveFiles(prefix);
    const backups = readdirSync(path.join(prefix, ".gen-lb/backups")).sort();

    const back = runCli(["rollback", "--prefix", prefix, ...BIN, "--reload"]);
    expect(back.status).toBe(1);
    expect(back.stderr).toContain(`gen-lb: the rolled-back config fails \`${NGINX_BIN} -t\`; the files are back as they were before the rollback and nothing was reloaded`);
    expect(back.stderr).toContain("extra.conf");
    expect(liveFiles(prefix)).toEqual(s2);
    expect(readdirSync(path.join(prefix, ".gen-lb/backups")).sort()).toEqual(backups);
    expect(await status(p)).toBe(v2.buildId);

    // With the host file back, the same rollback goes through.
    writeFileSync(extra, "# kept by the host\n");
    const ok = runCli(["rollback", "--prefix", prefix, ...BIN, "--reload"]);
    expect(ok.stderr).toBe("");
    expect(ok.status).toBe(0);
    expect(await status(p)).toBe(v1.buildId);
  });

  it("--keep N prunes all but the last N backups; rollback walks back through them", () => {
    const prefix = makePrefix();
    const dir = tempDir();
    const p = { http: 1, status: 2 }; // never started: only files matter here
    const states: Array<Record<string, string>> = [];
    for (const v of ["a", "b", "c", "d"]) {
      installJson(prefix, writeSpec(dir, `${v}.json`, specObject(p, v)), "--keep", "2");
      states.push(liveFiles(prefix));
    }
    const backups = readdirSync(path.join(prefix, ".gen-lb/backups")).sort();
    expect(backups).toHaveLength(2);
    expect(backups.map((b) => b.slice(0, 6))).toEqual(["000003", "000004"]);
    expect(runCli(["rollback", "--prefix", prefix]).status).toBe(0);
    expect(liveFiles(prefix)).toEqual(states[2]);
    expect(runCli(["rollback", "--prefix", prefix]).status).toBe(0);
    expect(liveFiles(prefix)).toEqual(states[1]);
    expect(runCli(["rollback", "--prefix", prefix]).status).toBe(1);

    const zero = runCli(["install", "--prefix", prefix, "--spec", path.join(dir, "a.json"), "--keep", "0"]);
    expect(zero.status).toBe(2);
    expect(zero.stderr).toBe("gen-lb: --keep 0: expected a whole number of backups, 1 or more\n");
  });

  it("two concurrent installs: one waits for the other, never a mix", async () => {
    const dir = tempDir();
    const p = { http: 1, status: 2 };
    const a = writeSpec(dir, "a.json", specObject(p, "A"));
    const b = writeSpec(dir, "b.json", specObject(p, "B", { runtime: { log_level: "debug" } }));
    // What each install leaves when it runs alone.
    const alone = (spec: string) => {
      const q = makePrefix();
      installJson(q, spec);
      return liveFiles(q);
    };
    const onlyA = alone(a);
    const onlyB = alone(b);
    expect(onlyA).not.toEqual(onlyB);

    const prefix = makePrefix();
    const [ra, rb] = await Promise.all([
      runCliAsync(["install", "--prefix", prefix, "--spec", a, ...BIN]),
      runCliAsync(["install", "--prefix", prefix, "--spec", b, ...BIN]),
    ]);
    expect([ra.status, rb.status]).toEqual([0, 0]);
    const waited = [ra, rb].filter((r) => /^waiting for gen-lb pid \d+ to finish with /m.test(r.stderr));
    expect(waited).toHaveLength(1);
    const final = liveFiles(prefix);
    const second = waited[0] === ra ? onlyA : onlyB;
    expect(final).toEqual(second);

    // The second install's backup holds exactly what the first one wrote.
    const [m1, m2] = readdirSync(path.join(prefix, ".gen-lb/backups"))
      .sort()
      .map((id) => JSON.parse(readFileSync(path.join(prefix, ".gen-lb/backups", id, "manifest.json"), "utf8")));
    const wrote = new Map<string, string>(m1.files.map((f: { path: string; after: { sha256: string } }) => [f.path, f.after.sha256]));
    for (const f of m2.files) if (f.before) expect(f.before.sha256).toBe(wrote.get(f.path));
    expect(m2.files.filter((f: { before?: unknown }) => f.before).length).toBeGreaterThan(0);
  });

  it("--dry-run prints the plan, the commands and a unified diff, and changes nothing; diff shows the same", async () => {
    const prefix = makePrefix();
    const dir = tempDir();
    const p = await ports();
    installJson(prefix, writeSpec(dir, "v1.json", specObject(p, "v1")));
    await startNginx(prefix);
    // Same file name: only what the text changes differs (the header names the spec file).
    const v2 = writeSpec(dir, "v1.json", specObject(p, "v2"));
    const before = snapshot(prefix);

    const dry = install(prefix, v2, "--dry-run", "--reload");
    expect(dry.status).toBe(0);
    expect(dry.stdout).toMatch(/^install build [0-9a-f]{16} into .* \(replacing build [0-9a-f]{16}\)$/m);
    expect(dry.stdout).toMatch(/^ {2}replace {11}conf\/nginx\.conf$/m);
    expect(dry.stdout).toMatch(/^ {2}keep \(host's own\) conf\/mime\.types$/m);
    expect(dry.stdout).toMatch(/^ {2}back up \d+ file\(s\) to \.gen-lb\/backups\/000002-\d{8}T\d{6}Z\/ first$/m);
    expect(dry.stdout).toMatch(/^ {2}run: kill -HUP \d+ \(the master, from logs\/nginx\.pid\)$/m);
    expect(dry.stdout).toContain("--- a/conf/nginx.conf\n+++ b/conf/nginx.conf\n");
    expect(dry.stdout).toMatch(/^-\s+return 200 v1;$/m);
    expect(dry.stdout).toMatch(/^\+\s+return 200 v2;$/m);
    expect(dry.stdout).toMatch(/dry run: nothing was changed\n$/);
    expect(snapshot(prefix)).toEqual(before);

    const d = runCli(["diff", "--prefix", prefix, "--spec", v2]);
    expect(d.status).toBe(0);
    expect(d.stdout).toContain("--- a/conf/nginx.conf\n+++ b/conf/nginx.conf\n");
    expect(d.stdout).toMatch(/^\+\s+return 200 v2;$/m);
    const json = JSON.parse(runCli(["--json", "diff", "--prefix", prefix, "--spec", v2]).stdout);
    expect(json).toMatchObject({ ok: true, changed: true });
    expect(json.plan.files.filter((f: { action: string }) => f.action === "replace").map((f: { path: string }) => f.path)).toEqual([
      "lua/gen_lb/config.lua",
      "conf/nginx.conf",
    ]);
    expect(snapshot(prefix)).toEqual(before);
  });
});

describe("gen-lb install: bad input ends with a clear message, exit 1, the prefix as before", () => {
  it("a prefix that does not exist, is a file, or is not an nginx prefix", async () => {
    const dir = tempDir();
    const spec = writeSpec(dir, "lb.json", specObject(await ports(), "x"));
    const missing = install(path.join(dir, "nope"), spec);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`gen-lb: ${path.join(dir, "nope")} does not exist: pass the directory of an installed nginx/OpenResty`);
    expect(existsSync(path.join(dir, "nope"))).toBe(false);

    writeFileSync(path.join(dir, "afile"), "x");
    const file = install(path.join(dir, "afile"), spec);
    expect(file.status).toBe(1);
    expect(file.stderr).toContain(`gen-lb: ${path.join(dir, "afile")} is a file, not an nginx prefix directory`);
    expect(readFileSync(path.join(dir, "afile"), "utf8")).toBe("x");

    const half = makePrefix();
    rmSync(path.join(half, "logs"), { recursive: true });
    const before = snapshot(half, []);
    const notPrefix = install(half, spec);
    expect(notPrefix.status).toBe(1);
    expect(notPrefix.stderr).toContain(`gen-lb: ${half} does not look like an nginx prefix: logs/ is missing`);
    expect(snapshot(half, [])).toEqual(before);
  });

  it("a prefix that is not writable (a read-only file system)", async () => {
    const dir = tempDir();
    const spec = writeSpec(dir, "lb.json", specObject(await ports(), "x"));
    const prefix = path.join(dir, "ro");
    unmounts.push(mountTmpfs(prefix, "1m"));
    makePrefix(prefix);
    remountReadOnly(prefix);
    const before = snapshot(prefix, []);
    const r = install(prefix, spec);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`gen-lb: ${prefix} is on a read-only file system: run install as the prefix's owner (or root), or fix its permissions; nothing was installed\n`);
    expect(snapshot(prefix, [])).toEqual(before);
  });

  it("--reload with a pid file that points at a dead process", async () => {
    const dir = tempDir();
    const prefix = makePrefix();
    const p = await ports();
    installJson(prefix, writeSpec(dir, "v1.json", specObject(p, "v1")));
    const dead = spawnSync("true").pid!;
    writeFileSync(path.join(prefix, "logs/nginx.pid"), `${dead}\n`);
    const before = snapshot(prefix, []);
    const r = install(prefix, writeSpec(dir, "v2.json", specObject(p, "v2")), "--reload");
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      `gen-lb: cannot --reload: the pid file ${prefix}/logs/nginx.pid names pid ${dead}, which is not running: nginx is stopped (or crashed); start it, or install without --reload; nothing was changed\n`,
    );
    expect(snapshot(prefix, [])).toEqual(before);
  });

  it("a spec that changed between check and install", async () => {
    const dir = tempDir();
    const prefix = makePrefix();
    const p = await ports();
    installJson(prefix, writeSpec(dir, "v1.json", specObject(p, "v1")));
    const v2 = writeSpec(dir, "v2.json", specObject(p, "v2"));
    const before = snapshot(prefix, []);
    // Someone edits the spec while the check's smoke start runs.
    const wrapper = wrapperBin(dir, `sed -i 's/"v2"/"v2-edited"/' ${v2}`);
    const r = runCli(["install", "--prefix", prefix, "--spec", v2, "--bin", wrapper]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^gen-lb: .*v2\.json changed between check and install \(build [0-9a-f]{16} on disk, [0-9a-f]{16} checked\): nothing was installed; run install again/m);
    expect(snapshot(prefix, [])).toEqual(before);
    expect(readFileSync(v2, "utf8")).toContain("v2-edited");
  });

  it("a disk that fills up mid-install (a tiny tmpfs)", async () => {
    const dir = tempDir();
    const p = await ports();
    const prefix = path.join(dir, "small");
    unmounts.push(mountTmpfs(prefix, "512k"));
    makePrefix(prefix);
    installJson(prefix, writeSpec(dir, "v1.json", specObject(p, "v1")));
    // Leave room for the backup (a copy of every file gen-lb wrote, in 4 KiB
    // pages) but not for staging the new files as well: the disk fills up
    // after the backup, while staging.
    const pages = (f: string) => Math.ceil(statSync(f).size / 4096) * 4096;
    const written = [path.join(prefix, "conf/nginx.conf"), ...readdirSync(path.join(prefix, "lua/gen_lb")).map((n) => path.join(prefix, "lua/gen_lb", n))];
    // + the journal, the manifest and the backup's directories (tmpfs charges a page each).
    const backup = written.reduce((sum, f) => sum + pages(f), 0) + 8 * 4096;
    const st = statfsSync(prefix);
    writeFileSync(path.join(prefix, "html/ballast"), Buffer.alloc(Math.max(0, st.bavail * st.bsize - backup - 16_384)));
    const before = snapshot(prefix, []);
    const r = install(prefix, writeSpec(dir, "v2.json", specObject(p, "v2", { runtime: { log_level: "debug" } })));
    expect(r.status).toBe(1);
    // Where exactly the disk fills (the backup's last files, or staging) depends on tmpfs's accounting; either way nothing changes.
    expect(r.stderr).toMatch(new RegExp(`^gen-lb: cannot (?:stage the new files in ${prefix}|back up into \\.gen-lb/backups/[^:]+): no space left on the device(?: \\(.*\\))?; nothing was changed\n$`));
    expect(snapshot(prefix, [])).toEqual(before);
  });
});
