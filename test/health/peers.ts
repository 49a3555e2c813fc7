/**
 * Misbehaving peers for health-check tests, on 127.0.0.1: raw TCP servers
 * that reset, answer garbage or hang, counting the connections they hold, and
 * a TLS server with a throwaway self-signed certificate.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export type RawMode = "reset" | "garbage" | "garbage-endless" | "hang";

export class RawPeer {
  port = 0;
  connections = 0;
  /** Connections open right now, and the most ever open at once. */
  open = 0;
  maxOpen = 0;
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(readonly mode: RawMode) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    const server = net.createServer((s) => this.handle(s));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
    return this;
  }

  private handle(s: net.Socket): void {
    this.connections++;
    this.open++;
    this.maxOpen = Math.max(this.maxOpen, this.open);
    this.sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => {
      this.open--;
      this.sockets.delete(s);
    });
    switch (this.mode) {
      case "reset":
        // RST as soon as the request arrives.
        s.once("data", () => s.resetAndDestroy());
        return;
      case "garbage":
        s.once("data", () => {
          s.end("\u0000\u00ff NOT HTTP AT ALL \u0007\r\n");
        });
        return;
      case "garbage-endless":
        // A "line" that never ends: more than any receive buffer, then silence.
        s.once("data", () => {
          s.write(Buffer.alloc(256 * 1024, 0x41));
          s.on("data", () => {});
        });
        return;
      case "hang":
        // Read (so that the client's close is seen), never answer.
        s.on("data", () => {});
        return;
    }
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** A port nothing listens on (connections are refused). */
export async function refusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** An HTTPS server answering `status` on every path, with a self-signed certificate. */
export async function tlsPeer(status = 200): Promise<{ port: number; address: string; hits: () => number; stop: () => Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gen-lb-tls-"));
  const key = path.join(dir, "key.pem");
  const cert = path.join(dir, "cert.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=gen-lb-test"], {
    stdio: "ignore",
  });
  let hits = 0;
  const server = https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => {
    hits++;
    res.writeHead(status, { "x-backend": "tls" });
    res.end("tls\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    hits: () => hits,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Open file descriptors of a process. */
export function fdCount(pid: number): number {
  try {
    return execFileSync("ls", [`/proc/${pid}/fd`], { encoding: "utf8" }).split("\n").filter(Boolean).length;
  } catch {
    return -1;
  }
}
