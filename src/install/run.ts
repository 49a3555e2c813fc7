/**
 * install and rollback, start to end, with every effect passed in (process
 * runner, file operations, status fetcher, clock) so tests can drive them in
 * process and inject a failure at an exact step. The commands in
 * src/commands/ only parse options and print.
 *
 * install: lock -> finish/undo an interrupted change (journal) -> check
 *          against the prefix -> plan -> (dry run: stop here) -> refuse hand
 *          edits without --force -> spec still what was checked? -> back up,
 *          stage, swap (journaled) -> deps.seed (peer dump from Consul)
 *          -> reload and verify -> on failure: restore, reload, exit 1
 *          -> prune old backups -> unlock
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { RejectedError } from "../errors.js";
import { failedStepNames, formatCheckSteps } from "../check/format.js";
import { runCheck, type CheckDeps, type CheckReport } from "../check/run.js";
import type { PreparedSpec } from "../pipeline/index.js";
import { statusUrl, type StatusFetcher } from "../check/status.js";
import { nginxTestCommand, type ProcessRunner } from "../util/proc.js";
import { applyPlan, nodeInstallFs, readJournal, recoverInterrupted, withKillHook, type Applied, type InstallFs } from "./apply.js";
import { acquireLock, type Lock } from "./lock.js";
import { changesOf, planInstall, planRollback, type InstallPlan } from "./plan.js";
import { compiledDefaults, findMaster, reloadAndVerify, type ReloadOutcome } from "./reload.js";
import type { SeedReport } from "./seed.js";
import { listBackups, readBuildId, readFileState, readLiveConfig, readPrefixState, sha256, STATE_DIR, type FileState } from "./state.js";

export interface RunDeps {
  runner: ProcessRunner;
  env: NodeJS.ProcessEnv;
  fs?: InstallFs;
  fetchStatus?: StatusFetcher;
  now?: () => Date;
  /** Progress lines for humans (stderr); silent under --json. */
  note?: (line: string) => void;
  lockTimeoutMs?: number;
  reloadTimeoutMs?: number;
  check?: Partial<CheckDeps>;
  /**
   * Seeds the runtime's peer dump from Consul after the new files are in
   * place and before any reload (src/install/seed.ts, seedPeerDump), so new
   * workers start with peers. It reports problems and never throws.
   */
  seed?: (prefix: string, prepared: PreparedSpec) => Promise<SeedReport | undefined>;
}

export interface InstallInput {
  prefix: string;
  prepared: PreparedSpec;
  /** Read, validate and render the spec again: what is on disk right before the swap. */
  reprepare: () => Promise<PreparedSpec>;
  bin: string;
  reload: boolean;
  dryRun: boolean;
  keep: number;
  /** Replace files edited by hand since the last install (they are backed up first, as always). */
  force?: boolean;
}

export interface InstallResult {
  plan: InstallPlan;
  check: CheckReport;
  applied?: Applied;
  reload?: ReloadOutcome;
  seed?: SeedReport;
}

function checkDeps(deps: RunDeps): CheckDeps {
  return { runner: deps.runner, env: deps.env, ...(deps.fetchStatus ? { fetchStatus: deps.fetchStatus } : {}), ...deps.check };
}

async function lockPrefix(prefix: string, deps: RunDeps): Promise<Lock> {
  return acquireLock(prefix, {
    runner: deps.runner,
    ...(deps.lockTimeoutMs !== undefined ? { timeoutMs: deps.lockTimeoutMs } : {}),
    onWait: (holder) => deps.note?.(`waiting for ${holder} to finish with ${prefix}`),
  });
}

/**
 * Lock the prefix and finish or undo whatever an interrupted gen-lb left
 * (apply.ts's journal) before reading anything. A dry run takes the lock
 * only when there is something to recover, and releases it after.
 */
async function lockAndRecover(prefix: string, dryRun: boolean | undefined, io: InstallFs, deps: RunDeps): Promise<Lock | undefined> {
  if (dryRun && !(await readJournal(prefix))) return undefined;
  const lock = await lockPrefix(prefix, deps);
  try {
    const done = await recoverInterrupted(prefix, io);
    if (done) deps.note?.(`${done}`);
  } catch (error) {
    await lock.release();
    throw error;
  }
  if (dryRun) {
    await lock.release();
    return undefined;
  }
  return lock;
}

/** For read-only commands (diff): finish or undo an interrupted change first, so they read old or new files, never a mix. */
export async function recoverPrefix(prefix: string, deps: RunDeps): Promise<void> {
  await lockAndRecover(prefix, true, installFs(deps), deps);
}

