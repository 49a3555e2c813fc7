/**
 * Consul load when nothing changes: requests per minute per upstream that
 * one gen-lb node sends to Consul, whatever its worker count.
 *
 *   npx tsx bench/consul-load.ts        (WORKERS=4 UPSTREAMS=3 WAIT=10s DURATION=60 (seconds))
 *
 * Real nginx with WORKERS workers and UPSTREAMS upstreams against the Consul
 * stand-in on 127.0.0.1, idle for DURATION seconds after settling. Goal: at most 2
 * requests per wait period per upstream per node. For reference, the
 * hand-built setup polls every 5 s from every worker: WORKERS x 12 requests
 * per minute per service.
 */
import { chmodSync } from "node:fs";
import { ConsulStandin } from "../test/support/consul-standin.js";
import { buildPrefix, Nginx } from "../test/support/nginx.js";
import { freePort, sleep } from "../test/support/ports.js";
import { Stack } from "../test/support/stack.js";
import { parseDuration } from "../src/spec/units.js";

const WORKERS = Number(process.env.WORKERS ?? 4);
const UPSTREAMS = Number(process.env.UPSTREAMS ?? 3);
const WAIT = process.env.WAIT ?? "10s";
const SECONDS = Number(process.env.DURATION ?? 60);

async function main(): Promise<void> {
  const standin = new ConsulStandin();
  await standin.start();
  const upstreams: Record<string, Record<string, unknown>> = {};
  for (let i = 0; i < UPSTREAMS; i++) {
    upstreams[`svc${i}`] = { service: `svc${i}` };
    standin.registerService({ ID: `svc${i}-1`, Name: `svc${i}`, Address: "127.0.0.1", Port: 20000 + i });
  }
  const port = await freePort();
  const spec = Stack.spec({ profile: "discovery", workers: WORKERS, upstreams, consul: { wait: WAIT } }, [standin.url], port) as { nginx: Record<string, unknown> };
  spec.nginx.error_log = { path: "logs/error.log", level: "warn" };
  const { dir } = await buildPrefix(spec as never);
  chmodSync(dir, 0o755);
  const nginx = await Nginx.start(dir);
  await Stack.allWorkers(nginx, WORKERS);
  try {
    // Settle: the first read (index 0) and the first blocking query of each upstream.
    for (let i = 0; i < UPSTREAMS; i++) await standin.waitForBlocked(`svc${i}`, 1, 10_000);
    await sleep(1000);
    const since = Date.now();
    let maxInFlight = 0;
    for (let t = 0; t < SECONDS * 4; t++) {
      for (let i = 0; i < UPSTREAMS; i++) maxInFlight = Math.max(maxInFlight, standin.blockedQueries(`svc${i}`));
      await sleep(250);
    }
    const waitS = parseDuration(WAIT);
    const perUpstream: number[] = [];
    for (let i = 0; i < UPSTREAMS; i++) perUpstream.push(standin.countRequests({ path: `/v1/health/service/svc${i}`, since }));
    const perMinute = perUpstream.map((n) => (n * 60) / SECONDS);
    const perWait = perUpstream.map((n) => (n * waitS) / SECONDS);
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const workers = nginx.workerPids().length;
    console.log(`Consul load, idle for ${SECONDS} s: ${workers} workers, ${UPSTREAMS} upstreams, wait ${WAIT}`);
    console.log(`  requests per upstream:            ${perUpstream.join(", ")}`);
    console.log(`  per minute per upstream:          ${avg(perMinute).toFixed(2)} (max ${Math.max(...perMinute).toFixed(2)})`);
    console.log(`  per wait period per upstream:     ${avg(perWait).toFixed(2)} (max ${Math.max(...perWait).toFixed(2)})`);
    console.log(`  most queries in flight at once:   ${maxInFlight} per upstream`);
    console.log(`  hand-built reference (5 s poll):  ${workers * 12} per minute per service`);
    console.log(`  goal: <= 2 per wait period per node -> ${Math.max(...perWait) <= 2 ? "met" : "NOT met"}`);
  } finally {
    await nginx.stop();
    await standin.stop();
  }
}

await main();
