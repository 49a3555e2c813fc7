/**
 * `gen-lb parse FILE`: parse an nginx config and everything it includes.
 * --json prints the crossplane-shaped payload; otherwise a short summary per
 * file. Any error (syntax, unreadable include, include cycle, not a text
 * file) rejects: exit 1 with every error as file:line:column. With --json the
 * payload is the `payload` key of the one error document on stdout.
 */
import { statSync } from "node:fs";
import path from "node:path";
import { RejectedError, UsageError } from "../errors.js";
import { fsLoader } from "../nginx/load.js";
import { parseConfig } from "../nginx/parse.js";
import { crossplanePayload, type CrossplaneOptions } from "../nginx/crossplane.js";
import type { Directive } from "../nginx/types.js";
import { errnoMessage } from "../util/files.js";
import { report, type Io } from "./io.js";

function count(nodes: readonly Directive[], into: { directives: number; comments: number; includes: number }): void {
  for (const d of nodes) {
    if (d.directive === "#") into.comments++;
    else into.directives++;
    if (d.directive === "include") into.includes++;
    if (d.block) count(d.block, into);
  }
}

export interface ParseCommandOptions {
  includeComments?: boolean;
  singleFile?: boolean;
  ignore?: string[];
  combine?: boolean;
  strict?: boolean;
  checkCtx?: boolean;
  checkArgs?: boolean;
}

export default async function run(opts: ParseCommandOptions, io: Io, args: string[]): Promise<void> {
  const file = args[0];
  if (file === undefined || file === "") throw new UsageError("parse needs the nginx config file to read");
  try {
    if (statSync(path.resolve(io.cwd, file)).isDirectory()) {
      throw new UsageError(`${file} is a directory; give the main nginx config file (e.g. ${path.join(file, "nginx.conf")})`);
    }
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot read ${file}: ${errnoMessage(e)}`);
  }

  const cp: CrossplaneOptions = {
    includeComments: opts.includeComments === true,
    ignore: opts.ignore ?? [],
    combine: opts.combine === true,
    strict: opts.strict === true,
    checkCtx: opts.checkCtx !== false,
    checkArgs: opts.checkArgs !== false,
  };
  const result = parseConfig(file, fsLoader(io.cwd), { comments: cp.includeComments, single: opts.singleFile === true });
  const payload = crossplanePayload(result, cp);

  const totals = { directives: 0, comments: 0, includes: 0 };
  const lines: string[] = [];
  for (const cf of result.config) {
    const c = { directives: 0, comments: 0, includes: 0 };
    count(cf.parsed, c);
    totals.directives += c.directives;
    totals.comments += c.comments;
    totals.includes += c.includes;
    const parts = [`${c.directives} directive${c.directives === 1 ? "" : "s"}`];
    if (c.comments > 0) parts.push(`${c.comments} comment${c.comments === 1 ? "" : "s"}`);
    if (c.includes > 0) parts.push(`${c.includes} include${c.includes === 1 ? "" : "s"}`);
    if (cf.status === "failed") parts.push(`${cf.errors.length} error${cf.errors.length === 1 ? "" : "s"}`);
    lines.push(`${cf.file}: ${parts.join(", ")}`);
  }
  const n = result.config.length;
  lines.push(
    `${n} file${n === 1 ? "" : "s"}, ${totals.directives} directive${totals.directives === 1 ? "" : "s"}, ${totals.comments} comment${totals.comments === 1 ? "" : "s"}: ${result.status}`,
  );

  if (payload.status === "failed") {
    if (!io.json) io.out(lines.join("\n") + "\n");
    const k = payload.errors.length;
    throw new RejectedError(
      `${file} did not parse as an nginx config (${k} error${k === 1 ? "" : "s"})`,
      // on stderr, gen-lb's exact file:line:column for what the parser found, then the analyser's
      [
        ...result.errors.map((e) => `${e.file}:${e.line}:${e.column}: ${e.error}`),
        ...payload.errors.slice(result.errors.length).map((e) => `${e.file}:${e.line}: ${e.error.slice(0, e.error.lastIndexOf(" in "))}`),
      ],
      { document: payload },
    );
  }
  report(io, payload, lines);
}
