/**
 * Install and rollback plans as data: which files to add, replace, remove
 * and back up, which directories to create, which backups to prune, which
 * commands will run. Pure (state in, plan out); apply.ts carries it out,
 * `--dry-run` and `gen-lb diff` print it.
 */
import path from "node:path";
import { isRuntimeModule, type FileSet } from "../pipeline/render.js";
import { inDiffOrder, unifiedDiff } from "../util/diff.js";
import { parseString } from "../nginx/parse.js";
import type { Directive } from "../nginx/types.js";
import { BACKUPS_DIR, STATE_DIR, sha256, type BackupEntry, type FileAction, type FileState, type Manifest, type PrefixState } from "./state.js";

export interface PlannedFile {
  path: string;
  action: FileAction | "unchanged" | "keep-host";
  /** New bytes (add, replace). */
  contents?: Buffer;
  /** Permission bits for the new file: the replaced file's, else 0644. */
  mode?: number;
  /** Owner to keep (the replaced file's); applied only when running as root. */
  owner?: { uid: number; gid: number };
  /** The live file now (replace, remove, unchanged, keep-host). */
  before?: FileState;
  /** Put a symbolic link with this text at the path instead of a file (rollback of a removed link); `contents` is what it points at. */
  link?: string;
}

export interface InstallPlan {
  kind: "install" | "rollback";
  prefix: string;
  /** Where the replaced files are copied first (relative to the prefix). */
  backupDir: string;
  backupId: string;
  buildId?: string;
  previousBuildId?: string;
  specFile?: string;
  files: PlannedFile[];
  createDirs: string[];
  /** Directories to remove if empty after the files are gone (rollback of an install that made them). */
  removeDirs: string[];
  /** Backup directories (relative to the prefix) to delete once the install has succeeded. */
  prune: string[];
  /** What will run around the file work, in words (dry-run output). */
  commands: string[];
  /** Files to replace or remove that differ from what the last install wrote (edited by hand since): install refuses them without --force. */
  handEdited: string[];
  /** Server blocks (listen, server_name) of a replaced nginx.conf gen-lb did not write that the new one does not have. */
  lostServers: string[];
  /** Every file the install leaves in place, path -> sha256 (recorded in the manifest; the next install compares against it). */
  installed: Record<string, string>;
  /** Rollback only: keep its own safety copy of the files it replaces (they were edited by hand, --force). */
  keepUndo?: boolean;
}

export const changesOf = (plan: InstallPlan) => plan.files.filter((f) => f.action === "add" || f.action === "replace" || f.action === "remove");

export function backupId(seq: number, now: Date): string {
  return `${String(seq).padStart(6, "0")}-${now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}`;
}

/**
 * Swap order: Lua modules first, nginx.conf last, so that at every moment
 * the live nginx.conf refers only to files that are already in place.
 */
function swapOrder(a: PlannedFile, b: PlannedFile): number {
  const rank = (f: PlannedFile) => (f.action === "remove" ? 3 : f.path === "conf/nginx.conf" ? 2 : 1);
  return rank(a) - rank(b) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
}

export interface InstallPlanInput {
  prefix: string;
  set: FileSet;
  state: PrefixState;
  keep: number;
  now: Date;
  specFile: string;
  previousBuildId?: string;
  commands: string[];
}

/** What the last install wrote, path -> sha256, from its manifest (older manifests: the files it changed). */
export function lastInstalled(backups: BackupEntry[]): Map<string, string> {
  const last = [...backups].reverse().find((b) => b.manifest?.kind === "install")?.manifest;
  const out = new Map<string, string>();
  if (!last) return out;
  if (last.installed) for (const [p, h] of Object.entries(last.installed)) out.set(p, h);
  else for (const f of last.files) if (f.after) out.set(f.path, f.after.sha256);
  return out;
}

function serverBlocks(text: string): Array<{ key: string; words: string }> {
  const out: Array<{ key: string; words: string }> = [];
  const walk = (tree: Directive[]) => {
    for (const d of tree) {
      if (d.directive === "server" && d.block) {
        const listens = d.block.filter((x) => x.directive === "listen").map((x) => x.args.join(" "));
        const names = d.block.filter((x) => x.directive === "server_name").flatMap((x) => x.args);
        const listen = listens.length > 0 ? listens : ["80 (the default)"];
        out.push({
          key: `${listen.map((l) => l.split(" ")[0]).sort().join(",")}|${[...names].sort().join(",")}`,
          words: `listen ${listen.join(", ")}; server_name ${names.length > 0 ? names.join(" ") : '""'} (line ${d.line})`,
        });
      } else if (d.block && d.directive !== "server") walk(d.block);
    }
  };
  try {
    walk(parseString(text, "nginx.conf", { comments: false, single: true }).parsed);
  } catch {
    /* unparsable: nothing to list */
  }
  return out;
}

