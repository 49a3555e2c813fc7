/**
 * How fast is `gen-lb build` on a large spec (1,000 upstreams, 200 servers),
 * and `gen-lb --version`? Spawns the built CLI as users do, several runs
 * each, and reports medians beside a bare `node -e ""` start measured in the
 * same run (this machine is noisy; the ratio is the steadier figure).
 *
 *   npx tsc -p tsconfig.json && npx tsx bench/build.ts
 * Goals: build < 1 s wall, --version < 150 ms.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const cli = path.join(root, "lib/cli.js");
const RUNS = Number(process.env.RUNS ?? 7);

function largeSpec(upstreams: number, servers: number): unknown {
  const ups: Record<string, unknown> = {};
  for (let i = 0; i < upstreams; i++) {
    ups[`svc${i}`] = {
      service: `svc${i}`,
      tags: ["prod"],
      balance: i % 4 === 0 ? "least_conn" : "round_robin",
      retries: 2,
      fallback: [`127.0.0.1:${10000 + i}`],
      healthcheck: { active: { path: "/health", interval: "2s" }, passive: { max_fails: 3 } },
    };
  }
  const srv = [];
  for (let s = 0; s < servers; s++) {
    srv.push({
      listen: 8000 + s,
      server_name: [`s${s}.example.com`],
      locations: Array.from({ length: upstreams / servers }, (_, j) => ({ path: `/u${s * (upstreams / servers) + j}/`, upstream: `svc${s * (upstreams / servers) + j}` })),
    });
  }
  return { target: "nginx", upstreams: ups, servers: srv };
}

function time(cmd: string, args: string[], cwd: string): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { cwd, stdio: "pipe" });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr}`);
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = mkdtempSync(path.join(os.tmpdir(), "gen-lb-bench-"));
writeFileSync(path.join(dir, "gen-lb.json"), JSON.stringify(largeSpec(1000, 200)));

const node: number[] = [];
const version: number[] = [];
const build: number[] = [];
for (let i = 0; i < RUNS; i++) {
  // Interleaved, so drift in machine load hits all three alike.
  node.push(time(process.execPath, ["-e", ""], dir));
  version.push(time(process.execPath, [cli, "--version"], dir));
  build.push(time(process.execPath, [cli, "build", "--spec", "gen-lb.json", "--out", "out"], dir));
}

const fmt = (ms: number) => `${ms.toFixed(0)} ms`;
console.log(`runs: ${RUNS} (medians)`);
console.log(`node -e "" (baseline)        ${fmt(median(node))}`);
console.log(`gen-lb --version             ${fmt(median(version))}  (${(median(version) / median(node)).toFixed(2)}x node start; goal < 150 ms)`);
console.log(`gen-lb build 1000 ups/200 srv ${fmt(median(build))}  (${(median(build) / median(node)).toFixed(2)}x node start; goal < 1000 ms)`);
