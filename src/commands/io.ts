/** What a command may touch of the outside world besides its own edges. */
export interface Io {
  /** Write to stdout (a trailing newline is not added). */
  out(text: string): void;
  /** Write to stderr (a trailing newline is not added). */
  err(text: string): void;
  /** --json: print one JSON document on stdout instead of the human report. */
  json: boolean;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

export function processIo(json: boolean): Io {
  return {
    // After EPIPE (see src/cli.ts) the stream is destroyed: write nothing more.
    out: (text) => void (process.stdout.destroyed || process.stdout.write(text)),
    err: (text) => void (process.stderr.destroyed || process.stderr.write(text)),
    json,
    cwd: process.cwd(),
    env: process.env,
  };
}

/** Print either a JSON document or human lines, as the command was asked to. */
export function report(io: Io, json: unknown, human: string | readonly string[]): void {
  if (io.json) {
    io.out(JSON.stringify(json, null, 2) + "\n");
    return;
  }
  const lines = typeof human === "string" ? [human] : human;
  if (lines.length > 0) io.out(lines.join("\n") + "\n");
}
