/**
 * Keeps vitest.config.ts's rule: a `.unit.test.ts` file is pure (no nginx,
 * no network, no built CLI, no child process, no test matrix), and every
 * other test file needs one of those, so pure files are not run once per
 * binary by mistake. Reads what each file imports, following imports of
 * other files under test/ (helpers), not into src/.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const TEST_ROOT = fileURLToPath(new URL("..", import.meta.url));

/** What makes a file end-to-end, by what it imports or names. */
const IMPURE_MODULES = /^(?:node:)?(?:child_process|http|https|net|dgram|dns|tls|worker_threads|cluster)$|^execa$/;
const IMPURE_SUPPORT = new Set(["nginx", "cli", "consul-standin", "consul-dns", "backends", "load", "ports", "stack", "target", "global-setup"].map((n) => path.join(TEST_ROOT, "support", `${n}.ts`)));
const IMPURE_TEXT = /lib\/cli\.js/;

function testFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return testFiles(p);
    return name.endsWith(".test.ts") ? [p] : [];
  });
}

function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;'"]*?from\s*["']([^"']+)["']|(?:^|\n)\s*import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g)) {
    out.push((m[1] ?? m[2] ?? m[3])!);
  }
  return out;
}

/** Why `file` is not pure: the first impure import or text on its import graph under test/, or undefined. */
function impurity(file: string, seen = new Set<string>()): string | undefined {
  if (seen.has(file)) return undefined;
  seen.add(file);
  if (IMPURE_SUPPORT.has(file)) return `uses ${path.relative(TEST_ROOT, file)}`;
  const text = readFileSync(file, "utf8");
  if (IMPURE_TEXT.test(text)) return `${path.relative(TEST_ROOT, file)} names the built CLI`;
  for (const spec of importsOf(text)) {
    if (IMPURE_MODULES.test(spec)) return `${path.relative(TEST_ROOT, file)} imports ${spec}`;
    if (!spec.startsWith(".")) continue;
    const target = path.resolve(path.dirname(file), spec.replace(/\.js$/, ".ts"));
    // Only the test side's own modules: src/ is what the tests exercise.
    if (!target.startsWith(TEST_ROOT)) continue;
    const why = impurity(target, seen);
    if (why) return why;
  }
  return undefined;
}

// This file names impure modules in its own examples.
const SELF = fileURLToPath(import.meta.url);
const files = testFiles(TEST_ROOT)
  .filter((f) => f !== SELF)
  .sort();

describe("unit and e2e test files", () => {
  it("finds the test files", () => {
    expect(files.filter((f) => f.endsWith(".unit.test.ts")).length).toBeGreaterThan(10);
    expect(files.filter((f) => !f.endsWith(".unit.test.ts")).length).toBeGreaterThan(10);
  });

  it("a .unit.test.ts file starts no binary, opens no socket, spawns nothing", () => {
    const wrong = files.filter((f) => f.endsWith(".unit.test.ts")).flatMap((f) => {
      const why = impurity(f);
      return why ? [`${path.relative(TEST_ROOT, f)}: ${why}; name it .test.ts (e2e)`] : [];
    });
    expect(wrong).toEqual([]);
  });

  it("a plain .test.ts file needs the binary, the network or a process (else it is a .unit.test.ts)", () => {
    const wrong = files
      .filter((f) => !f.endsWith(".unit.test.ts") && impurity(f) === undefined)
      .map((f) => `${path.relative(TEST_ROOT, f)}: pure; rename it to ${path.basename(f).replace(/\.test\.ts$/, ".unit.test.ts")}`);
    expect(wrong).toEqual([]);
  });

  it("tells pure from impure by imports, through helpers", () => {
    const tmp = (name: string) => path.join(TEST_ROOT, "support", name);
    expect(impurity(tmp("ports.ts"))).toMatch(/uses support\/ports\.ts/);
    expect(importsOf('import { a } from "./x.js";\nimport "./side.js";\nconst m = await import("node:http");')).toEqual(["./x.js", "./side.js", "node:http"]);
    expect(impurity(path.join(TEST_ROOT, "install/helpers.ts"))).toBeDefined();
    expect(impurity(path.join(TEST_ROOT, "parser/helpers.ts"))).toBeUndefined();
  });
});
