import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildFileSet } from "../../src/pipeline/index.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { buildPrefix, Nginx, nginxTest, tempDir } from "../support/nginx.js";
import { TEST_TARGET, type TestTarget } from "../support/target.js";
import { writeFileSet } from "../../src/util/files.js";
import { request } from "../support/load.js";
import { freePort } from "../support/ports.js";

const examplesDir = new URL("../../fixtures/examples/", import.meta.url);
const goldenDir = new URL("../../fixtures/golden/", import.meta.url);
const examples = readdirSync(examplesDir).filter((f) => /\.ya?ml$|\.json$/.test(f)).sort();
/** The golden files: what a spec decides. Runtime modules are tested by running them. */
const GOLDEN = ["conf/nginx.conf", "lua/gen_lb/config.lua"];

function render(file: string, target?: TestTarget) {
  const text = readFileSync(new URL(file, examplesDir), "utf8");
  const r = validateSpecText(text, file);
  if (!r.spec) throw new Error(r.errors.map((e) => e.message).join("\n"));
  return buildFileSet(r.spec, file, target);
}

describe("rendered output", () => {
  it("has examples to check", () => {
    expect(examples.length).toBeGreaterThanOrEqual(2);
  });

  it.each(examples)("%s matches its golden files (UPDATE_GOLDEN=1 to accept a change)", (file) => {
    const set = render(file);
    const dir = new URL(`${path.parse(file).name}/`, goldenDir);
    for (const p of GOLDEN) {
      // The build id hashes the runtime modules too; those are tested by running them.
      const actual = set.files.find((f) => f.path === p)!.contents.replace(/^config\.build_id = "[0-9a-f]{16}"$/m, 'config.build_id = "<build id>"');
      const goldenFile = new URL(p.replace(/\//g, "__"), dir);
      if (process.env.UPDATE_GOLDEN === "1") {
        mkdirSync(dir, { recursive: true });
        writeFileSync(goldenFile, actual);
      }
      expect(actual).toBe(readFileSync(goldenFile, "utf8"));
    }
  });

  it.each(examples)("%s renders byte-for-byte the same twice", (file) => {
    const a = render(file);
    const b = render(file);
    expect(b.buildId).toBe(a.buildId);
    expect(b.files).toEqual(a.files);
  });

  it.each(examples)("%s passes the real nginx -t without warnings (rendered for the matrix's target)", async (file) => {
    const dir = tempDir();
    await writeFileSet(dir, render(file, TEST_TARGET));
    const result = nginxTest(dir);
    expect(result.output).toContain("test is successful");
    expect(result.output).not.toContain("[warn]");
    expect(result.ok).toBe(true);
  });
});

describe("hostile values", () => {
  const hostile = `a"b;c}d{e'f\\g #h [x] & %s`;
  let nginx: Nginx | undefined;
  afterAll(async () => nginx?.stop());

  it("are quoted so nginx reads back exactly the value (nginx is the judge)", async () => {
    const port = await freePort();
    const statusPort = await freePort();
    const { dir } = await buildPrefix({
      servers: [
        {
          listen: `127.0.0.1:${port}`,
          server_name: ["hostile;name}"],
          locations: [
            { path: "/text", match: "exact", return: { code: 200, text: hostile } },
            { path: "/hdr", match: "exact", return: { code: 204 }, directives: [{ name: "add_header", args: ["X-Hostile", hostile] }] },
            { path: "/quoted path;}", match: "exact", return: { code: 200, text: "odd path" } },
            // nginx's \n and \t escapes: the text is served as written, and no "listen 9999" is read.
            { path: "/nl", match: "exact", return: { code: 200, text: "ok\n\tlisten 9999;\r\n" } },
          ],
        },
      ],
      status: { listen: `127.0.0.1:${statusPort}` },
    });
    expect(nginxTest(dir).ok).toBe(true);
    nginx = await Nginx.start(dir);
    const text = await request(`http://127.0.0.1:${port}/text`);
    expect(text.body).toBe(hostile);
    const hdr = await request(`http://127.0.0.1:${port}/hdr`);
    expect(hdr.headers["x-hostile"]).toBe(hostile);
    const odd = await request(`http://127.0.0.1:${port}/quoted%20path;}`);
    expect(odd.body).toBe("odd path");
    const nl = await request(`http://127.0.0.1:${port}/nl`);
    expect(nl.body).toBe("ok\n\tlisten 9999;\r\n");
  });

  it.each([
    ["a NUL in a return text", { code: 200, text: "a\u0000b" }],
    ["${ in a return text", { code: 200, text: "${evil}" }],
  ])("rejects %s before anything is written", (_what, ret) => {
    const r = validateSpecText(JSON.stringify({ servers: [{ listen: 8080, locations: [{ path: "/", return: ret }] }] }), "x.json");
    expect(r.spec).toBeUndefined();
    expect(r.errors[0]?.path).toBe("servers[0].locations[0].return.text");
  });

  it("rejects a directive name that would smuggle syntax", () => {
    const r = validateSpecText(JSON.stringify({ nginx: { directives: [{ name: "worker_processes 1; evil", args: [] }] } }), "x.json");
    expect(r.errors.map((e) => e.path)).toEqual(["nginx.directives[0].name"]);
  });
});

describe("listen options", () => {
  let nginx: Nginx | undefined;
  afterAll(async () => nginx?.stop());

  it("reach the listen line and the real nginx: proxy_protocol hands the client address over", async () => {
    const port = await freePort();
    const statusPort = await freePort();
    const { dir } = await buildPrefix({
      servers: [
        {
          listen: `127.0.0.1:${port}`,
          reuseport: true,
          listen_options: ["proxy_protocol", "backlog=511", "so_keepalive=30s:10s:3"],
          locations: [{ path: "/", match: "exact", return: { code: 200, text: "client $proxy_protocol_addr" } }],
        },
      ],
      status: { listen: `127.0.0.1:${statusPort}` },
    });
    expect(readFileSync(path.join(dir, "conf/nginx.conf"), "utf8")).toContain(`listen 127.0.0.1:${port} reuseport proxy_protocol backlog=511 so_keepalive=30s:10s:3;`);
    expect(nginxTest(dir).ok).toBe(true);
    nginx = await Nginx.start(dir);
    // A PROXY protocol v1 header, as a TCP load balancer in front would send it
    // (the addresses in it are text; nothing is sent to them).
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port }, () => {
        socket.write(`PROXY TCP4 127.0.0.9 127.0.0.1 40000 ${port}\r\nGET / HTTP/1.0\r\nHost: x\r\n\r\n`);
      });
      let data = "";
      socket.setTimeout(5_000, () => socket.destroy(new Error("no answer in 5 s")));
      socket.on("data", (d: Buffer) => (data += d.toString()));
      socket.on("end", () => resolve(data));
      socket.on("error", reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer.endsWith("client 127.0.0.9")).toBe(true);
  });

  it("are checked one by one, with their path", () => {
    const r = validateSpecText(JSON.stringify({ servers: [{ listen: 8080, listen_options: ["backlog=1024", "reuseport", "backlog=lots"] }] }), "x.json");
    expect(r.errors.map((e) => `${e.path}: ${e.message}`)).toEqual([
      'servers[0].listen_options[1]: "reuseport" has its own key on the server (ssl, http2, default_server, reuseport)',
      expect.stringMatching(/^servers\[0\]\.listen_options\[2\]: not a listen parameter gen-lb knows \(got "backlog=lots"\)/),
    ]);
  });
});

