/**
 * Shared pieces of the check/install tests: a real prefix in a temp dir
 * (conf/mime.types, logs/, html/, from fixtures/install/prefix), spec files
 * with fresh loopback ports, byte-level snapshots, the CLI spawned without
 * blocking (so a load can run beside it), and tmpfs mounts.
 */
import { spawn, execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";
import { CLI, MATRIX_PATH, ROOT, type CliResult } from "../support/cli.js";
import { NGINX_BIN, tempDir } from "../support/nginx.js";
import { TEST_TARGET } from "../support/target.js";
import { freePort } from "../support/ports.js";
import { request } from "../support/load.js";
import { walkTree } from "../support/tree.js";

/** worker_processes of every spec specObject() writes. */
export const SPEC_WORKERS = 2;

export const FIXTURES = path.join(ROOT, "fixtures/install");

/** A live-looking prefix: the fixture skeleton plus an empty logs/. Reachable by nobody (workers). */
export function makePrefix(dir = tempDir("gen-lb-prefix-")): string {
  cpSync(path.join(FIXTURES, "prefix"), dir, { recursive: true });
  mkdirSync(path.join(dir, "logs"), { recursive: true });
  chmodSync(dir, 0o755);
  return dir;
}

export interface Ports {
  http: number;
  status: number;
}

/**
 * A fresh connection each time: Node's global agent keeps connections alive,
 * and one to a worker retired by a reload is closed under the next request.
 */
export const fresh = { headers: { connection: "close" } };

/** What the spec's server answers at / (each test backend answers with its name), on a fresh connection. */
export async function body(p: Ports): Promise<string> {
  return (await request(`http://127.0.0.1:${p.http}/`, fresh)).body;
}

export async function ports(): Promise<Ports> {
  return { http: await freePort(), status: await freePort() };
}

/** A small spec: `/` answers `text` from nginx itself (no discovery needed), status on its own port. */
export function specObject(p: Ports, text: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    target: TEST_TARGET,
    // Nothing listens on port 1: discovery fails fast and quietly (a warning).
    consul: { addresses: ["http://127.0.0.1:1"] },
    nginx: { worker_processes: SPEC_WORKERS },
    servers: [{ listen: `127.0.0.1:${p.http}`, locations: [{ path: "/", return: { code: 200, text } }] }],
    status: { listen: `127.0.0.1:${p.status}` },
    ...extra,
  };
}

export function writeSpec(dir: string, name: string, spec: unknown): string {
  const file = path.join(dir, name);
  writeFileSync(file, JSON.stringify(spec, null, 2) + "\n");
  return file;
}

/** path -> sha256 and mode of every file, and every directory, under `dir` (minus `skip` top-level names). */
export function snapshot(dir: string, skip: string[] = ["logs"]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of walkTree(dir, skip)) {
    if (e.dir) out[`${e.rel}/`] = "dir";
    else out[e.rel] = `${createHash("sha256").update(readFileSync(e.path)).digest("hex")} ${(statSync(e.path).mode & 0o7777).toString(8)}`;
  }
  return out;
}

/**
 * The files install and rollback answer for: everything but gen-lb's own
 * .gen-lb/ state and what a running nginx writes (logs/, state/ where
 * the Lua runtime keeps its peer dump, and the *_temp/ directories a binary
 * built with prefix-relative temp paths, such as OpenResty, creates).
 */
export const NGINX_TEMP_DIRS = ["client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"];
export function liveFiles(dir: string): Record<string, string> {
  return snapshot(dir, ["logs", ".gen-lb", "state", ...NGINX_TEMP_DIRS]);
}

/** Spawn the built CLI without blocking the event loop; clean env like runCli. */
export function runCliAsync(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { PATH: MATRIX_PATH, HOME: process.env.HOME ?? "/root", ...opts.env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr });
    });
  });
}

/** A shell script that runs nginx, after doing `before` when called for a real start (not -t). */
export function wrapperBin(dir: string, onStart: string): string {
  const file = path.join(dir, "nginx-wrapper.sh");
  writeFileSync(file, `#!/bin/sh\ncase " $* " in *" -t "*|*" -V "*) ;; *) ${onStart} ;; esac\nexec ${NGINX_BIN} "$@"\n`, { mode: 0o755 });
  return file;
}

/** Mount a tmpfs of `size` at `dir` (tests run as root); returns the unmount. */
export function mountTmpfs(dir: string, size: string): () => void {
  mkdirSync(dir, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir]);
  return () => execFileSync("umount", ["-l", dir]);
}

export function remountReadOnly(dir: string): void {
  execFileSync("mount", ["-o", "remount,ro", dir]);
}
