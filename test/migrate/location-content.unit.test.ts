/** What a location's content is when it holds more than one content directive (src/migrate/convert-location.ts). */
import { describe, expect, it } from "vitest";
import { migrate } from "../../src/migrate/index.js";
import { memoryLoader } from "../../src/nginx/load.js";

describe("a location whose return comes before its proxy_pass", () => {
  it("answers with the return; proxy_pass and its headers are carried as they are, not into an unused header map", () => {
    const text = "events {}\nhttp { upstream app { server 127.0.0.1:9000; } server { listen 8080; location /old/ { return 410; proxy_set_header Host $host; proxy_pass http://app; } } }\n";
    const m = migrate("n.conf", { loader: memoryLoader({ "n.conf": text }) });
    const loc = (m.spec.servers as Array<{ locations: Array<Record<string, unknown>> }>)[0]!.locations[0]!;
    expect(loc).toMatchObject({ path: "/old/", return: { code: 410 } });
    expect(loc.proxy_set_header).toBeUndefined();
    expect(loc.directives).toEqual([
      { name: "proxy_set_header", args: ["Host", "$host"] },
      { name: "proxy_pass", args: ["http://app"] },
    ]);
  });
});
