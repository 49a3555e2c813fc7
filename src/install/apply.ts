/**
 * The one writer of a live prefix. Carries out an InstallPlan in three
 * phases, so that anything likely to fail (a full disk, a permission) fails
 * while the live files are still untouched:
 *
 *   1. back up  copy every file to be replaced or removed into
 *               .gen-lb/backups/<id>.partial/, checksum it, write the
 *               manifest, rename the directory to <id> (complete or absent)
 *   2. stage    write each new file into .gen-lb/staging/ (checked to be
 *               the target's file system, so the rename below cannot cross
 *               devices; beside the target otherwise)
 *   3. swap     rename each staged file over its target; remove stale ones
 *
 * A journal (below) is written before any of it and at each phase change, so
 * that a gen-lb killed at any step leaves enough for the next one to finish
 * or undo it. A failure in 1 or 2 deletes what was written and leaves the
 * prefix as it was. A failure in 3 puts back the files already swapped.
 * After a successful apply, `undo()` restores the backup (a reload that
 * failed) and `commit()` keeps the change.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { RejectedError } from "../errors.js";
import { GENERATOR } from "../pipeline/index.js";
import { errnoMessage } from "../util/files.js";
import { changesOf, type InstallPlan, type PlannedFile } from "./plan.js";
import { BACKUPS_DIR, listPartialBackups, MANIFEST, MANIFEST_FORMAT, STATE_DIR, sha256, type Manifest, type ManifestFile } from "./state.js";

/** The file operations the applier uses; tests wrap it to inject ENOSPC, EIO... at an exact step. */
export interface InstallFs {
  /** Write and fsync a new file with `mode`. */
  writeFile(file: string, data: Buffer, mode: number): Promise<void>;
  copyFile(from: string, to: string): Promise<void>;
  readFile(file: string): Promise<Buffer>;
  rename(from: string, to: string): Promise<void>;
  rm(file: string): Promise<void>;
  rmTree(dir: string): Promise<void>;
  mkdir(dir: string): Promise<void>;
  /** Remove a directory only if it is empty; false otherwise. */
  rmdirIfEmpty(dir: string): Promise<boolean>;
  /** Create a symbolic link `file` whose text is `link`. */
  symlink(link: string, file: string): Promise<void>;
  chown(file: string, uid: number, gid: number): Promise<void>;
  chmod(file: string, mode: number): Promise<void>;
}

export const nodeInstallFs: InstallFs = {
  async writeFile(file, data, mode) {
    const handle = await fs.open(file, "wx", mode);
    try {
      await handle.writeFile(data);
      // The umask may have trimmed the mode: say it again.
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  copyFile: (from, to) => fs.copyFile(from, to),
  readFile: (file) => fs.readFile(file),
  rename: (from, to) => fs.rename(from, to),
  rm: (file) => fs.rm(file, { force: true }),
  rmTree: (dir) => fs.rm(dir, { recursive: true, force: true }),
  mkdir: async (dir) => {
    await fs.mkdir(dir, { recursive: true });
  },
  async rmdirIfEmpty(dir) {
    try {
      await fs.rmdir(dir);
      return true;
    } catch {
      return false;
    }
  },
  chown: (file, uid, gid) => fs.chown(file, uid, gid),
  chmod: (file, mode) => fs.chmod(file, mode),
  symlink: (link, file) => fs.symlink(link, file),
};

// ---------------------------------------------------------------- the journal

/**
 * What an apply in progress is doing, in PREFIX/.gen-lb/journal.json,
 * replaced atomically (write beside, rename over) at each phase change and
 * written before anything else. A gen-lb killed at any step leaves it
 * behind, and the next gen-lb on the prefix reads it first
 * (recoverInterrupted):
 *
 *   preparing  backup and staging only, no live file touched (but new
 *              directories): delete what was made; the prefix is as before
 *   swapping   some live files may be new: put every file back from the
 *   undoing    (complete) backup, remove added ones; the prefix is as before
 *   swapped    every file is new: finish (prune, remove emptied directories)
 *
 * Every step of the undo compares the live file with the backup first, so
 * an undo killed half-way is simply run again.
 */
export const JOURNAL = `${STATE_DIR}/journal.json`;
/** New bytes wait here (same file system as the prefix, checked) until they are renamed into place. */
export const STAGING_DIR = `${STATE_DIR}/staging`;
/** Backups being deleted: moved here first (one rename), so a kill never leaves a half-deleted backup in backups/. */
export const TRASH_DIR = `${STATE_DIR}/trash`;

type Phase = "preparing" | "swapping" | "swapped" | "undoing";

interface JournalFile {
  path: string;
  action: "add" | "replace" | "remove";
  /** Where the new bytes are staged, relative to the prefix (the undo copy goes to `staged`.undo). */
  staged: string;
  /** The file the path is a symbolic link to (absolute): written through, the link itself is never replaced. */
  target?: string;
  /** A symbolic link (this text) that the change removes, or puts in place: removed and restored as the link, its target never touched. */
  link?: string;
  before?: { sha256: string; mode: number; uid: number; gid: number };
}

export interface Journal {
  format: 1;
  kind: "install" | "rollback";
  phase: Phase;
  pid: number;
  startedAt: string;
  backupDir: string;
  files: JournalFile[];
  /** Directories the apply creates (removed again, when empty, by an undo). */
  createDirs: string[];
  /** Directories to remove if empty once the change is finished. */
  removeDirs: string[];
  /** Backups to delete once the change is finished. */
  prune: string[];
}

export async function readJournal(prefix: string): Promise<Journal | undefined> {
  const text = await fs.readFile(path.join(prefix, JOURNAL), "utf8").catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw new RejectedError(`cannot read ${JOURNAL} in ${prefix}: ${e.code ?? e.message}`);
  });
  if (text === undefined) return undefined;
  try {
    const j = JSON.parse(text) as Journal;
    if (j.format !== 1 || !Array.isArray(j.files)) throw new Error(`unknown journal format ${String(j.format)}`);
    return j;
  } catch (error) {
    throw new RejectedError(`${path.join(prefix, JOURNAL)} is unreadable (${(error as Error).message}): an interrupted install cannot be finished automatically`, [
      `the previous files are in ${path.join(prefix, BACKUPS_DIR)}; compare by hand, then remove the journal`,
    ]);
  }
}

