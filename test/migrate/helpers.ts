import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { migrate, specYaml, type Migration } from "../../src/migrate/index.js";
import { fsLoader, memoryLoader } from "../../src/nginx/load.js";
import type { Loader } from "../../src/nginx/types.js";

export const root = fileURLToPath(new URL("../..", import.meta.url));
export const fixtures = path.join(root, "fixtures/migrate");

export const CASES = {
  "consul-lua": "consul-lua/conf/nginx.conf",
  static: "static/nginx.conf",
  "consul-template": "consul-template/nginx.conf",
  mixed: "mixed/nginx.conf",
} as const;

/** Migrate a fixture, with file names relative to fixtures/migrate in findings. */
export function migrateFixture(rel: string, luaPath: string[] = []): Migration {
  return migrate(rel, { loader: fsLoader(fixtures), luaPath: luaPath.map((p) => path.join(fixtures, p)), cwd: fixtures });
}

export function yamlOf(rel: string): string {
  return specYaml(migrateFixture(rel), rel);
}

/** A memory loader holding every file of a fixture directory (under its relative path), with overrides. */
export function fixtureLoader(dir: string, overrides: Record<string, string> = {}): Loader {
  const files: Record<string, string | Uint8Array> = {};
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(fixtures, rel))) {
      const r = path.join(rel, name);
      if (statSync(path.join(fixtures, r)).isDirectory()) walk(r);
      else files[r] = readFileSync(path.join(fixtures, r));
    }
  };
  walk(dir);
  return memoryLoader({ ...files, ...overrides });
}
