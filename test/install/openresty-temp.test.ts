/**
 * OpenResty's compiled-in temp paths are prefix-relative: starting it makes
 * PREFIX/client_body_temp, proxy_temp, fastcgi_temp, uwsgi_temp and
 * scgi_temp (owned by the worker user, mode 0700). They are nginx's, never
 * gen-lb's: no install plan, manifest or hand-edit list names them, and no
 * install, rollback or recovery after a kill touches them or what is in them.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { Nginx, NGINX_BIN, tempDir } from "../support/nginx.js";
import { waitFor } from "../support/ports.js";
import { TEST_TARGET } from "../support/target.js";
import { body, liveFiles, makePrefix, NGINX_TEMP_DIRS, ports, type Ports, snapshot, specObject, writeSpec } from "./helpers.js";

const started: Nginx[] = [];
afterAll(async () => {
  for (const n of started) await n.stop();
});

/** Each temp directory: its owner and mode, and every file under it. */
function tempState(prefix: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const d of NGINX_TEMP_DIRS) {
    const dir = path.join(prefix, d);
    if (!existsSync(dir)) continue;
    const st = statSync(dir);
    out[d] = { uid: st.uid, mode: (st.mode & 0o7777).toString(8), files: snapshot(dir, []) };
  }
  return out;
}

const mentionsTemp = (paths: string[]) => paths.filter((p) => NGINX_TEMP_DIRS.some((d) => p === d || p.startsWith(`${d}/`)));

if (TEST_TARGET === "openresty") {
  describe("OpenResty's *_temp directories in the prefix", () => {
    it("are never planned, recorded, called hand edits, or touched by install, rollback and the recovery after a kill", async () => {
      const dir = tempDir();
      const prefix = makePrefix();
      const p = await ports();
      writeFileSync(path.join(prefix, "conf/nginx.conf"), `pid logs/nginx.pid;\nerror_log logs/error.log;\nevents {}\nhttp {\n  server { listen 127.0.0.1:${p.http}; return 200 "site"; }\n}\n`);
      const original = liveFiles(prefix);
      const nginx = await Nginx.start(prefix, {}, NGINX_BIN);
      started.push(nginx);
      for (const d of NGINX_TEMP_DIRS) expect(existsSync(path.join(prefix, d)), `${NGINX_BIN} made ${d}/`).toBe(true);
      // A request body buffered to disk, as nginx leaves them under load.
      mkdirSync(path.join(prefix, "client_body_temp/1/00"), { recursive: true });
      writeFileSync(path.join(prefix, "client_body_temp/1/00/0000000001"), "buffered body");
      const temps = tempState(prefix);

      const install = (name: string, text: string, ...more: string[]) =>
        runCli(["--json", "install", "--prefix", prefix, "--spec", writeSpec(dir, name, specObject(p, text)), "--bin", NGINX_BIN, ...more]);
      const v1 = install("v1.json", "v1", "--reload");
      expect(v1.status, v1.stderr).toBe(0);
      expect(mentionsTemp(JSON.parse(v1.stdout).changed)).toEqual([]);
      await waitFor(async () => (await body(p)) === "v1", "v1 serving", 5_000);
      expect(install("v2.json", "v2", "--reload").status).toBe(0);

      const dry = install("v3.json", "v3", "--dry-run");
      expect(dry.status, dry.stderr).toBe(0);
      const plan = JSON.parse(dry.stdout).plan as { files: Array<{ path: string }>; handEdited: string[]; createDirs: string[]; removeDirs: string[] };
      expect(mentionsTemp(plan.files.map((f) => f.path))).toEqual([]);
      expect(plan.handEdited).toEqual([]);
      expect(mentionsTemp([...plan.createDirs, ...plan.removeDirs])).toEqual([]);
      for (const b of readdirSync(path.join(prefix, ".gen-lb/backups"))) {
        const m = JSON.parse(readFileSync(path.join(prefix, ".gen-lb/backups", b, "manifest.json"), "utf8")) as { files: Array<{ path: string }>; installed?: Record<string, string>; createdDirs: string[] };
        expect(mentionsTemp([...m.files.map((f) => f.path), ...Object.keys(m.installed ?? {}), ...m.createdDirs]), `backup ${b}`).toEqual([]);
      }

      // Killed at sampled steps of an install, each recovered by the next command.
      let kills = 0;
      for (const at of [8, 16, 24, 32]) {
        const killed = runCli(["install", "--prefix", prefix, "--spec", path.join(dir, "v3.json"), "--bin", NGINX_BIN], { env: { GEN_LB_TEST_KILL_AT_STEP: String(at) } });
        if (killed.status === 0) break;
        kills++;
        const next = runCli(["install", "--dry-run", "--prefix", prefix, "--spec", path.join(dir, "v3.json"), "--bin", NGINX_BIN]);
        expect(next.status, next.stderr).toBe(0);
        expect(tempState(prefix), `after a kill at step ${at}`).toEqual(temps);
      }
      expect(kills).toBeGreaterThan(0);
      expect(existsSync(path.join(prefix, ".gen-lb/journal.json"))).toBe(false);

      // Back through every install to the hand-written config; nginx's directories stay as they were.
      let backups = readdirSync(path.join(prefix, ".gen-lb/backups")).length;
      while (backups-- > 0) {
        const r = runCli(["rollback", "--prefix", prefix, "--reload", "--bin", NGINX_BIN]);
        expect(r.status, r.stderr).toBe(0);
        expect(tempState(prefix)).toEqual(temps);
      }
      expect(liveFiles(prefix)).toEqual(original);
      await waitFor(async () => (await body(p)) === "site", "the hand-written site serving again", 5_000);
    }, 240_000);
  });
} else {
  describe("Debian nginx's temp directories", () => {
    it("are compiled outside any prefix (absolute --http-*-temp-path), so the prefix never holds *_temp/ (OpenResty's case runs on the openresty leg)", () => {
      const v = spawnSync(NGINX_BIN, ["-V"], { encoding: "utf8" });
      const configure = `${v.stdout}${v.stderr}`;
      for (const kind of ["client-body", "proxy", "fastcgi", "uwsgi", "scgi"]) expect(configure).toMatch(new RegExp(`--http-${kind}-temp-path=/`));
    });
  });
}
