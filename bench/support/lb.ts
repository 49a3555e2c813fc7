/**
 * What the balancer benchmarks share: the backends (one plain nginx answering
 * `return 200` on many loopback ports) and the prefix under test - gen-lb's
 * upstreams beside hand-written ones (a static `upstream {}`, a naive
 * JSON-per-request Lua balancer and the bare Lua balancers), peers from the
 * Consul stand-in.
 */
import { copyFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ConsulStandin } from "../../test/support/consul-standin.js";
import { buildPrefix, NGINX_BIN } from "../../test/support/nginx.js";
import { TEST_TARGET } from "../../test/support/target.js";
import { request } from "../../test/support/load.js";
import { freePort, waitFor } from "../../test/support/ports.js";

const luaDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "../lua");
export const CPUS = os.cpus().length;
/** The spec target of the prefix under test (the matrix's, test/support/target.ts). The DNS engine's variants need openresty (nginx 1.27.3+). */
export const BENCH_TARGET: "openresty" | "nginx" = TEST_TARGET;

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
export const fmt = (n: number, d = 0) => n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });

// ---------------------------------------------------------------- backends

export async function startBackendNginx(ports: number[]): Promise<{ stop: () => void }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gen-lb-bench-backends-"));
  mkdirSync(path.join(dir, "conf"));
  mkdirSync(path.join(dir, "logs"));
  const affinity = CPUS >= 2 ? "worker_cpu_affinity 01;\n" : "";
  writeFileSync(
    path.join(dir, "conf/nginx.conf"),
    `worker_processes 1;\n${affinity}error_log logs/error.log warn;\npid logs/nginx.pid;\nworker_rlimit_nofile 16384;\n` +
      `events { worker_connections 8192; }\n` +
      `http {\n  access_log off;\n  keepalive_requests 1000000;\n  keepalive_timeout 300s;\n  server {\n` +
      ports.map((p) => `    listen 127.0.0.1:${p} backlog=4096;\n`).join("") +
      `    location / { return 200 "ok\\n"; }\n  }\n}\n`,
  );
  const r = spawnSync(NGINX_BIN, ["-p", `${dir}/`, "-c", "conf/nginx.conf"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`backend nginx: ${r.stderr}`);
  const pid = await waitFor(() => {
    try {
      return Number(readFileSync(path.join(dir, "logs/nginx.pid"), "utf8").trim());
    } catch {
      return 0;
    }
  }, "backend nginx pid");
  return {
    stop: () => {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        /* gone */
      }
    },
  };
}

export async function freePorts(n: number): Promise<number[]> {
  const set = new Set<number>();
  while (set.size < n) set.add(await freePort());
  return [...set];
}

// ---------------------------------------------------------------- the balancer under test

const PROXY_HEADERS = [
  ["Host", "$host"],
  ["X-Real-IP", "$remote_addr"],
  ["X-Forwarded-For", "$proxy_add_x_forwarded_for"],
  ["X-Forwarded-Proto", "$scheme"],
  ["Connection", ""],
];

/** A location proxying to a hand-written upstream, with the headers gen-lb's own locations set. */
function rawLocation(p: string, upstream: string) {
  return {
    path: p,
    directives: [
      { name: "proxy_pass", args: [`http://${upstream}`] },
      { name: "proxy_http_version", args: ["1.1"] },
      ...PROXY_HEADERS.map(([h, v]) => ({ name: "proxy_set_header", args: [h!, v!] })),
      { name: "proxy_next_upstream", args: ["error", "timeout", "http_502", "http_503", "http_504"] },
      { name: "proxy_next_upstream_tries", args: ["2"] },
    ],
  };
}

function staticUpstream(name: string, ports: number[], keepalive: number) {
  return {
    name: "upstream",
    args: [name],
    block: [...ports.map((p) => ({ name: "server", args: [`127.0.0.1:${p}`] })), { name: "keepalive", args: [String(keepalive)] }],
  };
}

