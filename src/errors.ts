/**
 * The exit-code contract (README "Exit codes"):
 *   0 ok; 1 the spec or the generated config was rejected; 2 usage error or crash.
 * Commands never set process.exitCode themselves: they throw one of these and
 * src/cli.ts, the only place that decides the exit code, reports it.
 */
export type ExitCode = 1 | 2;

export class GenLbError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    /** One line each, printed under the message (spec errors, failed steps...). */
    readonly details: readonly string[] = [],
    /** The command's own result fields, printed top-level beside `ok: false` and `error` with --json. */
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The spec, the generated config or the target was rejected: exit 1. */
export class RejectedError extends GenLbError {
  constructor(message: string, details: readonly string[] = [], data?: Record<string, unknown>) {
    super(message, 1, details, data);
  }
}

/** The command line itself is wrong (bad option, missing argument): exit 2. */
export class UsageError extends GenLbError {
  constructor(message: string, details: readonly string[] = []) {
    super(message, 2, details);
  }
}
