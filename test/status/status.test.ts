/**
 * The status endpoint: JSON and Prometheus text describe the same state
 * (peers, weights, health, counters, Consul index, dump file), follow it as
 * it changes, and only the allow list may read them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../support/backends.js";
import { request, runLoad } from "../support/load.js";
import { waitFor } from "../support/ports.js";
import { Stack, startBackends } from "../support/stack.js";
import { expectStatusContract, parsePrometheus, readStatus, sampleValue as value } from "../support/status-contract.js";

describe("status endpoint", () => {
  let lb: Stack;
  let a: Backend;
  let b: Backend;

  beforeAll(async () => {
    [a, b] = (await startBackends(["a", "b"])) as [Backend, Backend];
    lb = await Stack.start({
      upstreams: {
        web: {
          retries: 1,
          healthcheck: {
            active: { path: "/health", interval: "300ms", timeout: "500ms", fall: 1, rise: 1 },
            passive: { max_fails: 50, fail_timeout: "10s" },
          },
        },
        idle: { service: "nobody-registers-this" },
      },
    });
    lb.register("web", a, 1);
    lb.register("web", b, 3);
    await lb.waitForPeers("web", [a.address, b.address]);
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it("the live JSON and the Prometheus families are what src/contract/status.ts says", async () => {
    // This spec has no static upstream: every family but those that need one.
    const { doc } = await expectStatusContract(lb.statusUrl(), { staticUpstreams: false, ngxUpstream: false });
    expect(Object.keys(doc.upstreams).sort()).toEqual(["idle", "web"]);
  });

  it("JSON: build, every upstream with its peers, weights, health, counters, Consul index and dump state", async () => {
    const r = await runLoad({ url: lb.url("web"), requests: 400, concurrency: 4 });
    expect(r.failures).toEqual([]);
    const s = await waitFor(
      async () => {
        const doc = await lb.status();
        const sum = doc.upstreams.web!.peers.reduce((n, p) => n + p.requests, 0);
        return sum >= 400 && doc.dump.ok ? doc : undefined;
      },
      "counters and dump",
      8000,
    );
    expect(s.build_id).toBe(lb.buildId);
    expect(s.generator).toMatch(/^gen-lb /);
    expect(lb.nginx.workerPids()).toContain(s.health_checker);
    expect(s.dump.ok).toBe(true);
    expect(s.dump.path).toMatch(/gen_lb_peers\.json$/);
    expect(Object.keys(s.upstreams).sort()).toEqual(["idle", "web"]);

    const web = s.upstreams.web!;
    expect(web).toMatchObject({
      service: "web",
      balance: "round_robin",
      fail_open: true,
      retries: 1,
      // Passive checks need the log phase: failures and in_flight are counted.
      log_phase: true,
      health_checks: { active: "http", passive: true },
      source: "consul",
      total: 2,
      healthy: 2,
      all_down: false,
    });
    expect(web.consul_index).toBe(lb.standin.indexFor("web"));
    expect(web.updated_at).toBeGreaterThan(Date.now() / 1000 - 60);
    const by = Object.fromEntries(web.peers.map((p) => [p.address, p]));
    expect(by[a.address]).toMatchObject({ weight: 1, healthy: true, state: "healthy", failures: 0, in_flight: 0, last_check_result: "ok" });
    expect(by[b.address]).toMatchObject({ weight: 3, healthy: true, state: "healthy", failures: 0, in_flight: 0 });
    // A peer still pending its first check (probe_new) when the load ran got none of it.
    expect(by[a.address]!.requests).toBe(r.byBackend.a ?? 0);
    expect(by[b.address]!.requests).toBe(r.byBackend.b ?? 0);
    expect(by[a.address]!.consecutive_successes).toBeGreaterThan(0);
    expect(by[a.address]!.consecutive_failures).toBe(0);

    // An upstream Consul lists nothing for: present, empty, an array.
    expect(s.upstreams.idle).toMatchObject({ total: 0, healthy: 0, all_down: false, log_phase: false, peers: [] });
  });

  it("Prometheus: the same numbers, well-formed, every family typed once", async () => {
    const [json, text] = await Promise.all([lb.status(), lb.prometheus()]);
    const { samples, types } = parsePrometheus(text);
    expect(value(samples, "gen_lb_info", { build_id: lb.buildId })).toBe(1);
    expect(types.get("gen_lb_peer_requests_total")).toBe("counter");
    expect(types.get("gen_lb_peer_failures_total")).toBe("counter");
    expect(types.get("gen_lb_peer_in_flight")).toBe("gauge");
    expect(value(samples, "gen_lb_upstream_peers", { upstream: "web" })).toBe(2);
    expect(value(samples, "gen_lb_upstream_peers", { upstream: "idle" })).toBe(0);
    expect(value(samples, "gen_lb_upstream_consul_index", { upstream: "web" })).toBe(json.upstreams.web!.consul_index);
    expect(value(samples, "gen_lb_dump_ok")).toBe(1);
    for (const p of json.upstreams.web!.peers) {
      const l = { upstream: "web", peer: p.address };
      expect(value(samples, "gen_lb_peer_weight", l)).toBe(p.weight);
      expect(value(samples, "gen_lb_peer_up", l)).toBe(1);
      expect(value(samples, "gen_lb_peer_requests_total", l)).toBeGreaterThanOrEqual(p.requests);
    }
  });

  it("follow health: a peer down, then all down (fail open), then back", async () => {
    a.healthStatus = 503;
    await lb.waitForPeer("web", a.address, (p) => !p.healthy, "a down");
    let { samples } = parsePrometheus(await lb.prometheus());
    expect(value(samples, "gen_lb_peer_up", { upstream: "web", peer: a.address })).toBe(0);
    expect(value(samples, "gen_lb_peer_consecutive_failures", { upstream: "web", peer: a.address })).toBeGreaterThanOrEqual(1);
    expect(value(samples, "gen_lb_upstream_healthy_peers", { upstream: "web" })).toBe(1);
    const peer = await lb.peer("web", a.address);
    expect(peer).toMatchObject({ state: "down", down_by: "active", last_check_result: "HTTP 503" });

    b.healthStatus = 503;
    await waitFor(async () => (await lb.upstream("web")).all_down, "all down", 10_000);
    const web = await lb.upstream("web");
    expect(web.failing).toBe("open");
    ({ samples } = parsePrometheus(await lb.prometheus()));
    expect(value(samples, "gen_lb_upstream_all_down", { upstream: "web" })).toBe(1);
    expect(value(samples, "gen_lb_upstream_fail_open", { upstream: "web" })).toBe(1);

    a.healthStatus = 200;
    b.healthStatus = 200;
    await waitFor(async () => (await lb.upstream("web")).healthy === 2, "both healthy", 10_000);
    ({ samples } = parsePrometheus(await lb.prometheus()));
    expect(value(samples, "gen_lb_upstream_all_down", { upstream: "web" })).toBe(0);
  });

  it("counts failed tries (and the retries that hid them)", async () => {
    a.mode = "reset";
    const r = await runLoad({ url: lb.url("web"), requests: 80, concurrency: 2 });
    a.mode = "ok";
    expect(r.failures).toEqual([]);
    const p = await lb.waitForPeer("web", a.address, (x) => (x.failures ?? 0) >= 10, "failures counted", 8000);
    expect(p.failures).toBeLessThanOrEqual(p.requests);
    const { samples } = parsePrometheus(await lb.prometheus());
    expect(value(samples, "gen_lb_peer_failures_total", { upstream: "web", peer: a.address })).toBeGreaterThanOrEqual(p.failures!);
    expect(value(samples, "gen_lb_peer_failures_total", { upstream: "web", peer: b.address })).toBe(0);
  });

  it("one upstream with ?upstream=, 404 for an unknown one, 400 for an unknown format", async () => {
    const one = await readStatus(lb.statusUrl("?upstream=idle"));
    expect(Object.keys(one.upstreams)).toEqual(["idle"]);
    expect(one.build_id).toBe(lb.buildId);
    expect((await request(lb.statusUrl("?upstream=nope"))).status).toBe(404);
    expect((await request(lb.statusUrl("?format=xml"))).status).toBe(400);
    const prom = await request(lb.statusUrl("?format=prometheus&upstream=web"));
    expect(prom.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(prom.body).not.toMatch(/upstream="idle"/);
    const json = await request(lb.statusUrl());
    expect(json.headers["content-type"]).toBe("application/json");
  });

  it("refuses a client outside the allow list (127.0.0.2) with 403", async () => {
    const inside = await request(lb.statusUrl(), { localAddress: "127.0.0.1" });
    expect(inside.status).toBe(200);
    const outside = await request(lb.statusUrl(), { localAddress: "127.0.0.2" });
    expect(outside.status).toBe(403);
    expect(outside.body).not.toMatch(/build_id|gen_lb_/);
    const outsideProm = await request(lb.statusUrl("?format=prometheus"), { localAddress: "127.0.0.2" });
    expect(outsideProm.status).toBe(403);
  });
});
