/**
 * The runtime's file and log edges (issue 11): a relative prefix, a dump
 * path that leads out of the prefix, Consul strings in error.log, what the
 * status listener serves. Real nginx (the matrix's binary), the Consul
 * stand-in, backends on loopback.
 */
import { execa } from "execa";
import http from "node:http";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startBackends, type Backend } from "../support/backends.js";
import { ConsulStandin } from "../support/consul-standin.js";
import { buildPrefix, isAlive, NGINX_BIN, tempDir } from "../support/nginx.js";
import { freePort, waitFor } from "../support/ports.js";
import { request } from "../support/load.js";
import { formatDiagnostic } from "../../src/pipeline/load.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { renderDump } from "../../src/consul/dump.js";
import { instance, Stack } from "./harness.js";

const NOBODY_UID = 65534;

/** nginx started by hand (own cwd, own -p), stopped after each test. */
const masters: number[] = [];
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const pid of masters.splice(0)) {
    if (!isAlive(pid)) continue;
    process.kill(pid, "SIGTERM");
    await waitFor(() => !isAlive(pid), "nginx to stop").catch(() => process.kill(pid, "SIGKILL"));
  }
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startIn(cwd: string, prefixArg: string): Promise<number> {
  const r = await execa(NGINX_BIN, ["-p", prefixArg, "-c", "conf/nginx.conf"], { cwd, reject: false });
  const prefix = path.resolve(cwd, prefixArg);
  if (r.exitCode !== 0) throw new Error(`nginx failed to start: ${r.stderr}\n${readLog(prefix)}`);
  const pidFile = path.join(prefix, "logs/nginx.pid");
  const pid = await waitFor(() => (existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8").trim()) || undefined : undefined), "nginx pid file");
  masters.push(pid);
  return pid;
}

function readLog(prefix: string): string {
  try {
    return readFileSync(path.join(prefix, "logs/error.log"), "utf8");
  } catch {
    return "";
  }
}

async function standinWith(backend: Backend): Promise<ConsulStandin> {
  const standin = new ConsulStandin();
  await standin.start();
  cleanups.push(() => standin.stop());
  standin.registerService(instance("web", backend.port));
  return standin;
}

async function backend(): Promise<Backend> {
  const [b] = (await startBackends(["a"])) as [Backend];
  cleanups.push(() => b.stop());
  return b;
}

describe("runtime edges: a relative prefix", () => {
  it("nginx -p dist/ from the build's parent (the README's quick start) keeps the dump inside dist/", async () => {
    // What the defect made: the dump directory at the filesystem root.
    expect(existsSync("/dist/state"), "/dist/state exists before the test: remove it, this test cannot tell otherwise").toBe(false);
    cleanups.push(() => {
      if (existsSync("/dist/state")) rmSync("/dist", { recursive: true, force: true });
    });
    const b = await backend();
    const standin = await standinWith(b);
    const work = tempDir();
    chmodSync(work, 0o755);
    const port = await freePort();
    await buildPrefix(Stack.spec({}, [standin.url], port) as never, path.join(work, "dist"));
    chmodSync(path.join(work, "dist"), 0o755);
    await startIn(work, "dist/");
    const dump = path.join(work, "dist/state/gen_lb_peers.json");
    const doc = await waitFor(() => {
      if (!existsSync(dump)) return undefined;
      const d = JSON.parse(readFileSync(dump, "utf8")) as { upstreams: Record<string, { peers: unknown[] }> };
      return d.upstreams.web?.peers.length === 1 ? d : undefined;
    }, `the dump in dist/state (error.log:\n${readLog(path.join(work, "dist"))})`);
    expect(doc.upstreams.web!.peers).toEqual([["127.0.0.1", b.port, 1]]);
    expect(existsSync("/dist/state")).toBe(false);
    expect(readLog(path.join(work, "dist"))).not.toMatch(/cannot write the dump file|may not be writable/);
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

  it("a hand-edited config.lua pointing out of the prefix: nothing outside is created or chowned", async () => {
    const b = await backend();
    const standin = await standinWith(b);
    const work = tempDir();
    chmodSync(work, 0o755);
    const prefix = path.join(work, "prefix");
    const victim = path.join(work, "victim");
    mkdirSync(victim);
    await buildPrefix(Stack.spec({}, [standin.url], await freePort()) as never, prefix);
    chmodSync(prefix, 0o755);
    const configLua = path.join(prefix, "lua/gen_lb/config.lua");
    const text = readFileSync(configLua, "utf8");
    expect(text).toContain('"state/gen_lb_peers.json"');
    writeFileSync(configLua, text.replace('"state/gen_lb_peers.json"', '"../victim/peers.json"'));
    await startIn(work, `${prefix}/`);
    // The watcher's first answer, then time for its dump write.
    await waitFor(() => /peers changed to version 1 from consul/.test(readLog(prefix)), "the first Consul answer");
    await new Promise((r) => setTimeout(r, 1000));
    expect(statSync(victim).uid).toBe(0);
    expect(existsSync(path.join(victim, "peers.json"))).toBe(false);
    expect(readLog(prefix)).toMatch(/\[error\].*consul\.dump_file \.\.\/victim\/peers\.json resolves to .*victim\/peers\.json, outside the prefix/);
  });

  it("a state/ symlinked out of the prefix is refused, not chowned", async () => {
    const b = await backend();
    const standin = await standinWith(b);
    const work = tempDir();
    chmodSync(work, 0o755);
    const prefix = path.join(work, "prefix");
    const victim = path.join(work, "victim");
    mkdirSync(victim);
    await buildPrefix(Stack.spec({}, [standin.url], await freePort()) as never, prefix);
    chmodSync(prefix, 0o755);
    rmSync(path.join(prefix, "state"), { recursive: true, force: true });
    symlinkSync(victim, path.join(prefix, "state"));
    await startIn(work, `${prefix}/`);
    await waitFor(() => /peers changed to version 1 from consul/.test(readLog(prefix)), "the first Consul answer");
    await new Promise((r) => setTimeout(r, 1000));
    expect(statSync(victim).uid).not.toBe(NOBODY_UID);
    expect(existsSync(path.join(victim, "gen_lb_peers.json"))).toBe(false);
    expect(readLog(prefix)).toMatch(/\[error\].*consul\.dump_file state\/gen_lb_peers\.json resolves to .*victim\/gen_lb_peers\.json, outside the prefix/);
  });
});

describe("runtime edges: Consul strings in error.log", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });

  it("a Service.ID with a newline cannot forge a log line", async () => {
    const b = await backend();
    stack = await Stack.start({ workers: 1 });
    stack.register(instance("web", b.port));
    const forged = "2026/12/02 06:00:00 [emerg] 1#1: forged by a Consul entry";
    stack.register({ ID: `evil\n${forged}\r\u001b[2J`, Name: "web", Address: "not-an-ip", Port: 1 });
    await stack.waitForPeers("web", [b.address]);
    const line = await waitFor(() => stack!.genLbLines().find((l) => /ignored 1 of 2 Consul entries/.test(l)), "the ignored-entries warning");
    expect(line).toContain("evil\\n2026/12/02 06:00:00 [emerg] 1#1: forged");
    expect(line).toContain("\\r\\x1b[2J");
    const log = stack.errorLog();
    expect(log.split("\n").filter((l) => l.startsWith(forged.slice(0, 20)) || l.includes("[emerg]") && !l.includes("gen-lb: "))).toEqual([]);
    expect(log).not.toContain("\u001b");
  });
});

/** GET from a chosen loopback source address. */
function get(url: string, localAddress: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { localAddress, agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("client timeout")));
    req.on("error", reject);
    req.end();
  });
}

