/**
 * Modules and HTTP/2 on the binary the new config runs on (src/migrate/modules.ts):
 * -V texts of an OpenResty and a Debian nginx, the file system through a memory loader.
 */
import { describe, expect, it } from "vitest";
import { parseBinInfo } from "../../src/migrate/bin.js";
import { migrate, type Migration } from "../../src/migrate/index.js";
import { memoryLoader } from "../../src/nginx/load.js";
import { formatDiagnostic } from "../../src/pipeline/load.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { configureArguments, moduleLink } from "../../src/target/modules.js";

const OPENRESTY_V = `nginx version: openresty/1.31.1.1
configure arguments: --prefix=/opt/openresty/nginx --with-cc-opt=-O2 --add-module=../ngx_devel_kit-0.3.4 --add-module=../ngx_lua-0.10.31rc5 --add-module=../headers-more-nginx-module-0.39 --add-module=../ngx_stream_lua-0.0.19rc4 --with-stream --with-stream_ssl_module --with-http_ssl_module`;
const DEBIAN_V = `nginx version: nginx/1.22.1
configure arguments: --with-cc-opt='-g -O2 -fPIC' --prefix=/usr/share/nginx --conf-path=/etc/nginx/nginx.conf --modules-path=/usr/lib/nginx/modules --with-compat --with-http_ssl_module --with-http_stub_status_module --with-http_v2_module --with-http_geoip_module=dynamic --with-mail=dynamic --with-stream=dynamic`;
const openresty = parseBinInfo("/opt/openresty/bin/openresty", OPENRESTY_V);
const debian = parseBinInfo("/usr/sbin/nginx", DEBIAN_V);

function run(conf: string, bin = openresty, files: Record<string, string> = {}, prefix?: string): Migration {
  return migrate("/etc/nginx/nginx.conf", { loader: memoryLoader({ "/etc/nginx/nginx.conf": conf, ...files }), cwd: "/", bin, ...(prefix ? { prefix } : {}) });
}
const loads = (m: Migration) => ((m.spec.nginx as { directives?: Array<{ name: string; args: string[] }> }).directives ?? []).filter((d) => d.name === "load_module");
const about = (m: Migration, directive: string) => m.findings.filter((f) => f.directive === directive && f.column !== undefined);
const HTTP = "events {}\nhttp { server { listen 8080; location / { return 204; } } }\n";

describe("-V's configure arguments: which modules a binary has", () => {
  it("nginx's own modules by their flags, third-party ones by their --add-module directory", () => {
    const or = configureArguments(OPENRESTY_V);
    const deb = configureArguments(DEBIAN_V);
    expect(deb[0]).toBe("--with-cc-opt=-g -O2 -fPIC");
    expect(moduleLink(or, "ngx_stream_module")).toBe("static");
    expect(moduleLink(deb, "ngx_stream_module")).toBe("dynamic");
    expect(moduleLink(or, "ngx_http_v2_module")).toBe("absent");
    expect(moduleLink(deb, "ngx_http_v2_module")).toBe("static");
    expect(moduleLink(or, "ngx_http_stub_status_module")).toBe("absent");
    expect(moduleLink(or, "ngx_http_gzip_filter_module")).toBe("static");
    expect(moduleLink([...or, "--without-http_gzip_module"], "ngx_http_gzip_filter_module")).toBe("absent");
    expect(moduleLink(or, "ndk_http_module")).toBe("static");
    expect(moduleLink(or, "ngx_http_lua_module")).toBe("static");
    expect(moduleLink(or, "ngx_http_headers_more_filter_module")).toBe("static");
    // Debian's Lua module is a package of its own, not in -V: not known from the flags.
    expect(moduleLink(deb, "ngx_http_lua_module")).toBeUndefined();
    expect(moduleLink(or, "ngx_http_brotli_filter_module")).toBeUndefined();
  });
});

