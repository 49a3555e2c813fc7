/** The pure parts of check: command lines as data, nginx message parsing and mapping, the smoke spec. */
import { describe, expect, it } from "vitest";
import { confLineOf, isBackgroundNetworkError, missingLuaModule, parseNginxOutput, placeInSpec } from "../../src/check/messages.js";
import { listenAddresses, scratchSpec } from "../../src/check/smoke.js";
import { parseSpecPath } from "../../src/pipeline/index.js";
import { statusUrl } from "../../src/check/status.js";
import { specSchema } from "../../src/spec/schema.js";
import { luajitCheckCommand, nginxStartCommand, nginxTestCommand } from "../../src/util/proc.js";

describe("command lines", () => {
  it("nginx -t: quiet, prefix with a trailing slash, the generated conf", () => {
    expect(nginxTestCommand("/usr/sbin/nginx", "/tmp/x")).toMatchObject({ command: "/usr/sbin/nginx", args: ["-t", "-q", "-p", "/tmp/x/", "-c", "conf/nginx.conf"] });
  });
  it("nginx start: same prefix and conf, no -t", () => {
    expect(nginxStartCommand("openresty", "/tmp/x/").args).toEqual(["-p", "/tmp/x/", "-c", "conf/nginx.conf"]);
  });
  it("luajit: one process, files quoted inside the chunk (never run as a script)", () => {
    const cmd = luajitCheckCommand("/usr/bin/luajit", ["/tmp/a b/x.lua", '/tmp/q"uote.lua']);
    expect(cmd.command).toBe("/usr/bin/luajit");
    expect(cmd.args).toHaveLength(2);
    expect(cmd.args[0]).toBe("-e");
    expect(cmd.args[1]).toContain('"/tmp/a b/x.lua"');
    expect(cmd.args[1]).toContain('"/tmp/q\\"uote.lua"');
    expect(cmd.args[1]).toContain("loadfile(f)");
  });
});

describe("nginx messages", () => {
  const tOutput = [
    '2026/11/28 12:42:22 [emerg] 18455#18455: host not found in "999.1.1.1:8080" of the "listen" directive in /tmp/gen-lb-check-x/conf/nginx.conf:27',
    "nginx: configuration file /tmp/gen-lb-check-x/conf/nginx.conf test failed",
  ].join("\n");

  it("parses log-format and stderr-format lines, with the nginx.conf line", () => {
    const msgs = parseNginxOutput(`${tOutput}\nnginx: [warn] something else\n`);
    expect(msgs).toEqual([
      { level: "emerg", text: expect.stringContaining('host not found in "999.1.1.1:8080"'), more: [], confLine: 27 },
      { level: "warn", text: "something else", more: [] },
    ]);
  });

  it("keeps Lua tracebacks as continuation lines and finds init_by_lua(nginx.conf:N)", () => {
    const [m] = parseNginxOutput("nginx: [error] init_by_lua error: init_by_lua(nginx.conf:23):1: boom\nstack traceback:\n\t[C]: in function 'error'\n");
    expect(m).toMatchObject({ level: "error", confLine: 23, more: ["stack traceback:", "[C]: in function 'error'"] });
    expect(confLineOf("x in /p/conf/nginx.conf:9")).toBe(9);
    const [lua] = parseNginxOutput("nginx: [error] init_by_lua error: /p/lua/gen_lb/peers.lua:17: module 'cjson.safe' not found:\n\tno field x\nstack traceback:\n\tinit_by_lua(nginx.conf:22):1: in main chunk");
    expect(lua!.confLine).toBe(22);
  });

  it("maps a listen failure to servers[N].listen and its spec position", () => {
    const conf = ["a", "b", "    # servers[0]", "    server {", "        listen 999.1.1.1:8080;"].join("\n");
    const [m] = parseNginxOutput('nginx: [emerg] host not found in "999.1.1.1:8080" of the "listen" directive in /s/conf/nginx.conf:5');
    expect(placeInSpec(m!, conf, (p) => (p === "servers[0].listen" ? "gen-lb.yaml:3:5" : undefined))).toEqual({
      path: "servers[0].listen",
      position: "gen-lb.yaml:3:5",
    });
    expect(parseSpecPath("servers[0].locations[12].path")).toEqual(["servers", 0, "locations", 12, "path"]);
  });

  it("names the missing Lua module and the package, for each way it shows", () => {
    const unknown = parseNginxOutput('nginx: [emerg] unknown directive "lua_package_path" in /s/conf/nginx.conf:16');
    expect(missingLuaModule(unknown, "/usr/sbin/nginx", "openresty")).toMatch(/has no Lua module \(ngx_http_lua_module\).*"lua_package_path".*libnginx-mod-http-lua.*target: nginx/);
    const dl = parseNginxOutput('nginx: [emerg] dlopen() "/e/ngx_http_lua_module.so" failed (No such file) in /s/conf/nginx.conf:4');
    expect(missingLuaModule(dl, "nginx", "nginx")).toMatch(/cannot load ngx_http_lua_module from \/e .*libnginx-mod-http-lua/);
    expect(missingLuaModule(parseNginxOutput('nginx: [emerg] unknown directive "foo"'), "nginx", "nginx")).toBeUndefined();
  });

  it("socket errors from timers (Consul unreachable) are told apart from config errors", () => {
    const [net] = parseNginxOutput("2026/11/28 12:00:00 [error] 1#1: *3 connect() failed (111: Connection refused), context: ngx.timer");
    const [init] = parseNginxOutput("2026/11/28 12:00:00 [error] 1#1: init_worker_by_lua error: x.lua:1: boom");
    expect(isBackgroundNetworkError(net!)).toBe(true);
    expect(isBackgroundNetworkError(init!)).toBe(false);
    // nginx's resolver for a discovery: dns upstream, Consul's DNS unreachable from the check host
    const [refused] = parseNginxOutput("2026/12/02 05:40:00 [error] 7#7: recv() failed (111: Connection refused) while resolving, resolver: 127.0.0.1:8600");
    const [unresolved] = parseNginxOutput("2026/12/02 05:40:00 [error] 7#7: service.consul could not be resolved (110: Operation timed out)");
    const [conf] = parseNginxOutput('2026/12/02 05:40:00 [error] 7#7: *1 no live upstreams while connecting to upstream, upstream: "http://web/"');
    expect(isBackgroundNetworkError(refused!)).toBe(true);
    expect(isBackgroundNetworkError(unresolved!)).toBe(true);
    expect(isBackgroundNetworkError(conf!)).toBe(false);
  });
});

