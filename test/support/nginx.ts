/**
 * Build a gen-lb prefix from a spec object and run the real nginx on it.
 * Every master started here is stopped when the test process exits, even
 * when a test fails half-way.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { buildFileSet } from "../../src/pipeline/index.js";
import type { SpecInput } from "../../src/spec/schema.js";
import { formatDiagnostic } from "../../src/pipeline/load.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { writeFileSet } from "../../src/util/files.js";
import { waitFor } from "./ports.js";
import { TEST_BIN, TEST_TARGET, type TestTarget } from "./target.js";

/** The binary under test: the test matrix sets it (see test/support/target.ts). */
export const NGINX_BIN = TEST_BIN;

const running = new Set<number>();
process.on("exit", () => {
  for (const pid of running) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      /* already gone */
    }
  }
});

export function tempDir(prefix = "gen-lb-test-"): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Validate and render `spec` for the matrix's target (whatever the spec says) into a fresh prefix. */
/**
 * Validate and render `spec` into a fresh prefix for the matrix's target
 * (a spec's own `target` is replaced), or for `target` when a test is about
 * one binary.
 */
export async function buildPrefix(spec: SpecInput, dir = tempDir(), target: TestTarget = TEST_TARGET): Promise<{ dir: string; buildId: string }> {
  const result = validateSpecText(JSON.stringify({ ...spec, target }), "spec.json");
  if (!result.spec) throw new Error(`test spec is invalid:\n${result.errors.map(formatDiagnostic).join("\n")}`);
  const set = buildFileSet(result.spec, "spec.json");
  await writeFileSet(dir, set);
  return { dir, buildId: set.buildId };
}

/** How a master is started: from which directory (then `-p` is relative to it), as which user. */
export interface Launch {
  /** Start nginx from there, with `-p` relative to it (as a user who types `nginx -p dist/`). */
  cwd?: string;
  /** Run the master as this uid (and the same gid) through setpriv: a non-root master. */
  uid?: number;
}

export class Nginx {
  private constructor(
    readonly prefix: string,
    public masterPid: number,
  ) {}

  static async start(prefix: string, env: Record<string, string> = {}, bin = NGINX_BIN, launch: Launch = {}): Promise<Nginx> {
    const pidFile = path.join(prefix, "logs/nginx.pid");
    const prefixArg = launch.cwd === undefined ? prefix : path.relative(launch.cwd, prefix);
    const args = ["-p", `${prefixArg}/`, "-c", "conf/nginx.conf"];
    const [command, argv] = launch.uid === undefined ? [bin, args] : ["setpriv", [`--reuid=${launch.uid}`, `--regid=${launch.uid}`, "--clear-groups", bin, ...args]];
    const r = await execa(command, argv, { reject: false, env, extendEnv: true, ...(launch.cwd === undefined ? {} : { cwd: launch.cwd }) });
    if (r.exitCode !== 0) throw new Error(`nginx failed to start (${r.exitCode}): ${r.stderr}\n${readLog(prefix)}`);
    const pid: number = await waitFor(() => (existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8").trim()) : 0), "nginx pid file");
    running.add(pid);
    const nginx = new Nginx(prefix, pid);
    await waitFor(() => nginx.workerPids().length > 0, "nginx workers");
    return nginx;
  }

  /** Pids of the master's current worker processes (not cache managers). */
  workerPids(): number[] {
    const pids: number[] = [];
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
        if (ppid === this.masterPid && cmdline.startsWith("nginx: worker process")) pids.push(Number(entry));
      } catch {
        /* raced with an exiting process */
      }
    }
    return pids.sort((a, b) => a - b);
  }

  errorLog(): string {
    return readLog(this.prefix);
  }

  async reload(): Promise<void> {
    process.kill(this.masterPid, "SIGHUP");
  }

  async stop(): Promise<void> {
    if (!running.has(this.masterPid)) return;
    try {
      process.kill(this.masterPid, "SIGTERM");
    } catch {
      running.delete(this.masterPid);
      return;
    }
    await waitFor(() => !isAlive(this.masterPid), "nginx to stop", 10_000).catch(() => {
      process.kill(this.masterPid, "SIGKILL");
    });
    running.delete(this.masterPid);
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still answers kill 0; its /proc state says Z.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function readLog(prefix: string): string {
  try {
    return readFileSync(path.join(prefix, "logs/error.log"), "utf8");
  } catch {
    return "";
  }
}

/** `nginx -t` on a prefix; returns nginx's combined output and exit code. */
export function nginxTest(prefix: string): { ok: boolean; output: string } {
  const r = spawnSync(NGINX_BIN, ["-t", "-p", `${prefix}/`, "-c", "conf/nginx.conf"], { encoding: "utf8" });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}
