/**
 * The balancer's cost in instructions, which repeat from run to run where
 * requests/s on this shared 2-core box do not: the prefix of
 * bench/balancer.ts (2 peers) runs as one process under callgrind, and each
 * variant gets the same bounded wrk load; callgrind's counters are zeroed
 * before and dumped after each, and divided by the requests wrk completed.
 *
 *   npx tsc -p tsconfig.json && npx tsx bench/balancer-instructions.ts
 *   ROUNDS=2 DURATION=4 npx tsx bench/balancer-instructions.ts
 *   npx tsx bench/balancer-instructions.ts --bin /opt/openresty/bin/openresty   (or BIN=...; --target/TARGET)
 *   On openresty the DNS engine (discovery: dns, a zoned upstream re-resolved
 *   from the Consul DNS stand-in) runs as the variant "dns".
 *
 * Counted: the nginx process's user-space instructions (nginx, the Lua
 * module, LuaJIT, libc). Not counted: the kernel's share, which is the same
 * for every variant (same syscalls per request: 2 writev, 2 recvfrom, 1
 * getsockopt; strace -c shows it) and is most of the work on loopback.
 * Under valgrind a request comes about every 0.7 ms, so gen-lb's
 * once-per-millisecond look at the peer and health versions runs on nearly
 * every request here (about 0.4k instructions), against once per tens of
 * requests at real rates. Needs valgrind (apt-get install valgrind) and wrk.
 *
 * Variants: static (hand-written upstream {}), gen_static (gen-lb's
 * `servers:`), bare (the cheapest Lua balancer), bare_log (bare plus an
 * empty log phase), gen (gen-lb, defaults: round robin, retries 1, no log
 * phase), gen_counters (`counters: true`: the log phase, and what every
 * upstream paid before counters became opt-in), gen_full (least_conn,
 * passive checks and counters), naive (JSON per request).
 */
import "./support/binary.js";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConsulStandin } from "../test/support/consul-standin.js";
import { ConsulDns, dnsSourceOf } from "../test/support/consul-dns.js";
import { NGINX_BIN } from "../test/support/nginx.js";
import { request } from "../test/support/load.js";
import { sleep, waitFor } from "../test/support/ports.js";
import { buildThroughputPrefix, fmt, freePorts, median, binaryUnderTest, BENCH_TARGET, seedNaive, startBackendNginx } from "./support/lb.js";

const signed = (n: number) => (n < 0 ? `-${fmt(-n)}` : `+${fmt(n)}`);
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const DURATION = Number(process.env.DURATION ?? 4);
const ALL_VARIANTS = ["static", "gen_static", "dns", "bare", "bare_log", "gen", "gen_counters", "gen_full", "naive"] as const;
type Variant = (typeof ALL_VARIANTS)[number];
// ONLY=static,bare,gen measures a subset (static, the baseline, always runs).
// The DNS engine needs nginx 1.27.3+ (`server ... resolve`): OpenResty 1.31 here.
const only = process.env.ONLY?.split(",");
const VARIANTS = ALL_VARIANTS.filter((v) => (v === "static" || !only || only.includes(v)) && (v !== "dns" || BENCH_TARGET === "openresty"));

for (const tool of ["valgrind", "callgrind_control", "wrk"]) {
  if (spawnSync(tool, ["--version"]).error) throw new Error(`${tool} is not installed (apt-get install ${tool === "wrk" ? "wrk" : "valgrind"})`);
}

/** Requests wrk completed against `url` in `seconds` (4 connections: valgrind runs one core's worth). */
function wrkRequests(url: string, seconds: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn("wrk", ["-t1", "-c4", `-d${seconds}s`, url], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", () => {
      const n = Number(/(\d+) requests in/.exec(out)?.[1]);
      const bad = /Non-2xx or 3xx responses: (\d+)/.exec(out);
      if (!Number.isFinite(n) || n === 0 || bad) reject(new Error(`wrk against ${url} failed: ${out}`));
      else resolve(n);
    });
  });
}

function control(pid: number, flag: "-z" | "-d"): void {
  const r = spawnSync("callgrind_control", [flag, String(pid)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`callgrind_control ${flag}: ${r.stderr}${r.stdout}`);
}

/** Total instructions of the newest dump in `dir`. */
function lastDumpTotal(dir: string): number {
  const files = readdirSync(dir).filter((f) => f.startsWith("cg.out")).map((f) => path.join(dir, f));
  const newest = files.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  const m = newest && /^(?:summary|totals): (\d+)/m.exec(readFileSync(newest, "utf8"));
  if (!m) throw new Error(`no callgrind totals in ${newest ?? dir}`);
  return Number(m[1]);
}

/**
 * Whether gen-lb's static upstream and its location render exactly the
 * hand-written baseline's directives (names aside): the claim the
 * gen_static row rests on, checked on the prefix that runs.
 */
function sameStaticDirectives(text: string): boolean {
  const body = (re: RegExp) => re.exec(text)?.[1]?.replace(/gen_static_small/g, "static_small").trim();
  const up = [body(/upstream static_small \{([^}]*)\}/), body(/upstream gen_static_small \{([^}]*)\}/)];
  const loc = [body(/location \/static_small\/ \{([^}]*)\}/), body(/location \/gen_static_small\/ \{([^}]*)\}/)];
  return up[0] !== undefined && up[0] === up[1] && loc[0] !== undefined && loc[0] === loc[1];
}