/** A hand-written Lua-balanced upstream running bench/lua/<file>.lua (inlined as a block, see inlineLua). */
function luaUpstream(name: string, file: string, keepalive: number) {
  return {
    name: "upstream",
    args: [name],
    block: [
      { name: "server", args: ["0.0.0.1:1"] },
      { name: "balancer_by_lua_file", args: [`lua/gen_lb_bench/${file}.lua`] },
      { name: "keepalive", args: [String(keepalive)] },
    ],
  };
}

export function copyBenchLua(prefix: string): void {
  const to = path.join(prefix, "lua/gen_lb_bench");
  mkdirSync(to, { recursive: true });
  for (const f of ["naive.lua", "naive_small.lua", "naive_big.lua", "bare.lua", "bare_small.lua", "nop.lua", "mem.lua"]) copyFileSync(path.join(luaDir, f), path.join(to, f));
}

/**
 * The spec's escape hatch quotes every argument, so it can only name Lua
 * files; the *_by_lua_file form re-resolves its path on every request, which
 * gen-lb's own *_by_lua_block does not. For a fair race the hand-written
 * variants' one-line files are inlined here as blocks.
 */
function inlineLua(prefix: string): void {
  const conf = path.join(prefix, "conf/nginx.conf");
  const text = readFileSync(conf, "utf8").replace(/(\w+_by_lua)_file lua\/gen_lb_bench\/(\w+\.lua);/g, (_all, phase: string, file: string) => {
    const code = readFileSync(path.join(luaDir, file), "utf8").trim();
    if (code.includes("\n") || /[{}]/.test(code)) throw new Error(`bench/lua/${file}: an inlined file must be one line without braces`);
    return `${phase}_block { ${code} }`;
  });
  writeFileSync(conf, text);
}

export const luaFileLocation = (p: string, file: string) => ({
  path: p,
  match: "exact",
  directives: [{ name: "content_by_lua_file", args: [`lua/gen_lb_bench/${file}`] }],
});

const luaCodeLocation = (p: string, code: string) => ({ path: p, match: "exact", directives: [{ name: "content_by_lua", args: [code] }] });

/** The spec's nginx settings every benchmark prefix starts from: one worker with room for many connections. */
export const ONE_WORKER = {
  worker_processes: 1,
  worker_connections: 8192,
  worker_rlimit_nofile: 16384,
  error_log: { path: "logs/error.log", level: "warn" },
};

/**
 * The prefix under test, built but not started; `cpu1` pins its one worker
 * to CPU 1; `dns` (the Consul DNS stand-in's "host:port") adds gen-lb's DNS
 * engine (discovery: dns) for the same services as dns_small / dns_big.
 */
