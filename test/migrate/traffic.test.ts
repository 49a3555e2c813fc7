/**
 * `migrate --verify=traffic` against the real nginx: every migrate fixture's
 * old config and the config built from its migrated spec run side by side
 * on scratch loopback ports with echo backends, get the same requests, and
 * answer the same (or the report says why not).
 */
import { mkdtempSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseBinInfo } from "../../src/migrate/bin.js";
import { migrate } from "../../src/migrate/index.js";
import { verifyTraffic } from "../../src/migrate/traffic.js";
import { fsLoader } from "../../src/nginx/load.js";
import { systemRunner } from "../../src/util/proc.js";
import { runCli } from "../support/cli.js";
import { NGINX_BIN } from "../support/nginx.js";
import { execFileSync } from "node:child_process";
import { fixtures } from "./helpers.js";

const real = path.join(fixtures, "real");
const CASES: Array<[string, string[]]> = [
  ...readdirSync(real)
    .sort()
    .map((name): [string, string[]] => [`real/${name}/nginx.conf`, name === "watch-lib" ? ["--lua-path", path.join(real, "watch-lib/lib")] : []]),
  ["consul-lua/conf/nginx.conf", []],
  ["static/nginx.conf", ["--lua-path", path.join(fixtures, "consul-lua/lua")]],
  ["consul-template/nginx.conf", []],
  ["mixed/nginx.conf", []],
];

describe("migrate --verify=traffic on every migrate fixture (real nginx, echo backends)", () => {
  for (const [rel, extra] of CASES) {
    it(`${rel}: both configs run, every request answers the same or the report explains it, exit 0`, () => {
      const out = path.join(mkdtempSync(path.join(os.tmpdir(), "gen-lb-traffic-")), "spec.yaml");
      const r = runCli(["migrate", path.join(fixtures, rel), "--out", out, "--verify=traffic", "--bin", NGINX_BIN, ...extra]);
      const text = r.stdout + r.stderr;
      expect(text).toMatch(/Verify by traffic: .*\n {2}requests: [1-9]\d*\n {2}differences not explained by the report: 0\n/);
      expect(r.status, text).toBe(0);
    });
  }
});

describe("--verify=traffic catches what the tree comparison cannot see", () => {
  const vText = execFileSync("sh", ["-c", `"$0" -V 2>&1`, NGINX_BIN], { encoding: "utf8" });
  const binInfo = parseBinInfo(NGINX_BIN, vText);

  it("a changed answer and a changed Host at the backend are printed with the request that showed them", async () => {
    const mainFile = path.join(real, "values/nginx.conf");
    const m = migrate(mainFile, { loader: fsLoader("/"), cwd: "/", bin: binInfo });
    const servers = m.spec.servers as Array<{ locations: Array<Record<string, unknown>> }>;
    // Tamper with the spec as a converter bug would: another text, another Host header.
    servers[1]!.locations[0]!.return = { code: 200, text: "changed" };
    servers[0]!.locations[0]!.proxy_set_header = { Host: "$proxy_host", Proxy: "" };
    const t = await verifyTraffic(m, { mainFile, bin: NGINX_BIN, binInfo, runner: systemRunner });
    expect(t.failure).toBeUndefined();
    const lines = t.differences.map((d) => `${d.request.method} ${d.request.host}${d.request.path}: ${d.what}`);
    expect(lines).toContain('GET other.example.test/: body "other" became "changed"');
    expect(lines).toContain('GET app.example.test/: at the backend: host: "app.example.test" became "app"');
  });

  it("OpenResty's compiled-in error log (logs/ under the old prefix) is not written: both sides log to the scratch directory", async () => {
    const { cpSync, existsSync, mkdirSync, readdirSync } = await import("node:fs");
    const openresty = "/opt/openresty/bin/openresty";
    expect(existsSync(openresty), `${openresty} is missing (the test OpenResty, built by .ci/run)`).toBe(true);
    const info = parseBinInfo(openresty, execFileSync("sh", ["-c", `"$0" -V 2>&1`, openresty], { encoding: "utf8" }));
    const old = mkdtempSync(path.join(os.tmpdir(), "gen-lb-old-prefix-"));
    cpSync(path.join(real, "values"), old, { recursive: true });
    mkdirSync(path.join(old, "logs"));
    const mainFile = path.join(old, "nginx.conf");
    const m = migrate(mainFile, { loader: fsLoader("/"), cwd: "/", bin: info });
    const t = await verifyTraffic(m, { mainFile, bin: openresty, binInfo: info, runner: systemRunner });
    expect(t.failure).toBeUndefined();
    expect(t.differences).toEqual([]);
    expect(readdirSync(path.join(old, "logs"))).toEqual([]);
  });

  it("a config the old nginx cannot start is a failure, not a pass", async () => {
    const mainFile = path.join(real, "values/nginx.conf");
    const m = migrate(mainFile, { loader: fsLoader("/"), cwd: "/", bin: binInfo });
    m.tree.push({ directive: "no_such_directive", args: [], file: mainFile, line: 99, column: 1 } as (typeof m.tree)[number]);
    const t = await verifyTraffic(m, { mainFile, bin: NGINX_BIN, binInfo, runner: systemRunner });
    expect(t.failure).toMatch(/the old config did not start: .*unknown directive "no_such_directive"/);
  });
});
