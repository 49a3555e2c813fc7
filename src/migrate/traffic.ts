/**
 * `migrate --verify=traffic`: the old config and the one built from the
 * migrated spec run side by side on scratch loopback ports, their upstream
 * servers replaced by echo backends (which answer with what reached them),
 * and both get the same requests (src/migrate/traffic-plan.ts decides which
 * and compares). Consul-fed upstreams of the new config get the echo backend
 * as their only fallback peer and a Consul address nothing listens on, so
 * the runtime serves from the fallback list as it does before Consul first
 * answers; the old config's Lua balancers are replaced by the same backend.
 * Nothing leaves 127.0.0.1.
 */
import { chmodSync, promises as fs, readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { print } from "../nginx/print.js";
import { fsLoader } from "../nginx/load.js";
import { parseConfig } from "../nginx/parse.js";
import type { Directive } from "../nginx/types.js";
import { buildFileSet, formatDiagnostic } from "../pipeline/index.js";
import { validateSpecText } from "../pipeline/validate.js";
import { writeFileSet } from "../util/files.js";
import type { Command, ProcessRunner } from "../util/proc.js";
import { defaultPrefix, type Finding, type Migration } from "./index.js";
import { REFUSED_BY_TARGET } from "./target-fit.js";
import type { BinInfo } from "./bin.js";
import { adaptForTarget } from "./modules.js";
import {
  collectEndpoints,
  compareAnswers,
  explainDifference,
  requestSet,
  rewriteTree,
  showRequest,
  type Answer,
  type TrafficDifference,
  type TrafficRequest,
} from "./traffic-plan.js";

export interface TrafficResult {
  requests: number;
  /** Differences the report does not account for: each fails the run. */
  differences: TrafficDifference[];
  /** Differences a finding of the report accounts for (printed, not failing). */
  explained: TrafficDifference[];
  /** Why the two configs could not be run side by side, when they could not. */
  failure?: string;
}

interface EchoBackend {
  address: string;
  close(): Promise<void>;
}

const FORWARDED = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-real-ip", "forwarded", "upgrade", "proxy", "content-type"];

/** What the backend saw: the parts of the request a proxy may change. */
function seen(label: string, req: http.IncomingMessage, body: string): Record<string, unknown> {
  const out: Record<string, unknown> = { upstream: label, method: req.method, path: req.url, host: req.headers.host };
  for (const h of FORWARDED) if (req.headers[h] !== undefined) out[h] = req.headers[h];
  // Headers a config adds of its own (X-Request-Start, X-Accel-Mapping...): compared with their numbers masked (traffic-plan).
  for (const [h, v] of Object.entries(req.headers)) if (h.startsWith("x-") && out[h] === undefined) out[h] = v;
  if (body !== "") out.body = body;
  return out;
}

async function startEcho(label: string): Promise<EchoBackend> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = JSON.stringify(seen(label, req, Buffer.concat(chunks).toString("utf8")));
      res.writeHead(200, { "content-type": "application/json", "x-verify-echo": "1" });
      res.end(text);
    });
  });
  server.on("upgrade", (req: http.IncomingMessage, socket: net.Socket) => {
    const text = Buffer.from(JSON.stringify(seen(label, req, ""))).toString("base64");
    socket.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Verify-Echo: ${text}\r\n\r\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function send(r: TrafficRequest, port: number): Promise<Answer> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { host: r.host, "user-agent": "gen-lb-migrate-verify" };
    if (r.body !== undefined) {
      headers["content-type"] = "text/plain";
      headers["content-length"] = String(Buffer.byteLength(r.body));
    }
    if (r.websocket) Object.assign(headers, { connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" });
    const options = { host: "127.0.0.1", port, method: r.method, path: r.path, headers, agent: false, timeout: 5000 } as const;
    const req = r.tls ? https.request({ ...options, rejectUnauthorized: false, servername: r.host }) : http.request(options);
    const done = (a: Answer) => {
      req.destroy();
      resolve(a);
    };
    req.on("timeout", () => done({ status: 0, headers: {}, body: "", error: "no answer within 5 s" }));
    req.on("error", (e: NodeJS.ErrnoException) => done({ status: 0, headers: {}, body: "", error: e.code ?? e.message }));
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      const h = { ...(res.headers as Record<string, string>) };
      const echo = h["x-verify-echo"];
      delete h["x-verify-echo"];
      let backend: Record<string, unknown> | undefined;
      try {
        backend = echo ? (JSON.parse(Buffer.from(echo, "base64").toString("utf8")) as Record<string, unknown>) : undefined;
      } catch {
        backend = undefined;
      }
      done({ status: res.statusCode ?? 0, headers: h, body: "", ...(backend ? { backend } : {}) });
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const h = res.headers as Record<string, string>;
        let backend: Record<string, unknown> | undefined;
        if (h["x-verify-echo"] === "1" && body !== "") {
          try {
            backend = JSON.parse(body) as Record<string, unknown>;
          } catch {
            backend = undefined;
          }
        }
        done({ status: res.statusCode ?? 0, headers: h, body, ...(backend ? { backend } : {}) });
      });
      res.on("error", (e) => done({ status: res.statusCode ?? 0, headers: {}, body: "", error: e.message }));
    });
    req.end(r.body);
  });
}

