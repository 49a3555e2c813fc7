/**
 * The Consul DNS stand-in, read by Node's resolver (c-ares): code we did not
 * write decodes every answer, so a malformed record fails here.
 */
import { Resolver } from "node:dns/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConsulDns, addrLabel, dnsSourceOf } from "../support/consul-dns.js";
import { ConsulStandin } from "../support/consul-standin.js";

describe("Consul DNS stand-in", () => {
  const standin = new ConsulStandin({ datacenter: "dc1", nodeName: "lb1", nodeAddress: "127.0.0.1" });
  const dns = new ConsulDns(dnsSourceOf(standin));
  let resolver: Resolver;

  beforeAll(async () => {
    await standin.start();
    await dns.start();
    resolver = new Resolver({ timeout: 300, tries: 1 });
    resolver.setServers([dns.address]);
    standin.registerService({ ID: "web-1", Name: "web", Address: "127.0.0.2", Port: 8001, Tags: ["v1"], Weights: { Passing: 5, Warning: 2 } });
    standin.registerService({ ID: "web-2", Name: "web", Address: "::1", Port: 8002, Tags: ["v2"] });
    standin.registerService({ ID: "web-3", Name: "web", Port: 8003 }); // no Service.Address: the node's
    standin.registerService({ ID: "api-1", Name: "api", Address: "127.0.0.9", Port: 9000 });
  });
  afterAll(async () => {
    await dns.stop();
    await standin.stop();
  });

  it("answers SRV for the RFC 2782 name with ports, weights and resolvable targets", async () => {
    const srv = await resolver.resolveSrv("_web._tcp.service.consul");
    expect(srv.map((r) => r.port).sort()).toEqual([8001, 8002, 8003]);
    const byPort = new Map(srv.map((r) => [r.port, r]));
    expect(byPort.get(8001)).toMatchObject({ priority: 1, weight: 5, name: `${addrLabel("127.0.0.2")}.addr.dc1.consul` });
    expect(byPort.get(8002)?.name).toBe(`${"0".repeat(31)}1.addr.dc1.consul`);
    expect(byPort.get(8003)?.name).toBe("lb1.node.dc1.consul");
    // what nginx asks next for each target
    expect(await resolver.resolve4(byPort.get(8001)!.name)).toEqual(["127.0.0.2"]);
    expect(await resolver.resolve6(byPort.get(8002)!.name)).toEqual(["::1"]);
    expect(await resolver.resolve4(byPort.get(8003)!.name)).toEqual(["127.0.0.1"]);
  });

  it("filters on a tag in both name forms, and on the datacenter", async () => {
    expect((await resolver.resolveSrv("_web._v1.service.consul")).map((r) => r.port)).toEqual([8001]);
    expect((await resolver.resolveSrv("v2.web.service.consul")).map((r) => r.port)).toEqual([8002]);
    expect((await resolver.resolveSrv("_web._tcp.service.dc1.consul")).length).toBe(3);
    await expect(resolver.resolveSrv("_web._tcp.service.dc9.consul")).rejects.toMatchObject({ code: "ENOTFOUND" });
  });

  it("serves A and AAAA for the standard name, and NODATA for a type it lacks", async () => {
    expect((await resolver.resolve4("web.service.consul")).sort()).toEqual(["127.0.0.1", "127.0.0.2"]);
    expect(await resolver.resolve6("web.service.consul")).toEqual(["::1"]);
    await expect(resolver.resolve6("api.service.consul")).rejects.toMatchObject({ code: "ENODATA" });
  });

  it("leaves critical instances out and gives warning ones their Warning weight", async () => {
    standin.setHealth("web-1", "warning");
    standin.setHealth("web-3", "critical");
    try {
      const srv = await resolver.resolveSrv("_web._tcp.service.consul");
      expect(srv.map((r) => [r.port, r.weight]).sort()).toEqual([
        [8001, 2],
        [8002, 1],
      ]);
    } finally {
      standin.setHealth("web-1", "passing");
      standin.setHealth("web-3", "passing");
    }
  });

  it("answers NXDOMAIN when every instance is critical, as Consul does", async () => {
    standin.setHealth("api-1", "critical");
    try {
      await expect(resolver.resolveSrv("_api._tcp.service.consul")).rejects.toMatchObject({ code: "ENOTFOUND" });
    } finally {
      standin.setHealth("api-1", "passing");
    }
    expect((await resolver.resolveSrv("_api._tcp.service.consul")).length).toBe(1);
  });

  it("follows registrations at once (TTL 0) and answers NXDOMAIN for unknown names", async () => {
    await expect(resolver.resolveSrv("_late._tcp.service.consul")).rejects.toMatchObject({ code: "ENOTFOUND" });
    standin.registerService({ ID: "late-1", Name: "late", Address: "127.0.0.3", Port: 7000 });
    const srv = await resolver.resolveSrv("_late._tcp.service.consul");
    expect(srv.map((r) => r.port)).toEqual([7000]);
    expect(standin.deregisterService("late-1")).toBe(true);
    await expect(resolver.resolveSrv("_late._tcp.service.consul")).rejects.toMatchObject({ code: "ENOTFOUND" });
    await expect(resolver.resolve4("nothing.example")).rejects.toMatchObject({ code: "ENOTFOUND" });
  });

  it("answers a test's own host names (setHost) with their TTL, and NXDOMAIN once deleted", async () => {
    dns.setHost("fallback.gen-lb.test", ["127.0.0.1", "::1"], 7);
    try {
      expect(await resolver.resolve4("fallback.gen-lb.test", { ttl: true })).toEqual([{ address: "127.0.0.1", ttl: 7 }]);
      expect(await resolver.resolve6("FALLBACK.gen-lb.test", { ttl: true })).toEqual([{ address: "::1", ttl: 7 }]);
    } finally {
      dns.deleteHost("fallback.gen-lb.test");
    }
    await expect(resolver.resolve4("fallback.gen-lb.test")).rejects.toMatchObject({ code: "ENOTFOUND" });
  });

  it("can stop answering, or answer SERVFAIL", async () => {
    dns.mode = "silent";
    try {
      await expect(resolver.resolveSrv("_web._tcp.service.consul")).rejects.toMatchObject({ code: "ETIMEOUT" });
      dns.mode = "servfail";
      await expect(resolver.resolveSrv("_web._tcp.service.consul")).rejects.toMatchObject({ code: "ESERVFAIL" });
    } finally {
      dns.mode = "answer";
    }
    expect(dns.countQueries((q) => q.type === "SRV")).toBeGreaterThan(0);
  });

  it("cuts a UDP answer to 512 bytes without the TC bit, as Consul does", async () => {
    for (let i = 0; i < 60; i++) standin.registerService({ ID: `many-${i}`, Name: "many", Address: `127.0.1.${i + 1}`, Port: 10000 + i });
    const srv = await resolver.resolveSrv("_many._tcp.service.consul");
    expect(srv.length).toBeGreaterThan(0);
    expect(srv.length).toBeLessThan(60);
  });
});
