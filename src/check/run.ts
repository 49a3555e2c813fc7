/**
 * `gen-lb check`: prove a rendered config works before it goes live.
 *
 *   nginx -t      parse and test in a scratch prefix (runs no Lua)
 *   lua syntax    LuaJIT -bl on every emitted Lua file
 *   smoke start   start it for real, because -t runs neither init_by_lua
 *                 nor init_worker_by_lua; read the error log, ask the status
 *                 endpoint for the build id, stop
 *
 * Every step runs the scratch build (scratchSpec: free loopback ports, logs,
 * pid, temp paths and dump inside the scratch prefix; `nginx -t` binds ports
 * and opens logs too), so a check needs no privileges. The scratch build
 * carries the checked build's id, which the status endpoint must serve.
 * Everything happens in a temp directory that is removed afterwards; the
 * live prefix (--prefix) is only read, for the host files the config needs.
 */
import { promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { buildFileSet } from "../pipeline/index.js";
import type { FileSet } from "../pipeline/render.js";
import { writeFileSet } from "../util/files.js";
import {
  findLuajit,
  isActiveWorker,
  luajitCheckCommand,
  nginxStartCommand,
  nginxTestCommand,
  type CommandResult,
  type ProcessRunner,
} from "../util/proc.js";
import {
  dedupeMessages,
  FAILING_LEVELS,
  formatMessage,
  isBackgroundNetworkError,
  missingLuaModule,
  parseNginxOutput,
  placeInSpec,
  type NginxMessage,
} from "./messages.js";
import { listenAddresses, scratchSpec } from "./smoke.js";
import type { PreparedSpec } from "../pipeline/index.js";
import { fetchStatus, statusUrl, type StatusFetcher } from "./status.js";

export interface CheckStep {
  name: "nginx -t" | "lua syntax" | "smoke start";
  ok: boolean;
  ms: number;
  messages: string[];
}

export interface CheckReport {
  ok: boolean;
  bin: string;
  buildId: string;
  /** What was checked: install compares it with the spec on disk before swapping. */
  fingerprint: string;
  steps: CheckStep[];
  ms: number;
}

export interface CheckDeps {
  runner: ProcessRunner;
  env: NodeJS.ProcessEnv;
  fetchStatus?: StatusFetcher;
  freePort?: () => Promise<number>;
  /** Where scratch prefixes go (default: the OS temp dir). */
  tmpDir?: string;
  /** How long workers and the status endpoint get to come up. */
  startTimeoutMs?: number;
}

export interface CheckInput {
  prepared: PreparedSpec;
  bin: string;
  /** A live prefix whose conf/ (mime.types, certificates...) the check should use. */
  hostPrefix?: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A port the kernel just handed out on loopback (released again for nginx to take). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The scratch prefix: host conf/ first (so host files win where the set says so), then the rendered files. */
async function fillScratch(scratch: string, set: FileSet, hostPrefix: string | undefined): Promise<void> {
  let hostHas = new Set<string>();
  if (hostPrefix !== undefined) {
    const hostConf = path.join(hostPrefix, "conf");
    const exists = await fs.stat(hostConf).then((s) => s.isDirectory(), () => false);
    if (exists) {
      await fs.cp(hostConf, path.join(scratch, "conf"), { recursive: true, force: true, verbatimSymlinks: true });
      hostHas = new Set(set.files.filter((f) => f.hostOwned).map((f) => f.path));
      for (const p of [...hostHas]) {
        if (!(await fs.stat(path.join(hostPrefix, p)).then(() => true, () => false))) hostHas.delete(p);
      }
    }
  }
  await writeFileSet(scratch, { ...set, files: set.files.filter((f) => !hostHas.has(f.path)) });
}

class Steps {
  readonly list: CheckStep[] = [];
  /** A step whose command already ran (and took `ms`). */
  async record(name: CheckStep["name"], ms: number, fn: () => { ok: boolean; messages: string[] }): Promise<boolean> {
    const { ok, messages } = fn();
    this.list.push({ name, ok, ms, messages });
    return ok;
  }
  async run(name: CheckStep["name"], fn: () => Promise<{ ok: boolean; messages: string[] }>): Promise<boolean> {
    const started = performance.now();
    const { ok, messages } = await fn();
    this.list.push({ name, ok, ms: Math.round(performance.now() - started), messages });
    return ok;
  }
  skip(name: CheckStep["name"], why: string): void {
    this.list.push({ name, ok: false, ms: 0, messages: [`not run: ${why}`] });
  }
}

export async function runCheck(input: CheckInput, deps: CheckDeps): Promise<CheckReport> {
  const started = performance.now();
  const { prepared, bin } = input;
  const scratch = await fs.mkdtemp(path.join(deps.tmpDir ?? os.tmpdir(), "gen-lb-check-"));
  // Workers of a root master run as another user (nobody, or nginx.user): they
  // must be able to reach the prefix to read Lua modules and write the dump.
  await fs.chmod(scratch, 0o755);
  const steps = new Steps();
  // nginx and LuaJIT name files by their scratch path; the scratch is gone
  // when the user reads the report, so speak in prefix-relative paths.
  const relative = (text: string) => text.split(`${scratch}//`).join("").split(`${scratch}/`).join("");
  // ...and of the spec's own listen addresses, not the scratch ports.
  let listens: ReadonlyArray<readonly [string, string]> = [];
  const unscratch = (text: string) => listens.reduce((t, [scratchListen, listen]) => t.split(`"${scratchListen}"`).join(`"${listen}"`), text);
  const describe = (msgs: readonly NginxMessage[], conf: string) =>
    msgs.map((m) => unscratch(relative(formatMessage(m, placeInSpec(m, conf, prepared.locate)))));
  try {
    // A port handed out a moment ago can be taken before nginx binds it (-t
    // binds too): one retry with fresh ports.
    let build: ScratchBuild;
    let tested: boolean;
    for (let attempt = 1; ; attempt++) {
      build = await scratchBuild(prepared, deps);
      listens = build.listens;
      await fillScratch(scratch, build.set, input.hostPrefix);
      const t0 = performance.now();
      const r = await deps.runner.run(nginxTestCommand(bin, scratch));
      const ms = Math.round(performance.now() - t0);
      const msgs = r.spawnError ? [] : dedupeMessages(parseNginxOutput(`${r.stderr}\n${r.stdout}`));
      if (attempt === 1 && r.exitCode !== 0 && msgs.some((m) => /Address already in use/.test(m.text))) continue;
      tested = await steps.record("nginx -t", ms, () => {
        if (r.spawnError) return { ok: false, messages: [`cannot run ${bin}: ${r.spawnError}`] };
        const missing = missingLuaModule(msgs, bin, prepared.target);
        const messages = [...(missing ? [missing] : []), ...describe(msgs, build.conf)];
        if (r.exitCode !== 0 && messages.length === 0) messages.push(`${bin} -t exited with ${r.exitCode}${r.timedOut ? " (timed out)" : ""}`);
        return { ok: r.exitCode === 0, messages };
      });
      break;
    }

    await steps.run("lua syntax", () => checkLua(build.set, scratch, bin, deps, relative));

    if (!tested) steps.skip("smoke start", "nginx -t failed");
    else {
      const rebuild = async () => {
        build = await scratchBuild(prepared, deps);
        listens = build.listens;
        await fillScratch(scratch, build.set, input.hostPrefix);
        return build;
      };
      await steps.run("smoke start", () => smokeStart(input, build, rebuild, scratch, deps, describe));
    }
  } finally {
    await fs.rm(scratch, { recursive: true, force: true }).catch(() => undefined);
  }
  return {
    ok: steps.list.every((s) => s.ok),
    bin,
    buildId: prepared.set.buildId,
    fingerprint: prepared.fingerprint,
    steps: steps.list,
    ms: Math.round(performance.now() - started),
  };
}

async function checkLua(
  set: FileSet,
  scratch: string,
  bin: string,
  deps: CheckDeps,
  relative: (s: string) => string,
): Promise<{ ok: boolean; messages: string[] }> {
  const luajit = findLuajit(bin, deps.env);
  const files = set.files.filter((f) => f.path.endsWith(".lua")).map((f) => f.path);
  if (luajit === undefined) {
    // Not a pass: an unchecked syntax error would only show at the first
    // request that requires the module.
    return {
      ok: false,
      messages: [`luajit not found beside ${bin} nor on PATH: ${files.length} Lua files cannot be syntax-checked; install luajit2 (Debian/Ubuntu: apt-get install luajit2), or check with OpenResty's binary (it bundles its own LuaJIT)`],
    };
  }
  const r = await deps.runner.run(luajitCheckCommand(luajit, files.map((f) => path.join(scratch, f))));
  if (r.spawnError) return { ok: false, messages: [`cannot run ${luajit}: ${r.spawnError}`] };
  if (r.exitCode === 0) return { ok: true, messages: [`${files.length} files parsed by ${luajit}`] };
  const errors = r.stderr.split("\n").filter((l) => l.trim() !== "").map((l) => relative(l.replace(/^luajit: /, "")));
  return { ok: false, messages: errors.length > 0 ? errors : [`${luajit} exited with ${r.exitCode}`] };
}

interface ScratchBuild {
  spec: PreparedSpec["spec"];
  /** The checked set with the scratch build's files in place of its own (so edits to the set are checked too). */
  set: FileSet;
  conf: string;
  /** [scratch listen, the spec's listen], to speak of the spec's addresses in messages. */
  listens: Array<readonly [string, string]>;
}

async function scratchBuild(prepared: PreparedSpec, deps: CheckDeps): Promise<ScratchBuild> {
  const getPort = deps.freePort ?? freeLoopbackPort;
  const ports = new Map<string, number>();
  for (const address of listenAddresses(prepared.spec)) ports.set(address, await getPort());
  const spec = scratchSpec(prepared.spec, ports);
  const rendered = buildFileSet(spec, prepared.file, prepared.target, {
    buildId: prepared.set.buildId,
    // Rendered for the version the real output is, or -t proves another config.
    ...(prepared.seenVersion === undefined ? {} : { seenVersion: prepared.seenVersion }),
  });
  const byPath = new Map(rendered.files.map((f) => [f.path, f]));
  const files = prepared.set.files.map((f) => byPath.get(f.path) ?? f);
  for (const f of rendered.files) if (!prepared.set.files.some((g) => g.path === f.path)) files.push(f);
  const set: FileSet = { files, dirs: [...new Set([...prepared.set.dirs, ...rendered.dirs, "temp"])], buildId: prepared.set.buildId };
  const asList = (l: string | number | Array<string | number>) => (Array.isArray(l) ? l : [l]).map(String);
  const listens: Array<readonly [string, string]> = [];
  prepared.spec.servers.forEach((server, i) => {
    const scratchListens = asList(spec.servers[i]!.listen);
    asList(server.listen).forEach((l, j) => listens.push([scratchListens[j]!, l]));
  });
  if (prepared.spec.status.enabled) listens.push([String(spec.status.listen), String(prepared.spec.status.listen)]);
  return { spec, set, conf: set.files.find((f) => f.path === "conf/nginx.conf")!.contents, listens };
}

async function readLog(file: string): Promise<string> {
  return fs.readFile(file, "utf8").catch(() => "");
}

async function smokeStart(
  input: CheckInput,
  first: ScratchBuild,
  /** Fresh ports (same build id), for the one retry when a port was taken between -t and the start. */
  rebuild: () => Promise<ScratchBuild>,
  scratch: string,
  deps: CheckDeps,
  describe: (msgs: readonly NginxMessage[], conf: string) => string[],
): Promise<{ ok: boolean; messages: string[] }> {
  const { bin } = input;
  const timeout = deps.startTimeoutMs ?? 10_000;
  const logFile = path.join(scratch, "logs/error.log");
  const pidFile = path.join(scratch, "logs/nginx.pid");
  let build = first;
  for (let attempt = 1; ; attempt++) {
    await fs.rm(logFile, { force: true });
    const start = await deps.runner.run(nginxStartCommand(bin, scratch));
    if (start.exitCode === 0) break;
    const msgs = dedupeMessages([...parseNginxOutput(start.stderr), ...parseNginxOutput(await readLog(logFile))]);
    await stopMaster(scratch, pidFile, deps.runner);
    if (attempt === 1 && msgs.some((m) => /Address already in use/.test(m.text))) {
      build = await rebuild();
      continue;
    }
    return { ok: false, messages: startFailure(start, msgs, bin, describe, build.conf) };
  }
  const { spec, conf } = build;
  const buildId = build.set.buildId;

  const messages: string[] = [];
  let ok = true;
  const pid = await waitUntil(async () => Number((await fs.readFile(pidFile, "utf8").catch(() => "")).trim()) || undefined, timeout);
  try {
    if (pid === undefined) return { ok: false, messages: [`${bin} started but wrote no pid file (${path.relative(scratch, pidFile)}) within ${timeout} ms`] };
    const want = typeof spec.nginx.worker_processes === "number" ? spec.nginx.worker_processes : 1;
    const workers = await waitUntil(() => {
      if (!deps.runner.inspect(pid)) return Promise.resolve(-1);
      const n = deps.runner.children(pid).filter(isActiveWorker).length;
      return Promise.resolve(n >= want ? n : undefined);
    }, timeout);
    if (workers === undefined || workers < 0) {
      ok = false;
      messages.push(workers === undefined ? `workers did not come up within ${timeout} ms` : "the master exited right after starting");
    }

    const url = statusUrl(spec);
    if (ok && url !== undefined) {
      const answer = await waitUntil(() => (deps.fetchStatus ?? fetchStatus)(url, 2_000).catch(() => undefined), timeout);
      if (answer === undefined) {
        ok = false;
        messages.push(`the status endpoint did not answer within ${timeout} ms`);
      } else if (answer.status !== 200 || answer.buildId !== buildId) {
        ok = false;
        messages.push(`the status endpoint answered ${answer.status} with build ${answer.buildId ?? "(none)"}, expected ${buildId}: ${answer.body.slice(0, 200)}`);
      } else {
        messages.push(`${workers} workers up; status endpoint serves build ${answer.buildId}`);
      }
    } else if (ok) {
      messages.push(`${workers} workers up (build ${buildId}); status endpoint disabled, build id not asked`);
    }
    // init_worker_by_lua timers run right after the fork: give them a moment to complain.
    await sleep(300);
  } finally {
    await stopMaster(scratch, pidFile, deps.runner, pid);
  }

  const logged = dedupeMessages(parseNginxOutput(await readLog(logFile)));
  const failing = logged.filter((m) => FAILING_LEVELS.has(m.level) && !isBackgroundNetworkError(m));
  const network = logged.filter(isBackgroundNetworkError);
  if (failing.length > 0) ok = false;
  messages.push(...describe(failing, conf));
  if (network.length > 0) {
    messages.push(
      `not counted: ${network.length} network error(s) from background timers (Consul or health-checked peers not reachable from this host; the runtime retries): ${network[0]!.text}`,
    );
  }
  return { ok, messages };
}

function startFailure(
  start: CommandResult,
  msgs: NginxMessage[],
  bin: string,
  describe: (msgs: readonly NginxMessage[], conf: string) => string[],
  conf: string,
): string[] {
  if (start.spawnError) return [`cannot run ${bin}: ${start.spawnError}`];
  const failing = msgs.filter((m) => FAILING_LEVELS.has(m.level));
  const out = describe(failing.length > 0 ? failing : msgs, conf);
  if (out.length === 0) out.push(`${bin} exited with ${start.exitCode}${start.timedOut ? " (timed out)" : ""}: ${start.stderr.trim().slice(0, 500)}`);
  return out;
}

/** Poll `fn` until it yields a value (not undefined) or `timeoutMs` passes. */
async function waitUntil<T>(fn: () => Promise<T | undefined>, timeoutMs: number, stepMs = 25): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) return undefined;
    await sleep(stepMs);
  }
}

/** Fast shutdown (TERM); KILL the master and its workers if they linger. */
async function stopMaster(scratch: string, pidFile: string, runner: ProcessRunner, known?: number): Promise<void> {
  const pid = known ?? (Number((await fs.readFile(pidFile, "utf8").catch(() => "")).trim()) || undefined);
  if (pid === undefined || !runner.inspect(pid)) return;
  // Only ever signal the master this check started: its command line names the scratch prefix.
  if (!runner.inspect(pid)!.cmdline.includes(scratch)) return;
  const workers = runner.children(pid).map((c) => c.pid);
  runner.signal(pid, "SIGTERM");
  const gone = await waitUntil(async () => (runner.inspect(pid) ? undefined : true), 5_000);
  if (!gone) {
    runner.signal(pid, "SIGKILL");
    for (const w of workers) runner.signal(w, "SIGKILL");
  }
  await waitUntil(async () => (workers.some((w) => runner.inspect(w)) ? undefined : true), 5_000);
}
