/**
 * The `needs` field of the directive tables (scripts/gen-directives.ts): a
 * directive of a module nginx's source tree has but the table's reference
 * build leaves out is listed, marked with the configure flag that builds it,
 * instead of being left out; what no module of the sources defines stays
 * unknown. The checks read the field, and a table without it (as generated
 * before) is still read as before.
 */
import { describe, expect, it } from "vitest";
import { builtDefinitions, loadDirectiveTable, type DirectiveTable } from "../../src/nginx/directives.js";
import { checkDirectives } from "../../src/pipeline/directive-check.js";
import { planBuild } from "../../src/pipeline/plan.js";
import { specSchema } from "../../src/spec/schema.js";
import { lackOf } from "../../src/target/modules.js";

const openresty = loadDirectiveTable("openresty", "1.31.1.1");
const nginx = loadDirectiveTable("nginx", "1.22.1");

describe("directive tables: needs", () => {
  it("OpenResty's table lists http2, stub_status, gzip_static and real_ip_header with the flag each needs; the module is absent with the same flag", () => {
    expect(openresty.directives.http2).toEqual([expect.objectContaining({ module: "ngx_http_v2_module", contexts: ["http", "server"], args: ["FLAG"], needs: "--with-http_v2_module" })]);
    expect(openresty.directives.stub_status![0]).toMatchObject({ module: "ngx_http_stub_status_module", needs: "--with-http_stub_status_module" });
    expect(openresty.directives.gzip_static![0]).toMatchObject({ needs: "--with-http_gzip_static_module" });
    expect(openresty.directives.real_ip_header![0]).toMatchObject({ needs: "--with-http_realip_module" });
    expect(openresty.modules.ngx_http_v2_module).toEqual({ link: "absent", needs: "--with-http_v2_module", from: "nginx-1.31.1" });
    // a module that needs two flags names both, as configure's nested ifs do
    expect(openresty.modules.ngx_mail_ssl_module!.needs).toBe("--with-mail --with-mail_ssl_module");
    // threads: a core module configure adds outside auto/modules
    expect(openresty.directives.thread_pool![0]).toMatchObject({ module: "ngx_thread_pool_module", needs: "--with-threads" });
  });

  it("what the reference build has carries no needs; Debian's build lacks only the degradation module", () => {
    expect(openresty.directives.proxy_pass!.every((d) => d.needs === undefined)).toBe(true);
    expect(openresty.directives.lua_shared_dict!.every((d) => d.needs === undefined)).toBe(true);
    const marked = Object.entries(nginx.directives).filter(([, defs]) => defs.some((d) => d.needs !== undefined)).map(([n]) => n);
    expect(marked.sort()).toEqual(["degradation", "degrade"]);
    expect(nginx.directives.stub_status![0]!.needs).toBeUndefined();
  });

  it("builtDefinitions keeps what the reference build has; a directive in no module of the sources is in neither", () => {
    expect(builtDefinitions(openresty.directives.http2)).toEqual([]);
    expect(builtDefinitions(openresty.directives.ssl_certificate).map((d) => d.module).sort()).toEqual(["ngx_http_ssl_module", "ngx_stream_ssl_module"]);
    expect(openresty.directives.ssl_certificate!.map((d) => d.module)).toContain("ngx_mail_ssl_module");
    expect(openresty.directives.no_such_directive).toBeUndefined();
    expect(builtDefinitions(undefined)).toEqual([]);
  });

  it("lackOf: the flag -V lacks, from nginx's own flags or the table's needs; undefined when the binary has the module", () => {
    const minimal = openresty.configure;
    expect(lackOf(minimal, "ngx_http_v2_module", openresty.modules.ngx_http_v2_module!.needs)).toBe("built without ngx_http_v2_module (its -V has no --with-http_v2_module)");
    expect(lackOf([...minimal, "--with-http_v2_module"], "ngx_http_v2_module", "--with-http_v2_module")).toBeUndefined();
    expect(lackOf(minimal, "ngx_mail_ssl_module", openresty.modules.ngx_mail_ssl_module!.needs)).toBe("built without ngx_mail_ssl_module (its -V has no --with-mail, no --with-mail_ssl_module)");
    expect(lackOf(["--without-http_gzip_module"], "ngx_http_gzip_filter_module")).toBe("built without ngx_http_gzip_filter_module (its -V has --without-http_gzip_module)");
    expect(lackOf(minimal, "ngx_http_proxy_module")).toBeUndefined();
    expect(lackOf(minimal, "ngx_http_lua_module")).toBeUndefined();
  });

  it("a table generated before the field existed (no needs entries) is read as before: http2 is refused as unknown", () => {
    const spec = specSchema.parse({
      target: "openresty",
      target_version: "1.31.1",
      servers: [{ listen: "127.0.0.1:8443", http2: true, ssl: { certificate: "/c.pem", certificate_key: "/k.pem" }, locations: [{ path: "/", return: { code: 204 } }] }],
    });
    const model = planBuild(spec, { specFile: "spec", generator: "gen-lb" });
    const old: DirectiveTable = {
      ...openresty,
      modules: Object.fromEntries(Object.entries(openresty.modules).filter(([, m]) => m.needs === undefined)),
      directives: Object.fromEntries(Object.entries(openresty.directives).map(([n, defs]) => [n, builtDefinitions(defs)] as const).filter(([, defs]) => defs.length > 0)),
    };
    const errors: string[] = [];
    const visited: string[] = [];
    checkDirectives(spec, model, (p, m) => errors.push(`${p.join(".")}: ${m}`), { table: old });
    expect(errors).toEqual([expect.stringMatching(/^servers\.0\.http2: unknown directive "http2": openresty 1\.31\.1\.1 has no such directive/)]);
    // with the field, the same directive passes and is visited with its needs
    checkDirectives(spec, model, (p, m) => errors.push(m), { table: openresty, visit: (c) => c.fits.every((f) => f.needs) && visited.push(`${c.directive.name} ${c.fits[0]!.needs}`) });
    expect(errors).toHaveLength(1);
    expect(visited).toEqual(["http2 --with-http_v2_module"]);
  });
});
