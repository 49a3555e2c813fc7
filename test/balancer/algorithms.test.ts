/**
 * The four algorithm modules, driven directly inside the real nginx (LuaJIT,
 * ngx.crc32_short, FFI): nginx's smooth sequence, weighted shares, eligible
 * and tried peers skipped, least_conn following in-flight counts, chash
 * stability, and a pick that allocates nothing. The build cost of a
 * 1,000-peer picker is a figure: bench/picker-build.ts.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "../support/load.js";
import { luaLocation, Stack } from "../support/stack.js";

const ALGORITHMS = ["round_robin", "least_conn", "chash", "random"];

let lb: Stack;

async function run<T>(test: string): Promise<T> {
  const res = await request(`http://127.0.0.1:${lb.port}/_alg?t=${test}`, { timeoutMs: 50_000 });
  if (res.status !== 200) throw new Error(`${test}: HTTP ${res.status}: ${res.body}\n${lb.logTail()}`);
  return JSON.parse(res.body) as T;
}

beforeAll(async () => {
  lb = await Stack.start({
    upstreams: { web: {} },
    workers: 1,
    luaFiles: { "gen_lb_test/algorithms.lua": fileURLToPath(new URL("./lua/algorithms.lua", import.meta.url)) },
    locations: [luaLocation("/_alg", 'require("gen_lb_test.algorithms").run()')],
  });
});

afterAll(async () => {
  await lb?.stop();
});

describe("balancer algorithms", () => {
  it("round_robin follows nginx's smooth weighted sequence (5,1,1 -> a a b a c a a)", async () => {
    const r = await run<{ seq: number[]; scan: boolean; period: number }>("rr_sequence");
    expect(r.scan).toBe(false);
    expect(r.period).toBe(7);
    expect(r.seq).toEqual([1, 1, 2, 1, 3, 1, 1, 1, 1, 2, 1, 3, 1, 1]);
  });

  it("round_robin falls back to nginx's per-pick scan when the period is too long to precompute", async () => {
    const r = await run<{ scan: boolean; exact: boolean }>("rr_scan");
    expect(r.scan).toBe(true);
    expect(r.exact).toBe(true);
  });

  it("every algorithm skips ineligible peers and, on a retry, peers already tried", async () => {
    const r = await run<Record<string, { bad: number; none: boolean }>>("eligible_and_tried");
    for (const a of ALGORITHMS) {
      expect(r[a], a).toEqual({ bad: 0, none: true });
    }
  });

  it("every algorithm shares by weight (1:3)", async () => {
    const r = await run<Record<string, number>>("shares");
    // chash shares by ring arcs: 160 points per weight unit leave a few percent of spread.
    for (const a of ALGORITHMS) expect(Math.abs(r[a]! - 0.25), `${a}: ${r[a]}`).toBeLessThan(a === "chash" ? 0.04 : 0.02);
  });

  it("least_conn picks the fewest in-flight per weight and shares ties by weight", async () => {
    const r = await run<{ a: number; b: number; c: number; tie_counts: number[]; spread: number[] }>("least_conn");
    expect(r.a).toBe(2);
    expect(r.b).toBe(3);
    expect(r.c).toBe(1);
    expect(r.tie_counts).toEqual([100, 300]);
    expect([...r.spread].sort()).toEqual([1, 2, 3]);
  });

  it("chash: stable, balanced, and removing or downing a peer moves only its keys", async () => {
    const r = await run<{ same: boolean; moved: number; stray: number; down_moved: number; moved100: number; min: number; max: number }>("chash");
    expect(r.same).toBe(true);
    expect(r.stray).toBe(0);
    expect(r.down_moved).toBe(0);
    expect(r.moved).toBeLessThanOrEqual(300);
    expect(r.moved).toBeGreaterThan(100);
    expect(r.moved100).toBeLessThanOrEqual(30);
    expect(r.min).toBeGreaterThan(120);
    expect(r.max).toBeLessThan(280);
  });

  it("a pick allocates nothing (1,000 peers, 100k picks with GC stopped)", async () => {
    const r = await run<Record<string, number>>("allocation");
    // One small table or string per pick would be >= 16 bytes; what remains is
    // an occasional late trace compiled during the measurement.
    for (const a of ALGORITHMS) expect(r[a], `${a}: ${r[a]} bytes per pick`).toBeLessThan(0.05);
  });

});
