import { describe, expect, it } from "vitest";
import { parseString } from "../../src/nginx/parse.js";
import { print } from "../../src/nginx/print.js";

/**
 * A 50 MB config must parse in seconds. This is a guard against quadratic
 * behaviour (which would take hours here), not a benchmark: the bound is
 * loose on purpose so a slow CI machine does not flake.
 */
function bigConfig(bytes: number): { text: string; servers: number } {
  const server = (i: number) => `    # server ${i}
    server {
        listen 127.0.0.1:${8000 + (i % 1000)};
        server_name s${i}.example.test "alias-${i}.example.test";
        location ~ "^/api/v[0-9]{1,2}/(.*)$" {
            proxy_set_header Host $host;
            proxy_set_header X-Request-Id '\${request_id}';
            proxy_pass http://up${i % 50};
        }
        location / {
            content_by_lua_block {
                local t = { "}", [[ { ]] } -- }
                ngx.say(#t)
            }
        }
    }
`;
  const parts: string[] = ["events {}\nhttp {\n"];
  let size = parts[0]!.length;
  let servers = 0;
  while (size < bytes) {
    const s = server(servers++);
    parts.push(s);
    size += s.length;
  }
  parts.push("}\n");
  return { text: parts.join(""), servers };
}

describe("large configs", () => {
  it("parses 50 MB quickly and completely", () => {
    const { text, servers } = bigConfig(50 * 1024 * 1024);
    expect(text.length).toBeGreaterThanOrEqual(50 * 1024 * 1024);
    const t0 = performance.now();
    const r = parseString(text, "big.conf");
    const elapsed = performance.now() - t0;
    expect(r.errors).toEqual([]);
    const http = r.parsed[1]!;
    expect(http.block!.filter((d) => d.directive === "server")).toHaveLength(servers);
    const last = http.block!.at(-1)!;
    expect(last.directive).toBe("server");
    expect(last.line).toBe(text.split("\n").length - 1 - 15);
    expect(elapsed).toBeLessThan(30_000);
  }, 120_000);

  it("prints a large tree without quadratic string building", () => {
    const { text } = bigConfig(10 * 1024 * 1024);
    const tree = parseString(text, "big.conf").parsed;
    const t0 = performance.now();
    const out = print(tree);
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect(out.length).toBeGreaterThan(5 * 1024 * 1024);
  }, 120_000);
});
