/**
 * Reloading the running master and proving the new config took: SIGHUP,
 * then wait for workers that did not exist before, and ask the status
 * endpoint which build it serves. nginx keeps its old workers when the new
 * config fails to load, so "no new workers" plus an [emerg] in the error
 * log is how a failed reload looks from outside.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { parseNginxOutput, type NginxMessage } from "../check/messages.js";
import { fetchStatus as defaultFetch, type StatusFetcher } from "../check/status.js";
import { isActiveWorker, isNginxMaster, versionOutputCommand, type ProcessRunner } from "../util/proc.js";

export interface ReloadDeps {
  runner: ProcessRunner;
  fetchStatus?: StatusFetcher;
  timeoutMs?: number;
}

/**
 * The config file a master runs, from its command line ("nginx: master
 * process /usr/sbin/nginx -p /srv/lb/ -c conf/nginx.conf"): -c relative to
 * the prefix, the prefix (-p) relative to the directory it was started in;
 * what is not given comes from the binary's compiled-in defaults (`-V`).
 * Pure: the caller reads /proc.
 */
export function masterConfFile(cmdline: string, cwd: string, compiled: { prefix?: string; confPath?: string }): string | undefined {
  const argv = cmdline.replace(/^nginx: master process\s*/, "").split(/\s+/).filter(Boolean);
  let prefix: string | undefined;
  let conf: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-p") prefix = argv[++i];
    else if (a.startsWith("-p") && a.length > 2) prefix = a.slice(2);
    else if (a === "-c") conf = argv[++i];
    else if (a.startsWith("-c") && a.length > 2) conf = a.slice(2);
  }
  const root = prefix !== undefined ? path.resolve(cwd, prefix) : compiled.prefix;
  if (conf === undefined) conf = compiled.confPath;
  if (conf === undefined) return undefined;
  if (path.isAbsolute(conf)) return conf;
  return root === undefined ? undefined : path.resolve(root, conf);
}

export interface CompiledPaths {
  prefix?: string;
  /** Absolute (a relative --conf-path is resolved against --prefix). */
  confPath?: string;
  /** As given: a relative one is relative to the prefix nginx runs with (-p). */
  pidPath?: string;
  errorLogPath?: string;
}

/** `--prefix=`, `--conf-path=`, `--pid-path=` and `--error-log-path=` of `nginx -V` output. */
export function compiledPaths(v: string): CompiledPaths {
  const opt = (name: string) => new RegExp(`--${name}=('[^']*'|\\S+)`).exec(v)?.[1]?.replace(/^'|'$/g, "");
  const prefix = opt("prefix");
  const confPath = opt("conf-path");
  const pidPath = opt("pid-path");
  const errorLogPath = opt("error-log-path");
  return {
    ...(prefix ? { prefix } : {}),
    ...(confPath ? { confPath: prefix && !path.isAbsolute(confPath) ? path.resolve(prefix, confPath) : confPath } : {}),
    ...(pidPath ? { pidPath } : {}),
    ...(errorLogPath ? { errorLogPath } : {}),
  };
}

/**
 * What `bin` uses when the config does not say: its compiled-in pid file and
 * error log (Debian's nginx: /run/nginx.pid and stderr; OpenResty: none
 * given, so nginx's own logs/nginx.pid and logs/error.log). Empty when -V
 * cannot be read.
 */
export async function compiledDefaults(bin: string, runner: ProcessRunner): Promise<CompiledPaths> {
  const v = await runner.run(versionOutputCommand(bin));
  if (v.spawnError || v.exitCode !== 0) return {};
  return compiledPaths(`${v.stderr}\n${v.stdout}`);
}

const realOr = (p: string) => fs.realpath(p).catch(() => path.resolve(p));

/** Does master `pid` (cmdline as /proc shows it) run `conf`? Compared after resolving symlinks. */
async function runsConf(pid: number, cmdline: string, conf: string, runner: ProcessRunner): Promise<{ ok: boolean; runs: string }> {
  const cwd = await fs.readlink(`/proc/${pid}/cwd`).catch(() => "/");
  let compiled: { prefix?: string; confPath?: string } = {};
  if (!/ -c\s*\S/.test(cmdline) || !/ -p\s*\S/.test(cmdline)) {
    const exe = await fs.readlink(`/proc/${pid}/exe`).catch(() => undefined);
    if (exe) {
      const v = await runner.run({ command: exe, args: ["-V"], timeoutMs: 10_000 });
      compiled = compiledPaths(`${v.stderr}\n${v.stdout}`);
    }
  }
  const file = masterConfFile(cmdline, cwd, compiled);
  if (file === undefined) return { ok: false, runs: `an unknown config ("${cmdline.slice(0, 120)}")` };
  return { ok: (await realOr(file)) === (await realOr(conf)), runs: `${file} ("${cmdline.slice(0, 120)}")` };
}

/**
 * The master named by the pid file, or why there is none to signal. It must
 * run `conf` (this prefix's nginx.conf): a stale pid file can name another
 * prefix's master, which must never get our SIGHUP.
 */