describe("types", () => {
  let nginx: Nginx | undefined;
  afterAll(async () => nginx?.stop());

  it("add MIME types after mime.types, and the real nginx serves files with them", async () => {
    const port = await freePort();
    const statusPort = await freePort();
    const { dir } = await buildPrefix({
      nginx: { http: { types: { "application/x-gen-lb-test": ["genlbx", "glx"], "text/x-override": ["css"] } } },
      servers: [{ listen: `127.0.0.1:${port}`, locations: [{ path: "/", root: "html" }] }],
      status: { listen: `127.0.0.1:${statusPort}` },
    });
    expect(readFileSync(path.join(dir, "conf/nginx.conf"), "utf8")).toContain(
      "    include mime.types;\n    types {\n        application/x-gen-lb-test genlbx glx;\n        text/x-override css;\n    }\n",
    );
    expect(nginxTest(dir).ok).toBe(true);
    // mkdtemp makes 0700 directories; workers run as nobody.
    chmodSync(dir, 0o755);
    mkdirSync(path.join(dir, "html"), { recursive: true, mode: 0o755 });
    for (const f of ["a.genlbx", "b.glx", "c.css", "d.html"]) writeFileSync(path.join(dir, "html", f), "x\n", { mode: 0o644 });
    nginx = await Nginx.start(dir);
    const typeOf = async (f: string) => {
      const r = await request(`http://127.0.0.1:${port}/${f}`);
      expect(r.status, f).toBe(200);
      return r.headers["content-type"];
    };
    expect(await typeOf("a.genlbx")).toBe("application/x-gen-lb-test");
    expect(await typeOf("b.glx")).toBe("application/x-gen-lb-test");
    expect(await typeOf("c.css")).toBe("text/x-override"); // later than mime.types: it wins
    expect(await typeOf("d.html")).toBe("text/html"); // mime.types still there
  });

  it("reject a malformed type or extension with its path", () => {
    const r = validateSpecText(JSON.stringify({ nginx: { http: { types: { "not a type": ["x"], "text/ok": ["a;b"] } } } }), "x.json");
    expect(r.errors.map((e) => e.path).sort()).toEqual(["nginx.http.types.not a type", "nginx.http.types.text/ok[0]"]);
  });
});