async function writeJournal(prefix: string, io: InstallFs, journal: Journal): Promise<void> {
  const file = path.join(prefix, JOURNAL);
  await io.mkdir(path.dirname(file));
  await io.rm(`${file}.tmp`);
  await io.writeFile(`${file}.tmp`, Buffer.from(JSON.stringify(journal, null, 2) + "\n"), 0o644);
  await io.rename(`${file}.tmp`, file);
}

/** The device of `p`, or of its nearest existing parent. */
async function deviceOf(p: string): Promise<number> {
  for (let d = p; ; d = path.dirname(d)) {
    const st = await fs.stat(d).catch(() => undefined);
    if (st) return st.dev;
    if (d === path.dirname(d)) return -1;
  }
}

const isRoot = () => process.getuid?.() === 0;

async function sameAsBefore(file: string, before: NonNullable<JournalFile["before"]>): Promise<boolean> {
  const st = await fs.lstat(file).catch(() => undefined);
  if (!st?.isFile() || (st.mode & 0o7777) !== before.mode) return false;
  if (isRoot() && (st.uid !== before.uid || st.gid !== before.gid)) return false;
  return sha256(await fs.readFile(file)) === before.sha256;
}

/** Put every journaled file back as the backup has it, remove added ones; then drop the backup and the journal. */
async function undoJournal(prefix: string, journal: Journal, io: InstallFs): Promise<void> {
  const abs = (p: string) => path.join(prefix, p);
  if (journal.phase !== "undoing") await writeJournal(prefix, io, { ...journal, phase: "undoing" });
  // Backwards, so nginx.conf (swapped last of the files it names) is restored first.
  for (const f of [...journal.files].reverse()) {
    const dest = f.target ?? abs(f.path);
    if (!f.before) {
      await io.rm(dest);
      continue;
    }
    if (f.link !== undefined && f.action === "remove") {
      // A removed link comes back as the link; its target was never touched.
      if ((await fs.readlink(dest).catch(() => undefined)) === f.link) continue;
      await io.mkdir(path.dirname(dest));
      await io.rm(dest);
      await io.symlink(f.link, dest);
      continue;
    }
    if (await sameAsBefore(dest, f.before)) continue;
    const tmp = abs(`${f.staged}.undo`);
    await io.mkdir(path.dirname(tmp));
    await io.rm(tmp);
    await io.copyFile(path.join(abs(journal.backupDir), "files", f.path), tmp);
    if (isRoot()) await io.chown(tmp, f.before.uid, f.before.gid);
    await io.chmod(tmp, f.before.mode);
    // A rollback may have removed the directory along with its last file.
    await io.mkdir(path.dirname(dest));
    await io.rename(tmp, dest);
  }
  await dropTemporaries(prefix, journal, io);
  for (const d of [...journal.createDirs].sort((a, b) => b.length - a.length)) await io.rmdirIfEmpty(abs(d));
  await io.rmTree(abs(`${journal.backupDir}.partial`));
  await io.rmTree(abs(journal.backupDir));
  await io.rm(path.join(prefix, JOURNAL));
}