/** Server blocks of `before` whose listen addresses and names no server block of `after` has. */
export function lostServerBlocks(before: string, after: string): string[] {
  const kept = new Set(serverBlocks(after).map((s) => s.key));
  return serverBlocks(before).filter((s) => !kept.has(s.key)).map((s) => s.words);
}

export function planInstall(input: InstallPlanInput): InstallPlan {
  const { set, state } = input;
  const files: PlannedFile[] = [];
  for (const f of set.files) {
    const before = state.files.get(f.path);
    const contents = Buffer.from(f.contents, "utf8");
    if (f.hostOwned && before) files.push({ path: f.path, action: "keep-host", before });
    else if (!before) files.push({ path: f.path, action: "add", contents, mode: 0o644 });
    else if (before.sha256 === sha256(contents)) files.push({ path: f.path, action: "unchanged", before });
    else files.push({ path: f.path, action: "replace", contents, mode: before.mode, owner: { uid: before.uid, gid: before.gid }, before });
  }
  for (const p of state.stale) files.push({ path: p, action: "remove", before: state.files.get(p)! });
  files.sort(swapOrder);

  const wrote = lastInstalled(state.backups);
  const handEdited = files.filter((f) => (f.action === "replace" || f.action === "remove") && wrote.has(f.path) && wrote.get(f.path) !== f.before!.sha256).map((f) => f.path);
  const conf = files.find((f) => f.path === "conf/nginx.conf" && f.action === "replace");
  const lostServers = conf && wrote.get(conf.path) !== conf.before!.sha256 ? lostServerBlocks(conf.before!.bytes.toString("utf8"), conf.contents!.toString("utf8")) : [];
  const installed: Record<string, string> = {};
  for (const f of files) {
    if (f.action === "add" || f.action === "replace") installed[f.path] = sha256(f.contents!);
    else if (f.action === "unchanged") installed[f.path] = f.before!.sha256;
  }

  const complete = state.backups;
  const seq = (complete.length > 0 ? complete[complete.length - 1]!.seq : 0) + 1;
  const id = backupId(seq, input.now);
  const willHaveBackup = files.some((f) => f.action !== "unchanged" && f.action !== "keep-host");
  const total = complete.length + (willHaveBackup ? 1 : 0);
  const prune = willHaveBackup ? complete.slice(0, Math.max(0, total - input.keep)).map((b) => path.posix.join(BACKUPS_DIR, b.id)) : [];
  return {
    kind: "install",
    prefix: input.prefix,
    backupDir: path.posix.join(BACKUPS_DIR, id),
    backupId: id,
    buildId: set.buildId,
    ...(input.previousBuildId ? { previousBuildId: input.previousBuildId } : {}),
    specFile: input.specFile,
    files,
    createDirs: state.missingDirs,
    removeDirs: [],
    prune,
    commands: input.commands,
    handEdited,
    lostServers,
    installed,
  };
}

export interface RollbackPlanInput {
  prefix: string;
  backup: BackupEntry;
  /** The backed-up bytes, by path (verified against the manifest by the caller). */
  saved: Map<string, Buffer>;
  current: Map<string, FileState | undefined>;
  now: Date;
  restoredBuildId?: string;
  commands: string[];
}

/**
 * Files the rollback would replace or remove that differ from what the
 * backup's install left there (or that exist where it removed one): edited
 * by hand since that install.
 */
export function rollbackHandEdits(manifest: Manifest, current: Map<string, FileState | undefined>): string[] {
  const out: string[] = [];
  for (const mf of manifest.files) {
    const now = current.get(mf.path);
    if (!now) continue; // gone: restoring the old file loses nothing
    const left = manifest.installed?.[mf.path] ?? mf.after?.sha256;
    if (mf.action === "remove" ? true : left !== undefined && now.sha256 !== left) out.push(mf.path);
  }
  return out;
}

