/**
 * Directives the target's nginx refuses among those migrate carries
 * (src/migrate/target-fit.ts): reported lost with the reason, never a spec
 * that does not validate. OpenResty's build here has no gzip_static.
 */
import { describe, expect, it } from "vitest";
import { migrate } from "../../src/migrate/index.js";
import { memoryLoader } from "../../src/nginx/load.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { formatDiagnostic } from "../../src/pipeline/load.js";
import { loadDirectiveTable } from "../../src/nginx/directives.js";

const conf = `events {}
http {
    upstream app { server 127.0.0.1:9000; }
    server {
        listen 8080;
        location ~ ^/(assets)/ {
            root /srv/public;
            gzip_static on;
            expires max;
        }
        location / {
            proxy_pass http://app;
            location /nested/ { gzip_static on; }
        }
    }
    server {
        listen 8081;
        listen 8444 ssl;
        ssl_certificate /etc/ssl/site.crt;
        ssl_certificate_key /etc/ssl/site.key;
        gzip_static on;
    }
}
`;
// the -V configure arguments of the OpenResty build here (its directive table's reference build): no gzip_static
const openresty = { bin: "/opt/openresty/bin/openresty", target: "openresty", version: "1.31.1", configure: loadDirectiveTable("openresty").configure } as const;

describe("carried directives the target refuses", () => {
  const m = migrate("n.conf", { loader: memoryLoader({ "n.conf": conf }), bin: openresty });
  it("the spec validates for OpenResty without them", () => {
    expect(validateSpecText(JSON.stringify(m.spec), "spec.json").errors.map(formatDiagnostic)).toEqual([]);
    expect(JSON.stringify(m.spec)).not.toContain("gzip_static");
    const assets = (m.spec.servers as Array<{ locations?: Array<Record<string, unknown>> }>)[0]!.locations![0]!;
    expect(assets).toMatchObject({ path: "^/(assets)/", root: "/srv/public", directives: [{ name: "expires", args: ["max"] }] });
  });
  it("each is reported lost with nginx's reason; a location left out blocks", () => {
    const lost = m.findings.filter((f) => f.kind === "lost" && f.directive !== undefined).map((f) => `${f.line} ${f.directive} ${f.blocking ? "blocking" : ""}: ${f.message}`);
    expect(lost).toEqual([
      // the directive table lists gzip_static (needing --with-http_gzip_static_module), so what refuses it is the binary's -V
      "8 gzip_static : gzip_static on: /opt/openresty/bin/openresty (OpenResty, nginx 1.31.1) is built without ngx_http_gzip_static_module (not in its -V)",
      expect.stringMatching(/^13 location blocking: location \/nested\/: left out: .* is built without ngx_http_gzip_static_module \(not in its -V\) \(at n\.conf:13\); rewrite it by hand$/),
      expect.stringMatching(/^21 gzip_static : gzip_static on: .* is built without ngx_http_gzip_static_module/),
    ]);
  });
  it("without the binary's configure arguments, gzip_static is carried as build accepts it (a module OpenResty's packages build)", () => {
    const { configure: _, ...noConfigure } = openresty;
    const d = migrate("n.conf", { loader: memoryLoader({ "n.conf": conf }), bin: noConfigure });
    expect(d.findings.filter((f) => f.kind === "carried" && f.directive === "gzip_static")).toHaveLength(2);
    expect(validateSpecText(JSON.stringify(d.spec), "spec.json").errors).toEqual([]);
  });
  it("for Debian's nginx, which has the module, it is carried", () => {
    const d = migrate("n.conf", { loader: memoryLoader({ "n.conf": conf }), bin: { bin: "/usr/sbin/nginx", target: "nginx", version: "1.22.1" } });
    expect(d.findings.filter((f) => f.kind === "carried" && f.directive === "gzip_static")).toHaveLength(2);
    expect(validateSpecText(JSON.stringify(d.spec), "spec.json").errors).toEqual([]);
  });
});
