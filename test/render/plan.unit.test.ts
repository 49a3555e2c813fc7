import { describe, expect, it } from "vitest";
import { buildFileSet } from "../../src/pipeline/index.js";
import type { SpecInput } from "../../src/spec/schema.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { specPathForLine } from "../../src/pipeline/render.js";

function conf(spec: SpecInput, target?: "openresty" | "nginx") {
  const r = validateSpecText(JSON.stringify(spec), "spec.json");
  if (!r.spec) throw new Error(JSON.stringify(r.errors));
  const set = buildFileSet(r.spec, "spec.json", target);
  const file = (p: string) => set.files.find((f) => f.path === p)!.contents;
  return { nginx: file("conf/nginx.conf"), config: file("lua/gen_lb/config.lua"), set };
}

const web: SpecInput = {
  upstreams: { web: { service: "web" } },
  servers: [{ listen: 8080, locations: [{ path: "/", upstream: "web" }] }],
};

describe("plan", () => {
  it("target openresty emits no load_module lines; target nginx loads ndk and the Lua module from modules_dir", () => {
    expect(conf(web).nginx).not.toContain("load_module");
    const distro = conf({ ...web, nginx: { modules_dir: "/opt/mods/" } }, "nginx").nginx;
    expect(distro).toContain("load_module /opt/mods/ndk_http_module.so;\nload_module /opt/mods/ngx_http_lua_module.so;");
  });

  it("passes the token's variable through with env, and never the token itself", () => {
    const { nginx, config, set } = conf({ ...web, consul: { token_env: "MY_CONSUL_TOKEN" } });
    expect(nginx).toMatch(/^env MY_CONSUL_TOKEN;$/m);
    expect(config).toContain('token_env = "MY_CONSUL_TOKEN"');
    expect(set.files.every((f) => !f.contents.includes("s3cr3t-token"))).toBe(true);
  });

  it("retries become proxy_next_upstream and tries; retries: 0 turns retrying off", () => {
    const two = conf({ ...web, upstreams: { web: { service: "web", retries: 2, retry_statuses: [502, 504], retry_non_idempotent: true } } }).nginx;
    expect(two).toContain("proxy_next_upstream error timeout http_502 http_504 non_idempotent;");
    expect(two).toContain("proxy_next_upstream_tries 3;");
    const none = conf({ ...web, upstreams: { web: { service: "web", retries: 0 } } }).nginx;
    expect(none).toContain("proxy_next_upstream off;");
    expect(none).not.toContain("proxy_next_upstream_tries");
  });

  it("chash evaluates hash_key into a variable the balancer reads", () => {
    const { nginx, config } = conf({ ...web, upstreams: { web: { service: "web", balance: "chash", hash_key: "$cookie_user$remote_addr" } } });
    expect(nginx).toContain("set $gen_lb_hash_key $cookie_user$remote_addr;");
    expect(config).toContain('hash_var = "gen_lb_hash_key"');
  });

  it("a websocket location brings the upgrade map and headers with it", () => {
    const { nginx } = conf({ ...web, servers: [{ listen: 8080, locations: [{ path: "/ws", upstream: "web", websocket: true }] }] });
    expect(nginx).toContain('map $http_upgrade $connection_upgrade {\n        default upgrade;\n        "" close;\n    }');
    expect(nginx).toContain("proxy_set_header Connection $connection_upgrade;");
  });

  it("a log phase only in servers proxying to an upstream that needs one (least_conn, passive checks, counters)", () => {
    const LOG = 'log_by_lua_block { require("gen_lb.balancer").log() }';
    const lean = conf(web);
    expect(lean.nginx).not.toContain("log_by_lua");
    expect(lean.config).toContain("log_phase = false");
    for (const extra of [{ counters: true }, { balance: "least_conn" }, { healthcheck: { passive: {} } }] as const) {
      const c = conf({ ...web, upstreams: { web: { service: "web", ...extra } } });
      expect(c.nginx, JSON.stringify(extra)).toContain(LOG);
      expect(c.config, JSON.stringify(extra)).toContain("log_phase = true");
    }
    // Per server: the one proxying to the lean upstream has none.
    const two = conf({
      upstreams: { lean: { service: "a" }, counted: { service: "b", counters: true } },
      servers: [
        { listen: 8080, locations: [{ path: "/", upstream: "lean" }] },
        { listen: 8081, locations: [{ path: "/", upstream: "counted" }] },
      ],
    }).nginx;
    const servers = two.split(/\n\s*server \{/).slice(1);
    expect(servers.map((s) => s.includes(LOG))).toEqual([false, true, false]);
  });

  it("a body filter only in locations proxying to an upstream with passive checks (Lua engine)", () => {
    const BODY = 'body_filter_by_lua_block { require("gen_lb.balancer").body() }';
    for (const extra of [{}, { counters: true }, { balance: "least_conn" }, { healthcheck: { active: { path: "/h" } } }] as const) {
      expect(conf({ ...web, upstreams: { web: { service: "web", ...extra } } }).nginx, JSON.stringify(extra)).not.toContain("body_filter_by_lua");
    }
    const c = conf({
      upstreams: { watched: { service: "a", healthcheck: { passive: {} } }, plain: { service: "b" } },
      servers: [{ listen: 8080, locations: [{ path: "/a", upstream: "watched" }, { path: "/b", upstream: "plain" }, { path: "/c", upstream: "watched" }] }],
    }).nginx;
    const locations = c.split(/\n\s*location /).slice(1, 4); // the status server follows
    expect(locations.map((l) => l.includes(BODY))).toEqual([true, false, true]);
  });

  it("keepalive follows balancer_by_lua inside the upstream, and 0 leaves it out", () => {
    const { nginx } = conf(web);
    expect(nginx).toMatch(/balancer_by_lua_block \{ require\("gen_lb.balancer"\).balance\("web"\) \}\n\s+keepalive 32;/);
    expect(conf({ ...web, upstreams: { web: { service: "web", keepalive: 0 } } }).nginx).not.toContain("keepalive ");
  });

  it("maps a line of nginx.conf back to the spec path that produced it", () => {
    const { nginx } = conf(web);
    const lines = nginx.split("\n");
    const at = (needle: string) => lines.findIndex((l) => l.includes(needle)) + 1;
    expect(specPathForLine(nginx, at("proxy_pass http://web;"))).toBe("servers[0].locations[0]");
    expect(specPathForLine(nginx, at("listen 8080;"))).toBe("servers[0]");
    expect(specPathForLine(nginx, at("server 0.0.0.1:1;"))).toBe("upstreams.web");
    expect(specPathForLine(nginx, 1)).toBeUndefined();
  });
});