const installFs = (deps: RunDeps) => deps.fs ?? withKillHook(nodeInstallFs, deps.env);

/** With --reload, the running master to signal; a reload that cannot happen is known before anything is touched. */
async function masterToReload(reload: boolean | undefined, pidFile: string, prefix: string, deps: RunDeps): Promise<number | undefined> {
  if (!reload) return undefined;
  const master = await findMaster(pidFile, deps.runner, path.join(prefix, "conf/nginx.conf"));
  if ("problem" in master) throw new RejectedError(`cannot --reload: ${master.problem}; nothing was changed`);
  return master.pid;
}

export async function runInstall(input: InstallInput, deps: RunDeps): Promise<InstallResult> {
  const { prefix, prepared } = input;
  const io = installFs(deps);
  const lock = await lockAndRecover(prefix, input.dryRun, io, deps);
  try {
    // Where the running master writes its pid when the live config says nothing (only a reload needs it).
    const compiled = input.reload ? await compiledDefaults(input.bin, deps.runner) : {};
    const liveBefore = await readLiveConfig(prefix, [], compiled);
    const masterPid = await masterToReload(input.reload, liveBefore.pidFile, prefix, deps);
    const check = await runCheck({ prepared, bin: input.bin, hostPrefix: prefix }, checkDeps(deps));
    if (!check.ok) {
      throw new RejectedError(`check failed (${failedStepNames(check)}): nothing was installed in ${prefix}`, formatCheckSteps(check), { check });
    }

    const state = await readPrefixState(prefix, prepared.set);
    const url = statusUrl(prepared.spec);
    const live = await readLiveConfig(prefix, [prepared.spec.nginx.error_log.path], compiled);
    const commands = [`check: ${input.bin} -t, luajit, smoke start (done: passed in ${check.ms} ms)`];
    if (input.reload) {
      commands.push(`kill -HUP ${masterPid} (the master, from ${path.relative(prefix, live.pidFile)})`);
      commands.push(url ? `wait for new workers; GET ${url} until build_id = ${prepared.set.buildId}` : "wait for new workers (status endpoint disabled)");
      commands.push("if that fails: restore the backup, kill -HUP again, exit 1");
    }
    const plan = planInstall({
      prefix,
      set: prepared.set,
      state,
      keep: input.keep,
      now: (deps.now ?? (() => new Date()))(),
      specFile: prepared.file,
      ...(liveBefore.buildId ? { previousBuildId: liveBefore.buildId } : {}),
      commands,
    });
    if (input.dryRun) return { plan, check };
    if (plan.handEdited.length > 0 && !input.force) {
      throw new RejectedError(
        `${plan.handEdited.length} file(s) in ${prefix} changed since the last install: ${plan.handEdited.join(", ")}; nothing was installed`,
        [
          `\`gen-lb install --dry-run\` shows the diff; --force replaces them (the edited files are backed up first, and rollback restores them)`,
          ...(plan.lostServers.length > 0 ? ["server blocks of conf/nginx.conf that would no longer exist:", ...plan.lostServers.map((l) => `  ${l}`)] : []),
        ],
      );
    }
    if (changesOf(plan).length === 0 && !input.reload) return { plan, check };

    // What was checked must be what the spec on disk says now.
    const assertSpecUnchanged = async () => {
      let now: PreparedSpec;
      try {
        now = await input.reprepare();
      } catch (error) {
        throw new RejectedError(`${prepared.file} changed between check and install and no longer builds: nothing was installed`, [
          (error as Error).message,
        ]);
      }
      if (now.fingerprint !== check.fingerprint) {
        throw new RejectedError(
          `${prepared.file} changed between check and install (build ${now.set.buildId} on disk, ${prepared.set.buildId} checked): nothing was installed; run install again to check and install the new version`,
        );
      }
    };
    let applied: Applied | undefined;
    if (changesOf(plan).length > 0) {
      applied = await applyPlan(plan, io, { beforeSwap: assertSpecUnchanged });
      deps.note?.(`swapped ${applied.changed.length} file(s); backup in ${path.relative(prefix, applied.backupDir)}`);
    } else {
      await assertSpecUnchanged();
    }

    const seed = await deps.seed?.(prefix, prepared);
    for (const line of seed?.lines ?? []) deps.note?.(line);

    let reload: ReloadOutcome | undefined;
    if (input.reload && masterPid !== undefined) {
      reload = await reloadAndVerify(
        { pid: masterPid, errorLogs: live.errorLogs, ...(url ? { statusUrl: url } : {}), expectBuildId: prepared.set.buildId },
        { runner: deps.runner, ...(deps.fetchStatus ? { fetchStatus: deps.fetchStatus } : {}), ...(deps.reloadTimeoutMs ? { timeoutMs: deps.reloadTimeoutMs } : {}) },
      );
      if (!reload.ok) {
        throw await restoreAfterFailedReload(
          `the reload of build ${prepared.set.buildId} failed`,
          reload,
          applied,
          { pid: masterPid, errorLogs: live.errorLogs, statusUrl: url, expectBuildId: liveBefore.buildId },
          deps,
        );
      }
    }
    await applied?.commit();
    return { plan, check, ...(applied ? { applied } : {}), ...(reload ? { reload } : {}), ...(seed ? { seed } : {}) };
  } finally {
    await lock?.release();
  }
}

