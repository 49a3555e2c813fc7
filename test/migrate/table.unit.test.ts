/**
 * The directive table: every value nginx accepts for a table directive either
 * becomes a spec value the schema takes, or is left to the escape hatch
 * (undefined) — never a value the schema rejects (gzip_min_length 1k once
 * became null).
 */
import { describe, expect, it } from "vitest";
import { DIRECTIVE_TABLE, readArgs, type ArgKind } from "../../src/migrate/table.js";
import { specSchema } from "../../src/spec/schema.js";

/** Values nginx takes for each kind (from its docs), some the spec can hold, some not. */
const NGINX_VALUES: Record<ArgKind, string[][]> = {
  flag: [["on"], ["off"]],
  duration: [["65"], ["65s"], ["1m30s"], ["500ms"], ["1h"], ["2d"], ["1w"], ["1M"], ["1y"]],
  size: [["1024"], ["1k"], ["1K"], ["8m"], ["1g"]],
  count: [["1"], ["512"], ["4096"]],
  workers: [["auto"], ["1"], ["8"]],
  text: [["application/octet-stream"], ["text/plain; charset=utf-8"]],
  buffers: [["4", "8k"], ["8", "16k"], ["2", "1m"]],
};

function specWith(key: string, value: unknown): unknown {
  const spec: Record<string, unknown> = { upstreams: {}, servers: [] };
  const parts = key.split(".");
  let o = spec;
  for (const p of parts.slice(0, -1)) o = (o[p] ??= {}) as Record<string, unknown>;
  o[parts.at(-1)!] = value;
  return spec;
}

describe("every table entry reads nginx's values into values the schema accepts", () => {
  for (const entry of DIRECTIVE_TABLE.values()) {
    it(`${entry.context} ${entry.directive} -> ${entry.key} (${entry.kind})`, () => {
      const converted = NGINX_VALUES[entry.kind].map((args) => [args.join(" "), readArgs(entry.kind, args)] as const).filter(([, v]) => v !== undefined);
      expect(converted.length).toBeGreaterThan(0);
      for (const [text, value] of converted) {
        const r = specSchema.safeParse(specWith(entry.key, value));
        expect(r.success, `${entry.directive} ${text} -> ${JSON.stringify(value)}: ${r.success ? "" : r.error.issues.map((i) => i.message).join("; ")}`).toBe(true);
      }
    });
  }
  it("what the spec cannot say exactly is left to the escape hatch", () => {
    expect(readArgs("duration", ["1y"])).toBeUndefined();
    expect(readArgs("flag", ["yes"])).toBeUndefined();
    expect(readArgs("count", ["$var"])).toBeUndefined();
    expect(readArgs("size", ["1k", "2k"])).toBeUndefined();
    expect(readArgs("size", ["1k"])).toBe("1k");
  });
});
