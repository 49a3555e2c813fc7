/**
 * One gen-lb at a time per prefix: install and rollback hold
 * PREFIX/.gen-lb/lock (created with O_EXCL, holding the owner's pid) from
 * before their check until after their reload. A second one waits, saying
 * whom it waits for, and gives up cleanly after a timeout. A lock whose
 * owner is no longer running (killed install) is taken over.
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
}

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
  const me = `${process.pid} ${os.hostname()} ${new Date().toISOString()}\n`;

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
      // The owner is gone. Remove the lock only if it is still the same one, then race for it again.
      const again = await fs.readFile(file, "utf8").catch(() => "");
      if (again === holder) await fs.rm(file, { force: true });
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
