/**
 * Is DIR an nginx prefix we may install into? Read-only inspection; every
 * answer says what is wrong and what to do, because the user is usually
 * about to touch a production box.
 */
import { constants, promises as fs } from "node:fs";
import path from "node:path";

/** What every OpenResty/nginx prefix has (/usr/local/openresty/nginx: conf/, logs/, html/). */
const REQUIRED_DIRS = ["conf", "logs"];

export async function prefixProblem(dir: string, opts: { writable: boolean }): Promise<string | undefined> {
  const stat = await fs.stat(dir).catch((e: NodeJS.ErrnoException) => e);
  if (stat instanceof Error) {
    if (stat.code === "ENOENT") return `${dir} does not exist: pass the directory of an installed nginx/OpenResty (with conf/ and logs/), or make one with \`gen-lb build --out ${dir}\``;
    if (stat.code === "ENOTDIR") return `${dir} is not a directory: a path component is a file`;
    return `cannot read ${dir}: ${stat.code ?? stat.message}`;
  }
  if (!stat.isDirectory()) return `${dir} is a file, not an nginx prefix directory (pass the directory that holds conf/ and logs/)`;

  const missing: string[] = [];
  for (const sub of REQUIRED_DIRS) {
    const s = await fs.stat(path.join(dir, sub)).catch(() => undefined);
    if (!s?.isDirectory()) missing.push(`${sub}/`);
  }
  if (missing.length > 0) {
    return `${dir} does not look like an nginx prefix: ${missing.join(" and ")} ${missing.length === 1 ? "is" : "are"} missing (a prefix has conf/, logs/ and usually html/, like /usr/local/openresty/nginx)`;
  }

  if (opts.writable) {
    // Everything install writes: the prefix (its .gen-lb/ state), conf/, and lua/gen_lb/ when present.
    for (const sub of [".", "conf", "lua", "lua/gen_lb", ".gen-lb"]) {
      const p = path.join(dir, sub);
      const exists = await fs.stat(p).then((s) => s.isDirectory(), () => false);
      if (!exists) continue;
      const denied = await fs.access(p, constants.W_OK).then(() => undefined, (e: NodeJS.ErrnoException) => e.code ?? "EACCES");
      if (denied) {
        const why = denied === "EROFS" ? "is on a read-only file system" : `is not writable by this user (uid ${process.getuid?.() ?? "?"})`;
        return `${sub === "." ? dir : p} ${why}: run install as the prefix's owner (or root), or fix its permissions`;
      }
    }
  }
  return undefined;
}

export interface ResolvedPrefix {
  /** The nginx prefix install works in (conf/, logs/, html/). */
  prefix: string;
  /** The OpenResty installation it belongs to (what `make install` created: bin/openresty, lualib/, nginx/). */
  openrestyRoot?: string;
  /** Which directory was used and why, for the user. */
  note?: string;
}

const isDir = (p: string) => fs.stat(p).then((s) => s.isDirectory(), () => false);
const isExe = (p: string) => fs.access(p, constants.X_OK).then(() => true, () => false);

/**
 * `--prefix` as users pass it: an nginx prefix, or the root of an OpenResty
 * `make install` (PREFIX/bin/openresty, PREFIX/lualib, PREFIX/nginx/{conf,
 * html,logs}), whose nginx/ is then the prefix. Anything else is left to
 * prefixProblem to explain.
 */
export async function resolvePrefix(dir: string): Promise<ResolvedPrefix> {
  if ((await isDir(path.join(dir, "conf"))) && (await isDir(path.join(dir, "logs")))) {
    const parent = path.dirname(dir);
    if (path.basename(dir) === "nginx" && (await isExe(path.join(parent, "bin/openresty")))) {
      return { prefix: dir, openrestyRoot: parent, note: `using ${dir}: the nginx prefix of the OpenResty in ${parent}` };
    }
    return { prefix: dir };
  }
  const inner = path.join(dir, "nginx");
  if ((await isExe(path.join(dir, "bin/openresty"))) && (await isDir(path.join(inner, "conf")))) {
    return { prefix: inner, openrestyRoot: dir, note: `using ${inner}: ${dir} is an OpenResty installation, its nginx prefix is nginx/` };
  }
  return { prefix: dir };
}

/** The binary of the OpenResty a prefix belongs to, when --bin was not given. */
export function openrestyBin(resolved: ResolvedPrefix): string | undefined {
  return resolved.openrestyRoot ? path.join(resolved.openrestyRoot, "bin/openresty") : undefined;
}
