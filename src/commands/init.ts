import { promises as fs } from "node:fs";
import path from "node:path";
import { resolveBin } from "../check/bin.js";
import { RejectedError, UsageError } from "../errors.js";
import { TEMPLATES_DIR } from "../pipeline/render.js";
import { describeTarget, detectTarget, type TargetInfo } from "../target/index.js";
import { writeFileAtomic } from "../util/files.js";
import { systemRunner } from "../util/proc.js";
import { report, type Io } from "./io.js";

interface InitOptions {
  out: string;
  force?: boolean;
  bin?: string;
}

export default async function init(opts: InitOptions, io: Io): Promise<void> {
  const target = path.resolve(io.cwd, opts.out);
  const exists = await fs.stat(target).then(() => true, () => false);
  if (exists && !opts.force) throw new RejectedError(`${opts.out} already exists; pass --force to overwrite it`);
  // The starter's target follows the binary it will run on: --bin, else
  // the first of openresty/nginx found. None found: the schema's default.
  let bin: string | undefined;
  try {
    bin = resolveBin(opts.bin, io.env);
  } catch (error) {
    if (opts.bin !== undefined) throw error;
  }
  let seen: TargetInfo | undefined;
  if (bin !== undefined) {
    try {
      seen = await detectTarget(bin, systemRunner);
    } catch (error) {
      if (opts.bin !== undefined) throw new UsageError(`--bin ${opts.bin}: ${(error as Error).message}`);
    }
  }
  const chosen = seen?.target ?? "openresty";
  const why = seen ? `matches ${bin}: ${describeTarget(seen)}` : "no openresty or nginx found; pass --bin to pick one";
  const starter = (await fs.readFile(new URL("starter.yaml", TEMPLATES_DIR), "utf8")).replace(/^target: \S+$/m, `target: ${chosen}  # ${why}`);
  await writeFileAtomic(target, starter);
  report(io, { ok: true, spec: opts.out, target: chosen, ...(bin ? { bin } : {}) }, [`wrote ${opts.out} (target: ${chosen}; ${why})`, `next: gen-lb build --spec ${opts.out}`]);
}