/** Put the old files back, reload again, and build the error that says all of it. */
async function restoreAfterFailedReload(
  what: string,
  failed: ReloadOutcome,
  applied: Applied | undefined,
  target: { pid: number; errorLogs: string[]; statusUrl: string | undefined; expectBuildId: string | undefined },
  deps: RunDeps,
): Promise<RejectedError> {
  const details = [...failed.messages];
  if (!applied) return new RejectedError(`${what}; no files had changed`, details, { reload: failed });
  try {
    await applied.undo();
  } catch (error) {
    return new RejectedError(`${what}, and restoring the previous files failed: ${(error as Error).message}`, [
      ...details,
      `the previous files are in ${applied.backupDir}/files`,
    ]);
  }
  const again = await reloadAndVerify(
    {
      pid: target.pid,
      errorLogs: target.errorLogs,
      ...(target.statusUrl ? { statusUrl: target.statusUrl } : {}),
      ...(target.expectBuildId ? { expectBuildId: target.expectBuildId } : {}),
    },
    { runner: deps.runner, ...(deps.fetchStatus ? { fetchStatus: deps.fetchStatus } : {}), ...(deps.reloadTimeoutMs ? { timeoutMs: deps.reloadTimeoutMs } : {}) },
  );
  const after = again.ok
    ? `restored the previous files and reloaded them (${again.messages.join("; ")})`
    : `restored the previous files, but reloading them failed too: ${again.messages.join("; ")}`;
  return new RejectedError(`${what}; ${after}`, details, { reload: failed, restoreReload: again });
}

// ---------------------------------------------------------------- rollback

export interface RollbackInput {
  prefix: string;
  reload: boolean;
  bin?: string;
  dryRun?: boolean;
  /** Replace files edited by hand since the last install (a copy of them stays in the rollback's own backup). */
  force?: boolean;
}

export interface RollbackResult {
  plan: InstallPlan;
  backupId: string;
  reload?: ReloadOutcome;
}

