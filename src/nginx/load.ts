/**
 * The parser's one window on the file system. Everything else in src/nginx
 * is pure; tests use `memoryLoader` instead.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Loader } from "./types.js";

/** Reads real files; relative paths are taken from `cwd`. */
export function fsLoader(cwd: string = process.cwd()): Loader {
  const abs = (p: string) => path.resolve(cwd, p);
  return {
    readFile: (p) => readFileSync(abs(p)),
    readDir: (p) => readdirSync(abs(p)),
  };
}

/** A loader over a {path: contents} map, for tests and for parsing strings. */
export function memoryLoader(files: Record<string, string | Uint8Array>): Loader {
  const norm = (p: string) => path.normalize(p).replace(/\/$/, "");
  const table = new Map(Object.entries(files).map(([k, v]) => [norm(k), v]));
  const enoent = (p: string) => Object.assign(new Error(`ENOENT: ${p}`), { code: "ENOENT" });
  return {
    readFile(p) {
      const v = table.get(norm(p));
      if (v === undefined) {
        const dir = norm(p) + "/";
        if ([...table.keys()].some((k) => k.startsWith(dir))) {
          throw Object.assign(new Error(`EISDIR: ${p}`), { code: "EISDIR" });
        }
        throw enoent(p);
      }
      return v;
    },
    readDir(p) {
      const n = norm(p);
      const prefix = n === "." ? "" : n === "/" ? "/" : n + "/";
      const names = new Set<string>();
      for (const k of table.keys()) {
        if (!k.startsWith(prefix) || (prefix === "" && k.startsWith("/"))) continue;
        const rest = k.slice(prefix.length);
        names.add(rest.split("/")[0]!);
      }
      if (names.size === 0) throw enoent(p);
      return [...names];
    },
  };
}