/**
 * `BIN -p PREFIX -e LOG -c CONF`: a master that daemonizes. `-e` points the
 * log nginx opens before it reads the config (its compiled-in path, relative
 * to the prefix on OpenResty) at the scratch logs: the old prefix has no
 * logs/ directory of its own when it was only a directory of config files.
 */
function startCommand(bin: string, prefix: string, conf: string, errorLog: string): Command {
  return { command: bin, args: ["-p", prefix.endsWith("/") ? prefix : `${prefix}/`, "-e", errorLog, "-c", conf], timeoutMs: 30_000, fileStdio: true };
}

async function waitFor<T>(probe: () => T | undefined, ms: number): Promise<T | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Running {
  pid: number;
}

async function startNginx(runner: ProcessRunner, bin: string, prefix: string, conf: string, logDir: string, what: string): Promise<Running> {
  const r = await runner.run(startCommand(bin, prefix, conf, path.join(logDir, "error.log")));
  const log = () => {
    try {
      return readFileSync(path.join(logDir, "error.log"), "utf8").trim().split("\n").slice(-5).join("\n");
    } catch {
      return "";
    }
  };
  if (r.spawnError || r.exitCode !== 0) {
    // nginx prints the reason (a distro nginx whose error log is stderr), or only logs it (-e).
    const printed = (r.spawnError ?? `${r.stderr}${r.stdout}`).trim();
    throw new Error(`${what} did not start: ${[printed, log()].filter((x) => x !== "").join("\n")}`);
  }
  const pid = await waitFor(() => {
    try {
      const n = Number(readFileSync(path.join(logDir, "nginx.pid"), "utf8").trim());
      return n > 0 && runner.children(n).length > 0 ? n : undefined;
    } catch {
      return undefined;
    }
  }, 10_000);
  if (pid === undefined) throw new Error(`${what} started but no worker came up${log() ? `\n${log()}` : ""}`);
  return { pid };
}

async function stopNginx(runner: ProcessRunner, n: Running | undefined): Promise<void> {
  if (!n) return;
  runner.signal(n.pid, "SIGTERM");
  await waitFor(() => (runner.inspect(n.pid) === undefined ? true : undefined), 10_000);
}

export interface TrafficOptions {
  /** The old main config file, absolute. */
  mainFile: string;
  bin: string;
  binInfo?: BinInfo;
  /** The old nginx's prefix (--prefix), which the old config runs with; default: as migrate guesses it. */
  oldPrefix?: string;
  runner: ProcessRunner;
}