describe("load_module onto OpenResty", () => {
  it("modules it has compiled in (ndk, lua, stream) are dropped as not needed, a relative path never copied", () => {
    const m = run(`load_module modules/ndk_http_module.so;\nload_module modules/ngx_http_lua_module.so;\nload_module /usr/lib/nginx/modules/ngx_stream_module.so;\nstream { server { listen 9000; return ok; } }\n${HTTP}`);
    expect(m.spec.target).toBe("openresty");
    expect(loads(m)).toEqual([]);
    expect(about(m, "load_module").map((f) => `${f.kind}: ${f.message}`)).toEqual([
      "dropped: load_module modules/ndk_http_module.so: not needed: /opt/openresty/bin/openresty (OpenResty, nginx 1.31.1) has ndk_http_module compiled in",
      "dropped: load_module modules/ngx_http_lua_module.so: not needed: /opt/openresty/bin/openresty (OpenResty, nginx 1.31.1) has ngx_http_lua_module compiled in",
      "dropped: load_module /usr/lib/nginx/modules/ngx_stream_module.so: not needed: /opt/openresty/bin/openresty (OpenResty, nginx 1.31.1) has ngx_stream_module compiled in",
    ]);
    expect(m.findings.filter((f) => f.blocking)).toEqual([]);
  });

  it("a module it lacks that the config uses is lost and blocks (migrate exits 1), with the reason and what uses it", () => {
    const m = run(`load_module modules/ngx_http_geoip_module.so;\nevents {}\nhttp { geoip_country /usr/share/GeoIP/GeoIP.dat; server { listen 8080; } }\n`);
    expect(loads(m)).toEqual([]);
    const [f] = about(m, "load_module");
    expect(f).toMatchObject({ kind: "lost", blocking: true });
    expect(f!.message).toMatch(/^load_module modules\/ngx_http_geoip_module.so: \/opt\/openresty\/bin\/openresty \(OpenResty, nginx 1.31.1\) does not have ngx_http_geoip_module \(built without it, and \/opt\/openresty\/nginx\/modules holds no ngx_http_geoip_module.so; a module built for another nginx does not load into this one\); the config uses its geoip_country: /);
    // What it provided goes too (geoip_country is http's and stream's geoip module's, both left out), so the spec is valid.
    expect(about(m, "geoip_country")[0]).toMatchObject({ kind: "lost", message: expect.stringMatching(/built without ngx_http_geoip_module and ngx_stream_geoip_module/) });
    expect(validateSpecText(JSON.stringify(m.spec), "spec.json").errors.map(formatDiagnostic)).toEqual([]);
  });

  it("a module it lacks that nothing uses (Debian's modules-enabled loads every installed one) is dropped, not blocking", () => {
    const m = run(`load_module /usr/lib/nginx/modules/ngx_mail_module.so;\n${HTTP}`);
    const [f] = about(m, "load_module");
    expect(f).toMatchObject({ kind: "dropped" });
    expect(f!.message).toMatch(/does not have ngx_mail_module .*, and nothing in the config uses it$/);
    expect(f!.blocking).toBeUndefined();
  });

  it("an unknown module it lacks blocks: migrate cannot tell whether anything uses it", () => {
    const m = run(`load_module modules/ngx_http_brotli_filter_module.so;\n${HTTP}`);
    expect(about(m, "load_module")[0]).toMatchObject({ kind: "lost", blocking: true });
  });

  it("one it has as a dynamic module under its own prefix is pointed there", () => {
    const bin = parseBinInfo(openresty.bin, OPENRESTY_V.replace("--with-stream ", "--with-stream=dynamic "));
    const m = run(`load_module /usr/lib/nginx/modules/ngx_stream_module.so;\nstream { server { listen 9000; return ok; } }\n${HTTP}`, bin, { "/opt/openresty/nginx/modules/ngx_stream_module.so": "\x7fELF" });
    expect(loads(m)).toEqual([{ name: "load_module", args: ["/opt/openresty/nginx/modules/ngx_stream_module.so"] }]);
    expect(about(m, "load_module")[0]).toMatchObject({ kind: "carried", newArgs: ["/opt/openresty/nginx/modules/ngx_stream_module.so"] });
  });
});

