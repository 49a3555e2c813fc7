import { freeLoopbackPort } from "../../src/check/run.js";

/** A port that was free on 127.0.0.1 a moment ago: the one `gen-lb check` uses. */
export const freePort = freeLoopbackPort;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 10_000, stepMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await sleep(stepMs);
  }
}
