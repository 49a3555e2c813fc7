/**
 * The runtime's file and log edges (issue 11): a relative prefix, a dump
 * path that leads out of the prefix, Consul strings in error.log, what the
 * status listener serves. Real nginx (the matrix's binary), the Consul
 * stand-in, backends on loopback.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import type { Backend } from "../support/backends.js";
import { tempDir } from "../support/nginx.js";
import { sleep, waitFor } from "../support/ports.js";
import { request } from "../support/load.js";
import { instance, Stack, type StackOptions } from "../support/stack.js";
import { formatDiagnostic } from "../../src/pipeline/load.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { renderDump } from "../../src/consul/dump.js";
import { statusDocumentSchema } from "../../src/contract/status.js";

const NOBODY_UID = 65534;

/** One stack a test, stopped after it (its stand-in and backends with it). */
let stack: Stack | undefined;
afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

/** A stack of the discovery profile (no status endpoint unless the balancer profile is asked for). */
async function start(options: StackOptions): Promise<Stack> {
  stack = await Stack.start({ profile: "discovery", ...options });
  return stack;
}

/** A prefix directory inside a fresh 0755 directory: the worker user (nobody) must reach it. */
function workDir(): string {
  const work = tempDir();
  chmodSync(work, 0o755);
  return work;
}

describe("runtime edges: a relative prefix", () => {
  it("nginx -p dist/ from the build's parent (the README's quick start) keeps the dump inside dist/", async () => {
    // What the defect made: the dump directory at the filesystem root.
    expect(existsSync("/dist/state"), "/dist/state exists before the test: remove it, this test cannot tell otherwise").toBe(false);
    onTestFinished(() => {
      if (existsSync("/dist/state")) rmSync("/dist", { recursive: true, force: true });
    });
    const work = workDir();
    const s = await start({ backends: ["a"], prefix: path.join(work, "dist"), launch: { cwd: work } });
    // Started as the quick start says: the master was given a relative prefix.
    expect(readFileSync(`/proc/${s.nginx.masterPid}/cmdline`, "utf8")).toMatch(/-p dist\/ -c conf\/nginx\.conf/);
    const [b] = s.backends as [Backend];
    s.register("web", b);
    expect(s.dumpPath()).toBe(path.join(work, "dist/state/gen_lb_peers.json"));
    const doc = await waitFor(() => {
      const d = s.readDump();
      return d?.upstreams.web?.peers.length === 1 ? d : undefined;
    }, "the dump in dist/state").catch((e: Error) => {
      throw new Error(`${e.message}\n${s.logTail()}`);
    });
    expect(doc.upstreams.web!.peers).toEqual([["127.0.0.1", b.port, 1]]);
    expect(existsSync("/dist/state")).toBe(false);
    expect(s.errorLog()).not.toMatch(/cannot write the dump file|may not be writable/);
  });
});

