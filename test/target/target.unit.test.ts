import { describe, expect, it } from "vitest";
import { buildFileSet } from "../../src/pipeline/index.js";
import { specSchema } from "../../src/spec/schema.js";
import { binaryLacks } from "../../src/pipeline/binary-check.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { formatDiagnostic } from "../../src/pipeline/load.js";
import { BASELINE_VERSION, compareVersions, describeTarget, parseVersionOutput, targetMismatch } from "../../src/target/index.js";

// `-V` as the two binaries of the test matrix print it (configure lines cut to what matters).
const DEBIAN = `nginx version: nginx/1.22.1
built with OpenSSL 3.0.22 25 Aug 2026 (running with OpenSSL 3.0.19 27 Jan 2026)
TLS SNI support enabled
configure arguments: --with-cc-opt='-g -O2 -ffile-prefix-map=/build/reproducible-path/nginx-1.22.1=. -fPIC' --prefix=/usr/share/nginx --conf-path=/etc/nginx/nginx.conf --modules-path=/usr/lib/nginx/modules --with-compat --with-http_ssl_module --with-http_v2_module --with-stream=dynamic
`;
const OPENRESTY = `nginx version: openresty/1.31.1.1
built by gcc 12.2.0 (Debian 12.2.0-14+deb12u1)
configure arguments: --prefix=/opt/openresty/nginx --with-cc-opt=-O2 --add-module=../ngx_devel_kit-0.3.4 --add-module=../ngx_lua-0.10.31rc5 --add-module=../ngx_lua_upstream-0.08 --add-module=../ngx_stream_lua-0.0.19rc4 --with-http_ssl_module
`;

describe("target detection from -V", () => {
  it("Debian's nginx: target nginx, its version, the loadable Lua module and modules directory", () => {
    const info = parseVersionOutput(DEBIAN, (f) => f === "/usr/lib/nginx/modules/ngx_http_lua_module.so");
    expect(info).toEqual({
      target: "nginx",
      version: "1.22.1",
      lua: "loadable",
      luaModulePath: "/usr/lib/nginx/modules/ngx_http_lua_module.so",
      modulesDir: "/usr/lib/nginx/modules",
      http2: true,
      configure: expect.arrayContaining(["--with-http_v2_module", "--with-stream=dynamic"]),
    });
    expect(parseVersionOutput(DEBIAN, () => false).lua).toBe("none");
  });

  it("OpenResty: target openresty, nginx core version apart from OpenResty's, Lua built in, PREFIX/modules", () => {
    const info = parseVersionOutput(OPENRESTY, () => false);
    expect(info).toEqual({
      target: "openresty",
      version: "1.31.1",
      openrestyVersion: "1.31.1.1",
      lua: "builtin",
      modulesDir: "/opt/openresty/nginx/modules",
      http2: false,
      configure: expect.arrayContaining(["--with-http_ssl_module", "--add-module=../ngx_lua-0.10.31rc5"]),
    });
    expect(describeTarget(info)).toBe("openresty 1.31.1.1 (nginx 1.31.1, Lua built in)");
  });

  it("output that is not -V is an error, not a guess", () => {
    expect(() => parseVersionOutput("Usage: foo\n")).toThrow(/no "nginx version:" line/);
  });

  it("a mismatch names the fix", () => {
    const or = parseVersionOutput(OPENRESTY, () => false);
    const deb = parseVersionOutput(DEBIAN, () => true);
    expect(targetMismatch("openresty", "/x/openresty", or)).toBeUndefined();
    expect(targetMismatch("nginx", "/x/openresty", or)).toMatch(/: set target: openresty$/);
    expect(targetMismatch("openresty", "/usr/sbin/nginx", deb)).toMatch(/: set target: nginx$/);
    expect(targetMismatch("openresty", "/usr/sbin/nginx", parseVersionOutput(DEBIAN, () => false))).toMatch(/install OpenResty.*libnginx-mod-http-lua/);
  });

  it("versions compare numerically", () => {
    expect(compareVersions("1.25.1", "1.22.0")).toBeGreaterThan(0);
    expect(compareVersions("1.9.10", "1.10.0")).toBeLessThan(0);
    expect(compareVersions("1.31.1", "1.31.1")).toBe(0);
  });
});