async function dropTemporaries(prefix: string, journal: Journal, io: InstallFs): Promise<void> {
  for (const f of journal.files) {
    if (f.staged.startsWith(`${STAGING_DIR}/`)) continue;
    await io.rm(path.join(prefix, f.staged));
    await io.rm(path.join(prefix, `${f.staged}.undo`));
  }
  await io.rmTree(path.join(prefix, STAGING_DIR));
}

/** Move a backup out of backups/ in one rename, then delete it. */
async function deleteBackup(prefix: string, rel: string, io: InstallFs): Promise<void> {
  const trash = path.join(prefix, TRASH_DIR);
  await io.mkdir(trash);
  const to = path.join(trash, path.basename(rel));
  await io.rmTree(to);
  await io.rename(path.join(prefix, rel), to).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "ENOENT") throw e;
  });
  await io.rmTree(trash);
}

/** The change is complete: remove emptied directories, delete what it consumed, forget the journal. */
async function finishJournal(prefix: string, journal: Journal, io: InstallFs): Promise<void> {
  for (const d of journal.removeDirs) await io.rmdirIfEmpty(path.join(prefix, d)).catch(() => false);
  for (const p of journal.prune) await deleteBackup(prefix, p, io);
  await dropTemporaries(prefix, journal, io);
  await io.rm(path.join(prefix, JOURNAL));
}

/** Nothing live was touched yet: delete the staged files, the backup and the directories made for it. */
async function abandonJournal(prefix: string, journal: Journal, io: InstallFs, extraDirs: string[] = []): Promise<void> {
  await dropTemporaries(prefix, journal, io);
  await io.rmTree(path.join(prefix, `${journal.backupDir}.partial`));
  await io.rmTree(path.join(prefix, journal.backupDir));
  for (const d of [...journal.createDirs].sort((a, b) => b.length - a.length)) await io.rmdirIfEmpty(path.join(prefix, d));
  await io.rm(path.join(prefix, JOURNAL));
  for (const d of extraDirs) await io.rmdirIfEmpty(d).catch(() => false);
}

/**
 * Finish or undo what an interrupted gen-lb left (see the journal above),
 * and delete temporaries of one killed before it wrote its journal. Run
 * under the prefix lock. Returns what was done, in words, or undefined when
 * there was nothing to do.
 */
export async function recoverInterrupted(prefix: string, io: InstallFs = nodeInstallFs): Promise<string | undefined> {
  const journal = await readJournal(prefix);
  const abs = (p: string) => path.join(prefix, p);
  if (!journal) {
    await io.rm(abs(`${JOURNAL}.tmp`));
    await io.rmTree(abs(STAGING_DIR));
    await io.rmTree(abs(TRASH_DIR));
    for (const p of await listPartialBackups(prefix)) await io.rmTree(p);
    return undefined;
  }
  const what = `${journal.kind === "install" ? "an install" : "a rollback"} (gen-lb pid ${journal.pid}, started ${journal.startedAt})`;
  try {
    if (journal.phase === "preparing") {
      await abandonJournal(prefix, journal, io);
      return `${what} was interrupted before it changed any file: its backup and staged files were deleted`;
    }
    if (journal.phase === "swapped") {
      await finishJournal(prefix, journal, io);
      return `${what} was interrupted after its files were in place: finished it`;
    }
    await undoJournal(prefix, journal, io);
    return `${what} was interrupted while swapping files: put the ${journal.files.length} file(s) it was changing back as they were before it`;
  } catch (error) {
    throw fsFailure(error, `cannot finish the interrupted ${journal.kind} recorded in ${abs(JOURNAL)}`, "; run again once the cause is fixed");
  }
}

/**
 * Tests: GEN_LB_TEST_KILL_AT_STEP=N kills this process (SIGKILL, as `kill -9`
 * does) right before its Nth file operation on the prefix, to prove that
 * every step can be interrupted.
 */