describe("load_module onto a plain nginx", () => {
  const files = { "/usr/lib/nginx/modules/ngx_stream_module.so": "\x7fELF", "/srv/old/modules/ngx_http_echo_module.so": "\x7fELF" };
  it("a relative path is the old prefix's (--prefix), not the new binary's", () => {
    const m = run(`load_module modules/ngx_http_echo_module.so;\n${HTTP}`, debian, files, "/srv/old");
    expect(loads(m)).toEqual([{ name: "load_module", args: ["/srv/old/modules/ngx_http_echo_module.so"] }]);
    expect(about(m, "load_module")[0]!.message).toBe("load_module modules/ngx_http_echo_module.so (relative to the old prefix /srv/old, made absolute: /srv/old/modules/ngx_http_echo_module.so)");
  });
  it("without --prefix, the binary's own prefix; a module it has dynamically comes from its modules directory", () => {
    const m = run(`load_module modules/ngx_stream_module.so;\nstream { server { listen 9000; return ok; } }\n${HTTP}`, debian, files);
    expect(loads(m)).toEqual([{ name: "load_module", args: ["/usr/lib/nginx/modules/ngx_stream_module.so"] }]);
  });
  it("a file that is nowhere is lost, blocking, not copied", () => {
    const m = run("load_module modules/ngx_http_echo_module.so;\nevents {}\nhttp { server { listen 8080; location / { echo hi; } } }\n", debian, files);
    expect(loads(m)).toEqual([]);
    expect(about(m, "load_module")[0]).toMatchObject({ kind: "lost", blocking: true });
  });
});

describe("HTTP/2 and other nginx modules the target was built without", () => {
  const conf = (listen: string) =>
    `events {}\nhttp { server { listen ${listen}; ssl_certificate /c.crt; ssl_certificate_key /c.key; location / { return 204; } location /s { stub_status; } } }\n`;
  it("onto OpenResty without http_v2_module: http2 is reported and not emitted, the listen kept", () => {
    const m = run(conf("8443 ssl http2"));
    const [server] = m.spec.servers as Array<Record<string, unknown>>;
    expect(server).toMatchObject({ listen: 8443, ssl: expect.anything() });
    expect(server!.http2).toBeUndefined();
    const [f] = about(m, "listen");
    expect(f).toMatchObject({ kind: "lost" });
    expect(f!.message).toBe("listen 8443 ssl http2: http2 is left out: /opt/openresty/bin/openresty (OpenResty, nginx 1.31.1) is built without ngx_http_v2_module (not in its -V), so clients get HTTP/1.1 (the listen itself is kept)");
  });
  it("http2 on (nginx 1.25.1's form) and stub_status are lost with the same reason, not carried into an invalid spec", () => {
    const m = run("events {}\nhttp { server { listen 8080; http2 on; location /s { stub_status; } } }\n");
    expect(about(m, "http2")[0]).toMatchObject({ kind: "lost", message: expect.stringMatching(/built without ngx_http_v2_module/) });
    expect(about(m, "stub_status")[0]).toMatchObject({ kind: "lost", message: expect.stringMatching(/built without ngx_http_stub_status_module/) });
    expect(JSON.stringify(m.spec)).not.toMatch(/http2|stub_status/);
  });
  it("grpc_pass, which nginx 1.31 builds only beside http_v2_module, is lost on a binary without it (not carried into a config -t refuses)", () => {
    const m = run("events {}\nhttp { server { listen 8080; location /g { grpc_pass grpc://127.0.0.1:9000; } } }\n");
    expect(about(m, "grpc_pass")[0]).toMatchObject({ kind: "lost", message: expect.stringMatching(/built without ngx_http_grpc_module/) });
    expect(JSON.stringify(m.spec)).not.toMatch(/grpc_pass/);
  });
  it("onto a binary with http_v2_module (and stub_status), both are kept", () => {
    const m = run(conf("8443 ssl http2"), debian);
    expect((m.spec.servers as Array<Record<string, unknown>>)[0]!.http2).toBe(true);
    expect(about(m, "stub_status")[0]!.kind).toBe("carried");
  });
  it("without a binary's -V nothing is judged", () => {
    const m = migrate("n.conf", { loader: memoryLoader({ "n.conf": conf("8443 ssl http2") }) });
    expect((m.spec.servers as Array<Record<string, unknown>>)[0]!.http2).toBe(true);
  });
});
