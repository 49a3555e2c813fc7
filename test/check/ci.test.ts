/**
 * `gen-lb check` as a CI runner runs it: not root. Every step (nginx -t binds
 * the listen ports and opens the logs too) must run in the scratch prefix on
 * scratch ports with prefix-relative logs, and the report must name the build
 * id it checked, the one `build` writes, in every step that reports one.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { CLI, runCli } from "../support/cli.js";
import { tempDir } from "../support/nginx.js";

const CI_USER = "genlb-ci";

/** Run the built CLI as an unprivileged user (this user when not root; else CI_USER, created if missing). */
function runAsUser(args: string[], cwd: string): { status: number; stdout: string; stderr: string; user: string } {
  const env = { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: "/tmp" };
  let argv = [process.execPath, CLI, ...args];
  let user = String(process.getuid?.());
  if (process.getuid?.() === 0) {
    if (spawnSync("id", ["-u", CI_USER]).status !== 0) {
      const made = spawnSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", CI_USER], { encoding: "utf8" });
      if (made.status !== 0) throw new Error(`cannot create the test user ${CI_USER} (needs useradd, from passwd): ${made.stderr}`);
    }
    argv = [["/usr/sbin/runuser", "/sbin/runuser"].find((p) => existsSync(p)) ?? "runuser", "-u", CI_USER, "--", ...argv];
    user = CI_USER;
  }
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd, env, encoding: "utf8", timeout: 120_000 });
  if (r.error) throw new Error(`cannot run ${argv[0]} (runuser comes with util-linux): ${r.error.message}`);
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, user };
}

// Port 80 and no access_log: Debian's nginx then opens its compiled-in
// /var/log/nginx/access.log, which only root may write.
const SPEC = `target: nginx
upstreams:
  web:
    service: web
    fallback: ["127.0.0.1:1111"]
servers:
  - listen: 80
    server_name: [ci.example.com]
    locations:
      - path: /
        upstream: web
status:
  listen: 127.0.0.1:81
  path: /status
`;

describe("check as CI runs it", () => {
  it("passes as a non-root user for a spec on port 80 with no access_log, and names the build id it checked", () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    writeFileSync(path.join(dir, "gen-lb.yaml"), SPEC, { mode: 0o644 });
    const built = runCli(["build", "--json", "--out", path.join(dir, "dist")], { cwd: dir });
    expect(built.status, built.stderr).toBe(0);
    const buildId = (JSON.parse(built.stdout) as { buildId: string }).buildId;

    const r = runAsUser(["check", "--json", "--bin", "/usr/sbin/nginx"], dir);
    expect(r.user).not.toBe("0");
    const doc = JSON.parse(r.stdout) as { ok: boolean; buildId: string; steps: Array<{ name: string; ok: boolean; messages: string[] }> };
    expect(doc.steps.filter((s) => !s.ok), r.stdout).toEqual([]);
    expect(r.status).toBe(0);
    expect(doc.buildId).toBe(buildId);
    const smoke = doc.steps.find((s) => s.name === "smoke start")!;
    expect(smoke.messages.join("\n")).toContain(`status endpoint serves build ${buildId}`);

    const human = runAsUser(["check", "--bin", "/usr/sbin/nginx"], dir);
    expect(human.status, human.stderr).toBe(0);
    expect(human.stdout).toContain(`check gen-lb.yaml (build ${buildId})`);
    expect(human.stdout).toContain(`serves build ${buildId}`);
  });
});