describe("runtime edges: the status listener", () => {
  it("answers only its path (everything else 404) and the allow list covers the whole listener", async () => {
    const b = await backend();
    const standin = await standinWith(b);
    const work = tempDir();
    chmodSync(work, 0o755);
    const prefix = path.join(work, "prefix");
    const statusPort = await freePort();
    const spec = { ...Stack.spec({}, [standin.url], await freePort()), status: { enabled: true, listen: `127.0.0.1:${statusPort}`, path: "/status", allow: ["127.0.0.1"] } };
    await buildPrefix(spec as never, prefix);
    chmodSync(prefix, 0o755);
    mkdirSync(path.join(prefix, "html"), { recursive: true });
    writeFileSync(path.join(prefix, "html/index.html"), "the prefix's html\n");
    writeFileSync(path.join(prefix, "html/secret.txt"), "not for the status listener\n");
    await startIn(work, `${prefix}/`);
    const base = `http://127.0.0.1:${statusPort}`;
    const ok = await waitFor(async () => {
      const r = await get(`${base}/status`, "127.0.0.1");
      return r.status === 200 ? r : undefined;
    }, "the status endpoint");
    expect(JSON.parse(ok.body)).toHaveProperty("build_id");
    for (const p of ["/", "/index.html", "/secret.txt", "/status/", "/statusx", "/../html/secret.txt"]) {
      const r = await get(`${base}${p}`, "127.0.0.1");
      expect({ p, status: r.status }).toEqual({ p, status: 404 });
      expect(r.body).not.toContain("status listener");
      expect(r.body).not.toContain("prefix's html");
    }
    // From an address the allow list does not name: refused everywhere, not only at /status.
    for (const p of ["/status", "/", "/secret.txt"]) {
      const r = await get(`${base}${p}`, "127.0.0.2");
      expect({ p, status: r.status }).toEqual({ p, status: 403 });
    }
  });
});

