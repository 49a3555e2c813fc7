/** `${name}` read as `$name` where nginx means the same (src/migrate/braces.ts). */
import { describe, expect, it } from "vitest";
import { unbrace, unbraceTree } from "../../src/migrate/braces.js";
import { migrate } from "../../src/migrate/index.js";
import { memoryLoader } from "../../src/nginx/load.js";
import { parseConfig } from "../../src/nginx/parse.js";

describe("braced variables", () => {
  it("unbraces where no name character follows, and only there", () => {
    expect(unbrace("t=${msec}")).toBe("t=$msec");
    expect(unbrace("${scheme}://${host}/x")).toBe("$scheme://$host/x");
    // $hostname is another variable: the braces stay (and the converters report what they cannot carry).
    expect(unbrace("${host}name")).toBe("${host}name");
    expect(unbrace("a${1}")).toBe("a${1}");
  });
  it("leaves Lua alone and the old tree unchanged", () => {
    const text = 'events {}\nhttp { server { location / { proxy_set_header X-Request-Start "t=${msec}"; content_by_lua_block { ngx.say("${x}") } } } }\n';
    const parsed = parseConfig("n.conf", memoryLoader({ "n.conf": text }));
    const tree = parsed.config[0]!.parsed;
    const before = JSON.stringify(tree);
    const r = unbraceTree(tree);
    expect(JSON.stringify(tree)).toBe(before);
    expect(r.changed.map((d) => d.args)).toEqual([["X-Request-Start", "t=${msec}"]]);
    expect(JSON.stringify(r.tree)).toContain('"t=$msec"');
    expect(JSON.stringify(r.tree)).toContain('ngx.say(\\"${x}\\")');
  });
  it('proxy_set_header X-Request-Start "t=${msec}" migrates into the header map, and the location is kept', () => {
    const text = 'events {}\nhttp { upstream app { server 127.0.0.1:9000; } server { listen 8080; location / { proxy_set_header X-Request-Start "t=${msec}"; proxy_pass http://app; } } }\n';
    const m = migrate("n.conf", { loader: memoryLoader({ "n.conf": text }) });
    const loc = (m.spec.servers as Array<{ locations: Array<Record<string, unknown>> }>)[0]!.locations[0]!;
    expect(loc.proxy_set_header).toEqual({ "X-Request-Start": "t=$msec" });
    expect(m.findings.filter((f) => f.kind === "lost" && f.directive !== undefined)).toEqual([]);
  });
});

describe("a nested location the escape hatch cannot carry", () => {
  it("is left out with its reason and blocks (migrate exits 1), not reported as an ordinary loss", () => {
    const text = 'events {}\nhttp { server { listen 8080; location / { location /x/ { add_header X-Name "${host}name"; } } } }\n';
    const m = migrate("n.conf", { loader: memoryLoader({ "n.conf": text }) });
    const blocking = m.findings.filter((f) => f.blocking);
    expect(blocking.map((f) => `${f.line}:${f.column} ${f.directive}`)).toEqual(["2:43 location"]);
    expect(blocking[0]!.message).toMatch(/^location \/x\/: left out: the argument "\$\{host\}name" holds .*; rewrite it by hand$/);
  });
});
