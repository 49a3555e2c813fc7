/**
 * The one module that runs and signals processes. Command lines are built by
 * pure functions returning `{command, args}` (tested as data, like ni's
 * parse.ts); a small runner executes them. Commands take the runner as a
 * parameter so tests can swap it (record calls, inject a failure, run a hook
 * at an exact moment) without touching a real binary.
 */
import { closeSync, constants, accessSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { execa } from "execa";
import { luaString } from "../render/quote.js";

export interface Command {
  command: string;
  args: string[];
  /** Kill the process after this long (a stuck binary must not hang a check). */
  timeoutMs?: number;
  /**
   * Give the process files, not pipes, for stdout/stderr: nginx opens
   * /dev/stdout itself (`access_log /dev/stdout`), which fails on the socket
   * pairs Node uses for pipes.
   */
  fileStdio?: boolean;
}

export interface CommandResult {
  /** -1 when the process could not be started or was killed. */
  exitCode: number;
  stdout: string;
  stderr: string;
  /** errno code when the binary could not be started at all (ENOENT, EACCES). */
  spawnError?: string;
  timedOut: boolean;
}

/** A process as /proc shows it. */
export interface ProcessInfo {
  pid: number;
  ppid: number;
  /** argv joined by spaces; nginx rewrites it to "nginx: master process ...". */
  cmdline: string;
}

export interface ProcessRunner {
  run(cmd: Command): Promise<CommandResult>;
  /** Send `signal`; false when there is no such process (ESRCH). */
  signal(pid: number, signal: NodeJS.Signals): boolean;
  /** The live (not zombie) process `pid`, or undefined. */
  inspect(pid: number): ProcessInfo | undefined;
  /** Live children of `ppid`. */
  children(ppid: number): ProcessInfo[];
}

// ---------------------------------------------------------------- command lines (pure)

/** Prefix arguments end in "/": nginx joins relative paths to it verbatim. */
const prefixArg = (prefix: string) => (prefix.endsWith("/") ? prefix : `${prefix}/`);

/** `nginx -t -q`: parse and test the configuration without starting (-q: errors only). */
export function nginxTestCommand(bin: string, prefix: string): Command {
  return { command: bin, args: ["-t", "-q", "-p", prefixArg(prefix), "-c", "conf/nginx.conf"], timeoutMs: 30_000, fileStdio: true };
}

/** `nginx -V`: version and configure arguments, on stderr. */
export function versionOutputCommand(bin: string): Command {
  return { command: bin, args: ["-V"], timeoutMs: 10_000 };
}

/** Start a master that daemonizes; the command returns once the master is up or has failed. */
export function nginxStartCommand(bin: string, prefix: string): Command {
  return { command: bin, args: ["-p", prefixArg(prefix), "-c", "conf/nginx.conf"], timeoutMs: 30_000 };
}

/**
 * Syntax-check Lua files with LuaJIT's own parser, without running them.
 * `loadfile` compiles exactly as `luajit -bl FILE` does, but one process for
 * all files instead of one each (spawning dominated: ~800 ms for 11 files
 * against ~60 ms). Prints "FILE:LINE: message" per bad file; exit 1 if any.
 */
export function luajitCheckCommand(luajit: string, files: readonly string[]): Command {
  // The list goes inside the chunk: file arguments after -e would be run as a script.
  const script =
    `local bad = false for _, f in ipairs({ ${files.map(luaString).join(", ")} }) do ` +
    "local ok, err = loadfile(f) if not ok then io.stderr:write(err, '\\n') bad = true end end " +
    "os.exit(bad and 1 or 0)";
  return { command: luajit, args: ["-e", script], timeoutMs: 30_000 };
}

// ---------------------------------------------------------------- finding binaries

/** `name` on PATH (an executable file), or undefined. A name with a "/" is taken as a path. */
export function findExecutable(name: string, env: NodeJS.ProcessEnv): string | undefined {
  const candidates = name.includes("/") ? [name] : (env.PATH ?? "").split(":").filter(Boolean).map((dir) => path.join(dir, name));
  for (const file of candidates) {
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/**
 * LuaJIT for syntax checks: OpenResty bundles its own beside the binary
 * (`<openresty>/luajit/bin/luajit`), which matches what nginx will run;
 * otherwise the one on PATH (Debian's luajit2 package).
 */
export function findLuajit(bin: string, env: NodeJS.ProcessEnv): string | undefined {
  try {
    const real = realpathSync(bin);
    for (const rel of ["../luajit/bin/luajit", "../../luajit/bin/luajit"]) {
      const found = findExecutable(path.resolve(path.dirname(real), rel), env);
      if (found) return found;
    }
  } catch {
    /* bin is a bare name or missing: PATH decides */
  }
  return findExecutable("luajit", env);
}

// ---------------------------------------------------------------- the runner

function readProc(pid: number): ProcessInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name in (...) may hold spaces and parens: read after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X") return undefined;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0+$/, "").replace(/\0/g, " ");
    return { pid, ppid: Number(fields[1]), cmdline };
  } catch {
    return undefined;
  }
}

async function runWithFileStdio(cmd: Command): Promise<CommandResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gen-lb-stdio-"));
  const outFile = path.join(dir, "stdout");
  const errFile = path.join(dir, "stderr");
  const out = openSync(outFile, "w");
  const err = openSync(errFile, "w");
  try {
    // Plain fds (not execa's pipes), so the child's stdout is an ordinary file.
    const r = await new Promise<{ code: number | null; error?: NodeJS.ErrnoException; timedOut: boolean }>((resolve) => {
      const child = spawn(cmd.command, cmd.args, { stdio: ["ignore", out, err] });
      let timedOut = false;
      const timer = cmd.timeoutMs === undefined ? undefined : setTimeout(() => {
        timedOut = true;
        child.kill("SIGKILL");
      }, cmd.timeoutMs);
      child.on("error", (error: NodeJS.ErrnoException) => {
        if (timer) clearTimeout(timer);
        resolve({ code: null, error, timedOut });
      });
      child.on("close", (code) => {
        if (timer) clearTimeout(timer);
        resolve({ code, timedOut });
      });
    });
    return {
      exitCode: typeof r.code === "number" ? r.code : -1,
      stdout: readFileSync(outFile, "utf8"),
      stderr: readFileSync(errFile, "utf8"),
      ...(r.error?.code ? { spawnError: r.error.code } : {}),
      timedOut: r.timedOut,
    };
  } finally {
    closeSync(out);
    closeSync(err);
    rmSync(dir, { recursive: true, force: true });
  }
}