export function withKillHook(io: InstallFs, env: NodeJS.ProcessEnv): InstallFs {
  const at = Number(env.GEN_LB_TEST_KILL_AT_STEP);
  if (!Number.isInteger(at) || at <= 0) return io;
  let step = 0;
  const wrapped = {} as Record<string, unknown>;
  for (const [name, fn] of Object.entries(io)) {
    wrapped[name] = (...args: unknown[]) => {
      if (++step === at) {
        process.kill(process.pid, "SIGKILL");
        return new Promise(() => undefined);
      }
      return (fn as (...a: unknown[]) => Promise<unknown>)(...args);
    };
  }
  return wrapped as unknown as InstallFs;
}

// ---------------------------------------------------------------- apply

export interface Applied {
  /** Absolute path of the (complete) backup. */
  backupDir: string;
  changed: string[];
  /** Put every changed file back as it was before apply (bytes, mode, owner); remove added ones; drop the backup. */
  undo(): Promise<void>;
  /** Keep the change: delete the backups the plan prunes (and a rollback's own safety copy), forget the journal. */
  commit(): Promise<void>;
}

export interface ApplyOptions {
  /** Runs after backup and staging, right before the first rename; a throw aborts cleanly. */
  beforeSwap?: () => Promise<void>;
}

function fsFailure(error: unknown, what: string, outcome = ""): RejectedError {
  if (error instanceof RejectedError) return error;
  const e = error as NodeJS.ErrnoException;
  const reason = errnoMessage(error);
  return new RejectedError(`${what}: ${reason}${e.path ? ` (${e.path})` : ""}${outcome}`);
}

