/**
 * `gen-lb lint [FILE]`: gixy-style checks on an existing nginx config (FILE,
 * with its includes) or, without FILE, on the config the spec renders.
 * Exit 1 when anything is found.
 */
import { RejectedError, UsageError } from "../errors.js";
import { lintNginxConfig, lintRenderedConfig, formatFinding, type Finding } from "../lint/lint.js";
import { fsLoader } from "../nginx/load.js";
import { buildFileSet, loadSpecFile } from "../pipeline/index.js";
import { report, type Io } from "./io.js";

interface LintOptions {
  spec: string;
  target?: "openresty" | "nginx";
}

export default async function lint(opts: LintOptions, io: Io, args: string[]): Promise<void> {
  let findings: Finding[];
  let subject: string;
  if (args[0]) {
    subject = args[0];
    const { findings: f, parse } = lintNginxConfig(args[0], fsLoader(io.cwd));
    if (parse.config[0]?.errors.some((e) => /cannot read/.test(e.error)) && parse.config[0].parsed.length === 0) {
      throw new UsageError(`cannot read ${args[0]}`);
    }
    findings = f;
  } else {
    const { spec, file } = await loadSpecFile(opts.spec, io.cwd);
    subject = file;
    const conf = buildFileSet(spec, file, opts.target).files.find((f) => f.path === "conf/nginx.conf")!;
    findings = lintRenderedConfig(conf.contents);
  }
  const lines = findings.map(formatFinding);
  if (findings.length > 0) {
    if (!io.json) io.out(lines.join("\n") + "\n");
    const n = findings.length;
    throw new RejectedError(`${subject}: ${n} lint finding${n === 1 ? "" : "s"}`, [], { findings });
  }
  report(io, { ok: true, findings }, `${subject}: no lint findings`);
}
