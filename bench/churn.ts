/**
 * Register-before-listen churn: client latency while instances keep being
 * registered in Consul before they listen (then listen, then leave), against
 * the same run without churn. With probe_new (the default) a joining
 * instance gets no request before its first active check passes, so the
 * churn should cost no failed request and no latency spike.
 *
 *   npx tsx bench/churn.ts                   (SECONDS=8 CLIENTS=4 by default)
 *   npx tsx bench/churn.ts --bin /opt/openresty/bin/openresty --target openresty
 *   PROBE_NEW=false npx tsx bench/churn.ts   (the same churn without probe before traffic)
 *
 * Real nginx, real backends and the Consul stand-in on 127.0.0.1; retries: 0,
 * so that a request sent to an instance that does not listen yet fails
 * instead of being hidden by a retry. Prints p50 / p99 / max latency and
 * failures per run.
 */
import "./support/binary.js";
import http from "node:http";
import { Backend } from "../test/support/backends.js";
import { freePort, sleep } from "../test/support/ports.js";
import { Stack, startBackends } from "../test/support/stack.js";

const SECONDS = Number(process.env.SECONDS ?? 8);
const CLIENTS = Number(process.env.CLIENTS ?? 4);
// A new instance every CHURN_EVERY ms: it listens LISTEN_AFTER ms after its
// registration and leaves (deregistered, stopped) LEAVE_AFTER ms after it.
const CHURN_EVERY = 300;
const LISTEN_AFTER = 700;
const LEAVE_AFTER = 2000;
const PROBE_NEW = process.env.PROBE_NEW !== "false";

interface Run {
  latencies: number[];
  failures: number;
}

async function load(url: string, ms: number): Promise<Run> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const run: Run = { latencies: [], failures: 0 };
  const deadline = Date.now() + ms;
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const req = http.get(url, { agent, timeout: 5000 }, (res) => {
        res.resume();
        res.on("end", () => {
          run.latencies.push(performance.now() - t0);
          if (res.statusCode !== 200) run.failures++;
          resolve();
        });
        res.on("error", () => (run.failures++, resolve()));
      });
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", () => (run.failures++, resolve()));
    });
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (Date.now() < deadline) await one();
    }),
  );
  agent.destroy();
  return run;
}

async function churn(lb: Stack, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  const pending: Array<Promise<void>> = [];
  let n = 0;
  while (Date.now() < deadline) {
    const port = await freePort();
    const id = lb.register("web", { port });
    n++;
    pending.push(
      (async () => {
        await sleep(LISTEN_AFTER);
        const b = await new Backend({ name: `churn-${port}`, port }).start();
        await sleep(LEAVE_AFTER);
        lb.deregister(id);
        await sleep(200);
        await b.stop();
      })(),
    );
    await sleep(CHURN_EVERY);
  }
  await Promise.all(pending);
  return n;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
};

function line(name: string, r: Run, extra = ""): string {
  const f = (x: number) => x.toFixed(2).padStart(7);
  return `  ${name.padEnd(10)} ${String(r.latencies.length).padStart(8)} ${f(pct(r.latencies, 50))} ${f(pct(r.latencies, 99))} ${f(Math.max(...r.latencies))} ${String(r.failures).padStart(8)}${extra}`;
}

async function main(): Promise<void> {
  const steady = await startBackends(["a", "b"]);
  const lb = await Stack.start({
    upstreams: {
      web: { retries: 0, healthcheck: { active: { path: "/health", interval: "500ms", timeout: "300ms", fall: 2, rise: 2, probe_new: PROBE_NEW } } },
    },
    errorLevel: "warn",
  });
  try {
    for (const b of steady) lb.register("web", b);
    await lb.waitForPeers("web", steady.map((b) => b.address));
    await load(lb.url("web"), 1000); // warm-up
    const quiet = await load(lb.url("web"), SECONDS * 1000);
    const [busy, joined] = await Promise.all([load(lb.url("web"), SECONDS * 1000), churn(lb, SECONDS * 1000)]);
    console.log(`register-before-listen churn: ${CLIENTS} keep-alive clients, ${SECONDS} s per run, retries 0, active checks every 0.5 s, probe_new ${PROBE_NEW}`);
    console.log(`  run          requests  p50 ms  p99 ms  max ms  failed`);
    console.log(line("no churn", quiet));
    console.log(line("churn", busy, `   (${joined} instances registered ${LISTEN_AFTER} ms before they listened)`));
  } finally {
    await lb.stop();
    await Promise.all(steady.map((b) => b.stop()));
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
