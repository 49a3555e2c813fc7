import { promises as fs } from "node:fs";
import path from "node:path";
import { RejectedError } from "../errors.js";
import { TEMPLATES_DIR } from "../pipeline/render.js";
import { writeFileAtomic } from "../util/files.js";
import { report, type Io } from "./io.js";

interface InitOptions {
  out: string;
  force?: boolean;
}

export default async function init(opts: InitOptions, io: Io): Promise<void> {
  const target = path.resolve(io.cwd, opts.out);
  const exists = await fs.stat(target).then(() => true, () => false);
  if (exists && !opts.force) throw new RejectedError(`${opts.out} already exists; pass --force to overwrite it`);
  const starter = await fs.readFile(new URL("starter.yaml", TEMPLATES_DIR), "utf8");
  await writeFileAtomic(target, starter);
  report(io, { ok: true, spec: opts.out }, [`wrote ${opts.out}`, `next: gen-lb build --spec ${opts.out}`]);
}