describe("version-aware output", () => {
  const spec = (extra: Record<string, unknown>) =>
    specSchema.parse({
      ...extra,
      servers: [{ listen: "127.0.0.1:8443", http2: true, ssl: { certificate: "/c.pem", certificate_key: "/k.pem" }, locations: [{ path: "/", return: { code: 204 } }] }],
    });
  const conf = (s: ReturnType<typeof spec>, seen?: string) => buildFileSet(s, "spec.json", undefined, seen === undefined ? {} : { seenVersion: seen }).files.find((f) => f.path === "conf/nginx.conf")!.contents;

  it(`renders for ${BASELINE_VERSION} by default: http2 is a listen flag`, () => {
    const c = conf(spec({}));
    expect(c).toMatch(/listen 127\.0\.0\.1:8443 ssl http2;/);
    expect(c).not.toMatch(/^\s*http2 on;/m);
  });

  it("from nginx 1.25.1 (target_version, or the version check sees) http2 is `http2 on;`", () => {
    for (const c of [conf(spec({ target_version: "1.25.1" })), conf(spec({}), "1.31.1")]) {
      expect(c).toMatch(/listen 127\.0\.0\.1:8443 ssl;/);
      expect(c).toMatch(/^\s*http2 on;$/m);
    }
    // The spec's own target_version wins over what a binary shows.
    expect(conf(spec({ target_version: "1.22.1" }), "1.31.1")).toMatch(/ssl http2;/);
  });

  it("build judges HTTP/2 by the target's directive table: `http2 on;`, whose module OpenResty's packages build and the table's reference build does not, is accepted with one warning at servers[N].http2 naming the flag", () => {
    const server = { listen: "127.0.0.1:8443", http2: true, ssl: { certificate: "/c.pem", certificate_key: "/k.pem" }, locations: [{ path: "/", return: { code: 204 } }] };
    const text = JSON.stringify({ target: "openresty", target_version: "1.31.1", servers: [server, { ...server, listen: "127.0.0.1:8444" }] }, null, 1);
    const r = validateSpecText(text, "h2.json");
    expect(r.errors.map(formatDiagnostic)).toEqual([]);
    // one warning for the flag, at the first server that needs it
    expect(r.warnings.map(formatDiagnostic)).toEqual([
      "servers[0].http2 (h2.json:7:4): \"http2\" comes from ngx_http_v2_module, which openresty has only when built with --with-http_v2_module (openresty.org's packages are): `gen-lb check --bin BINARY` tells whether your own binary has it",
    ]);
    expect(r.warnings[0]!.needsBuildFlag).toBe(true);
  });

  it("check and install judge any directive gen-lb emits or carries by -V: one whose module the binary lacks is refused at its spec key", () => {
    const text = JSON.stringify({
      target: "openresty",
      target_version: "1.31.1",
      servers: [{ listen: "127.0.0.1:8080", locations: [{ path: "/s", return: { code: 204 }, directives: [{ name: "stub_status", args: [] }, { name: "grpc_pass", args: ["127.0.0.1:9"] }] }] }],
    });
    const s = validateSpecText(text, "s.json").spec!;
    const lacks = binaryLacks(s, "/x/openresty", parseVersionOutput(OPENRESTY, () => false));
    expect(lacks).toEqual([
      ["servers[0].locations[0].directives[0]", expect.stringMatching(/^\/x\/openresty is openresty 1\.31\.1\.1 .*, built without ngx_http_stub_status_module \(its -V has no --with-http_stub_status_module\), so nginx -t refuses "stub_status": remove it, or run a binary built with it$/)],
      // grpc is on by default, but from nginx 1.25 only next to http_v2 (the table's needs says so)
      ["servers[0].locations[0].directives[1]", expect.stringMatching(/built without ngx_http_grpc_module \(its -V has no --with-http_v2_module\), so nginx -t refuses "grpc_pass"/)],
    ]);
    const withBoth = OPENRESTY.replace("--with-http_ssl_module", "--with-http_ssl_module --with-http_v2_module --with-http_stub_status_module");
    expect(binaryLacks(s, "/x/openresty", parseVersionOutput(withBoth, () => false))).toEqual([]);
  });

  it("check and install judge it by -V: a binary built without http_v2_module cannot run servers[N].http2", () => {
    const s = spec({});
    expect(binaryLacks(s, "/x/openresty", parseVersionOutput(OPENRESTY, () => false))).toEqual([
      ["servers[0].http2", expect.stringMatching(/^\/x\/openresty is openresty 1\.31\.1\.1 .*, built without ngx_http_v2_module \(its -V has no --with-http_v2_module\)/)],
    ]);
    expect(binaryLacks(s, "/usr/sbin/nginx", parseVersionOutput(DEBIAN, () => true))).toEqual([]);
  });

  it("target_version must be a version", () => {
    expect(specSchema.safeParse({ target_version: "latest" }).success).toBe(false);
  });
});