/** Put back what the backup's install replaced, removed or added. */
export function planRollback(input: RollbackPlanInput): InstallPlan {
  const manifest = input.backup.manifest!;
  const files: PlannedFile[] = [];
  for (const mf of manifest.files) {
    const now = input.current.get(mf.path);
    if (mf.action === "add") {
      files.push(now ? { path: mf.path, action: "remove", before: now } : { path: mf.path, action: "unchanged" });
      continue;
    }
    const saved = input.saved.get(mf.path)!;
    const b = mf.before!;
    if (b.link !== undefined && mf.action === "remove") {
      // The install removed a link (never its target): put the link back.
      if (now?.link === b.link) files.push({ path: mf.path, action: "unchanged", before: now });
      else files.push({ path: mf.path, action: now ? "replace" : "add", contents: saved, link: b.link, ...(now ? { before: now } : {}) });
    } else if (now && now.sha256 === b.sha256 && now.mode === b.mode) files.push({ path: mf.path, action: "unchanged", before: now });
    else files.push({ path: mf.path, action: now ? "replace" : "add", contents: saved, mode: b.mode, owner: { uid: b.uid, gid: b.gid }, ...(now ? { before: now } : {}) });
  }
  files.sort(swapOrder);
  const id = `rollback-undo-${backupId(0, input.now).slice(7)}`;
  return {
    kind: "rollback",
    prefix: input.prefix,
    backupDir: path.posix.join(STATE_DIR, id),
    backupId: id,
    ...(input.restoredBuildId ? { buildId: input.restoredBuildId } : {}),
    ...(manifest.buildId ? { previousBuildId: manifest.buildId } : {}),
    files,
    createDirs: [],
    // Deepest first, so lua/gen_lb goes before lua.
    removeDirs: [...manifest.createdDirs].sort((a, b) => b.length - a.length),
    // The backup is used up: the next rollback goes one install further back.
    prune: [path.posix.join(BACKUPS_DIR, input.backup.id)],
    commands: input.commands,
    handEdited: rollbackHandEdits(manifest, input.current).filter((p) => files.some((f) => f.path === p && (f.action === "replace" || f.action === "remove"))),
    lostServers: [],
    installed: {},
  };
}

// ---------------------------------------------------------------- words

const ACTION_WORDS: Record<PlannedFile["action"], string> = {
  add: "add",
  replace: "replace",
  remove: "remove",
  unchanged: "unchanged",
  "keep-host": "keep (host's own)",
};

export function formatPlan(plan: InstallPlan): string[] {
  const changes = changesOf(plan);
  const lines: string[] = [];
  if (plan.kind === "install") lines.push(`install build ${plan.buildId} into ${plan.prefix}${plan.previousBuildId ? ` (replacing build ${plan.previousBuildId})` : ""}`);
  else lines.push(`roll ${plan.prefix} back to build ${plan.buildId ?? "(not a gen-lb build)"} from backup ${path.posix.basename(plan.prune[0] ?? "")}`);
  for (const d of plan.createDirs) lines.push(`  ${"create dir".padEnd(17)} ${d}/`);
  for (const f of plan.files) lines.push(`  ${ACTION_WORDS[f.action].padEnd(17)} ${f.path}`);
  for (const d of plan.removeDirs) lines.push(`  ${"remove dir if empty".padEnd(17)} ${d}/`);
  const backedUp = changes.filter((f) => f.before).map((f) => f.path);
  if (backedUp.length > 0) lines.push(`  back up ${backedUp.length} file(s) to ${plan.backupDir}/ first`);
  for (const p of plan.prune) lines.push(`  delete backup ${p}/ afterwards`);
  for (const c of plan.commands) lines.push(`  run: ${c}`);
  if (plan.handEdited.length > 0) lines.push(`  changed by hand since the last install (${plan.kind} refuses without --force): ${plan.handEdited.join(", ")}`);
  if (plan.lostServers.length > 0) {
    lines.push("  conf/nginx.conf was not written by gen-lb; these server blocks will no longer exist:");
    for (const s of plan.lostServers) lines.push(`    ${s}`);
  }
  if (changes.length === 0) lines.push("  nothing to change");
  return lines;
}

export interface DiffOptions {
  /** false: leave out the runtime's Lua modules (the same for every spec of one gen-lb version). */
  runtime?: boolean;
}

/** Unified diff of every change, live file -> planned file; nginx.conf first. */
export function planDiff(plan: InstallPlan, opts: DiffOptions = {}): string {
  let out = "";
  for (const f of inDiffOrder(changesOf(plan))) {
    if (opts.runtime === false && isRuntimeModule(f.path)) continue;
    const before = f.before?.bytes.toString("utf8") ?? "";
    const after = f.contents?.toString("utf8") ?? "";
    out += unifiedDiff(before, after, f.before ? `a/${f.path}` : "/dev/null", f.action === "remove" ? "/dev/null" : `b/${f.path}`);
  }
  return out;
}

export function planJson(plan: InstallPlan): Record<string, unknown> {
  return {
    kind: plan.kind,
    prefix: plan.prefix,
    buildId: plan.buildId,
    previousBuildId: plan.previousBuildId,
    backupDir: plan.backupDir,
    files: plan.files.map((f) => ({ path: f.path, action: f.action })),
    createDirs: plan.createDirs,
    removeDirs: plan.removeDirs,
    prune: plan.prune,
    commands: plan.commands,
    handEdited: plan.handEdited,
    lostServers: plan.lostServers,
  };
}