describe("runtime edges: a fresh start with no dump and no fallback holds requests for the first Consul answer", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });

  it("requests sent before Consul's late first answer wait for it instead of failing", async () => {
    const b = await backend();
    const standin = await standinWith(b);
    // Consul takes 1.5 s over the watcher's first query (the agent is slow or just restarted).
    standin.fault({ kind: "delay", delayMs: 1500, times: 1, path: /^\/v1\/health\/service\/web$/ });
    stack = await Stack.start({ standin, workers: 2, consul: { timeout: "3s" } });
    const started = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        await new Promise((r) => setTimeout(r, i * 100));
        const r = await request(stack!.url("/"), { timeoutMs: 10_000 });
        return { status: r.status, at: Date.now() - started };
      }),
    );
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    // They were held: the first ones could not have been answered before Consul did.
    expect(Math.max(...answers.map((a) => a.at))).toBeGreaterThan(1000);
    expect(stack.genLbLines().filter((l) => /no peers \(Consul has not listed any\)/.test(l))).toEqual([]);
  });

  it("the hold is bounded by runtime.hold_for_peers: with Consul down a request waits that long, then 502", async () => {
    const standin = new ConsulStandin();
    await standin.start();
    cleanups.push(() => standin.stop());
    await standin.down();
    const work = tempDir();
    chmodSync(work, 0o755);
    const prefix = path.join(work, "prefix");
    const port = await freePort();
    const spec = Stack.spec({ workers: 1, consul: { timeout: "1s" } }, [standin.url], port) as Record<string, unknown>;
    await buildPrefix({ ...spec, runtime: { log_level: "notice", hold_for_peers: "1200ms" } } as never, prefix);
    chmodSync(prefix, 0o755);
    await startIn(work, `${prefix}/`);
    const url = (p: string) => `http://127.0.0.1:${port}${p}`;
    await waitFor(async () => (await request(url("/_gen_lb_view")).catch(() => undefined))?.status === 200, "nginx to answer");
    const t0 = Date.now();
    const r = await request(url("/"), { timeoutMs: 10_000 });
    const took = Date.now() - t0;
    expect(r.status).toBe(502);
    expect(took).toBeGreaterThanOrEqual(1100);
    expect(took).toBeLessThan(4000);
    // Requests to gen-lb's own locations are never held.
    const t1 = Date.now();
    expect((await request(url("/_gen_lb_view"))).status).toBe(200);
    expect(Date.now() - t1).toBeLessThan(1000);
  });
});

describe("runtime edges: the dump between install's seeding and the reload", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });

  it("the old config's watcher keeps the seeded entries of upstreams the new config adds", async () => {
    const [a, b, c] = (await startBackends(["a", "b", "c"])) as [Backend, Backend, Backend];
    cleanups.push(() => Promise.all([a, b, c].map((x) => x.stop())).then(() => undefined));
    stack = await Stack.start({ workers: 2 });
    stack.register(instance("web", a.port));
    await waitFor(() => stack!.readDump()?.upstreams.web?.peers.length === 1, "the first dump");
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
    writeFileSync(stack.dumpPath(), seeded);
    // Before the reload, web changes: the old config's watcher writes the dump.
    stack.register(instance("web", b.port));
    const after = await waitFor(() => {
      const d = stack!.readDump();
      return d?.upstreams.web?.peers.length === 2 ? d : undefined;
    }, "the old watcher's write");
    expect(after.upstreams.api).toEqual({ key: "api||", index: 7, peers: [["127.0.0.1", c.port, 1]] });

    // The reload into the next config, with Consul down: api starts from the seeded peers.
    await stack.standin.down();
    const spec = Stack.spec({ upstreams: { web: { service: "web" }, api: { service: "api" } } }, [stack.standin.url], stack.port);
    await buildPrefix(spec as never, stack.prefix);
    await stack.nginx.reload();
    const api = await waitFor(async () => {
      const v = (await stack!.view()).upstreams.api;
      return v?.meta.source === "dump" ? v : undefined;
    }, "api seeded from the dump after the reload");
    expect(api.peers).toEqual([`127.0.0.1:${c.port}/1`]);
    await stack.standin.up();
  });
});