describe("runtime edges: the dump path stays inside the prefix", () => {
  it("validation rejects a dump_file that leads out of the prefix, naming the spec path and line", () => {
    for (const file of ["../victim/peers.json", "state/../../victim/peers.json", "/var/lib/gen-lb/peers.json", "peers.json"]) {
      const text = `consul:\n  addresses: ["http://127.0.0.1:8500"]\n  dump_file: ${JSON.stringify(file)}\n`;
      const r = validateSpecText(text, "spec.yaml");
      expect(r.spec, file).toBeUndefined();
      const lines = r.errors.map(formatDiagnostic);
      expect(lines, file).toHaveLength(1);
      expect(lines[0]).toMatch(/spec\.yaml:3:\d+/);
      expect(lines[0]).toContain("consul.dump_file");
    }
    expect(validateSpecText('consul:\n  dump_file: "state/./peers/../gen_lb.json"\n', "spec.yaml").errors).toEqual([]);
  });

  it("validation refuses a user access_by_lua where gen-lb holds requests (nginx keeps one per location)", () => {
    const spec = (extra: string) =>
      `upstreams:\n  web:\n    service: web\n${extra}servers:\n  - listen: 8080\n    locations:\n      - path: /\n        upstream: web\n        directives:\n          - name: access_by_lua\n            args: ["ngx.var.x = 1"]\n`;
    const r = validateSpecText(spec(""), "spec.yaml");
    expect(r.errors.map(formatDiagnostic)).toEqual([expect.stringMatching(/^servers\[0\]\.locations\[0\]\.directives\[0\]\.name \(spec\.yaml:10:\d+\).*hold requests/)]);
    // With fallback peers and fail_open (the default) gen-lb has no access phase there.
    expect(validateSpecText(spec('    fallback: ["127.0.0.1:9000"]\n'), "spec.yaml").errors).toEqual([]);
  });

  /**
   * A prefix beside a directory "victim", edited by `edit` before nginx
   * starts; returns once the watcher had its first answer and time to write
   * the dump.
   */
  async function dumpOutOfPrefix(edit: (prefix: string, victim: string) => void): Promise<{ s: Stack; victim: string }> {
    const work = workDir();
    const victim = path.join(work, "victim");
    mkdirSync(victim);
    const s = await start({ backends: ["a"], prefix: path.join(work, "prefix"), beforeStart: ({ prefix }) => edit(prefix, victim) });
    s.register("web", s.backends[0]!);
    await waitFor(() => /peers changed to version 1 from consul/.test(s.errorLog()), "the first Consul answer");
    await sleep(1000);
    return { s, victim };
  }

  it("a hand-edited config.lua pointing out of the prefix: nothing outside is created or chowned", async () => {
    const { s, victim } = await dumpOutOfPrefix((prefix) => {
      const configLua = path.join(prefix, "lua/gen_lb/config.lua");
      const text = readFileSync(configLua, "utf8");
      expect(text).toContain('"state/gen_lb_peers.json"');
      writeFileSync(configLua, text.replace('"state/gen_lb_peers.json"', '"../victim/peers.json"'));
    });
    expect(statSync(victim).uid).toBe(0);
    expect(existsSync(path.join(victim, "peers.json"))).toBe(false);
    expect(s.errorLog()).toMatch(/\[error\].*consul\.dump_file \.\.\/victim\/peers\.json resolves to .*victim\/peers\.json, outside the prefix/);
  });

  it("a state/ symlinked out of the prefix is refused, not chowned", async () => {
    const { s, victim } = await dumpOutOfPrefix((prefix, victimDir) => {
      rmSync(path.join(prefix, "state"), { recursive: true, force: true });
      symlinkSync(victimDir, path.join(prefix, "state"));
    });
    expect(statSync(victim).uid).not.toBe(NOBODY_UID);
    expect(existsSync(path.join(victim, "gen_lb_peers.json"))).toBe(false);
    expect(s.errorLog()).toMatch(/\[error\].*consul\.dump_file state\/gen_lb_peers\.json resolves to .*victim\/gen_lb_peers\.json, outside the prefix/);
  });
});

describe("runtime edges: Consul strings in error.log", () => {
  it("a Service.ID with a newline cannot forge a log line", async () => {
    const s = await start({ workers: 1, backends: ["a"] });
    const [b] = s.backends as [Backend];
    s.register("web", b);
    const forged = "2026/12/02 06:00:00 [emerg] 1#1: forged by a Consul entry";
    s.register({ ID: `evil\n${forged}\r\u001b[2J`, Name: "web", Address: "not-an-ip", Port: 1 });
    await s.waitForPeers("web", [b.address]);
    const line = await waitFor(() => s.genLbLines().find((l) => /ignored 1 of 2 Consul entries/.test(l)), "the ignored-entries warning");
    expect(line).toContain("evil\\n2026/12/02 06:00:00 [emerg] 1#1: forged");
    expect(line).toContain("\\r\\x1b[2J");
    const log = s.errorLog();
    expect(log.split("\n").filter((l) => l.startsWith(forged.slice(0, 20)) || l.includes("[emerg]") && !l.includes("gen-lb: "))).toEqual([]);
    expect(log).not.toContain("\u001b");
  });
});

describe("runtime edges: the status listener", () => {
  it("answers only its path (everything else 404) and the allow list covers the whole listener", async () => {
    // The balancer profile: status on its own listener, allow 127.0.0.1.
    const s = await start({
      profile: "balancer",
      beforeStart: ({ prefix }) => {
        mkdirSync(path.join(prefix, "html"), { recursive: true });
        writeFileSync(path.join(prefix, "html/index.html"), "the prefix's html\n");
        writeFileSync(path.join(prefix, "html/secret.txt"), "not for the status listener\n");
      },
    });
    const base = new URL(s.statusUrl()).origin;
    const ok = await waitFor(async () => {
      const r = await request(s.statusUrl(), { localAddress: "127.0.0.1" });
      return r.status === 200 ? r : undefined;
    }, "the status endpoint");
    expect(statusDocumentSchema.parse(JSON.parse(ok.body)).build_id).toBe(s.buildId);
    for (const p of ["/", "/index.html", "/secret.txt", "/status/", "/statusx", "/../html/secret.txt"]) {
      const r = await request(`${base}${p}`, { localAddress: "127.0.0.1" });
      expect({ p, status: r.status }).toEqual({ p, status: 404 });
      expect(r.body).not.toContain("status listener");
      expect(r.body).not.toContain("prefix's html");
    }
    // From an address the allow list does not name: refused everywhere, not only at /status.
    for (const p of ["/status", "/", "/secret.txt"]) {
      const r = await request(`${base}${p}`, { localAddress: "127.0.0.2" });
      expect({ p, status: r.status }).toEqual({ p, status: 403 });
    }
  });
});

