/**
 * How the runtime talks to Consul: the ACL token (from the environment, sent
 * as X-Consul-Token, written nowhere), TLS with verification and SNI, and
 * failover across consul.addresses.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startBackends, type Backend } from "../support/backends.js";
import { ConsulStandin } from "../support/consul-standin.js";
import { request, sample } from "../support/load.js";
import { tempDir } from "../support/nginx.js";
import { freePort, sleep, waitFor } from "../support/ports.js";
import { instance, Stack } from "../support/stack.js";
import { walkTree } from "../support/tree.js";

const TOKEN_ENV = "GEN_LB_TEST_CONSUL_TOKEN";

describe("discovery: ACL token", () => {
  const token = `tok-${randomBytes(12).toString("hex")}`;
  let standin: ConsulStandin;
  let backends: Backend[];
  let stack: Stack | undefined;

  beforeAll(async () => {
    standin = new ConsulStandin({ token });
    await standin.start();
    backends = await startBackends(["a", "fallback"]);
    standin.registerService(instance("web", backends[0]!.port));
  });
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });
  afterAll(async () => {
    await standin?.stop();
    await Promise.all(backends.map((b) => b.stop()));
  });

  it("is read from the environment at run time, sent as X-Consul-Token, and written into no file", async () => {
    stack = await Stack.start({ profile: "discovery", standin, consul: { token_env: TOKEN_ENV }, env: { [TOKEN_ENV]: token } });
    await stack.waitForPeers("web", [backends[0]!.address]);
    const s = await sample(stack.url("/"), 5);
    expect(s).toMatchObject({ failures: 0, byBackend: { a: 5 } });

    const fromNginx = standin.requests.filter((r) => r.path === "/v1/health/service/web");
    expect(fromNginx.length).toBeGreaterThan(0);
    for (const r of fromNginx) expect(r.headers["x-consul-token"]).toBe(token);
    expect(fromNginx.filter((r) => r.status === 403)).toEqual([]);

    // Without the token, the stand-in refuses.
    const anonymous = await request(`${standin.url}/v1/health/service/web?passing=1`);
    expect(anonymous.status).toBe(403);
    expect(anonymous.body).toMatch(/Permission denied/);

    // nginx passes the variable through by name; the value is nowhere on disk (logs included).
    const conf = readFileSync(path.join(stack.prefix, "conf/nginx.conf"), "utf8");
    expect(conf).toMatch(new RegExp(`^env ${TOKEN_ENV};$`, "m"));
    const files = walkTree(stack.prefix).filter((e) => !e.dir).map((e) => e.path);
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(readFileSync(f, "latin1").includes(token), f).toBe(false);
  });

  it("a wrong token: 403 logged once with a hint, and the peers stay", async () => {
    stack = await Stack.start({
      profile: "discovery",
      standin,
      upstreams: { web: { service: "web", fallback: [backends[1]!.address] } },
      consul: { token_env: TOKEN_ENV },
      env: { [TOKEN_ENV]: "not-the-token" },
    });
    await waitFor(() => stack!.genLbLines().some((l) => /HTTP 403/.test(l)), "the 403 line");
    await sleep(1500);
    const lines = stack.genLbLines().filter((l) => /HTTP 403/.test(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`is the token in $${TOKEN_ENV} valid?`);
    expect(lines[0]).not.toContain("not-the-token");
    const s = await sample(stack.url("/"), 5);
    expect(s).toMatchObject({ failures: 0, byBackend: { fallback: 5 } });
  });
});

describe("discovery: Consul addresses", () => {
  let standin: ConsulStandin;
  let backend: Backend;
  let stack: Stack | undefined;
  let proxy: tls.Server | undefined;
  const servernames: Array<string | false | null> = [];

  beforeAll(async () => {
    standin = new ConsulStandin();
    await standin.start();
    [backend] = (await startBackends(["a"])) as [Backend];
    standin.registerService(instance("web", backend.port));
  });
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
    await new Promise<void>((r) => (proxy ? proxy.close(() => r()) : r()));
    proxy = undefined;
  });
  afterAll(async () => {
    await standin?.stop();
    await backend?.stop();
  });

  it("fails over to the next address when the first refuses connections", async () => {
    const dead = await freePort();
    stack = await Stack.start({ profile: "discovery", standin, consul: { addresses: [`http://127.0.0.1:${dead}`, standin.url] } });
    const view = await stack.waitForPeers("web", [backend.address]);
    expect(view.meta.consul_address).toBe(standin.url);
    const lines = stack.genLbLines().filter((l) => /Consul query to .* failed/.test(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`http://127.0.0.1:${dead}`);
    expect(lines[0]).toContain("next Consul address");
  });

  it("reads chunked bodies, as Consul sends large answers", async () => {
    // A front that forwards to the stand-in and re-sends each body chunked, 1 KiB per chunk.
    const port = await freePort();
    const front = http.createServer((req, res) => {
      const up = http.request({ host: "127.0.0.1", port: standin.port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
        const headers = { ...ur.headers };
        delete headers["content-length"];
        res.writeHead(ur.statusCode ?? 502, headers);
        const chunks: Buffer[] = [];
        ur.on("data", (c: Buffer) => chunks.push(c));
        ur.on("end", () => {
          const body = Buffer.concat(chunks);
          for (let i = 0; i < body.length; i += 1024) res.write(body.subarray(i, i + 1024));
          res.end();
        });
      });
      up.on("error", () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => front.listen(port, "127.0.0.1", () => r()));
    try {
      const many = Array.from({ length: 40 }, (_, i) => 19000 + i);
      for (const p of many) standin.registerService(instance("big", p, { Meta: { note: "x".repeat(200) } }));
      stack = await Stack.start({ profile: "discovery", standin, upstreams: { big: { service: "big" } }, consul: { addresses: [`http://127.0.0.1:${port}`] } });
      const view = await stack.waitForPeers("big", many.map((p) => `127.0.0.1:${p}`));
      expect(view.meta.source).toBe("consul");
      // And a change after that, over the same kept-alive connection.
      standin.deregisterService(`big-${many[0]}`);
      await stack.waitForPeers("big", many.slice(1).map((p) => `127.0.0.1:${p}`));
      expect(stack.genLbLines().filter((l) => /failed/.test(l))).toEqual([]);
    } finally {
      await new Promise<void>((r) => {
        front.closeAllConnections();
        front.close(() => r());
      });
    }
  });

  /** A self-signed certificate for localhost / 127.0.0.1, and a TLS front for the stand-in. */
  function certificate(dir: string, name: string): { key: string; cert: string } {
    const key = path.join(dir, `${name}.key`);
    const cert = path.join(dir, `${name}.crt`);
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert,
    ], { stdio: "ignore" });
    // Workers (nobody) load lua_ssl_trusted_certificate themselves.
    chmodSync(dir, 0o755);
    return { key, cert };
  }

  async function tlsFront(pair: { key: string; cert: string }): Promise<number> {
    const port = await freePort();
    proxy = tls.createServer({ key: readFileSync(pair.key), cert: readFileSync(pair.cert) }, (socket) => {
      servernames.push(socket.servername);
      const upstream = net.connect(standin.port, "127.0.0.1");
      socket.pipe(upstream).pipe(socket);
      const end = () => {
        socket.destroy();
        upstream.destroy();
      };
      socket.on("error", end);
      upstream.on("error", end);
      socket.on("close", end);
      upstream.on("close", end);
    });
    proxy.on("tlsClientError", () => {});
    await new Promise<void>((r) => proxy!.listen(port, "127.0.0.1", () => r()));
    return port;
  }

  it("talks TLS to an https:// address, verifying the certificate against ca_file and sending SNI", async () => {
    const dir = tempDir();
    const good = certificate(dir, "consul");
    const port = await tlsFront(good);
    servernames.length = 0;
    stack = await Stack.start({
      profile: "discovery",
      standin,
      consul: { addresses: [`https://localhost:${port}`], ca_file: good.cert, ssl_verify: true },
    });
    const view = await stack.waitForPeers("web", [backend.address]);
    expect(view.meta.consul_address).toBe(`https://localhost:${port}`);
    expect(servernames).toContain("localhost");
    expect(stack.genLbLines().filter((l) => /failed/.test(l))).toEqual([]);
  });

  it("refuses a certificate it cannot verify, keeping the peers it has", async () => {
    const dir = tempDir();
    const served = certificate(dir, "consul");
    const other = certificate(dir, "other-ca");
    const port = await tlsFront(served);
    stack = await Stack.start({
      profile: "discovery",
      standin,
      upstreams: { web: { service: "web", fallback: ["127.0.0.1:9"] } },
      consul: { addresses: [`https://localhost:${port}`], ca_file: other.cert, ssl_verify: true },
    });
    const line = await waitFor(() => stack!.genLbLines().find((l) => /TLS handshake failed/.test(l)), "the TLS failure line");
    expect(line).toMatch(/certificate verify failed|self.signed/);
    const view = await stack.view();
    expect(view.upstreams.web?.meta.source).toBe("fallback");
  });
});
