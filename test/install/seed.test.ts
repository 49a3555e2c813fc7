/**
 * install's dump seeding (src/install/seed.ts): in process with a swapped
 * adapter for the merge rules, and through the built CLI with Consul down
 * (it says so and goes on with the fallback peers or the existing dump).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { ConsulAdapter, ConsulAnswer } from "../../src/consul/client.js";
import { parseDump, renderDump } from "../../src/consul/dump.js";
import { seedPeerDump } from "../../src/install/seed.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { NGINX_BIN, tempDir } from "../support/nginx.js";
import { makePrefix, ports, runCliAsync, specObject, writeSpec } from "./helpers.js";

function specOf(obj: unknown) {
  const r = validateSpecText(JSON.stringify(obj), "spec.json");
  if (!r.spec) throw new Error(JSON.stringify(r.errors));
  return r.spec;
}

/** An adapter that answers from a table: service -> answer. */
function fakeConsul(answers: Record<string, ConsulAnswer<unknown>>): ConsulAdapter & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    addresses: ["http://fake:8500"],
    tokenSource: undefined,
    async healthService(q) {
      asked.push(q.service);
      return answers[q.service] ?? { ok: false, kind: "unreachable", message: "fake: no answer", tried: [] };
    },
    async catalogServices() {
      return { ok: true, value: {}, address: "http://fake:8500", index: 1, filtered: false, tried: [] };
    },
    close() {},
  };
}

const ok = (value: unknown, index = 7): ConsulAnswer<unknown> => ({ ok: true, value, address: "http://fake:8500", index, filtered: false, tried: [] });
const entry = (id: string, address: string, port: number) => ({ Node: { Address: "10.9.9.9" }, Service: { ID: id, Address: address, Port: port } });

describe("seedPeerDump", () => {
  it("writes what Consul answered, keeps the existing dump's lists where it did not, and never replaces peers with an empty list", async () => {
    const prefix = tempDir();
    const spec = specOf({
      upstreams: { a: { service: "sa" }, b: { service: "sb" }, c: { service: "sc", fallback: ["10.0.0.3:80"] }, d: { service: "sd" }, e: { service: "se" } },
    });
    mkdirSync(path.join(prefix, "state"));
    const old = renderDump({
      generator: "gen-lb 0.1.0",
      buildId: "old",
      writtenAt: 1,
      upstreams: {
        b: { key: "sb||", index: 3, peers: [{ host: "10.0.0.2", port: 80, weight: 1 }] },
        d: { key: "sd||", index: 3, peers: [{ host: "10.0.0.4", port: 80, weight: 1 }] },
        // A list for another service under the same name: not this upstream's.
        e: { key: "other||", index: 3, peers: [{ host: "10.0.0.5", port: 80, weight: 1 }] },
      },
    });
    writeFileSync(path.join(prefix, "state/gen_lb_peers.json"), old);
    const consul = fakeConsul({
      sa: ok([entry("a1", "10.0.1.1", 81), entry("a2", "", 82), entry("a3", "a.internal", 83)], 42),
      sd: ok([]),
    });
    const r = await seedPeerDump({ prefix, spec, buildId: "new" }, { consul, now: () => 1_700_000_000_000 });
    expect(consul.asked.sort()).toEqual(["sa", "sb", "sc", "sd", "se"]);
    expect(r!.written).toBe(true);
    expect(r!.upstreams.map((u) => `${u.name}:${u.source}:${u.peers}`)).toEqual(["a:consul:2", "b:dump:1", "c:fallback:1", "d:dump:1", "e:none:0"]);
    expect(r!.lines[0]).toBe(
      `upstream a: 2 passing peer(s) of service sa from http://fake:8500, seeded into state/gen_lb_peers.json; 1 instance(s) left out: a3: address "a.internal" is a host name, which the runtime resolves only on target openresty with nginx.http.resolver set (register the instance's IP, or set both)`,
    );
    expect(r!.lines[1]).toBe("upstream b: Consul cannot be reached (fake: no answer); it starts with the 1 peer(s) already in state/gen_lb_peers.json");
    expect(r!.lines[3]).toBe("upstream d: Consul (http://fake:8500) lists no usable passing instance of service sd; it starts with the 1 peer(s) already in state/gen_lb_peers.json");
    expect(r!.lines[4]).toMatch(/^upstream e: .*; it has no peers until Consul answers the new workers/);
    const doc = JSON.parse(readFileSync(path.join(prefix, "state/gen_lb_peers.json"), "utf8"));
    expect(doc).toMatchObject({ format: 1, generator: "gen-lb install", build_id: "new", written_at: 1_700_000_000 });
    expect(parseDump(readFileSync(path.join(prefix, "state/gen_lb_peers.json"), "utf8"))).toEqual({
      upstreams: {
        a: { key: "sa||", index: 42, peers: [{ host: "10.0.1.1", port: 81, weight: 1 }, { host: "10.9.9.9", port: 82, weight: 1 }] },
        b: { key: "sb||", index: 3, peers: [{ host: "10.0.0.2", port: 80, weight: 1 }] },
        d: { key: "sd||", index: 3, peers: [{ host: "10.0.0.4", port: 80, weight: 1 }] },
        e: { key: "other||", index: 3, peers: [{ host: "10.0.0.5", port: 80, weight: 1 }] },
      },
    });
  });

  it("where the runtime resolves host names (openresty + resolver), seeds the IPs and says the names are left to the runtime (the dump holds IPs only)", async () => {
    const prefix = tempDir();
    const spec = specOf({ target: "openresty", nginx: { http: { resolver: ["127.0.0.53"] } }, upstreams: { a: { service: "sa" } } });
    const consul = fakeConsul({ sa: ok([entry("a1", "10.0.1.1", 81), entry("a3", "a.internal", 83)], 5) });
    const r = await seedPeerDump({ prefix, spec, buildId: "new" }, { consul });
    expect(r!.lines[0]).toBe(
      "upstream a: 1 passing peer(s) of service sa from http://fake:8500, seeded into state/gen_lb_peers.json; 1 host name(s) not seeded, resolved by the runtime after the start: a.internal",
    );
    expect(parseDump(readFileSync(path.join(prefix, "state/gen_lb_peers.json"), "utf8")).upstreams.a!.peers).toEqual([{ host: "10.0.1.1", port: 81, weight: 1 }]);
  });

  it("asks nothing and writes nothing for a spec without Consul upstreams; leaves the file alone when Consul gave nothing", async () => {
    const prefix = tempDir();
    const none = fakeConsul({});
    expect(await seedPeerDump({ prefix, spec: specOf({}), buildId: "x" }, { consul: none })).toBeUndefined();
    expect(none.asked).toEqual([]);
    const r = await seedPeerDump({ prefix, spec: specOf({ upstreams: { a: { service: "sa" } } }), buildId: "x" }, { consul: fakeConsul({}) });
    expect(r!.written).toBe(false);
    expect(existsSync(path.join(prefix, "state"))).toBe(false);
  });
});