export async function findMaster(pidFile: string, runner: ProcessRunner, conf?: string): Promise<{ pid: number } | { problem: string }> {
  const text = await fs.readFile(pidFile, "utf8").catch((e: NodeJS.ErrnoException) => e);
  if (text instanceof Error) {
    return {
      problem:
        text.code === "ENOENT"
          ? `no pid file at ${pidFile}: nginx is not running from this prefix (start it, or install without --reload)`
          : `cannot read the pid file ${pidFile}: ${text.code ?? text.message}`,
    };
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) return { problem: `the pid file ${pidFile} holds no pid (${JSON.stringify(text.trim().slice(0, 40))})` };
  const info = runner.inspect(pid);
  if (!info) {
    return { problem: `the pid file ${pidFile} names pid ${pid}, which is not running: nginx is stopped (or crashed); start it, or install without --reload` };
  }
  if (!isNginxMaster(info)) {
    return { problem: `the pid file ${pidFile} names pid ${pid}, which is not an nginx master ("${info.cmdline.slice(0, 80)}"): the pid file is stale` };
  }
  if (conf !== undefined) {
    const runs = await runsConf(pid, info.cmdline, conf, runner);
    if (!runs.ok) {
      return {
        problem: `the pid file ${pidFile} names pid ${pid}, an nginx master that runs ${runs.runs}, not ${conf}: the pid file is stale or shared with another nginx; nothing was signalled (start this prefix's nginx, or fix its pid directive)`,
      };
    }
  }
  return { pid };
}

export interface ReloadTarget {
  pid: number;
  errorLogs: string[];
  statusUrl?: string;
  /** The build the reloaded config must serve (undefined: not a gen-lb config, no status to ask). */
  expectBuildId?: string;
}

export interface ReloadOutcome {
  ok: boolean;
  ms: number;
  messages: string[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * After a reload, the lines that mean the new config did not take: the master
 * rejecting it ([emerg]), anything [alert], and Lua init failures. Other
 * [error] lines can be live traffic (an upstream refusing a connection) and
 * must not roll a good config back.
 */
export function isReloadFailure(m: NginxMessage): boolean {
  if (m.level === "emerg" || m.level === "alert") return true;
  return (m.level === "error" || m.level === "crit") && /init_by_lua|init_worker_by_lua/.test(m.text);
}

async function sizes(files: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const f of files) out.set(f, await fs.stat(f).then((s) => s.size, () => 0));
  return out;
}

async function appended(offsets: Map<string, number>): Promise<string> {
  let text = "";
  for (const [file, offset] of offsets) {
    const handle = await fs.open(file, "r").catch(() => undefined);
    if (!handle) continue;
    try {
      const { size } = await handle.stat();
      if (size <= offset) continue;
      const buf = Buffer.alloc(Math.min(size - offset, 1_000_000));
      await handle.read(buf, 0, buf.length, offset);
      text += buf.toString("utf8");
    } finally {
      await handle.close();
    }
  }
  return text;
}

export async function reloadAndVerify(target: ReloadTarget, deps: ReloadDeps): Promise<ReloadOutcome> {
  const started = performance.now();
  const fetchStatus = deps.fetchStatus ?? defaultFetch;
  const timeoutMs = deps.timeoutMs ?? 15_000;
  const { runner } = deps;
  const offsets = await sizes(target.errorLogs);
  const before = new Set(runner.children(target.pid).map((c) => c.pid));
  const done = (ok: boolean, messages: string[]): ReloadOutcome => ({ ok, ms: Math.round(performance.now() - started), messages });

  if (!runner.signal(target.pid, "SIGHUP")) return done(false, [`the master (pid ${target.pid}) is gone`]);
  const deadline = Date.now() + timeoutMs;
  let last = "";
  let fresh: number[] = [];
  for (;;) {
    const failures = parseNginxOutput(await appended(offsets)).filter(isReloadFailure);
    if (failures.length > 0) return done(false, failures.map((m) => `[${m.level}] ${m.text}`));
    if (!runner.inspect(target.pid)) return done(false, [`the master (pid ${target.pid}) exited during the reload`]);

    fresh = runner.children(target.pid).filter((c) => isActiveWorker(c) && !before.has(c.pid)).map((c) => c.pid);
    if (fresh.length > 0) {
      if (target.statusUrl === undefined || target.expectBuildId === undefined) {
        return done(true, [`${fresh.length} new worker(s) up${target.statusUrl === undefined ? "; status endpoint disabled, build id not verified" : ""}`]);
      }
      const answer = await fetchStatus(target.statusUrl, 2_000).catch((e: Error) => ({ status: 0, body: e.message, buildId: undefined }));
      if (answer.buildId === target.expectBuildId) {
        return done(true, [`${fresh.length} new worker(s) up; ${target.statusUrl} serves build ${answer.buildId}`]);
      }
      last = answer.status === 200 ? `build ${answer.buildId ?? "(none)"}` : `${answer.status || "no answer"}: ${answer.body.trim().slice(0, 120)}`;
      if (answer.status === 403) {
        return done(true, [`${fresh.length} new worker(s) up; ${target.statusUrl} refused this host (403): build id not verified (add 127.0.0.1 to status.allow)`]);
      }
    }
    if (Date.now() > deadline) {
      return done(false, [
        fresh.length === 0
          ? `no new workers within ${timeoutMs / 1000} s: the master did not take the new config`
          : `${target.statusUrl} still answers ${last} after ${timeoutMs / 1000} s, expected build ${target.expectBuildId}`,
      ]);
    }
    await sleep(50);
  }
}
