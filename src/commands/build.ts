import path from "node:path";
import { RejectedError } from "../errors.js";
import { buildFileSet, loadSpecFile } from "../pipeline.js";
import { formatFinding, lintRenderedConfig } from "../lint/lint.js";
import { formatDiagnostic } from "../spec/load.js";
import { unifiedDiff } from "../util/diff.js";
import { readExisting, staleFiles, writeFileSet } from "../util/files.js";
import { report, type Io } from "./io.js";

interface BuildOptions {
  spec: string;
  out: string;
  target?: "openresty" | "nginx";
  check?: boolean;
}

export default async function build(opts: BuildOptions, io: Io): Promise<void> {
  const { spec, file, warnings } = await loadSpecFile(opts.spec, io.cwd);
  const set = buildFileSet(spec, file, opts.target);
  const outDir = path.resolve(io.cwd, opts.out);
  if (!io.json) for (const w of warnings) io.err(`warning: ${formatDiagnostic(w)}\n`);
  const conf = set.files.find((f) => f.path === "conf/nginx.conf");
  const lintFindings = conf ? lintRenderedConfig(conf.contents) : [];
  if (!io.json) for (const f of lintFindings) io.err(`warning: lint: ${formatFinding(f)}\n`);

  if (opts.check) {
    const existing = await readExisting(outDir, set.files.map((f) => f.path));
    const changed: string[] = [];
    let diff = "";
    for (const f of set.files) {
      const before = existing.get(f.path);
      if (before === f.contents) continue;
      changed.push(f.path);
      diff += unifiedDiff(before ?? "", f.contents, before === undefined ? "/dev/null" : `a/${f.path}`, `b/${f.path}`);
    }
    const stale = await staleFiles(outDir, set);
    for (const s of stale) diff += `only in ${opts.out}: ${s} (no longer generated)\n`;
    if (changed.length > 0 || stale.length > 0) {
      if (!io.json) io.out(diff);
      throw new RejectedError(
        `${opts.out} is stale: ${changed.length + stale.length} file(s) differ from what ${file} produces; run \`gen-lb build\` and commit the result`,
        [...changed.map((c) => `changed: ${c}`), ...stale.map((s) => `stale: ${s}`)],
        { changed, stale, diff },
      );
    }
    report(io, { ok: true, out: opts.out, buildId: set.buildId, upToDate: true }, `${opts.out} is up to date with ${file} (build ${set.buildId})`);
    return;
  }

  const summary = await writeFileSet(outDir, set);
  report(
    io,
    { ok: true, out: opts.out, buildId: set.buildId, files: summary.written, removed: summary.removed, warnings, lint: lintFindings },
    [
      `built ${file} -> ${opts.out}/ (build ${set.buildId}): ${summary.written.length} files`,
      ...summary.removed.map((r) => `removed stale ${r}`),
      `start it: nginx -p ${opts.out}/ -c conf/nginx.conf`,
    ],
  );
}