describe("gen-lb install with Consul down", () => {
  it("says so and goes on: fallback peers, or the existing dump left byte for byte", async () => {
    const prefix = makePrefix();
    const dir = tempDir();
    const p = await ports();
    const spec = writeSpec(dir, "lb.json", {
      ...specObject(p, "x"),
      upstreams: { app: { service: "web", fallback: ["127.0.0.1:9"] }, api: { service: "api" } },
    });
    const dump = renderDump({ generator: "gen-lb 0.1.0", buildId: "old", writtenAt: 1, upstreams: { api: { key: "api||", index: 5, peers: [{ host: "127.0.0.7", port: 80, weight: 1 }] } } });
    mkdirSync(path.join(prefix, "state"));
    writeFileSync(path.join(prefix, "state/gen_lb_peers.json"), dump);

    const r = await runCliAsync(["install", "--prefix", prefix, "--spec", spec, "--bin", NGINX_BIN]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^upstream api: Consul cannot be reached \(http:\/\/127\.0\.0\.1:1: connect ECONNREFUSED 127\.0\.0\.1:1\); it starts with the 1 peer\(s\) already in state\/gen_lb_peers\.json$/m);
    expect(r.stderr).toMatch(/^upstream app: Consul cannot be reached \(.*\); it starts with its 1 fallback peer\(s\)$/m);
    expect(readFileSync(path.join(prefix, "state/gen_lb_peers.json"), "utf8")).toBe(dump);

    const again = await runCliAsync(["--json", "install", "--prefix", prefix, "--spec", writeSpec(dir, "lb2.json", { ...specObject(p, "y"), upstreams: { api: { service: "api" } } }), "--bin", NGINX_BIN]);
    expect(again.stderr).toBe("");
    expect(JSON.parse(again.stdout).seed).toMatchObject({ written: false, upstreams: [{ name: "api", source: "dump", peers: 1 }] });
  });
});
