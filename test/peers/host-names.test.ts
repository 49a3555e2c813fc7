/**
 * A Consul Address that is a host name: resolved through nginx.http.resolver
 * with lua-resty-dns where the target ships it (OpenResty), so the instance
 * gets traffic at the resolved address; on Debian's nginx (no lua-resty-dns)
 * dropped with one warning saying why. Never a peer set_current_peer refuses.
 * The name server is the Consul DNS stand-in (NODE.node.DC.consul).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../support/backends.js";
import { ConsulDns, dnsSourceOf } from "../support/consul-dns.js";
import { runLoad } from "../support/load.js";
import { sleep } from "../support/ports.js";
import { TEST_TARGET } from "../support/target.js";
import { Stack, startBackends } from "../support/stack.js";

describe("a Consul Address that is a host name", () => {
  let lb: Stack;
  let dns: ConsulDns;
  let ip: Backend;
  let named: Backend;

  beforeAll(async () => {
    [ip, named] = (await startBackends(["ip", "named"])) as [Backend, Backend];
    lb = await Stack.start({ upstreams: { web: { retries: 0 } }, http: { resolver: ["127.0.0.1:1"] } });
    dns = new ConsulDns(dnsSourceOf(lb.standin as never));
    await dns.start();
    // The resolver's port is only known now: rebuild with it (same stand-in, same ports).
    await lb.reconfigure({ upstreams: { web: { retries: 0 } }, http: { resolver: [dns.address] } });
  });

  afterAll(async () => {
    await lb?.stop();
    await dns?.stop();
    await ip?.stop();
    await named?.stop();
  });

  it(TEST_TARGET === "openresty" ? "is resolved through nginx.http.resolver and gets traffic" : "is dropped with one warning: Debian's nginx has no lua-resty-dns", async () => {
    lb.register("web", ip);
    lb.standin.registerService({ ID: "web-named", Name: "web", Address: "node1.node.dc1.consul", Port: named.port });
    if (TEST_TARGET === "openresty") {
      await lb.waitForPeers("web", [ip.address, named.address]);
      const r = await runLoad({ url: lb.url("web"), requests: 200, concurrency: 2 });
      expect(r.failures).toEqual([]);
      expect(r.byBackend.named ?? 0, JSON.stringify(r.byBackend)).toBeGreaterThan(80);
      expect(dns.countQueries()).toBeGreaterThan(0);
    } else {
      await lb.waitForPeers("web", [ip.address]);
      await sleep(500);
      const warned = lb.errorLog().split("\n").filter((l) => l.includes("web-named"));
      expect(warned, lb.logTail()).toHaveLength(1);
      expect(warned[0]).toMatch(/"node1\.node\.dc1\.consul" is not an IP address \(a host name, not resolved: this nginx has no lua-resty-dns/);
      const r = await runLoad({ url: lb.url("web"), requests: 100, concurrency: 2 });
      expect(r.failures).toEqual([]);
      expect(named.requests).toBe(0);
    }
  });
});
