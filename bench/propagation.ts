/**
 * Propagation: how long after a register/deregister call returns (PUT on the
 * Consul stand-in's agent API) do requests through nginx follow it?
 *
 *   npx tsx bench/propagation.ts        (CHANGES=60 WORKERS=2 by default)
 *   ENGINE=dns CHANGES=30 npx tsx bench/propagation.ts
 *   ENGINE=dns CHANGES=30 JITTER=1 npx tsx bench/propagation.ts
 *
 * ENGINE=blocking (default): gen-lb's Lua runtime on GEN_LB_TEST_NGINX
 * (default Debian's nginx). ENGINE=dns: discovery: dns on OpenResty
 * (GEN_LB_TEST_OPENRESTY, default /opt/openresty/bin/openresty), nginx's own
 * resolver asking the Consul DNS stand-in (the same registrations) every
 * DNS_VALID (default 1s) + 1 s.
 *
 * Real nginx, real backends, the stand-in, all on 127.0.0.1. Keep-alive
 * clients, at least one on every worker, poll nginx non-stop; every answer records the time, the nginx
 * worker (X-Worker: $pid) and the backend. For each change:
 *   first = the first answer routed accordingly (the new instance answers; or,
 *           after a deregistration, the first answer of a run of 20 without it),
 *   last  = every worker routes accordingly (its first such answer, with none
 *           of its later answers contradicting it).
 * Goal: p50 < 50 ms and p99 < 250 ms. For reference, the hand-built setup
 * polls every 5 s (2.5 s on average, 5 s worst), and consul-template reloads
 * nginx on every change.
 */
import http from "node:http";
import { startBackends } from "../test/support/backends.js";
import { ConsulStandin } from "../test/support/consul-standin.js";
import { request } from "../test/support/load.js";
import { buildPrefix, Nginx } from "../test/support/nginx.js";
import { freePort, sleep, waitFor } from "../test/support/ports.js";
import { Stack } from "../test/support/stack.js";
import { ConsulDns, dnsSourceOf } from "../test/support/consul-dns.js";

const ENGINE = process.env.ENGINE ?? "blocking";
if (ENGINE !== "blocking" && ENGINE !== "dns") throw new Error(`ENGINE is blocking or dns (got ${ENGINE})`);
const OPENRESTY = process.env.GEN_LB_TEST_OPENRESTY ?? "/opt/openresty/bin/openresty";
const DNS_VALID = process.env.DNS_VALID ?? "1s";
const JITTER = process.env.JITTER === "1";
/** nginx asks again dns_valid + 1 s after an answer (whole seconds only: validation refuses the rest). */
const CYCLE_MS = (Number.parseInt(DNS_VALID, 10) + 1) * 1000;

const CHANGES = Number(process.env.CHANGES ?? 60);
const WORKERS = Number(process.env.WORKERS ?? 2);
const CLIENTS = Math.max(4, 2 * WORKERS);
// (at most CLIENTS pollers; at least one on every worker)
const now = () => performance.timeOrigin + performance.now();

interface Answer {
  at: number;
  worker: string;
  backend: string;
}

