/**
 * Fallback peers given as host names, on OpenResty (which ships
 * lua-resty-dns; Debian's nginx has none, and validation refuses them there:
 * test/spec/static-upstream.unit.test.ts). This file runs OpenResty whatever
 * the test matrix says. The name server is the DNS stand-in, answering a name
 * of the test's own with 127.0.0.1 and ::1, and Consul never answers (every
 * request hangs), so the upstream serves from its fallback peers: resolved
 * in a timer before they are published, one peer per address, never a name.
 */
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { ConsulDns, dnsSourceOf } from "../support/consul-dns.js";
import { ConsulStandin } from "../support/consul-standin.js";
import { runLoad } from "../support/load.js";
import { sleep } from "../support/ports.js";
import { Stack } from "../support/stack.js";

const OPENRESTY = process.env.GEN_LB_TEST_OPENRESTY ?? "/opt/openresty/bin/openresty";
const NAME = "fallback.gen-lb.test";

describe("fallback peers that are host names (OpenResty, nginx.http.resolver)", () => {
  const standin = new ConsulStandin();
  const dns = new ConsulDns(dnsSourceOf(standin));
  let v4: Backend;
  let v6: Backend;
  let lb: Stack | undefined;

  beforeAll(async () => {
    if (!existsSync(OPENRESTY)) throw new Error(`${OPENRESTY} is missing: build OpenResty into /opt/openresty (or set GEN_LB_TEST_OPENRESTY)`);
    v4 = new Backend({ name: "v4" });
    await v4.start();
    // The same port on ::1: one name, one port, two addresses.
    v6 = new Backend({ name: "v6", host: "::1", port: v4.port });
    await v6.start();
    await standin.start();
    standin.fault({ kind: "hang" });
    await dns.start();
    dns.setHost(NAME, ["127.0.0.1", "::1"], 1);
  });

  afterAll(async () => {
    await lb?.stop();
    standin.clearFaults();
    await dns.stop();
    await standin.stop();
    await v4?.stop();
    await v6?.stop();
  });

  const start = () =>
    Stack.start({
      target: "openresty",
      bin: OPENRESTY,
      standin,
      // runtime.hold_for_peers follows consul.timeout: a held request waits up to 5 s.
      consul: { timeout: "5s" },
      // The name and the IP it resolves to: one peer, as Consul's entries would be.
      upstreams: { web: { fallback: [`${NAME}:${v4.port}`, `127.0.0.1:${v4.port}`], retries: 0 } },
      http: { resolver: [dns.address] },
    });

  it("are resolved (IPv4 and IPv6, one peer per address) and serve with 0 failures while Consul never answers", async () => {
    lb = await start();
    await lb.waitForPeers("web", [`127.0.0.1:${v4.port}`, `[::1]:${v4.port}`]);
    const load = await runLoad({ url: lb.url("web"), requests: 200, concurrency: 4 });
    expect(load.failures, lb.logTail()).toEqual([]);
    expect(load.byBackend.v4 ?? 0, JSON.stringify(load.byBackend)).toBeGreaterThan(50);
    expect(load.byBackend.v6 ?? 0, JSON.stringify(load.byBackend)).toBeGreaterThan(50);
    const web = await lb.upstream("web");
    expect(web.source).toBe("fallback");
    expect(web.peers.map((p) => p.address).sort()).toEqual([`127.0.0.1:${v4.port}`, `[::1]:${v4.port}`]);
    expect(dns.countQueries((q) => q.name === NAME && q.type === "A")).toBeGreaterThan(0);
    expect(dns.countQueries((q) => q.name === NAME && q.type === "AAAA")).toBeGreaterThan(0);
    expect(lb.luaErrors()).toEqual([]);
    expect(lb.errorLog()).not.toMatch(/no host allowed|invalid port/);
  }, 30_000);

  it("follow the name when its answer's TTL runs out, and honour the TTL (no query loop)", async () => {
    const asked = dns.countQueries((q) => q.name === NAME && q.type === "A");
    dns.setHost(NAME, ["127.0.0.1"], 2);
    await lb!.waitForPeers("web", [`127.0.0.1:${v4.port}`], 10_000);
    const load = await runLoad({ url: lb!.url("web"), requests: 100, concurrency: 2 });
    expect(load.failures).toEqual([]);
    expect(load.byBackend).toEqual({ v4: 100 });
    // TTL 2 s: over 6 s at most one query every 2 s (plus the one in flight), not one a second.
    const before = dns.countQueries((q) => q.name === NAME && q.type === "A");
    await sleep(6000);
    const during = dns.countQueries((q) => q.name === NAME && q.type === "A") - before;
    expect(during).toBeGreaterThanOrEqual(1);
    expect(during).toBeLessThanOrEqual(4);
    expect(before).toBeGreaterThan(asked);
  }, 30_000);

  it("are retried while DNS fails, keeping the last addresses meanwhile", async () => {
    dns.mode = "servfail";
    dns.setHost(NAME, ["127.0.0.1", "::1"], 1);
    await sleep(2500);
    // Still the last addresses: a failing DNS empties nothing.
    const during = await runLoad({ url: lb!.url("web"), requests: 40, concurrency: 2 });
    expect(during.failures).toEqual([]);
    expect(during.byBackend).toEqual({ v4: 40 });
    expect(lb!.errorLog()).toMatch(/fallback peer fallback\.gen-lb\.test:\d+ did not resolve: .*; keeping its last addresses; retrying/);
    dns.mode = "answer";
    await lb!.waitForPeers("web", [`127.0.0.1:${v4.port}`, `[::1]:${v4.port}`], 15_000);
  }, 30_000);

  it("on a fresh start with DNS down, hold requests instead of failing them, and serve once DNS answers", async () => {
    await lb!.stop();
    lb = undefined;
    dns.mode = "silent";
    lb = await start();
    const held = runLoad({ url: lb.url("web"), requests: 20, concurrency: 2 });
    await sleep(300);
    dns.mode = "answer";
    await lb.waitForPeers("web", [`127.0.0.1:${v4.port}`, `[::1]:${v4.port}`], 15_000);
    // Held (runtime.hold_for_peers), not failed: the upstream had no peers for a while.
    expect((await held).failures, lb.logTail()).toEqual([]);
    const after = await runLoad({ url: lb.url("web"), requests: 100, concurrency: 2 });
    expect(after.failures).toEqual([]);
  }, 40_000);

  it("give way to Consul's list when Consul answers, and do not replace it afterwards", async () => {
    const consul = new Backend({ name: "consul" });
    await consul.start();
    try {
      lb!.register("web", consul);
      standin.clearFaults();
      await lb!.waitForPeers("web", [consul.address], 15_000);
      await sleep(2500); // more than the name's TTL: the fallback loop has looked again
      await lb!.waitForPeers("web", [consul.address], 1000);
      expect((await lb!.upstream("web")).source).toBe("consul");
    } finally {
      await consul.stop();
      standin.fault({ kind: "hang" });
    }
  }, 30_000);
});