export async function applyPlan(plan: InstallPlan, io: InstallFs = nodeInstallFs, opts: ApplyOptions = {}): Promise<Applied> {
  const prefix = plan.prefix;
  const abs = (p: string) => path.join(prefix, p);
  if (await readJournal(prefix)) throw new RejectedError(`${abs(JOURNAL)} records an unfinished change: run gen-lb again to finish or undo it first; nothing was changed`);
  const tag = randomBytes(4).toString("hex");
  const changes = changesOf(plan);
  const backupDir = abs(plan.backupDir);
  const partial = `${backupDir}.partial`;
  const stateDev = await deviceOf(abs(STATE_DIR));

  // gen-lb's own directories may be new too: a failed first install must not leave them behind.
  const newParents: string[] = [];
  for (let d = path.dirname(backupDir); d.startsWith(prefix + path.sep); d = path.dirname(d)) {
    if (await fs.stat(d).then(() => false, () => true)) newParents.push(d);
  }
  // Staged in .gen-lb/staging when that is the target's file system (a rename cannot cross
  // devices), else beside the target; either way the journal names it before it exists.
  const files: JournalFile[] = [];
  for (const f of changes) {
    // A symlinked file is replaced through its link; a removed link, or a
    // link put back, is the link itself (its target is never deleted).
    const through = f.before?.linkTarget !== undefined && f.action === "replace" && f.link === undefined ? f.before.linkTarget : undefined;
    const link = f.link ?? (f.action === "remove" ? f.before?.link : undefined);
    const dest = through ?? abs(f.path);
    const inState = (await deviceOf(path.dirname(dest))) === stateDev;
    const beside = path.join(path.dirname(dest), `.${path.basename(dest)}.gen-lb-new-${tag}`);
    const staged = inState ? path.posix.join(STAGING_DIR, tag, f.path) : path.relative(prefix, beside);
    files.push({
      path: f.path,
      action: f.action as JournalFile["action"],
      staged,
      ...(through ? { target: through } : {}),
      ...(link !== undefined ? { link } : {}),
      ...(f.before ? { before: { sha256: f.before.sha256, mode: f.before.mode, uid: f.before.uid, gid: f.before.gid } } : {}),
    });
  }
  const journal: Journal = {
    format: 1,
    kind: plan.kind,
    phase: "preparing",
    pid: process.pid,
    startedAt: new Date().toISOString(),
    backupDir: plan.backupDir,
    files,
    createDirs: plan.createDirs,
    removeDirs: plan.removeDirs,
    // A rollback's own safety copy goes once the rollback is kept.
    prune: plan.kind === "rollback" && !plan.keepUndo ? [...plan.prune, plan.backupDir] : plan.prune,
  };
  const abandon = async () => {
    await abandonJournal(prefix, journal, io, newParents).catch(() => undefined);
  };

  // 0. the journal, before anything else
  try {
    await writeJournal(prefix, io, journal);
  } catch (error) {
    await io.rm(abs(`${JOURNAL}.tmp`)).catch(() => undefined);
    for (const d of newParents) await io.rmdirIfEmpty(d).catch(() => undefined);
    throw fsFailure(error, `cannot write ${JOURNAL} in ${prefix}`, "; nothing was changed");
  }

  // 1. back up
  const manifestFiles: ManifestFile[] = [];
  try {
    await io.mkdir(path.join(partial, "files"));
    for (const f of changes) {
      const entry: ManifestFile = { path: f.path, action: f.action as ManifestFile["action"] };
      if (f.contents) entry.after = { sha256: sha256(f.contents) };
      if (f.before) {
        const copy = path.join(partial, "files", f.path);
        await io.mkdir(path.dirname(copy));
        await io.copyFile(f.before.linkTarget ?? abs(f.path), copy);
        // The copy must be what the plan saw: a file changed under us is not backed up by a guess.
        if (sha256(await io.readFile(copy)) !== f.before.sha256) {
          throw new RejectedError(`${f.path} changed while gen-lb was preparing the install; nothing was changed, run it again`);
        }
        entry.before = {
          sha256: f.before.sha256,
          mode: f.before.mode,
          uid: f.before.uid,
          gid: f.before.gid,
          size: f.before.bytes.length,
          ...(f.action === "remove" && f.before.link !== undefined ? { link: f.before.link } : {}),
        };
      }
      manifestFiles.push(entry);
    }
  } catch (error) {
    await abandon();
    throw fsFailure(error, `cannot back up into ${plan.backupDir}`, "; nothing was changed");
  }

  // 2. stage (directories first; the journal already names them, so an interrupted run removes them again)
  try {
    const createdDirs: string[] = [];
    for (const d of plan.createDirs) {
      const exists = await fs.stat(abs(d)).then(() => true, () => false);
      if (!exists) {
        await io.mkdir(abs(d));
        createdDirs.push(d);
      }
    }
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      id: plan.backupId,
      kind: plan.kind === "install" ? "install" : "rollback-undo",
      createdAt: new Date().toISOString(),
      generator: GENERATOR,
      ...(plan.specFile ? { spec: plan.specFile } : {}),
      ...(plan.buildId ? { buildId: plan.buildId } : {}),
      ...(plan.previousBuildId ? { previousBuildId: plan.previousBuildId } : {}),
      files: manifestFiles,
      createdDirs,
      ...(plan.kind === "install" ? { installed: plan.installed } : {}),
    };
    await io.writeFile(path.join(partial, MANIFEST), Buffer.from(JSON.stringify(manifest, null, 2) + "\n"), 0o644);
    await io.rename(partial, backupDir);

    for (const [i, f] of changes.entries()) {
      if (!f.contents) continue;
      const s = abs(files[i]!.staged);
      await io.mkdir(path.dirname(s));
      if (f.link !== undefined) {
        await io.symlink(f.link, s);
        continue;
      }
      await io.writeFile(s, f.contents, f.mode ?? 0o644);
      if (f.owner && isRoot()) await io.chown(s, f.owner.uid, f.owner.gid);
    }
    await opts.beforeSwap?.();
  } catch (error) {
    await abandon();
    throw fsFailure(error, `cannot stage the new files in ${prefix}`, "; nothing was changed");
  }

  // 3. swap
  try {
    journal.phase = "swapping";
    await writeJournal(prefix, io, journal);
    for (const [i, f] of changes.entries()) {
      const dest = files[i]!.target ?? abs(f.path);
      if (f.action === "remove") await io.rm(dest);
      else await io.rename(abs(files[i]!.staged), dest);
    }
    journal.phase = "swapped";
    await writeJournal(prefix, io, journal);
  } catch (error) {
    const failure = fsFailure(error, `swapping the new files into ${prefix} failed`);
    try {
      await undoJournal(prefix, journal, io);
    } catch (undoError) {
      throw new RejectedError(`${failure.message}; restoring the backup failed too: ${(undoError as Error).message}`, [
        `the replaced files are in ${backupDir}/files; the next gen-lb command on ${prefix} retries the restore`,
      ]);
    }
    for (const d of newParents) await io.rmdirIfEmpty(d).catch(() => undefined);
    throw new RejectedError(`${failure.message}; the files already swapped were restored, the prefix is as before`);
  }

  return {
    backupDir,
    changed: changes.map((f) => f.path),
    undo: async () => {
      await undoJournal(prefix, journal, io);
      for (const d of newParents) await io.rmdirIfEmpty(d).catch(() => undefined);
    },
    commit: () => finishJournal(prefix, journal, io),
  };
}
