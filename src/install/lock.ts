/**
 * One gen-lb at a time per prefix: install and rollback hold
 * PREFIX/.gen-lb/lock (created with O_EXCL, holding the owner's pid) from
 * before their check until after their reload. A second one waits, saying
 * whom it waits for, and gives up cleanly after a timeout. A lock whose
 * owner is no longer running (killed install) is taken over: under a second
 * lock, PREFIX/.gen-lb/lock.break, so that of two gen-lbs that find the same
 * dead owner only one removes its lock, never one just taken by the other.
 */
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { RejectedError } from "../errors.js";
import type { ProcessRunner } from "../util/proc.js";
import { STATE_DIR } from "./state.js";

export interface Lock {
  release(): Promise<void>;
}

export interface LockOptions {
  runner: ProcessRunner;
  timeoutMs?: number;
  /** Told once, when the lock is busy and we start waiting. */
  onWait?: (holder: string) => void;
  /** Tests: runs inside a takeover, after the dead owner's lock was read again, before it is removed. */
  duringTakeover?: () => Promise<void>;
}

/** A lock.break older than this was left by a gen-lb killed mid-takeover (which takes milliseconds). */
const BREAK_STALE_MS = 10_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function acquireLock(prefix: string, opts: LockOptions): Promise<Lock> {
  const dir = path.join(prefix, STATE_DIR);
  const file = path.join(dir, "lock");
  let createdDir = await fs.mkdir(dir).then(() => true, (e: NodeJS.ErrnoException) => {
    if (e.code === "EEXIST") return false;
    throw new RejectedError(`cannot create ${dir}: ${e.code ?? e.message}`);
  });
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const deadline = Date.now() + timeoutMs;
  let told = false;
  // The nonce tells apart two takers in one process (tests) started in the same millisecond.
  const me = `${process.pid} ${os.hostname()} ${new Date().toISOString()} ${Math.random().toString(36).slice(2, 10)}\n`;

  for (;;) {
    try {
      await fs.writeFile(file, me, { flag: "wx", mode: 0o644 });
      return {
        async release() {
          // Only our own lock: never remove one a stale-lock takeover gave to someone else.
          const now = await fs.readFile(file, "utf8").catch(() => "");
          if (now === me) await fs.rm(file, { force: true });
          // Leave the prefix as we found it when this was all we put there.
          if (createdDir) await fs.rmdir(dir).catch(() => undefined);
        },
      };
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      // A holder that made .gen-lb/ removes it again on release: make it again.
      if (e.code === "ENOENT") {
        createdDir = (await fs.mkdir(dir, { recursive: true })) !== undefined;
        continue;
      }
      if (e.code !== "EEXIST") throw new RejectedError(`cannot create the lock ${file}: ${e.code ?? e.message}`);
    }
    const holder = await fs.readFile(file, "utf8").catch(() => "");
    const pid = Number(holder.split(" ")[0]);
    const host = holder.split(" ")[1];
    const sameHost = host === undefined || host === os.hostname();
    if (holder !== "" && sameHost && (!Number.isInteger(pid) || pid <= 0 || !opts.runner.inspect(pid))) {
      // The owner is gone: remove its lock, then race for it again.
      if (!(await takeOver(file, holder, me, opts))) await sleep(20);
      continue;
    }
    if (!told) {
      opts.onWait?.(holder.trim() === "" ? "another gen-lb" : `gen-lb pid ${pid}${sameHost ? "" : ` on ${host}`}`);
      told = true;
    }
    if (Date.now() > deadline) {
      throw new RejectedError(
        `${file} is held by ${holder.trim() === "" ? "another gen-lb" : `pid ${pid} (since ${holder.split(" ")[2]?.trim()})`}; gave up after ${Math.round(timeoutMs / 1000)} s. Nothing was changed.`,
        ["if that process is gone for good, remove the lock file and run again"],
      );
    }
    await sleep(100);
  }
}

/**
 * Removes `file` if it still holds the dead owner's `holder`, under
 * `file`.break: every takeover removal happens there, after a fresh read, so
 * no taker can remove a lock another taker has just created. False when
 * another takeover is under way.
 */
async function takeOver(file: string, holder: string, me: string, opts: LockOptions): Promise<boolean> {
  const brk = `${file}.break`;
  try {
    await fs.writeFile(brk, me, { flag: "wx", mode: 0o644 });
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code !== "EEXIST") throw new RejectedError(`cannot create ${brk}: ${e.code ?? e.message}`);
    const age = await fs.stat(brk).then((st) => Date.now() - st.mtimeMs, () => 0);
    if (age > BREAK_STALE_MS) await fs.rm(brk, { force: true });
    return false;
  }
  try {
    const again = await fs.readFile(file, "utf8").catch(() => "");
    await opts.duringTakeover?.();
    if (again === holder) await fs.rm(file, { force: true });
    return true;
  } finally {
    await fs.rm(brk, { force: true });
  }
}