describe("smoke spec", () => {
  const spec = specSchema.parse({
    consul: { dump_file: "/var/lib/gen-lb/peers.json" },
    nginx: { pid: "/run/nginx.pid", error_log: { path: "/var/log/nginx/error.log", level: "crit" }, directives: [{ name: "daemon", args: ["off"] }] },
    servers: [
      { listen: [80, "[::1]:8443"], server_name: ["a"] },
      { listen: "0.0.0.0:80", server_name: ["b"], access_log: [{ path: "/var/log/nginx/b.log" }] },
    ],
    status: { listen: 8081, allow: ["10.0.0.0/8"] },
  });

  it("gives every distinct listen address one loopback port (shared addresses share it)", () => {
    expect(listenAddresses(spec)).toEqual(["*:80", "[::1]:8443", "*:8081"]);
    const s = scratchSpec(spec, new Map([["*:80", 50001], ["[::1]:8443", 50002], ["*:8081", 50003]]));
    expect(s.servers.map((x) => x.listen)).toEqual([["127.0.0.1:50001", "127.0.0.1:50002"], "127.0.0.1:50001"]);
    expect(s.status.listen).toBe("127.0.0.1:50003");
    expect(s.status.allow).toEqual(["127.0.0.1", "10.0.0.0/8"]);
  });

  it("binds loopback for ports, wildcards and IP literals, and keeps any other host for nginx -t to judge", () => {
    const odd = specSchema.parse({ servers: [{ listen: ["10.1.2.3:80", "[2001:db8::1]:443", "999.1.1.1:8080", "lb.example.com:80"] }] });
    const s = scratchSpec(odd, new Map([["10.1.2.3:80", 1], ["[2001:db8::1]:443", 2], ["999.1.1.1:8080", 3], ["lb.example.com:80", 4], ["127.0.0.1:8081", 5]]));
    expect(s.servers[0]!.listen).toEqual(["127.0.0.1:1", "127.0.0.1:2", "999.1.1.1:3", "lb.example.com:4"]);
  });

  it("keeps the smoke master inside the scratch prefix and daemonized", () => {
    const s = scratchSpec(spec, new Map([["*:80", 1], ["[::1]:8443", 2], ["*:8081", 3]]));
    expect(s.nginx.pid).toBe("logs/nginx.pid");
    expect(s.nginx.error_log).toEqual({ path: "logs/error.log", level: "error" });
    expect(s.consul.dump_file).toBe("state/gen_lb_peers.json");
    expect(s.nginx.directives).toEqual([]);
    expect(s.servers[1]!.access_log).toEqual([{ path: "logs/access.log" }]);
    expect(s.nginx.worker_processes).toBe(2);
    // No http access_log in the spec: nginx would open its compiled-in path.
    expect(s.nginx.http.access_log).toEqual([{ path: "logs/access.log" }]);
    expect(s.nginx.http.directives).toEqual([
      { name: "client_body_temp_path", args: ["temp/client_body"] },
      { name: "proxy_temp_path", args: ["temp/proxy"] },
    ]);
  });

  it("the status URL a local client uses", () => {
    expect(statusUrl(spec)).toBe("http://127.0.0.1:8081/status");
    expect(statusUrl(specSchema.parse({ status: { listen: "[::]:9000", path: "/s" } }))).toBe("http://[::1]:9000/s");
    expect(statusUrl(specSchema.parse({ status: { enabled: false } }))).toBeUndefined();
  });
});
