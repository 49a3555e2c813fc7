/**
 * Snapshots what `migrate` makes of every fixture under fixtures/migrate
 * (and of each NAME/nginx.conf of a corpus directory, read in place): spec,
 * findings, YAML and JSON, with and without --bin (Debian nginx, OpenResty,
 * when installed) and --lua-path. Two snapshots of two checkouts that are
 * byte-identical prove a refactor of the converter changed no output:
 *
 *   git archive main | tar -x -C /tmp/base && ln -s $PWD/node_modules /tmp/base/
 *   npx tsx scripts/migrate-snapshot.ts --repo /tmp/base --out /tmp/before.json --corpus ../shared/corpus
 *   npx tsx scripts/migrate-snapshot.ts --repo . --out /tmp/after.json --corpus ../shared/corpus
 *   cmp /tmp/before.json /tmp/after.json
 *
 * Paths under the checkout are written as <REPO>, so two checkouts compare.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";

const { values } = parseArgs({ options: { repo: { type: "string", default: "." }, out: { type: "string" }, corpus: { type: "string" } } });
if (!values.out) throw new Error("usage: migrate-snapshot.ts --repo DIR --out FILE [--corpus DIR]");
const repo = path.resolve(values.repo);
const load = (rel: string) => import(pathToFileURL(path.join(repo, rel)).href);
const { migrate, specYaml } = await load("src/migrate/index.ts");
const { parseBinInfo } = await load("src/migrate/bin.ts");
const { fsLoader } = await load("src/nginx/load.ts");

const bins: Record<string, unknown> = { none: undefined };
for (const [name, bin] of [["nginx", "/usr/sbin/nginx"], ["openresty", "/opt/openresty/bin/openresty"]] as const) {
  if (existsSync(bin)) bins[name] = parseBinInfo(bin, execFileSync("sh", ["-c", `"${bin}" -V 2>&1`]).toString());
}
const result: Record<string, unknown> = {};
function snap(key: string, main: string, root: string, luaPath: string[], bin: unknown): void {
  try {
    const m = migrate(main, { loader: fsLoader(root), cwd: root, luaPath, ...(bin ? { bin } : {}) });
    result[key] = { spec: m.spec, findings: m.findings, yaml: specYaml(m, main), json: specYaml(m, main, true), files: m.files };
  } catch (e) {
    result[key] = { error: String(e), details: (e as { details?: unknown }).details };
  }
}
// Every nginx.conf under fixtures/migrate; a setup is its first directory (real/NAME under real/).
const fixtures = path.join(repo, "fixtures/migrate");
const mains: string[] = [];
const luaDirs: string[] = [];
const walk = (rel: string) => {
  for (const n of readdirSync(path.join(fixtures, rel)).sort()) {
    const r = path.join(rel, n);
    if (statSync(path.join(fixtures, r)).isDirectory()) {
      if (n === "lua" || n === "lib") luaDirs.push(r);
      walk(r);
    } else if (n === "nginx.conf") mains.push(r);
  }
};
walk("");
for (const main of mains) {
  const top = main.split("/").slice(0, main.startsWith("real/") ? 2 : 1).join("/");
  const lua = luaDirs.filter((d) => d.startsWith(`${top}/`)).map((d) => path.join(fixtures, d));
  for (const [bn, bin] of Object.entries(bins)) {
    for (const lp of lua.length ? [[], lua] : [[]]) {
      snap(`${main} bin=${bn} luaPath=${lp.length} cwd=fixtures`, main, fixtures, lp, bin);
      snap(`${main} bin=${bn} luaPath=${lp.length} cwd=abs`, path.join(fixtures, main), "/", lp, bin);
    }
  }
}
if (values.corpus) {
  const corpus = path.resolve(values.corpus);
  for (const n of readdirSync(corpus).sort()) {
    const main = path.join(corpus, n, "nginx.conf");
    if (!existsSync(main)) continue;
    const lua = readdirSync(path.join(corpus, n)).filter((x) => x === "lua" || x === "lib").map((x) => path.join(corpus, n, x));
    for (const [bn, bin] of Object.entries(bins)) for (const lp of lua.length ? [[], lua] : [[]]) snap(`${main} bin=${bn} luaPath=${lp.length}`, main, "/", lp, bin);
  }
}
writeFileSync(values.out, JSON.stringify(result, null, 1).replaceAll(repo, "<REPO>"));
console.log(`${Object.keys(result).length} snapshots -> ${values.out}`);