const ports = await freePorts(2);
const backends = await startBackendNginx(ports);
const standin = new ConsulStandin();
await standin.start();
const dns = new ConsulDns(dnsSourceOf(standin));
await dns.start();
for (const p of ports) standin.registerService({ ID: `small-${p}`, Name: "small", Address: "127.0.0.1", Port: p });
// BIG = 0: no 1,000-peer upstream here; a one-peer "big" keeps the prefix's shape.
const lb = await buildThroughputPrefix(standin, ports, [ports[0]!], { cpu1: false, ...(VARIANTS.includes("dns") ? { dns: dns.address } : {}) });
const conf = path.join(lb.dir, "conf/nginx.conf");
const staticSame = sameStaticDirectives(readFileSync(conf, "utf8"));
// One process in the foreground: callgrind follows it, and its counters are its own.
writeFileSync(conf, readFileSync(conf, "utf8").replace(/^worker_processes 1;$/m, "worker_processes 1;\nmaster_process off;\ndaemon off;"));
const outDir = mkdtempSync(path.join(os.tmpdir(), "gen-lb-callgrind-"));
let vg: ChildProcess | undefined;
try {
  vg = spawn("valgrind", ["--tool=callgrind", "--smc-check=all-non-file", `--callgrind-out-file=${outDir}/cg.out.%p`, NGINX_BIN, "-p", `${lb.dir}/`, "-c", "conf/nginx.conf"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let vgErr = "";
  vg.stderr!.on("data", (d: Buffer) => (vgErr += d.toString()));
  const pid = vg.pid!;
  await waitFor(async () => (await request(`http://127.0.0.1:${lb.rawPort}/static_small/`).catch(() => undefined))?.status === 200, `nginx under valgrind (${vgErr.slice(-500)})`, 120_000, 500);
  await seedNaive(lb.port, "small", 2);
  const url = (v: Variant) => `http://127.0.0.1:${v === "gen" ? lb.port : v.startsWith("gen_") && v !== "gen_static" ? lb.logPort : lb.rawPort}/${v}_small/`;
  for (const v of VARIANTS) await wrkRequests(url(v), 2); // warm-up: JIT, keepalive pools

  const perRequest = Object.fromEntries(ALL_VARIANTS.map((v) => [v, [] as number[]])) as Record<Variant, number[]>;
  for (let r = 0; r < ROUNDS; r++) {
    for (const v of VARIANTS) {
      control(pid, "-z");
      const n = await wrkRequests(url(v), DURATION);
      control(pid, "-d");
      await sleep(200);
      perRequest[v].push(lastDumpTotal(outDir) / n);
    }
  }
  const ir = (v: Variant) => median(perRequest[v]);
  const base = ir("static");
  console.log(`gen-lb balancer, user-space instructions per request under callgrind: ${binaryUnderTest()}, 2 peers, ${ROUNDS} round(s) of ${DURATION} s each`);
  console.log("  variant    instructions/request   vs static   over static   (rounds)");
  for (const v of VARIANTS) {
    console.log(
      `  ${v.padEnd(10)}  ${fmt(ir(v)).padStart(20)}   ${`${(ir(v) / base).toFixed(3)}x`.padStart(9)}   ${signed(ir(v) - base).padStart(11)}   ${perRequest[v].map((x) => fmt(x)).join(" ")}`,
    );
  }
  const has = (...vs: Variant[]) => vs.every((v) => VARIANTS.includes(v));
  console.log("");
  if (has("gen_static")) {
    // Both run the same C path: any difference is the process's timers, which the baseline's own rounds show as spread.
    const spread = Math.max(...perRequest.static) - Math.min(...perRequest.static);
    console.log(
      `  gen-lb's static upstream (servers:, nginx's own upstream {}) against the hand-written one: ${signed(ir("gen_static") - base)} per request (${(((ir("gen_static") - base) / base) * 100).toFixed(1)} %; the baseline's own rounds spread ${fmt(spread)}); ` +
        (staticSame ? "upstream {} and location directives identical to the baseline's" : "DIRECTIVES DIFFER from the baseline's (see the prefix's nginx.conf)"),
    );
  }
  if (has("dns")) console.log(`  gen-lb's DNS engine (discovery: dns: zoned upstream, SRV re-resolved every 2 s by nginx's resolver) against the static upstream: ${signed(ir("dns") - base)} per request (${(((ir("dns") - base) / base) * 100).toFixed(1)} %)`);
  if (has("bare", "bare_log")) console.log(`  any Lua balancer on this nginx pays at least: +${fmt(ir("bare") - base)} (entering balancer_by_lua, set_current_peer), +${fmt(ir("bare_log") - base)} with a log phase`);
  if (has("bare", "gen")) console.log(`  gen-lb without a log phase (defaults: round robin, retries 1) over the bare balancer: ${signed(ir("gen") - ir("bare"))} per request (pick, retries, request counter; goal <= +600)`);
  if (has("bare_log", "gen_counters")) console.log(`  gen-lb with counters: true over bare + log phase: ${signed(ir("gen_counters") - ir("bare_log"))} per request (pick, retries, counters, in-flight)`);
  if (has("bare_log", "gen_full")) console.log(`  gen-lb with least_conn, passive checks and counters over bare + log phase: ${signed(ir("gen_full") - ir("bare_log"))} per request`);
} finally {
  vg?.kill("SIGTERM");
  await standin.stop();
  await dns.stop();
  backends.stop();
}