describe("runtime edges: a fresh start with no dump and no fallback holds requests for the first Consul answer", () => {
  it("requests sent before Consul's late first answer wait for it instead of failing", async () => {
    const s = await start({
      workers: 2,
      consul: { timeout: "3s" },
      backends: ["a"],
      beforeStart: ({ standin, backends }) => {
        standin.registerService(instance("web", backends[0]!.port));
        // Consul takes 1.5 s over the watcher's first query (the agent is slow or just restarted).
        standin.fault({ kind: "delay", delayMs: 1500, times: 1, path: /^\/v1\/health\/service\/web$/ });
      },
    });
    const started = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        await sleep(i * 100);
        const r = await request(s.url("/"), { timeoutMs: 10_000 });
        return { status: r.status, at: Date.now() - started };
      }),
    );
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    // They were held: the first ones could not have been answered before Consul did.
    expect(Math.max(...answers.map((a) => a.at))).toBeGreaterThan(1000);
    expect(s.genLbLines().filter((l) => /no peers \(Consul has not listed any\)/.test(l))).toEqual([]);
  });

  it("the hold is bounded by runtime.hold_for_peers: with Consul down a request waits that long, then 502", async () => {
    const s = await start({
      workers: 1,
      consul: { timeout: "1s" },
      runtime: { hold_for_peers: "1200ms" },
      beforeStart: ({ standin }) => standin.down(),
    });
    await waitFor(() => s.view(), "nginx to answer");
    const t0 = Date.now();
    const r = await request(s.url("/"), { timeoutMs: 10_000 });
    const took = Date.now() - t0;
    expect(r.status).toBe(502);
    expect(took).toBeGreaterThanOrEqual(1100);
    expect(took).toBeLessThan(4000);
    // Requests to gen-lb's own locations are never held.
    const t1 = Date.now();
    await s.view();
    expect(Date.now() - t1).toBeLessThan(1000);
  });
});

describe("runtime edges: the dump between install's seeding and the reload", () => {
  it("the old config's watcher keeps the seeded entries of upstreams the new config adds", async () => {
    const s = await start({ workers: 2, backends: ["a", "b", "c"] });
    const [a, b, c] = s.backends as [Backend, Backend, Backend];
    s.register("web", a);
    await waitFor(() => s.readDump()?.upstreams.web?.peers.length === 1, "the first dump");
    // `gen-lb install` seeds the next build's dump: web as it is, and api, which only the next config has.
    const seeded = renderDump({
      generator: "gen-lb install (seed)",
      buildId: "0123456789abcdef",
      writtenAt: Date.now() / 1000,
      upstreams: {
        web: { key: "web||", index: 1, peers: [{ host: "127.0.0.1", port: a.port, weight: 1 }] },
        api: { key: "api||", index: 7, peers: [{ host: "127.0.0.1", port: c.port, weight: 1 }] },
      },
    });
    writeFileSync(s.dumpPath(), seeded);
    // Before the reload, web changes: the old config's watcher writes the dump.
    s.register("web", b);
    const after = await waitFor(() => {
      const d = s.readDump();
      return d?.upstreams.web?.peers.length === 2 ? d : undefined;
    }, "the old watcher's write");
    expect(after.upstreams.api).toEqual({ key: "api||", index: 7, peers: [["127.0.0.1", c.port, 1]] });

    // The reload into the next config, with Consul down: api starts from the seeded peers.
    await s.standin.down();
    await s.reconfigure({ workers: 2, upstreams: { web: { service: "web" }, api: { service: "api" } } });
    const api = await waitFor(async () => {
      const v = (await s.view()).upstreams.api;
      return v?.meta.source === "dump" ? v : undefined;
    }, "api seeded from the dump after the reload");
    expect(api.peers).toEqual([`127.0.0.1:${c.port}/1`]);
    await s.standin.up();
  });
});
