/**
 * Real HTTP backends on 127.0.0.1 for end-to-end tests. Each answers with its
 * name (body and X-Backend header) and can be told to misbehave.
 */
import http from "node:http";
import type net from "node:net";

export type BackendMode = "ok" | "error500" | "hang" | "reset" | "slow";

export interface BackendOptions {
  name: string;
  port?: number;
  host?: string;
  /** Path answered by health checks; its status is set separately. */
  healthPath?: string;
}

export class Backend {
  readonly name: string;
  readonly host: string;
  port = 0;
  mode: BackendMode = "ok";
  healthStatus = 200;
  slowMs = 2000;
  requests = 0;
  healthRequests = 0;
  private server?: http.Server;
  private sockets = new Set<net.Socket>();
  private readonly healthPath: string;

  constructor(opts: BackendOptions) {
    this.name = opts.name;
    this.host = opts.host ?? "127.0.0.1";
    this.port = opts.port ?? 0;
    this.healthPath = opts.healthPath ?? "/health";
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  async start(): Promise<this> {
    const server = http.createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 60_000;
    server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, this.host, () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
    return this;
  }

  /** Stop listening and drop every open connection, like a killed process. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.url === this.healthPath) {
      this.healthRequests++;
      res.writeHead(this.healthStatus, { "content-type": "text/plain" });
      res.end(`${this.name} health\n`);
      return;
    }
    this.requests++;
    switch (this.mode) {
      case "hang":
        return; // never answer
      case "reset":
        req.socket.destroy();
        return;
      case "error500":
        res.writeHead(500, { "x-backend": this.name });
        res.end(`${this.name} error\n`);
        return;
      case "slow":
        setTimeout(() => {
          res.writeHead(200, { "x-backend": this.name });
          res.end(`${this.name}\n`);
        }, this.slowMs);
        return;
      default:
        res.writeHead(200, { "x-backend": this.name, "content-type": "text/plain" });
        res.end(`${this.name}\n`);
    }
  }
}

export async function startBackends(names: string[], opts: Partial<BackendOptions> = {}): Promise<Backend[]> {
  return Promise.all(names.map((name) => new Backend({ ...opts, name }).start()));
}
