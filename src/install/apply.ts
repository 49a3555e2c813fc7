/**
 * The one writer of a live prefix. Carries out an InstallPlan in three
 * phases, so that anything likely to fail (a full disk, a permission) fails
 * while the live files are still untouched:
 *
 *   1. back up  copy every file to be replaced or removed into
 *               .gen-lb/backups/<id>.partial/, checksum it, write the
 *               manifest, rename the directory to <id> (complete or absent)
 *   2. stage    write each new file beside its target (same directory, so
 *               same file system: the rename below cannot cross devices)
 *   3. swap     rename each staged file over its target; remove stale ones
 *
 * A failure in 1 or 2 deletes what was written and leaves the prefix as it
 * was. A failure in 3 puts back the files already swapped. After a
 * successful apply, `undo()` restores the backup (a reload that failed).
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { RejectedError } from "../errors.js";
import { GENERATOR } from "../pipeline/index.js";
import { errnoMessage } from "../util/files.js";
import { changesOf, type InstallPlan, type PlannedFile } from "./plan.js";
import { MANIFEST, MANIFEST_FORMAT, sha256, type Manifest, type ManifestFile } from "./state.js";

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
};

export interface Applied {
  /** Absolute path of the (complete) backup. */
  backupDir: string;
  changed: string[];
  /** Put every changed file back as it was before apply (bytes, mode, owner); remove added ones. */
  undo(): Promise<void>;
  /** Delete the backup (when the change it guards was undone or consumed). */
  dropBackup(): Promise<void>;
}

export interface ApplyOptions {
  /** Runs after backup and staging, right before the first rename; a throw aborts cleanly. */
  beforeSwap?: () => Promise<void>;
}

const isRoot = () => process.getuid?.() === 0;

function fsFailure(error: unknown, what: string, outcome = ""): RejectedError {
  const e = error as NodeJS.ErrnoException;
  const reason = errnoMessage(error);
  return new RejectedError(`${what}: ${reason}${e.path ? ` (${e.path})` : ""}${outcome}`);
}

export async function applyPlan(plan: InstallPlan, io: InstallFs = nodeInstallFs, opts: ApplyOptions = {}): Promise<Applied> {
  const prefix = plan.prefix;
  const abs = (p: string) => path.join(prefix, p);
  const tag = randomBytes(4).toString("hex");
  const stagedPath = (p: string) => path.join(path.dirname(abs(p)), `.${path.basename(p)}.gen-lb-new-${tag}`);
  const changes = changesOf(plan);
  const backupDir = abs(plan.backupDir);
  const partial = `${backupDir}.partial`;
  const staged: string[] = [];
  const createdDirs: string[] = [];

  // The backup directory's parents (.gen-lb/backups) may be new too: a
  // failed first install must not leave them behind.
  const newParents: string[] = [];
  for (let d = path.dirname(backupDir); d.startsWith(prefix + path.sep); d = path.dirname(d)) {
    if (await fs.stat(d).then(() => false, () => true)) newParents.push(d);
  }
  const cleanup = async () => {
    for (const s of staged) await io.rm(s).catch(() => undefined);
    await io.rmTree(partial).catch(() => undefined);
    await io.rmTree(backupDir).catch(() => undefined);
    for (const d of [...createdDirs].reverse()) await io.rmdirIfEmpty(abs(d)).catch(() => undefined);
    for (const d of newParents) await io.rmdirIfEmpty(d).catch(() => undefined);
  };

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
        await io.copyFile(abs(f.path), copy);
        // The copy must be what the plan saw: a file changed under us is not backed up by a guess.
        if (sha256(await io.readFile(copy)) !== f.before.sha256) {
          throw new RejectedError(`${f.path} changed while gen-lb was preparing the install; nothing was changed, run it again`);
        }
        entry.before = { sha256: f.before.sha256, mode: f.before.mode, uid: f.before.uid, gid: f.before.gid, size: f.before.bytes.length };
      }
      manifestFiles.push(entry);
    }
  } catch (error) {
    await cleanup();
    throw error instanceof RejectedError ? error : fsFailure(error, `cannot back up into ${plan.backupDir}`, "; nothing was changed");
  }

  // 2. stage (directories first: a directory we create is recorded so a failure removes it again)
  try {
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
    };
    await io.writeFile(path.join(partial, MANIFEST), Buffer.from(JSON.stringify(manifest, null, 2) + "\n"), 0o644);
    await io.rename(partial, backupDir);

    for (const f of changes) {
      if (!f.contents) continue;
      const s = stagedPath(f.path);
      staged.push(s);
      await io.writeFile(s, f.contents, f.mode ?? 0o644);
      if (f.owner && isRoot()) await io.chown(s, f.owner.uid, f.owner.gid);
    }
    await opts.beforeSwap?.();
  } catch (error) {
    await cleanup();
    throw error instanceof RejectedError ? error : fsFailure(error, `cannot stage the new files in ${prefix}`, "; nothing was changed");
  }

  // 3. swap
  const swapped: PlannedFile[] = [];
  const undo = async () => {
    // Backwards, so nginx.conf (swapped last) is restored first.
    for (const f of [...swapped].reverse()) {
      if (f.before) {
        const s = stagedPath(f.path) + ".undo";
        // A rollback may have removed the directory along with its last file.
        await io.mkdir(path.dirname(s));
        await io.rm(s);
        await io.copyFile(path.join(backupDir, "files", f.path), s);
        if (isRoot()) await io.chown(s, f.before.uid, f.before.gid);
        await io.chmod(s, f.before.mode);
        await io.rename(s, abs(f.path));
      } else {
        await io.rm(abs(f.path));
      }
    }
    swapped.length = 0;
    for (const d of [...createdDirs].reverse()) await io.rmdirIfEmpty(abs(d));
  };
  try {
    for (const f of changes) {
      if (f.action === "remove") await io.rm(abs(f.path));
      else await io.rename(stagedPath(f.path), abs(f.path));
      swapped.push(f);
    }
  } catch (error) {
    const failure = fsFailure(error, `swapping the new files into ${prefix} failed`);
    try {
      await undo();
    } catch (undoError) {
      throw new RejectedError(`${failure.message}; restoring the backup failed too: ${(undoError as Error).message}`, [
        `the replaced files are in ${backupDir}/files; \`gen-lb rollback --prefix ${prefix}\` retries`,
      ]);
    }
    await cleanup();
    throw new RejectedError(`${failure.message}; the files already swapped were restored, the prefix is as before`);
  }
  // Directories the plan emptied (a rollback of the install that created them).
  for (const d of plan.removeDirs) await io.rmdirIfEmpty(abs(d)).catch(() => false);

  return {
    backupDir,
    changed: changes.map((f) => f.path),
    undo,
    dropBackup: () => io.rmTree(backupDir),
  };
}

/** Delete backups the plan says are past --keep (or consumed by a rollback). */
export async function pruneBackups(plan: InstallPlan, io: InstallFs = nodeInstallFs, partials: string[] = []): Promise<void> {
  for (const p of plan.prune) await io.rmTree(path.join(plan.prefix, p));
  for (const p of partials) await io.rmTree(p);
}
