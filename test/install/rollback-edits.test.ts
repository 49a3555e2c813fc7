/**
 * rollback and files edited by hand since the last install: refused
 * without --force, listing them, the prefix as it was; --force rolls back,
 * keeps a copy of the edited files, and the running master (the real
 * binary, reloaded) serves the previous build.
 */
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { Nginx, NGINX_BIN, tempDir } from "../support/nginx.js";
import { waitFor } from "../support/ports.js";
import { body, liveFiles, makePrefix, ports, type Ports, snapshot, specObject, writeSpec } from "./helpers.js";

const started: Nginx[] = [];
afterAll(async () => {
  for (const n of started) await n.stop();
});


describe("rollback: files changed by hand since the last install", () => {
  it("refused without --force, listing them, nothing changed; --force rolls back, keeps the edited copies, and the reloaded master serves the previous build", async () => {
    const dir = tempDir();
    const prefix = makePrefix();
    const p = await ports();
    const install = (name: string, text: string) => runCli(["install", "--prefix", prefix, "--spec", writeSpec(dir, name, specObject(p, text)), "--bin", NGINX_BIN]);
    expect(install("v1.json", "v1").status).toBe(0);
    const afterV1 = liveFiles(prefix);
    expect(install("v2.json", "v2").status).toBe(0);
    const nginx = await Nginx.start(prefix);
    started.push(nginx);
    expect(await body(p)).toBe("v2");

    // Edits an operator made on the live host after v2.
    appendFileSync(path.join(prefix, "lua/gen_lb/config.lua"), "-- tuned by hand\n");
    const conf = path.join(prefix, "conf/nginx.conf");
    writeFileSync(conf, readFileSync(conf, "utf8").replace(/\n}\s*$/, "\n    server { listen 127.0.0.1:9; server_name admin.example; return 204; }\n}\n"));
    const edited = { lua: readFileSync(path.join(prefix, "lua/gen_lb/config.lua")), conf: readFileSync(conf) };
    const before = snapshot(prefix, []);

    const r = runCli(["rollback", "--prefix", prefix]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`gen-lb: 2 file(s) in ${prefix} changed since the last install: lua/gen_lb/config.lua, conf/nginx.conf; nothing was rolled back`);
    expect(r.stderr).toMatch(/--force does \(a copy of the edited files is kept in \.gen-lb\/\)/);
    expect(snapshot(prefix, [])).toEqual(before);

    const forced = runCli(["--json", "rollback", "--prefix", prefix, "--force", "--reload", "--bin", NGINX_BIN]);
    expect(forced.status, forced.stderr).toBe(0);
    const out = JSON.parse(forced.stdout) as { handEdited: string[]; handEditsKept: string; reload: { ok: boolean } };
    expect(out.handEdited).toEqual(["lua/gen_lb/config.lua", "conf/nginx.conf"]);
    expect(out.reload.ok).toBe(true);
    expect(liveFiles(prefix)).toEqual(afterV1);
    expect(readFileSync(path.join(prefix, out.handEditsKept, "files/lua/gen_lb/config.lua")).equals(edited.lua)).toBe(true);
    expect(readFileSync(path.join(prefix, out.handEditsKept, "files/conf/nginx.conf")).equals(edited.conf)).toBe(true);
    await waitFor(async () => (await body(p)) === "v1", "the rolled-back build serving", 5_000);

    // Nothing edited since: the next rollback (to the files before gen-lb) needs no --force.
    const last = runCli(["rollback", "--prefix", prefix]);
    expect(last.status, last.stderr).toBe(0);
  }, 120_000);
});