export async function verifyTraffic(m: Migration, opts: TrafficOptions): Promise<TrafficResult> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "gen-lb-migrate-traffic-"));
  // Workers may run as another user (nobody) when the master is root: they must read what is here.
  chmodSync(dir, 0o755);
  const oldDir = path.join(dir, "old");
  const newDir = path.join(dir, "new");
  await fs.mkdir(path.join(oldDir, "logs"), { recursive: true, mode: 0o755 });
  const echoes = new Map<string, EchoBackend>();
  let oldRun: Running | undefined;
  let newRun: Running | undefined;
  try {
    const upstreams = m.spec.upstreams ?? {};
    const oldEp = collectEndpoints(m.tree);
    for (const name of new Set([...oldEp.backends, ...Object.keys(upstreams)])) echoes.set(name, await startEcho(name.replace(/^direct:/, "")));
    const backends = new Map([...echoes].map(([k, e]) => [k, e.address]));

    // The new spec: Consul-fed upstreams served from their echo backend as the only fallback peer.
    const spec = structuredClone(m.spec);
    let consulFed = false;
    for (const [name, up] of Object.entries(spec.upstreams ?? {})) {
      if (up.service === undefined) continue;
      up.fallback = [backends.get(name)!];
      consulFed = true;
    }
    if (consulFed) spec.consul = { ...spec.consul, addresses: [`http://127.0.0.1:${await freePort()}`] };
    const validated = validateSpecText(JSON.stringify(spec), "migrated spec (for --verify=traffic)");
    if (!validated.spec) return { requests: 0, differences: [], explained: [], failure: `the migrated spec does not validate: ${validated.errors.map(formatDiagnostic).join("; ")}` };
    const target = opts.binInfo?.target ?? (path.basename(opts.bin).startsWith("openresty") ? "openresty" : "nginx");
    await writeFileSet(newDir, buildFileSet(validated.spec, path.join(newDir, "gen-lb.yaml"), target));
    await fs.mkdir(path.join(newDir, "logs"), { recursive: true });
    const newConf = path.join(newDir, "conf/nginx.conf");
    const parsedNew = parseConfig(newConf, fsLoader());
    const newTree = parsedNew.config[0]?.parsed ?? [];

    // Each listen gets two scratch ports, one per side, so both run at once.
    const oldListens = new Map<string, number>();
    const newListens = new Map<string, number>();
    for (const key of oldEp.listens) oldListens.set(key, await freePort());
    for (const key of new Set([...oldEp.listens, ...collectEndpoints(newTree).listens])) newListens.set(key, await freePort());

    const mainAbs = path.resolve(opts.mainFile);
    const oldPrefix = opts.oldPrefix ?? defaultPrefix(mainAbs);
    const oldTree = rewriteTree(adaptForTarget(m.tree, m.findings, opts.binInfo), { listens: oldListens, backends }, { logDir: path.join(oldDir, "logs"), confDir: path.dirname(mainAbs), keepLuaUpstreams: false, ...(opts.binInfo?.prefix ? { modulePrefix: opts.binInfo.prefix } : {}) });
    const oldConf = path.join(oldDir, "nginx.conf");
    await fs.writeFile(oldConf, print(withLuaModule(withoutPatternLua(oldTree, m), opts.binInfo)));
    await fs.writeFile(newConf, print(rewriteTree(newTree, { listens: newListens, backends }, { logDir: path.join(newDir, "logs"), confDir: path.dirname(newConf), keepLuaUpstreams: true })));

    try {
      oldRun = await startNginx(opts.runner, opts.bin, oldPrefix, oldConf, path.join(oldDir, "logs"), "the old config");
      newRun = await startNginx(opts.runner, opts.bin, newDir, "conf/nginx.conf", path.join(newDir, "logs"), "the new config");
    } catch (e) {
      return { requests: 0, differences: [], explained: [], failure: (e as Error).message.replaceAll(dir, "<scratch>") };
    }

    const requests = requestSet(m.tree);
    const differences: TrafficDifference[] = [];
    const explained: TrafficDifference[] = [];
    for (const r of requests) {
      const before = await send(r, oldListens.get(r.listen)!);
      const after = await send(r, newListens.get(r.listen)!);
      for (const what of compareAnswers(before, after)) {
        const by = explainDifference(r, m.findings);
        (by ? explained : differences).push({ request: r, what, ...(by ? { explainedBy: by } : {}) });
      }
    }
    return { requests: requests.length, differences, explained };
  } finally {
    await stopNginx(opts.runner, oldRun);
    await stopNginx(opts.runner, newRun);
    for (const e of echoes.values()) await e.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * The old config without the Lua that the report says gen-lb replaces (the
 * Consul polling and checkers of the pattern): its upstreams now point at the
 * echo backends, and a poller talking to a real Consul would only add noise.
 * Nor with the directives the binary refuses, which the report names lost.
 */
function withoutPatternLua(tree: Directive[], m: Migration): Directive[] {
  // Also what the binary refuses (a module it was built without): the old config could not start on it, and the report names each.
  const gone = (f: Finding) => (f.kind === "dropped" && /^init(_worker)?_by_lua/.test(f.directive ?? "")) || (f.kind === "lost" && f.message.includes(REFUSED_BY_TARGET));
  const dropped = new Set(m.findings.filter((f) => f.column !== undefined && gone(f)).map((f) => `${f.file}:${f.line}:${f.column}`));
  const strip = (nodes: Directive[]): Directive[] =>
    nodes.filter((d) => !dropped.has(`${d.file}:${d.line}:${d.column}`)).map((d) => (d.block ? { ...d, block: strip(d.block) } : d));
  return strip(tree);
}

/** The human lines of a traffic verify (also appended to --report). */
export function formatTraffic(t: TrafficResult): string {
  const line = (d: TrafficDifference) => `    ${showRequest(d.request)}: ${d.what}${d.explainedBy ? ` (explained: ${d.explainedBy.file}:${d.explainedBy.line}: ${d.explainedBy.message.slice(0, 100)})` : ""}`;
  return [
    `Verify by traffic: the old and the new config side by side on scratch loopback ports, echo backends for the upstreams`,
    ...(t.failure ? [`  could not run both: ${t.failure}`] : [`  requests: ${t.requests}`]),
    `  differences not explained by the report: ${t.differences.length}`,
    ...t.differences.map(line),
    ...(t.explained.length ? [`  differences the report explains: ${t.explained.length}`, ...t.explained.map(line)] : []),
    "",
  ].join("\n");
}

/**
 * The Lua module as the binary that runs the old config needs it: an old
 * config written for OpenResty (module built in) gets the load_module lines a
 * distro nginx needs, from the binary's modules directory; one written for a
 * distro nginx loses them on OpenResty.
 */
function withLuaModule(tree: Directive[], bin: BinInfo | undefined): Directive[] {
  // OpenResty has the Lua module (and NDK) built in: loading them again is an error.
  const builtIn = (d: Directive) => d.directive === "load_module" && /(^|\/)(ndk_http_module|ngx_http_lua_module)\.so$/.test(d.args[0] ?? "");
  if (bin?.target === "openresty") return tree.filter((d) => !builtIn(d));
  if (!bin || bin.target !== "nginx") return tree;
  let lua = false;
  const visit = (nodes: readonly Directive[]) => {
    for (const d of nodes) {
      if (/^lua_|_by_lua/.test(d.directive)) lua = true;
      if (d.block) visit(d.block);
    }
  };
  visit(tree);
  if (!lua || tree.some((d) => d.directive === "load_module" && d.args[0]?.endsWith("ngx_http_lua_module.so"))) return tree;
  const dir = bin.modulesPath ?? (bin.prefix ? path.join(bin.prefix, "modules") : undefined);
  if (dir === undefined) return tree;
  const mod = (file: string) => ({ directive: "load_module", args: [path.join(dir, file)], file: "", line: 0, column: 0 }) as unknown as Directive;
  return [mod("ndk_http_module.so"), mod("ngx_http_lua_module.so"), ...tree];
}
