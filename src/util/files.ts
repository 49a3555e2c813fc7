/**
 * The one module that writes build output. A write either lands whole or
 * leaves the output directory as it was: every file is staged in a scratch
 * directory on the same filesystem first, and only renames touch the target.
 */
import { randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import path from "node:path";
import { RejectedError } from "../errors.js";
import type { FileSet } from "../pipeline/render.js";

/** Directories whose *.lua files gen-lb owns: stale modules there are removed. */
const OWNED_DIRS = ["lua/gen_lb"];

export interface WriteSummary {
  written: string[];
  removed: string[];
}

/**
 * The one errno-to-message map: what a user can act on, for every file
 * operation gen-lb does (reading specs and nginx configs; build, migrate,
 * init, install and rollback writing).
 */
const ERRNO_MESSAGES: Readonly<Record<string, string>> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EPERM: "permission denied",
  ENOSPC: "no space left on the device",
  EDQUOT: "no space left on the device",
  EROFS: "read-only file system",
  ENOTDIR: "a path component is a file, not a directory",
  EEXIST: "a path component is a file, not a directory",
  EISDIR: "is a directory",
  EXDEV: "cross-device rename",
};

/** The message for a failed file operation: the map's, else the error's own. */
export function errnoMessage(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  return (e.code !== undefined ? ERRNO_MESSAGES[e.code] : undefined) ?? e.message ?? String(error);
}

function describeFsError(error: unknown, target: string): RejectedError {
  const e = error as NodeJS.ErrnoException;
  return new RejectedError(`cannot write ${target}: ${errnoMessage(error)}`, [`${e.path ?? target}`]);
}

/** Write `set` under `outDir`, atomically per file and all-or-nothing for staging failures. */
export async function writeFileSet(outDir: string, set: FileSet): Promise<WriteSummary> {
  const staging = path.join(outDir, `.gen-lb-staging-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    await fs.mkdir(outDir, { recursive: true });
    await fs.mkdir(staging);
    for (const file of set.files) {
      const staged = path.join(staging, file.path);
      await fs.mkdir(path.dirname(staged), { recursive: true });
      await fs.writeFile(staged, file.contents, { mode: 0o644 });
    }
  } catch (error) {
    await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw describeFsError(error, outDir);
  }

  const written: string[] = [];
  const removed: string[] = [];
  try {
    // Make every directory and refuse directories in the way before the first
    // rename, so that what can fail fails while the output is still untouched.
    for (const dir of set.dirs) await fs.mkdir(path.join(outDir, dir), { recursive: true });
    for (const file of set.files) {
      const target = path.join(outDir, file.path);
      await fs.mkdir(path.dirname(target), { recursive: true });
      const existing = await fs.lstat(target).catch(() => undefined);
      if (existing?.isDirectory()) throw Object.assign(new Error(`${target} is a directory`), { code: "EISDIR", path: target });
    }
  } catch (error) {
    await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw describeFsError(error, outDir);
  }
  try {
    for (const file of set.files) {
      await fs.rename(path.join(staging, file.path), path.join(outDir, file.path));
      written.push(file.path);
    }
    for (const stale of await staleFiles(outDir, set)) {
      await fs.rm(path.join(outDir, stale));
      removed.push(stale);
    }
  } catch (error) {
    throw describeFsError(error, outDir);
  } finally {
    await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined);
  }
  return { written, removed };
}

/** Files in gen-lb's own directories that the current set no longer has. */
export async function staleFiles(outDir: string, set: FileSet): Promise<string[]> {
  const wanted = new Set(set.files.map((f) => f.path));
  const stale: string[] = [];
  for (const dir of OWNED_DIRS) {
    let names: string[];
    try {
      names = await fs.readdir(path.join(outDir, dir));
    } catch {
      continue;
    }
    for (const name of names.sort()) {
      const rel = `${dir}/${name}`;
      if (name.endsWith(".lua") && !wanted.has(rel)) stale.push(rel);
    }
  }
  return stale;
}

/**
 * Files that writing `set` into `outDir` would replace or remove although
 * gen-lb did not write them: neither `generatedByGenLb` (the generated-by
 * header) nor already the bytes gen-lb would write. A caller refuses unless
 * --force.
 */
export async function foreignFiles(outDir: string, set: FileSet, generatedByGenLb: (contents: string) => boolean): Promise<string[]> {
  const existing = await readExisting(outDir, set.files.map((f) => f.path));
  const foreign: string[] = [];
  for (const f of set.files) {
    const before = existing.get(f.path);
    if (before !== undefined && before !== f.contents && !generatedByGenLb(before)) foreign.push(f.path);
  }
  const stale = await staleFiles(outDir, set);
  for (const [p, before] of await readExisting(outDir, stale)) {
    if (before !== undefined && !generatedByGenLb(before)) foreign.push(p);
  }
  return foreign;
}

/** Whether `file` exists with other contents than `contents` and `generatedByGenLb` does not claim it. */
export async function isForeignFile(file: string, contents: string, generatedByGenLb: (contents: string) => boolean): Promise<boolean> {
  const before = await fs.readFile(file, "utf8").catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : ""));
  return before !== undefined && before !== contents && !generatedByGenLb(before);
}

/** An empty placeholder (logs/.gitkeep) so that git keeps a directory nginx needs; left alone when present. */
export async function ensureKeepFile(file: string): Promise<boolean> {
  try {
    await fs.writeFile(file, "", { flag: "wx", mode: 0o644 });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw describeFsError(error, file);
  }
}

/** Current contents of the set's paths under `dir` (undefined where missing). */
export async function readExisting(dir: string, paths: readonly string[]): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (const p of paths) {
    try {
      out.set(p, await fs.readFile(path.join(dir, p), "utf8"));
    } catch {
      out.set(p, undefined);
    }
  }
  return out;
}

export type SpecFileProblem = "missing" | "directory" | "unreadable";

/** Read a spec file, naming the problem when it cannot be read. */
export async function readSpecFile(file: string): Promise<{ text: string } | { problem: SpecFileProblem; detail: string }> {
  try {
    const stat = await fs.stat(file);
    if (stat.isDirectory()) return { problem: "directory", detail: `${file} is a directory; pass the spec file itself (e.g. ${path.join(file, "gen-lb.yaml")})` };
    await fs.access(file, constants.R_OK);
    return { text: await fs.readFile(file, "utf8") };
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code === "ENOENT") return { problem: "missing", detail: `${file} does not exist; run \`gen-lb init\` to write a starter spec, or pass --spec FILE` };
    return { problem: "unreadable", detail: `cannot read ${file}: ${errnoMessage(e)}` };
  }
}

/** Write one file atomically: temp file beside it, then rename. */
export async function writeFileAtomic(file: string, contents: string): Promise<void> {
  const tmp = `${file}.gen-lb-${process.pid}-${randomBytes(4).toString("hex")}.tmp`;
  try {
    await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    await fs.writeFile(tmp, contents, { mode: 0o644 });
    await fs.rename(tmp, file);
  } catch (error) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw describeFsError(error, file);
  }
}