export const systemRunner: ProcessRunner = {
  async run(cmd) {
    if (cmd.fileStdio) return runWithFileStdio(cmd);
    const r = await execa(cmd.command, cmd.args, {
      reject: false,
      timeout: cmd.timeoutMs,
      stdin: "ignore",
      // nginx daemonizes: its master keeps no handle on our pipes, so the
      // parent's exit ends the wait.
      encoding: "utf8",
    });
    const spawnError = (r as { code?: string }).code;
    return {
      exitCode: typeof r.exitCode === "number" ? r.exitCode : -1,
      stdout: String(r.stdout ?? ""),
      stderr: String(r.stderr ?? ""),
      ...(r.failed && r.exitCode === undefined && spawnError ? { spawnError } : {}),
      timedOut: Boolean(r.timedOut),
    };
  },
  signal(pid, signal) {
    try {
      process.kill(pid, signal);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
      throw error;
    }
  },
  inspect: readProc,
  children(ppid) {
    const out: ProcessInfo[] = [];
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      const info = readProc(Number(entry));
      if (info && info.ppid === ppid) out.push(info);
    }
    return out.sort((a, b) => a.pid - b.pid);
  },
};

/** nginx names its processes "nginx: worker process" (and "... is shutting down" once told to quit). */
export function isActiveWorker(info: ProcessInfo): boolean {
  return info.cmdline.startsWith("nginx: worker process") && !info.cmdline.includes("is shutting down");
}

export function isNginxMaster(info: ProcessInfo): boolean {
  return info.cmdline.startsWith("nginx: master process");
}
