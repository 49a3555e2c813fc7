/**
 * What building a 1,000-peer picker costs, per algorithm, inside the real
 * nginx (the same Lua driver the algorithm tests use). A figure, not a test:
 * it was once an assertion-free "test" in test/balancer/algorithms.test.ts.
 *
 *   npx tsc -p tsconfig.json && npx tsx bench/picker-build.ts [--bin PATH] [--target nginx|openresty]
 */
import "./support/binary.js";
import { fileURLToPath } from "node:url";
import { Stack, luaLocation } from "../test/support/stack.js";
import { request } from "../test/support/load.js";
import { binaryUnderTest } from "./support/lb.js";

const lb = await Stack.start({
  upstreams: { web: {} },
  workers: 1,
  luaFiles: { "gen_lb_test/algorithms.lua": fileURLToPath(new URL("../test/balancer/lua/algorithms.lua", import.meta.url)) },
  locations: [luaLocation("/_alg", 'require("gen_lb_test.algorithms").run()')],
});
try {
  const res = await request(`http://127.0.0.1:${lb.port}/_alg?t=build_cost`, { timeoutMs: 50_000 });
  if (res.status !== 200) throw new Error(`build_cost: HTTP ${res.status}: ${res.body}\n${lb.logTail()}`);
  const r = JSON.parse(res.body) as Record<string, number>;
  console.log(`picker build for 1,000 peers, ${binaryUnderTest()}`);
  // The Lua side times with ngx.now() (millisecond steps), hence whole ms.
  for (const [alg, ms] of Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1))) console.log(`  ${alg.padEnd(12)} ${ms} ms`);
} finally {
  await lb.stop();
}
