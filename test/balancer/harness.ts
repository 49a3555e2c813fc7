/**
 * One load balancer for the balancer, health and status tests: the Consul
 * stand-in, real backends, a prefix built from a spec pointing at both, the
 * real nginx on free loopback ports, and the status endpoint to read what the
 * runtime decided.
 */
import { chmodSync, copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { ConsulStandin } from "../support/consul-standin.js";
import { Backend } from "../support/backends.js";
import { buildPrefix, Nginx } from "../support/nginx.js";
import { freePort, waitFor } from "../support/ports.js";
import { request } from "../support/load.js";
import { statusDocumentSchema, type PeerStatus, type StatusDocument as StatusDoc, type UpstreamStatus } from "../../src/contract/status.js";

// The status document's types come from the contract; status() validates every read against it.
export type { PeerStatus, UpstreamStatus, StatusDocument as StatusDoc } from "../../src/contract/status.js";

export interface LbOptions {
  /** Upstream name -> spec fields (service defaults to the name). */
  upstreams: Record<string, Record<string, unknown>>;
  workers?: number;
  /** Extra locations for the main server (after one per upstream). */
  locations?: Array<Record<string, unknown>>;
  /** Status allow list (default 127.0.0.1). */
  allow?: string[];
  errorLevel?: string;
  /** Extra fields for the main server (error_pages, ...). */
  server?: Record<string, unknown>;
  /** Extra nginx.http fields (resolver, ...). */
  http?: Record<string, unknown>;
  /** Extra Lua files copied into the prefix: module path ("gen_lb_test/x.lua") -> source file. */
  luaFiles?: Record<string, string>;
}

/** A location whose content is one Lua chunk (data passed as the nginx argument, never spliced). */
export function luaLocation(pathname: string, code: string): Record<string, unknown> {
  return { path: pathname, match: "exact", directives: [{ name: "content_by_lua", args: [code] }] };
}

export class Lb {
  private constructor(
    readonly standin: ConsulStandin,
    readonly nginx: Nginx,
    readonly prefix: string,
    readonly buildId: string,
    readonly port: number,
    readonly statusPort: number,
  ) {}

  static async start(opts: LbOptions): Promise<Lb> {
    const standin = new ConsulStandin();
    await standin.start();
    const port = await freePort();
    const statusPort = await freePort();
    const { dir, buildId } = await buildPrefix(Lb.spec(opts, standin.url, port, statusPort) as never);
    // mkdtemp makes 0700 directories; workers run as nobody.
    chmodSync(dir, 0o755);
    Lb.copyLua(dir, opts);
    const nginx = await Nginx.start(dir);
    return new Lb(standin, nginx, dir, buildId, port, statusPort);
  }

  private static spec(opts: LbOptions, consul: string, port: number, statusPort: number) {
    const names = Object.keys(opts.upstreams);
    return {
      consul: { addresses: [consul], wait: "5s", timeout: "1s" },
      nginx: {
        worker_processes: opts.workers ?? 2,
        error_log: { path: "logs/error.log", level: opts.errorLevel ?? "info" },
        http: { access_log: "off", ...opts.http },
      },
      upstreams: Object.fromEntries(
        Object.entries(opts.upstreams).map(([n, u]) => [n, { service: n, connect_timeout: "1s", read_timeout: "5s", ...u }]),
      ),
      servers: [
        {
          listen: `127.0.0.1:${port}`,
          locations: [...names.map((n) => ({ path: `/${n}/`, upstream: n })), ...(opts.locations ?? [])],
          ...opts.server,
        },
      ],
      status: { listen: `127.0.0.1:${statusPort}`, path: "/status", allow: opts.allow ?? ["127.0.0.1"] },
    };
  }

  private static copyLua(dir: string, opts: LbOptions): void {
    for (const [mod, src] of Object.entries(opts.luaFiles ?? {})) {
      const to = path.join(dir, "lua", mod);
      mkdirSync(path.dirname(to), { recursive: true });
      copyFileSync(src, to);
    }
  }

  /** Rebuilds the prefix from new options (same ports, same stand-in) and reloads nginx (HUP). */
  async reconfigure(opts: LbOptions): Promise<void> {
    await buildPrefix(Lb.spec(opts, this.standin.url, this.port, this.statusPort) as never, this.prefix);
    Lb.copyLua(this.prefix, opts);
    await this.nginx.reload();
  }

  url(upstream: string, rest = ""): string {
    return `http://127.0.0.1:${this.port}/${upstream}/${rest}`;
  }

  statusUrl(query = ""): string {
    return `http://127.0.0.1:${this.statusPort}/status${query}`;
  }

  async status(): Promise<StatusDoc> {
    const res = await request(this.statusUrl(), { timeoutMs: 5000 });
    if (res.status !== 200) throw new Error(`status: HTTP ${res.status}: ${res.body}`);
    return statusDocumentSchema.parse(JSON.parse(res.body));
  }

  async upstream(name: string): Promise<UpstreamStatus> {
    const u = (await this.status()).upstreams[name];
    if (!u) throw new Error(`no upstream ${name} in the status`);
    return u;
  }

  async peer(name: string, address: string): Promise<PeerStatus | undefined> {
    return (await this.upstream(name)).peers.find((p) => p.address === address);
  }

  async prometheus(): Promise<string> {
    const res = await request(this.statusUrl("?format=prometheus"), { timeoutMs: 5000 });
    if (res.status !== 200) throw new Error(`prometheus: HTTP ${res.status}: ${res.body}`);
    return res.body;
  }

  /** Registers a backend (or anything with a port on 127.0.0.1) as an instance of `service` (weight 1 unless given). */
  register(service: string, backend: Backend | { port: number; host?: string }, weight?: number): string {
    const id = `${service}-${backend.port}`;
    this.standin.registerService({
      ID: id,
      Name: service,
      Address: backend.host ?? "127.0.0.1",
      Port: backend.port,
      ...(weight === undefined ? {} : { Weights: { Passing: weight, Warning: 1 } }),
    });
    return id;
  }

  deregister(id: string): void {
    this.standin.deregisterService(id);
  }

  /** Waits until the status lists exactly `addresses` for `name`. */
  async waitForPeers(name: string, addresses: string[], timeoutMs = 10_000): Promise<UpstreamStatus> {
    const want = [...addresses].sort().join(",");
    let last = "";
    try {
      return await waitFor(
        async () => {
          const u = await this.upstream(name);
          last = u.peers.map((p) => p.address).sort().join(",");
          return last === want ? u : undefined;
        },
        `peers of ${name} to be [${want}]`,
        timeoutMs,
        20,
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}; last seen [${last}]\n${this.logTail()}`);
    }
  }

  /** Waits until `pred` holds for the status of peer `address` of `name`. */
  async waitForPeer(name: string, address: string, pred: (p: PeerStatus) => boolean, what: string, timeoutMs = 15_000): Promise<PeerStatus> {
    let last: PeerStatus | undefined;
    try {
      return await waitFor(
        async () => {
          last = await this.peer(name, address);
          return last && pred(last) ? last : undefined;
        },
        `${name} ${address}: ${what}`,
        timeoutMs,
        25,
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}; last seen ${JSON.stringify(last)}\n${this.logTail()}`);
    }
  }

  errorLog(): string {
    return this.nginx.errorLog();
  }

  logTail(lines = 30): string {
    return `--- error.log tail ---\n${this.errorLog().split("\n").slice(-lines).join("\n")}`;
  }

  /** Lines that mean a Lua error somewhere (a crashed timer, a failed phase handler). */
  luaErrors(): string[] {
    return this.errorLog()
      .split("\n")
      .filter((l) => /lua entry thread aborted|runtime error|stack traceback|\[alert\]|\[emerg\]|failed:.*\.lua:\d+/.test(l));
  }

  async stop(): Promise<void> {
    await this.nginx.stop();
    await this.standin.stop();
  }
}

export async function backends(names: string[]): Promise<Backend[]> {
  return Promise.all(names.map((name) => new Backend({ name }).start()));
}

/** Counts of X-Backend answers for `n` sequential requests on one keep-alive connection. */
export function share(counts: Record<string, number>, name: string): number {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return total === 0 ? 0 : (counts[name] ?? 0) / total;
}