export async function runRollback(input: RollbackInput, deps: RunDeps): Promise<RollbackResult> {
  const { prefix } = input;
  const io = installFs(deps);
  const lock = await lockAndRecover(prefix, input.dryRun, io, deps);
  try {
    const compiled = input.reload && input.bin !== undefined ? await compiledDefaults(input.bin, deps.runner) : {};
    const liveBefore = await readLiveConfig(prefix, [], compiled);
    const masterPid = await masterToReload(input.reload, liveBefore.pidFile, prefix, deps);
    const backups = await listBackups(prefix);
    const latest = backups[backups.length - 1];
    if (!latest) throw new RejectedError(`no install backup in ${prefix}/.gen-lb/backups: there is nothing to roll back to`);
    if (!latest.manifest) throw new RejectedError(`the latest backup ${latest.id} is unreadable (${latest.problem}); nothing was changed`);

    // Every saved file must still be what the manifest says, or "byte for byte" is a lie.
    const saved = new Map<string, Buffer>();
    const current = new Map<string, FileState | undefined>();
    for (const mf of latest.manifest.files) {
      current.set(mf.path, await readFileState(path.join(prefix, mf.path)));
      if (!mf.before) continue;
      const bytes = await io.readFile(path.join(latest.dir, "files", mf.path)).catch(() => undefined);
      if (!bytes || sha256(bytes) !== mf.before.sha256) {
        throw new RejectedError(`backup ${latest.id} is damaged: files/${mf.path} ${bytes ? "does not match its checksum" : "is missing"}; nothing was changed`);
      }
      saved.set(mf.path, bytes);
    }
    const restoredBuildId = /^config\.build_id = "([0-9a-f]+)"$/m.exec(saved.get("lua/gen_lb/config.lua")?.toString("utf8") ?? "")?.[1] ??
      (latest.manifest.files.some((f) => f.path === "lua/gen_lb/config.lua") ? undefined : await readBuildId(prefix));
    const commands: string[] = [];
    if (input.reload) commands.push(`kill -HUP ${masterPid}; wait for new workers${restoredBuildId ? ` serving build ${restoredBuildId}` : ""}`);
    const plan = planRollback({
      prefix,
      backup: latest,
      saved,
      current,
      now: (deps.now ?? (() => new Date()))(),
      ...(restoredBuildId ? { restoredBuildId } : {}),
      commands,
    });
    if (input.dryRun) return { plan, backupId: latest.id };
    if (plan.handEdited.length > 0 && !input.force) {
      throw new RejectedError(
        `${plan.handEdited.length} file(s) in ${prefix} changed since the last install: ${plan.handEdited.join(", ")}; nothing was rolled back`,
        [`rollback would replace them with the files from before build ${latest.manifest.buildId ?? "(unknown)"}; --force does (a copy of the edited files is kept in ${STATE_DIR}/)`],
        { handEdited: plan.handEdited },
      );
    }
    // Forced over hand edits: the rollback's own safety copy of them stays
    // (under a name no later rollback in the same second takes).
    if (plan.handEdited.length > 0) plan.keepUndo = true;
    for (let n = 2; await fs.stat(path.join(prefix, plan.backupDir)).then(() => true, () => false); n++) {
      plan.backupId = `${plan.backupId.replace(/-\d+$/, "")}-${n}`;
      plan.backupDir = path.posix.join(path.posix.dirname(plan.backupDir), plan.backupId);
    }

    const applied = changesOf(plan).length > 0 ? await applyPlan(plan, io) : undefined;
    let reload: ReloadOutcome | undefined;
    if (input.reload && masterPid !== undefined && input.bin !== undefined) {
      // The restored files were good once; the host may have changed since
      // (a module gone, a certificate moved). Never signal a config nginx refuses.
      const test = await deps.runner.run(nginxTestCommand(input.bin, prefix));
      if (test.exitCode !== 0) {
        await applied?.undo();
        throw new RejectedError(
          `the rolled-back config fails \`${input.bin} -t\`; the files are back as they were before the rollback and nothing was reloaded`,
          (test.stderr || test.stdout).trim().split("\n").filter(Boolean),
        );
      }
    }
    if (input.reload && masterPid !== undefined) {
      const live = await readLiveConfig(prefix, [], compiled);
      // The running config's status endpoint answers for the restored build once it takes.
      const url = await restoredStatusUrl(prefix);
      reload = await reloadAndVerify(
        { pid: masterPid, errorLogs: [...new Set([...liveBefore.errorLogs, ...live.errorLogs])], ...(url ? { statusUrl: url } : {}), ...(restoredBuildId ? { expectBuildId: restoredBuildId } : {}) },
        { runner: deps.runner, ...(deps.fetchStatus ? { fetchStatus: deps.fetchStatus } : {}), ...(deps.reloadTimeoutMs ? { timeoutMs: deps.reloadTimeoutMs } : {}) },
      );
      if (!reload.ok) {
        throw await restoreAfterFailedReload(
          `the reload of the rolled-back files failed`,
          reload,
          applied,
          { pid: masterPid, errorLogs: liveBefore.errorLogs, statusUrl: await restoredStatusUrl(prefix), expectBuildId: liveBefore.buildId },
          deps,
        );
      }
    }
    // Success: the undo copy is not needed, and the consumed backup goes (the next rollback goes further back).
    if (applied) await applied.commit();
    else for (const p of plan.prune) await io.rmTree(path.join(prefix, p));
    return { plan, backupId: latest.id, ...(reload ? { reload } : {}) };
  } finally {
    await lock?.release();
  }
}

/**
 * Where the status endpoint of the config now in the prefix listens: read
 * from the rendered nginx.conf (the status server is the one with the
 * `content_by_lua_block { require("gen_lb.status")... }` location).
 */
async function restoredStatusUrl(prefix: string): Promise<string | undefined> {
  const conf = await readFileState(path.join(prefix, "conf/nginx.conf"));
  if (!conf) return undefined;
  const text = conf.bytes.toString("utf8");
  const m = /# status\n\s*server \{\n\s*listen ([^;\s]+);[\s\S]*?location = (\S+) \{/.exec(text);
  if (!m) return undefined;
  const listen = m[1]!;
  const hostPort = /^\d+$/.test(listen) ? `127.0.0.1:${listen}` : listen.replace(/^(\*|0\.0\.0\.0):/, "127.0.0.1:");
  return `http://${hostPort}${m[2]}`;
}