export async function buildThroughputPrefix(standin: ConsulStandin, small: number[], big: number[], opts: { cpu1: boolean; dns?: string }) {
  // gen-lb's locations and the hand-written ones live in separate servers:
  // gen-lb adds its log phase to every location of a server that proxies to
  // an upstream needing one (least_conn, passive checks, counters), which
  // neither the baseline nor gen-lb's lean upstreams must pay. Those that
  // need it get a third server (logPort).
  const port = await freePort();
  const rawPort = await freePort();
  const logPort = await freePort();
  const bigKeepalive = Math.max(32, big.length + 24);
  const dnsUpstreams =
    opts.dns === undefined
      ? {}
      : {
          dns_small: { service: "small", discovery: "dns", retries: 1, keepalive: 32 },
          ...(big.length > 1 ? { dns_big: { service: "big", discovery: "dns", retries: 1, keepalive: bigKeepalive } } : {}),
        };
  const dnsLocations =
    opts.dns === undefined
      ? []
      : [
          // nginx's own upstream, no log phase: it may share the baseline's server.
          { path: "/dns_small/", upstream: "dns_small" },
          ...(big.length > 1 ? [{ path: "/dns_big/", upstream: "dns_big" }] : []),
        ];
  const spec = {
    target: BENCH_TARGET,
    consul: { addresses: [standin.url], wait: "30s", ...(opts.dns === undefined ? {} : { dns: opts.dns }) },
    nginx: {
      ...ONE_WORKER,
      directives: opts.cpu1 ? [{ name: "worker_cpu_affinity", args: ["10"] }] : [],
      http: {
        access_log: "off",
        keepalive_requests: 1000000,
        keepalive_timeout: "300s",
        directives: [
          staticUpstream("static_small", small, 32),
          staticUpstream("static_big", big, bigKeepalive),
          luaUpstream("naive_small", "naive_small", 32),
          luaUpstream("naive_big", "naive_big", bigKeepalive),
          luaUpstream("bare_small", "bare_small", 32),
        ],
      },
    },
    upstreams: {
      small: { service: "small", retries: 1, keepalive: 32 },
      // The same peers with the log phase: counters on; and every per-request feature on.
      counters_small: { service: "small", retries: 1, keepalive: 32, counters: true },
      full_small: { service: "small", retries: 1, keepalive: 32, balance: "least_conn", counters: true, healthcheck: { passive: { max_fails: 1000 } } },
      big: { service: "big", retries: 1, keepalive: bigKeepalive },
      // gen-lb's static upstream (servers, no service): nginx's own upstream {}, to match static_small.
      gen_static_small: { servers: small.map((p) => `127.0.0.1:${p}`), retries: 1, keepalive: 32 },
      ...dnsUpstreams,
    },
    servers: [
      {
        listen: `127.0.0.1:${logPort}`,
        locations: [
          { path: "/gen_counters_small/", upstream: "counters_small" },
          { path: "/gen_full_small/", upstream: "full_small" },
        ],
      },
      {
        listen: `127.0.0.1:${port}`,
        locations: [
          { path: "/gen_small/", upstream: "small" },
          { path: "/gen_big/", upstream: "big" },
          luaCodeLocation("/_seed", 'require("gen_lb_bench.naive").seed()'),
        ],
      },
      {
        listen: `127.0.0.1:${rawPort}`,
        locations: [
          rawLocation("/static_small/", "static_small"),
          // A static gen-lb upstream adds no log phase, so it may share the baseline's server.
          { path: "/gen_static_small/", upstream: "gen_static_small" },
          ...dnsLocations,
          rawLocation("/static_big/", "static_big"),
          rawLocation("/naive_small/", "naive_small"),
          rawLocation("/naive_big/", "naive_big"),
          rawLocation("/bare_small/", "bare_small"),
          { ...rawLocation("/bare_log_small/", "bare_small"), directives: [...rawLocation("", "bare_small").directives, { name: "log_by_lua_file", args: ["lua/gen_lb_bench/nop.lua"] }] },
        ],
      },
    ],
    status: { enabled: false },
  };
  const { dir } = await buildPrefix(spec as never);
  chmodSync(dir, 0o755);
  copyBenchLua(dir);
  inlineLua(dir);
  return { dir, port, rawPort, logPort };
}

/** Waits until gen-lb lists `n` peers for `name` and copies them to the naive balancer's key. */
export async function seedNaive(port: number, name: string, n: number): Promise<void> {
  await waitFor(async () => Number((await request(`http://127.0.0.1:${port}/_seed?name=${name}`)).body.trim()) === n, `${name}: ${n} peers`, 30_000, 200);
}

export function nginxVersion(): string {
  return spawnSync(NGINX_BIN, ["-v"], { encoding: "utf8" }).stderr.trim().replace("nginx version: ", "");
}

/** What a benchmark ran: "/opt/openresty/bin/openresty (openresty/1.31.1.1), target openresty". */
export function binaryUnderTest(): string {
  return `${NGINX_BIN} (${nginxVersion()}), target ${TEST_TARGET}`;
}