async function put(url: string, body?: unknown): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const req = http.request(url, { method: "PUT" }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`PUT ${url}: ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

async function main(): Promise<void> {
  const standin = new ConsulStandin();
  await standin.start();
  const dns = new ConsulDns(dnsSourceOf(standin));
  if (ENGINE === "dns") await dns.start();
  const [base, moving] = await startBackends(["base", "moving"]);
  standin.registerService({ ID: "base", Name: "web", Address: "127.0.0.1", Port: base!.port });

  const port = await freePort();
  const spec = Stack.spec(
    {
      profile: "discovery",
      workers: WORKERS,
      consul: { wait: "30s", ...(ENGINE === "dns" ? { dns: dns.address, dns_valid: DNS_VALID } : {}) },
      ...(ENGINE === "dns" ? { upstreams: { web: { service: "web", discovery: "dns" } } } : {}),
    },
    [standin.url],
    port,
  ) as {
    servers: Array<{ locations: Array<{ path: string; directives?: unknown[] }> }>;
    nginx: Record<string, unknown>;
    target?: string;
  };
  if (ENGINE === "dns") spec.target = "openresty";
  spec.nginx.error_log = { path: "logs/error.log", level: "warn" };
  // nginx closes a client connection after keepalive_requests (1000); a
  // reconnecting poller may land on another worker and leave one unobserved.
  spec.nginx.http = { keepalive_requests: 100_000_000 };
  spec.servers[0]!.locations[0]!.directives = [{ name: "add_header", args: ["X-Worker", "$pid"] }];
  const { dir } = await buildPrefix(spec as never);
  const { chmodSync } = await import("node:fs");
  chmodSync(dir, 0o755);
  const nginx = ENGINE === "dns" ? await Nginx.start(dir, {}, OPENRESTY) : await Nginx.start(dir);
  const url = `http://127.0.0.1:${port}/`;
  await Stack.allWorkers(nginx, WORKERS);
  const workers = nginx.workerPids().map(String);

  try {
    await waitFor(async () => (await request(url)).status === 200, "nginx to route to base");

    const answers: Answer[] = [];
    let polling = true;
    const agents: http.Agent[] = [];
    const poller = async (agent: http.Agent) => {
      while (polling) {
        try {
          const res = await request(url, { agent, timeoutMs: 2000 });
          answers.push({ at: now(), worker: String(res.headers["x-worker"]), backend: String(res.headers["x-backend"] ?? res.status) });
        } catch {
          answers.push({ at: now(), worker: "?", backend: "error" });
        }
      }
    };
    // One keep-alive connection per worker: open connections one at a time
    // while the earlier ones poll (a busy worker rarely wins the next accept),
    // keeping each that lands on a worker not yet covered.
    const pollers: Array<Promise<void>> = [];
    const covered = new Set<string>();
    for (let tries = 0; covered.size < workers.length && tries < 500; tries++) {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const res = await request(url, { agent, timeoutMs: 2000 });
      const w = String(res.headers["x-worker"]);
      if (covered.has(w) && covered.size + (CLIENTS - agents.length) > workers.length) {
        agent.destroy();
        continue;
      }
      covered.add(w);
      agents.push(agent);
      pollers.push(poller(agent));
    }
    if (covered.size < workers.length) throw new Error(`could not reach every worker with a poller (${[...covered].join(",")} of ${workers.join(",")})`);

    const first: number[] = [];
    const last: number[] = [];
    let errors = 0;
    for (let i = 0; i < CHANGES; i++) {
      const adding = i % 2 === 0;
      const from = answers.length;
      const t0Promise = adding
        ? put(`${standin.url}/v1/agent/service/register`, { ID: "moving", Name: "web", Address: "127.0.0.1", Port: moving!.port })
        : put(`${standin.url}/v1/agent/service/deregister/moving`);
      await t0Promise;
      const t0 = now();
      const ok = (a: Answer) => (adding ? a.backend === "moving" : a.backend === "base");
      // Wait until each worker has answered accordingly, then a little more to see nothing contradicts it.
      await waitFor(() => {
        const after = answers.slice(from).filter((a) => a.at >= t0);
        // After a deregistration the old instance answered in turn with base until then: wait for a clean tail.
        return workers.every((w) => {
          const mine = after.filter((a) => a.worker === w);
          if (adding) return mine.some(ok);
          const tail = mine.slice(-10);
          return tail.length === 10 && tail.every(ok);
        });
      }, `change ${i} to reach every worker`, ENGINE === "dns" ? 15_000 : 5000).catch((e: Error) => {
        const after = answers.slice(from).filter((a) => a.at >= t0);
        const by: Record<string, Record<string, number>> = {};
        for (const a of after) (by[a.worker] ??= {})[a.backend] = (by[a.worker]?.[a.backend] ?? 0) + 1;
        throw new Error(`${e.message}; answers since the change by worker: ${JSON.stringify(by)}\n${nginx.errorLog().split("\n").slice(-30).join("\n")}`);
      });
      await sleep(100);
      const after = answers.slice(from).filter((a) => a.at >= t0);
      errors += after.filter((a) => a.backend === "error" || /^\d+$/.test(a.backend)).length;
      // first: adding -> first answer from moving; removing -> first answer of a run of 20 without it.
      let f: number | undefined;
      if (adding) f = after.find(ok)?.at;
      else {
        for (let j = 0; j < after.length && f === undefined; j++) {
          const run = after.slice(j, j + 20);
          if (run.length === 20 && run.every(ok)) f = run[0]!.at;
        }
      }
      // last: per worker, its first answer from the new instance; after a
      // deregistration, its first answer with none from the old one after it.
      let l = 0;
      for (const w of workers) {
        const mine = after.filter((a) => a.worker === w);
        let at: number | undefined;
        if (adding) at = mine.find(ok)?.at;
        else {
          let k = mine.length;
          while (k > 0 && ok(mine[k - 1]!)) k--;
          at = mine[k]?.at;
        }
        if (at === undefined) throw new Error(`worker ${w} never settled on change ${i}`);
        l = Math.max(l, at);
      }
      if (f === undefined) throw new Error(`change ${i}: no accordant answer`);
      first.push(f - t0);
      last.push(l - t0);
      // The DNS engine re-asks on a fixed cycle: a change made right after the
      // last one showed lands just after a query (nearly a whole cycle to
      // wait). JITTER=1 lands each change at a random point of the cycle.
      await sleep(50 + (JITTER ? Math.random() * CYCLE_MS : 0));
    }
    polling = false;
    await Promise.all(pollers);
    for (const agent of agents) agent.destroy();

    const fmt = (xs: number[]) =>
      `p50 ${pct(xs, 50).toFixed(1)} ms  p90 ${pct(xs, 90).toFixed(1)} ms  p99 ${pct(xs, 99).toFixed(1)} ms  max ${Math.max(...xs).toFixed(1)} ms`;
    console.log(`engine: ${ENGINE}${JITTER ? `, each change after a random pause of 0-${CYCLE_MS} ms` : ""}${ENGINE === "dns" ? ` (discovery: dns, dns_valid ${DNS_VALID}, nginx's resolver at the Consul DNS stand-in)` : " (discovery: blocking, gen-lb's Lua runtime)"}`);
    console.log(`propagation over ${CHANGES} changes (${CHANGES / 2} registrations, ${CHANGES / 2} deregistrations), ${WORKERS} workers, ${answers.length} requests`);
    console.log(`  first request routed accordingly: ${fmt(first)}`);
    console.log(`  every worker routes accordingly:  ${fmt(last)}`);
    console.log(`  failed requests during the run:   ${errors}`);
    if (ENGINE === "dns") console.log(`  bound for the DNS engine: dns_valid + 1 s (nginx re-asks that long after an answer) + the queries' round trip`);
    else console.log(`  goal: p50 < 50 ms, p99 < 250 ms -> ${pct(last, 50) < 50 && pct(last, 99) < 250 ? "met" : "NOT met"} (on the every-worker figure)`);
  } finally {
    await nginx.stop();
    await standin.stop();
    if (ENGINE === "dns") await dns.stop();
    await Promise.all([base, moving].map((b) => b!.stop()));
  }
}

await main();
