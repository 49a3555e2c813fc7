/**
 * The Consul stand-in, over real HTTP on 127.0.0.1. Response shapes are read
 * by the `consul` npm client (code we did not write) where it can; blocking,
 * ACL and faults are probed with raw fetch() so every header and status shows.
 */
import Consul from "consul";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  blockingWaitMs,
  ConsulStandin,
  DEFAULT_WAIT_MS,
  MAX_WAIT_MS,
  parseGoDuration,
  withJitter,
} from "../support/consul-standin.js";

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  ms: number;
}

async function get(url: string, init?: RequestInit): Promise<Answer> {
  const t0 = performance.now();
  const r = await fetch(url, init);
  const text = await r.text();
  return { status: r.status, headers: r.headers, text, ms: performance.now() - t0 };
}

function json<T = any>(a: Answer): T {
  return JSON.parse(a.text) as T;
}

function index(a: Answer): number {
  return Number(a.headers.get("x-consul-index"));
}

async function put(url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return get(url, { method: "PUT", body: body === undefined ? undefined : JSON.stringify(body), headers });
}

/** Resolves to "pending" if the promise has not settled within ms. */
async function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | "pending"> {
  return Promise.race([p, new Promise<"pending">((r) => setTimeout(() => r("pending"), ms))]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until cond() holds; fails the test after ms. */
async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms: ${cond}`);
    await sleep(5);
  }
}

let s: ConsulStandin;
let clients: Consul[] = [];

function client(token?: string): Consul {
  const c = new Consul({ host: "127.0.0.1", port: s.port, defaults: token ? { token } : {} });
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of clients) c.destroy();
  clients = [];
  await s?.stop();
});

describe("response shapes, read by the consul npm client", () => {
  beforeEach(async () => {
    s = new ConsulStandin();
    await s.start();
  });

  it("registers through the agent endpoint and answers health and the service list", async () => {
    const consul = client();
    await consul.agent.service.register({
      name: "web",
      id: "web-1",
      address: "127.0.0.11",
      port: 8081,
      tags: ["Primary", "v1"],
      meta: { version: "1.2" },
    });
    await consul.agent.service.register({
      name: "web",
      id: "web-2",
      port: 8082,
      tags: ["v1"],
      check: { name: "web-2 alive", ttl: "30s", timeout: "1s", status: "critical" },
    });

    const health = await consul.health.service("web");
    expect(health.map((e) => e.Service.ID)).toEqual(["web-1", "web-2"]);
    const [first, second] = health;
    expect(first.Node).toMatchObject({ Node: "node1", Address: "127.0.0.1", Datacenter: "dc1" });
    expect(first.Node.ID).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(first.Node.TaggedAddresses).toMatchObject({ lan: "127.0.0.1", wan: "127.0.0.1" });
    expect(first.Service).toMatchObject({
      Service: "web",
      Tags: ["Primary", "v1"],
      Address: "127.0.0.11",
      Port: 8081,
      Meta: { version: "1.2" },
      Weights: { Passing: 1, Warning: 1 },
      EnableTagOverride: false,
    });
    expect(first.Service.CreateIndex).toBeGreaterThan(0);
    expect(first.Service.ModifyIndex).toBe(first.Service.CreateIndex);
    // The node's serfHealth check is part of every entry, first.
    expect(first.Checks.map((c: any) => c.CheckID)).toEqual(["serfHealth"]);
    expect(first.Checks[0]).toMatchObject({ Node: "node1", Name: "Serf Health Status", Status: "passing", ServiceID: "" });
    // An empty Service.Address means "use the node's".
    expect(second.Service.Address).toBe("");
    expect(second.Checks[1]).toMatchObject({
      CheckID: "service:web-2",
      Name: "web-2 alive",
      Status: "critical",
      ServiceID: "web-2",
      ServiceName: "web",
      ServiceTags: ["v1"],
      Type: "ttl",
    });

    const passing = await consul.health.service({ service: "web", passing: true });
    expect(passing.map((e) => e.Service.ID)).toEqual(["web-1"]);
    const tagged = await consul.health.service({ service: "web", tag: "primary" });
    expect(tagged.map((e) => e.Service.ID)).toEqual(["web-1"]);

    // A fresh Consul server always lists its own "consul" service.
    expect(await consul.catalog.service.list()).toEqual({ consul: [], web: ["Primary", "v1"] });

    await consul.agent.service.deregister("web-1");
    expect((await consul.health.service("web")).map((e) => e.Service.ID)).toEqual(["web-2"]);
    // papi (under the npm client) keeps long error texts in the response body.
    const err = await consul.agent.service.deregister("nope").catch((e) => e);
    expect(err.statusCode).toBe(404);
    expect(String(err.response.body)).toMatch(/^Unknown service ID "nope"/);
  });

  it("honours Weights, which the npm client cannot send", async () => {
    const r = await put(`${s.url}/v1/agent/service/register`, { Name: "api", Port: 9000, Weights: { Passing: 10, Warning: 2 } });
    expect(r.status).toBe(200);
    const [entry] = await client().health.service("api");
    expect(entry.Service).toMatchObject({ ID: "api", Port: 9000, Weights: { Passing: 10, Warning: 2 } });
    const bad = await put(`${s.url}/v1/agent/service/register`, { Name: "api", Port: 9000, Weights: { Passing: 0 } });
    expect(bad).toMatchObject({ status: 400, text: "Invalid Weights: Passing must be greater than 0" });
  });

  it("numbers the IDs of several checks and honours each Status", async () => {
    await put(`${s.url}/v1/agent/service/register`, {
      Name: "db",
      Port: 5432,
      Checks: [
        { TTL: "10s", Status: "passing" },
        { TCP: "127.0.0.1:5432", Interval: "10s", Status: "warning" },
      ],
    });
    const [entry] = await client().health.service("db");
    expect(entry.Checks.map((c: any) => [c.CheckID, c.Name, c.Status, c.Type])).toEqual([
      ["serfHealth", "Serf Health Status", "passing", ""],
      ["service:db:1", "Service 'db' check", "passing", "ttl"],
      ["service:db:2", "Service 'db' check", "warning", "tcp"],
    ]);
    // Warning is not passing.
    expect(await client().health.service({ service: "db", passing: true })).toEqual([]);
  });
});

describe("register and deregister validation", () => {
  beforeEach(async () => {
    s = new ConsulStandin();
    await s.start();
  });

  it("answers 400 with Consul's messages", async () => {
    const reg = `${s.url}/v1/agent/service/register`;
    expect(await put(reg, { Port: 1 })).toMatchObject({ status: 400, text: "Missing service name" });
    const notJson = await get(reg, { method: "PUT", body: "{nope" });
    expect(notJson.status).toBe(400);
    expect(notJson.text).toMatch(/^Request decode failed: /);
    expect(await put(reg, { Name: "x", Port: "80" })).toMatchObject({
      status: 400,
      text: "Request decode failed: json: cannot unmarshal string into Go struct field ServiceDefinition.Port of type int",
    });
    expect((await put(reg, { Name: "x", Check: { TTL: "5s", Status: "sick" } })).status).toBe(400);
    expect(await put(reg, { Name: "x", Check: { Status: "passing" } })).toMatchObject({
      status: 400,
      text: "Invalid check: TTL must be > 0 for TTL checks",
    });
    expect((await put(reg, { Name: "x", Check: { HTTP: "http://127.0.0.1/" } })).text).toMatch(/Interval must be > 0/);
    // Nothing of that reached the catalog.
    expect(json(await get(`${s.url}/v1/catalog/services`))).toEqual({ consul: [] });
  });

  it("answers 405 to the wrong method, 404 to unknown paths and unknown service IDs", async () => {
    const r = await get(`${s.url}/v1/agent/service/register`);
    expect(r.status).toBe(405);
    expect(r.headers.get("allow")).toBe("PUT");
    expect((await put(`${s.url}/v1/health/service/web`)).status).toBe(405);
    expect((await get(`${s.url}/v1/kv/anything`)).status).toBe(404);
    expect((await get(`${s.url}/v2/health/service/web`)).status).toBe(404);
    const d = await put(`${s.url}/v1/agent/service/deregister/ghost`);
    expect(d.status).toBe(404);
    expect(d.text).toContain('Unknown service ID "ghost"');
  });

  it("writes nothing for an identical re-registration, keeps CreateIndex on a change", async () => {
    const def = { Name: "web", ID: "w1", Port: 80 };
    await put(`${s.url}/v1/agent/service/register`, def);
    const before = s.index;
    await put(`${s.url}/v1/agent/service/register`, def);
    expect(s.index).toBe(before);
    await put(`${s.url}/v1/agent/service/register`, { ...def, Port: 81 });
    expect(s.index).toBe(before + 1);
    const [e] = json(await get(`${s.url}/v1/health/service/web`));
    expect(e.Service.Port).toBe(81);
    expect(e.Service.CreateIndex).toBe(before);
    expect(e.Service.ModifyIndex).toBe(before + 1);
  });
});

describe("query parameters, headers and test helpers", () => {
  beforeEach(async () => {
    s = new ConsulStandin();
    await s.start();
    s.registerService({ Name: "web", ID: "a", Port: 1001, Tags: ["v1", "Blue"] });
    s.registerService({ Name: "web", ID: "b", Port: 1002, Tags: ["v1"], Check: { TTL: "10s", Status: "critical" } });
  });

  it("sends Consul's headers on every read endpoint, with an index of at least 1", async () => {
    for (const path of ["/v1/health/service/web", "/v1/catalog/services", "/v1/health/service/ghost"]) {
      const r = await get(s.url + path);
      expect(r.status, path).toBe(200);
      expect(r.headers.get("content-type")).toBe("application/json");
      expect(r.headers.get("x-consul-knownleader")).toBe("true");
      expect(r.headers.get("x-consul-lastcontact")).toBe("0");
      expect(index(r)).toBeGreaterThanOrEqual(1);
    }
    // A service that never existed answers an empty list, not 404.
    expect(json(await get(`${s.url}/v1/health/service/ghost`))).toEqual([]);
  });

  it("reads ?passing as Consul does: bare, 1, true; false lists all; junk is a 400", async () => {
    const ids = async (q: string) => json(await get(`${s.url}/v1/health/service/web${q}`)).map((e: any) => e.Service.ID);
    expect(await ids("")).toEqual(["a", "b"]);
    expect(await ids("?passing")).toEqual(["a"]);
    expect(await ids("?passing=1")).toEqual(["a"]);
    expect(await ids("?passing=true")).toEqual(["a"]);
    expect(await ids("?passing=false")).toEqual(["a", "b"]);
    expect(await get(`${s.url}/v1/health/service/web?passing=maybe`)).toMatchObject({
      status: 400,
      text: "Invalid value for ?passing",
    });
  });

  it("requires every ?tag, case-insensitively", async () => {
    const ids = async (path: string) => json(await get(s.url + path)).map((e: any) => e.Service.ID);
    expect(await ids("/v1/health/service/web?tag=v1")).toEqual(["a", "b"]);
    expect(await ids("/v1/health/service/web?tag=v1&tag=blue")).toEqual(["a"]);
    expect(await ids("/v1/health/service/web?tag=v1&tag=green")).toEqual([]);
    expect(await ids("/v1/health/service/web?tag=BLUE")).toEqual(["a"]);
  });

  it("answers its own datacenter and refuses others with 500 No path to datacenter", async () => {
    expect((await get(`${s.url}/v1/health/service/web?dc=dc1`)).status).toBe(200);
    for (const path of ["/v1/health/service/web?dc=dc2", "/v1/catalog/services?dc=x"]) {
      expect(await get(s.url + path)).toMatchObject({ status: 500, text: "No path to datacenter" });
    }
  });

  it("tells the DNS stand-in its entries, node address and datacenter", async () => {
    expect(s.healthEntries("web")?.map((e: any) => e.Service.ID)).toEqual(["a", "b"]);
    expect(s.healthEntries("web")).toEqual(json(await get(`${s.url}/v1/health/service/web`)));
    expect(s.healthEntries("ghost")).toBeUndefined();
    expect(s.nodeAddress("NODE1")).toBe("127.0.0.1");
    expect(s.nodeAddress("node2")).toBeUndefined();
    expect(s.dc).toBe("dc1");
  });

  it("setHealth flips every check of an instance, adding one when it has none", async () => {
    s.setHealth("b", "passing");
    s.setHealth("a", "warning");
    const entries = json(await get(`${s.url}/v1/health/service/web`));
    expect(entries.map((e: any) => [e.Service.ID, e.Checks.map((c: any) => c.Status)])).toEqual([
      ["a", ["passing", "warning"]],
      ["b", ["passing", "passing"]],
    ]);
    expect(json(await get(`${s.url}/v1/health/service/web?passing`)).map((e: any) => e.Service.ID)).toEqual(["b"]);
    expect(() => s.setHealth("nope", "critical")).toThrow(/no service instance/);
  });
});

describe("blocking queries", () => {
  beforeEach(async () => {
    s = new ConsulStandin();
    await s.start();
    s.registerService({ Name: "web", ID: "web-1", Port: 1001 });
  });

  it("answers at once without an index, or with index=0, whatever the wait", async () => {
    expect((await get(`${s.url}/v1/health/service/web?wait=5s`)).ms).toBeLessThan(500);
    expect((await get(`${s.url}/v1/health/service/web?index=0&wait=5s`)).ms).toBeLessThan(500);
    // An index already behind the service's answers at once too.
    expect((await get(`${s.url}/v1/health/service/web?index=1&wait=5s`)).ms).toBeLessThan(500);
  });

  it("wakes a blocked query promptly on a relevant registration", async () => {
    const i = index(await get(`${s.url}/v1/health/service/web`));
    const blocked = get(`${s.url}/v1/health/service/web?index=${i}&wait=5s`);
    await s.waitForBlocked("web");
    const t0 = performance.now();
    s.registerService({ Name: "web", ID: "web-2", Port: 1002 });
    const r = await blocked;
    // "Promptly": the wake-up is synchronous, the budget is for a loaded machine.
    expect(performance.now() - t0).toBeLessThan(150);
    expect(index(r)).toBeGreaterThan(i);
    expect(json(r).map((e: any) => e.Service.ID)).toEqual(["web-1", "web-2"]);
    expect(s.blockedQueries("web")).toBe(0);
  });

  it("does not wake on another service's write; the wait expires with the jitter bound", async () => {
    const i = index(await get(`${s.url}/v1/health/service/web`));
    const blocked = get(`${s.url}/v1/health/service/web?index=${i}&wait=1s`);
    await s.waitForBlocked("web");
    s.registerService({ Name: "api", Port: 2000 });
    expect(await settledWithin(blocked, 300)).toBe("pending");
    expect(s.blockedQueries("web")).toBe(1);
    const r = await blocked;
    expect(r.ms).toBeGreaterThanOrEqual(990);
    expect(r.ms).toBeLessThan(1000 + 1000 / 16 + 250);
    // The web answer has not changed, so neither has its index.
    expect(index(r)).toBe(i);
    expect(s.index).toBeGreaterThan(i);
  });

  it("a service that does not exist answers the current index when its wait expires", async () => {
    const i = index(await get(`${s.url}/v1/health/service/ghost`));
    const blocked = get(`${s.url}/v1/health/service/ghost?index=${i}&wait=300ms`);
    await s.waitForBlocked("ghost");
    s.registerService({ Name: "api", Port: 2000 });
    expect(await settledWithin(blocked, 100)).toBe("pending");
    const r = await blocked;
    expect(r.ms).toBeGreaterThanOrEqual(290);
    expect(index(r)).toBeGreaterThan(i);
    expect(json(r)).toEqual([]);
  });

  it("wakes health queries on a health change and on deregistration", async () => {
    let i = index(await get(`${s.url}/v1/health/service/web?passing`));
    let blocked = get(`${s.url}/v1/health/service/web?passing&index=${i}&wait=5s`);
    await s.waitForBlocked("web");
    s.setHealth("web-1", "critical");
    let r = await blocked;
    expect(r.ms).toBeLessThan(1000);
    expect(json(r)).toEqual([]);
    expect(index(r)).toBeGreaterThan(i);

    i = index(r);
    blocked = get(`${s.url}/v1/health/service/web?index=${i}&wait=5s`);
    await s.waitForBlocked("web");
    await put(`${s.url}/v1/agent/service/deregister/web-1`);
    r = await blocked;
    expect(r.ms).toBeLessThan(1000);
    expect(json(r)).toEqual([]);
    // Gone services answer Consul's "last extinction" index: this deregistration.
    expect(index(r)).toBe(s.index);
  });

  it("the service list wakes on registrations but not on health changes", async () => {
    const i = index(await get(`${s.url}/v1/catalog/services`));
    const blocked = get(`${s.url}/v1/catalog/services?index=${i}&wait=5s`);
    await until(() => s.blockedQueries() === 1);
    s.setHealth("web-1", "critical");
    expect(await settledWithin(blocked, 100)).toBe("pending");
    s.registerService({ Name: "api", Port: 2000, Tags: ["x"] });
    const r = await blocked;
    expect(json(r)).toEqual({ api: ["x"], consul: [], web: [] });
    expect(index(r)).toBe(s.index);
  });

  it("wakes every waiter on the service at once", async () => {
    const i = s.indexFor("web");
    const waiters = [1, 2, 3].map(() => get(`${s.url}/v1/health/service/web?index=${i}&wait=5s`));
    await s.waitForBlocked("web", 3);
    s.registerService({ Name: "web", ID: "web-2", Port: 1002 });
    const answers = await Promise.all(waiters);
    expect(answers.map((a) => json(a).length)).toEqual([2, 2, 2]);
  });

  it("keeps blocking while the client's index is ahead, then answers the lower index", async () => {
    const i = s.indexFor("web");
    const r = await get(`${s.url}/v1/health/service/web?index=${i + 1000}&wait=200ms`);
    expect(r.ms).toBeGreaterThanOrEqual(190);
    expect(index(r)).toBe(i);
  });

  it("parses waits as Go durations and rejects bad index and wait values", async () => {
    const i = s.indexFor("web");
    const r = await get(`${s.url}/v1/health/service/web?index=${i}&wait=100ms`);
    expect(r.ms).toBeGreaterThanOrEqual(95);
    expect(r.ms).toBeLessThan(100 + 100 / 16 + 200);
    expect(await get(`${s.url}/v1/health/service/web?index=${i}&wait=soon`)).toMatchObject({ status: 400, text: "Invalid wait time" });
    expect(await get(`${s.url}/v1/health/service/web?index=-1`)).toMatchObject({ status: 400, text: "Invalid index" });
  });

  it("drops a blocked query whose client went away", async () => {
    const ac = new AbortController();
    const blocked = fetch(`${s.url}/v1/health/service/web?index=${s.indexFor("web")}&wait=1m`, { signal: ac.signal });
    await s.waitForBlocked("web");
    ac.abort();
    await expect(blocked).rejects.toThrow();
    await until(() => s.blockedQueries("web") === 0, 1000);
  });

  it("drives the consul client's watch, which sees a registration as a change", async () => {
    const consul = client();
    const watch = consul.watch({ method: consul.health.service, options: { service: "web", passing: "true", wait: "5s" } });
    const changes: any[][] = [];
    const seen = (n: number) =>
      new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`only ${changes.length} changes`)), 3000);
        const check = () => {
          if (changes.length >= n) {
            clearTimeout(t);
            resolve();
          } else setTimeout(check, 5);
        };
        check();
      });
    watch.on("change", (data: any[]) => changes.push(data));
    watch.on("error", () => {});
    try {
      await seen(1);
      await s.waitForBlocked("web");
      s.registerService({ Name: "web", ID: "web-2", Port: 1002 });
      await seen(2);
      expect(changes[1]?.map((e) => e.Service.ID)).toEqual(["web-1", "web-2"]);
    } finally {
      watch.end();
    }
  });
});

describe("duration and wait rules", () => {
  it("parses Go durations", () => {
    expect(parseGoDuration("30s")).toBe(30_000);
    expect(parseGoDuration("5m")).toBe(300_000);
    expect(parseGoDuration("100ms")).toBe(100);
    expect(parseGoDuration("1h30m")).toBe(5_400_000);
    expect(parseGoDuration("1.5s")).toBe(1500);
    expect(parseGoDuration("250us")).toBeCloseTo(0.25);
    expect(parseGoDuration("0")).toBe(0);
    for (const bad of ["", "5", "s", "1x", "1.s.", "abc"]) expect(parseGoDuration(bad), bad).toBeUndefined();
  });

  it("clamps to 10 minutes, defaults to 5 and adds at most wait/16", () => {
    expect(blockingWaitMs(null)).toBe(DEFAULT_WAIT_MS);
    expect(blockingWaitMs("0s")).toBe(DEFAULT_WAIT_MS);
    expect(blockingWaitMs("20m")).toBe(MAX_WAIT_MS);
    expect(blockingWaitMs("2s")).toBe(2000);
    expect(() => blockingWaitMs("soon")).toThrow("Invalid wait time");
    expect(withJitter(16_000, () => 0)).toBe(16_000);
    expect(withJitter(16_000, () => 0.999999)).toBe(16_999);
  });
});

describe("ACL tokens", () => {
  beforeEach(async () => {
    s = new ConsulStandin({ token: "s3cret" });
    await s.start();
    s.registerService({ Name: "web", Port: 80 });
  });

  it("refuses a missing token with Permission denied and a wrong one with ACL not found", async () => {
    const none = await get(`${s.url}/v1/health/service/web`);
    expect(none.status).toBe(403);
    expect(none.text).toMatch(/^Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' lacks permission 'service:read' on "web"$/);
    const wrong = await get(`${s.url}/v1/health/service/web`, { headers: { "X-Consul-Token": "guess" } });
    expect(wrong).toMatchObject({ status: 403, text: "ACL not found" });
    for (const path of ["/v1/health/service/api", "/v1/catalog/services"]) {
      expect((await get(s.url + path)).status, path).toBe(403);
    }
    const reg = await put(`${s.url}/v1/agent/service/register`, { Name: "evil", Port: 1 });
    expect(reg.status).toBe(403);
    expect(reg.text).toContain("'service:write'");
    expect((await put(`${s.url}/v1/agent/service/deregister/web`)).status).toBe(403);
    const list = await get(`${s.url}/v1/catalog/services`, { headers: { "X-Consul-Token": "s3cret" } });
    expect(json(list)).toEqual({ consul: [], web: [] });
    expect(s.countRequests({ path: "/v1/agent/service/register" })).toBe(1);
  });

  it("accepts the token as X-Consul-Token, Authorization: Bearer or ?token=", async () => {
    expect((await get(`${s.url}/v1/health/service/web`, { headers: { "X-Consul-Token": "s3cret" } })).status).toBe(200);
    expect((await get(`${s.url}/v1/health/service/web`, { headers: { Authorization: "Bearer s3cret" } })).status).toBe(200);
    expect((await get(`${s.url}/v1/health/service/web?token=s3cret`)).status).toBe(200);
  });

  it("works with the consul client's default token, and fails without it", async () => {
    const consul = client("s3cret");
    await consul.agent.service.register({ name: "api", port: 81 });
    expect((await consul.health.service("api")).map((e) => e.Service.Port)).toEqual([81]);
    const denied = await client().health.service("api").catch((e) => e);
    expect(denied.statusCode).toBe(403);
    expect(String(denied.response.body)).toMatch(/^Permission denied/);
    await expect(client("nope").catalog.service.list()).rejects.toThrow("ACL not found");
  });

  it("can filter anonymous reads as Consul's default-deny policy does", async () => {
    await s.stop();
    s = new ConsulStandin({ token: "s3cret", aclMissingToken: "filter" });
    await s.start();
    s.registerService({ Name: "web", Port: 80 });
    const r = await get(`${s.url}/v1/health/service/web`);
    expect(r.status).toBe(200);
    expect(json(r)).toEqual([]);
    expect(r.headers.get("x-consul-results-filtered-by-acls")).toBe("true");
    expect(json(await get(`${s.url}/v1/catalog/services`))).toEqual({});
    expect((await put(`${s.url}/v1/agent/service/register`, { Name: "x" })).status).toBe(403);
    expect((await get(`${s.url}/v1/health/service/web`, { headers: { "X-Consul-Token": "bad" } })).status).toBe(403);
  });
});

describe("fault injection", () => {
  beforeEach(async () => {
    s = new ConsulStandin();
    await s.start();
    s.registerService({ Name: "web", ID: "web-1", Address: "127.0.0.11", Port: 1001 });
    s.registerService({ Name: "web", ID: "web-2", Port: 1002 });
  });

  const health = () => `${s.url}/v1/health/service/web`;

  it("status500 for a number of requests, then normal answers", async () => {
    s.fault({ kind: "status500", times: 2 });
    expect(await get(health())).toMatchObject({ status: 500, text: "No cluster leader" });
    expect((await put(`${s.url}/v1/agent/service/register`, { Name: "x" })).status).toBe(500);
    expect((await get(health())).status).toBe(200);
    expect(s.countRequests((r) => r.status === 500)).toBe(2);
  });

  it("limits a fault to the paths it names, and can remove one fault", async () => {
    const remove = s.fault({ kind: "status500", path: /^\/v1\/catalog\// });
    expect((await get(health())).status).toBe(200);
    expect((await get(`${s.url}/v1/catalog/services`)).status).toBe(500);
    remove();
    expect((await get(`${s.url}/v1/catalog/services`)).status).toBe(200);
  });

  it("hang holds the request until the faults are cleared", async () => {
    s.fault({ kind: "hang" });
    const hung = get(health());
    expect(await settledWithin(hung, 300)).toBe("pending");
    expect(s.countRequests({ path: "/v1/health/service/web" })).toBe(1);
    s.clearFaults();
    const r = await hung;
    expect(r.status).toBe(200);
    expect(json(r)).toHaveLength(2);
  });

  it("hang, blocked and trickling requests all end promptly on stop()", async () => {
    s.fault({ kind: "hang", path: /^\/v1\/catalog\/services$/ });
    const hung = get(`${s.url}/v1/catalog/services`).catch((e: Error) => e);
    const blocked = get(`${s.url}/v1/health/service/web?index=${s.indexFor("web")}&wait=10m`).catch((e: Error) => e);
    s.fault({ kind: "slowTrickle", path: /other$/, chunkBytes: 1, intervalMs: 1000 });
    const trickling = get(`${s.url}/v1/health/service/other`).catch((e: Error) => e);
    await s.waitForBlocked("web");
    await until(() => s.countRequests() === 3);
    const t0 = performance.now();
    await s.stop();
    const results = await Promise.all([hung, blocked, trickling]);
    expect(performance.now() - t0).toBeLessThan(1000);
    for (const r of results) expect(r).toBeInstanceOf(Error);
    expect(s.blockedQueries()).toBe(0);
  });

  it("close drops the connection without an answer", async () => {
    s.fault({ kind: "close" });
    await expect(fetch(health())).rejects.toThrow();
    s.clearFaults();
    expect((await get(health())).status).toBe(200);
    const closed = s.requests.filter((r) => r.path === "/v1/health/service/web" && r.status === undefined);
    expect(closed.length).toBeGreaterThanOrEqual(1);
  });

  it("garbage is a 200 that claims JSON and is not", async () => {
    s.fault({ kind: "garbage", times: 1 });
    const r = await get(health());
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/json");
    expect(index(r)).toBeGreaterThanOrEqual(1);
    expect(() => JSON.parse(r.text)).toThrow();
    expect(() => json(r)).toThrow();
    expect(json(await get(health()))).toHaveLength(2);
  });

  it("body faults leave writes alone and are not used up by them", async () => {
    s.fault({ kind: "garbage", times: 1 });
    expect((await put(`${s.url}/v1/agent/service/register`, { Name: "api", Port: 1 })).status).toBe(200);
    const text = (await get(health())).text;
    expect(() => JSON.parse(text)).toThrow();
  });

  it("indexBackwards answers at once with an index below the client's, which the consul client resets on", async () => {
    const i = s.indexFor("web");
    s.fault({ kind: "indexBackwards", times: 1 });
    const r = await get(`${health()}?index=${i}&wait=5s`);
    expect(r.ms).toBeLessThan(1000);
    expect(index(r)).toBeLessThan(i);
    expect(json(r)).toHaveLength(2);

    // The npm client follows Consul's rule: an index that went backwards resets to 0.
    const consul = client();
    const watch = consul.watch({ method: consul.health.service, options: { service: "web", wait: "5s" } });
    watch.on("error", () => {});
    try {
      await s.waitForBlocked("web");
      const mark = s.requests.length;
      // The registration answers the blocked query; the watch's next query
      // gets the backwards index; the one after must start again from 0.
      s.fault({ kind: "indexBackwards", times: 1 });
      s.registerService({ Name: "web", ID: "web-3", Port: 1003 });
      await until(() => s.requests.slice(mark).some((q) => q.query.get("index") === "0"));
      expect(s.requests[mark]?.query.get("index")).not.toBe("0");
    } finally {
      watch.end();
    }
  });

  it("slowTrickle sends the real answer a few bytes at a time", async () => {
    const expected = (await get(health())).text;
    s.fault({ kind: "slowTrickle", times: 1, chunkBytes: Math.ceil(expected.length / 8), intervalMs: 30 });
    const t0 = performance.now();
    const res = await fetch(health());
    const reader = res.body!.getReader();
    let chunks = 0;
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks += 1;
      text += Buffer.from(value).toString();
    }
    expect(text).toBe(expected);
    expect(chunks).toBeGreaterThanOrEqual(4);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(7 * 30 - 10);
  });

  it("hugeBody is valid JSON of the given size with the same instances", async () => {
    s.fault({ kind: "hugeBody", times: 2, bytes: 2 * 1024 * 1024 });
    const r = await get(health());
    expect(r.text.length).toBeGreaterThanOrEqual(2 * 1024 * 1024);
    expect(json(r).map((e: any) => [e.Service.ID, e.Service.Port])).toEqual([
      ["web-1", 1001],
      ["web-2", 1002],
    ]);
    // With nothing to carry padding, the padding is whitespace.
    const empty = await get(`${s.url}/v1/health/service/ghost`);
    expect(empty.text.length).toBeGreaterThanOrEqual(2 * 1024 * 1024);
    expect(json(empty)).toEqual([]);
  });

  it("wrongTypes sends entries with mistyped fields", async () => {
    s.fault({ kind: "wrongTypes", times: 1 });
    const entries = json(await get(health()));
    expect(entries.length).toBeGreaterThan(2);
    expect(entries.some((e: any) => typeof e.Service?.Port === "string")).toBe(true);
    expect(entries.some((e: any) => typeof e.Service?.Address === "number" && typeof e.Node.Address === "number")).toBe(true);
    expect(entries.some((e: any) => typeof e.Service === "string")).toBe(true);
    // Every entry has a defect: none is a well-formed peer.
    const wellFormed = (e: any) =>
      typeof e.Service === "object" && Number.isInteger(e.Service.Port) && typeof e.Service.Address === "string" &&
      Array.isArray(e.Service.Tags) && typeof e.Service.Weights?.Passing === "number" && typeof e.Node?.Address === "string";
    expect(entries.filter(wellFormed)).toEqual([]);

    s.fault({ kind: "wrongTypes", times: 1, mixed: true });
    const mixed = json(await get(health()));
    expect(mixed.slice(0, 2).map((e: any) => e.Service.Port)).toEqual([1001, 1002]);
    expect(mixed.slice(2).some((e: any) => typeof e.Service?.Port === "string")).toBe(true);
  });

  it("missingFields sends entries without Service, Port, addresses or Node", async () => {
    s.fault({ kind: "missingFields", times: 1 });
    const entries = json(await get(health()));
    expect(entries.some((e: any) => !("Service" in e))).toBe(true);
    expect(entries.some((e: any) => e.Service && !("Port" in e.Service))).toBe(true);
    expect(entries.some((e: any) => e.Service?.Port === 0)).toBe(true);
    expect(entries.some((e: any) => e.Service && !("Address" in e.Service) && !("Address" in e.Node))).toBe(true);
    expect(entries.some((e: any) => !("Node" in e))).toBe(true);

    // With no instance at all, the bad entries are built on a placeholder.
    s.fault({ kind: "missingFields", times: 1 });
    expect(json(await get(`${s.url}/v1/health/service/ghost`)).length).toBeGreaterThan(0);
  });
});

describe("down() and up()", () => {
  beforeEach(async () => {
    s = new ConsulStandin();
    await s.start();
    s.registerService({ Name: "web", Port: 80 });
  });

  it("refuses connections while down, cuts blocked queries, and comes back on the same port with its state", async () => {
    const port = s.port;
    const before = await get(`${s.url}/v1/health/service/web`);
    const blocked = get(`${s.url}/v1/health/service/web?index=${index(before)}&wait=1m`).catch((e: Error) => e);
    await s.waitForBlocked("web");
    await s.down();
    expect(await blocked).toBeInstanceOf(Error);
    await expect(fetch(`${s.url}/v1/health/service/web`)).rejects.toThrow();
    s.registerService({ Name: "web", ID: "web-2", Port: 81 }); // a change made meanwhile
    await s.up();
    expect(s.port).toBe(port);
    const after = await get(`${s.url}/v1/health/service/web`);
    expect(json(after)).toHaveLength(2);
    expect(index(after)).toBeGreaterThan(index(before));
  });
});

describe("start, stop and observability", () => {
  it("picks free ports, listens on 127.0.0.1 and can start again after stop", async () => {
    s = new ConsulStandin();
    const other = new ConsulStandin();
    try {
      const url = await s.start();
      await other.start();
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(s.port).not.toBe(other.port);
      await s.stop();
      expect(() => s.url).toThrow(/not started/);
      await s.start();
      expect((await get(`${s.url}/v1/catalog/services`)).status).toBe(200);
    } finally {
      await other.stop();
    }
  });

  it("logs every request and counts them by filter", async () => {
    s = new ConsulStandin();
    await s.start();
    // The stand-in's clock (see LoggedRequest.at), not Date.now(): the two drift apart.
    const t0 = performance.timeOrigin + performance.now();
    await get(`${s.url}/v1/health/service/web?passing=1&tag=a&tag=b`, { headers: { "X-Consul-Token": "t" } });
    await get(`${s.url}/v1/catalog/services`);
    await put(`${s.url}/v1/agent/service/register`, { Name: "web", Port: 1 });
    const [first] = s.requests;
    expect(first).toMatchObject({ method: "GET", path: "/v1/health/service/web", status: 200 });
    expect(first?.query.getAll("tag")).toEqual(["a", "b"]);
    expect(first?.headers["x-consul-token"]).toBe("t");
    expect(first?.at).toBeGreaterThanOrEqual(t0 - 1);
    expect(s.countRequests()).toBe(3);
    expect(s.countRequests({ method: "get" })).toBe(2);
    expect(s.countRequests({ path: /^\/v1\/health\// , query: { passing: "1" } })).toBe(1);
    expect(s.countRequests({ query: { tag: true } })).toBe(1);
    expect(s.countRequests({ since: Date.now() + 1000 })).toBe(0);
  });
});
