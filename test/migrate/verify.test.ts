/**
 * Every legacy fixture migrates to a spec that builds, passes the real
 * nginx -t, and whose config differs from the old one only where the report
 * says so; and the comparison does notice a difference that is not explained.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { specYaml } from "../../src/migrate/index.js";
import { TEST_TARGET, testBinaryInfo } from "../support/target.js";
import { compareConfigs } from "../../src/migrate/verify.js";
import { fsLoader } from "../../src/nginx/load.js";
import { parseConfig } from "../../src/nginx/parse.js";
import { buildFileSet } from "../../src/pipeline/index.js";
import { validateSpecText } from "../../src/pipeline/validate.js";
import { writeFileSet } from "../../src/util/files.js";
import { nginxTest } from "../support/nginx.js";
import { CASES, migrateFixture } from "./helpers.js";

const scratch = mkdtempSync(path.join(os.tmpdir(), "gen-lb-migrate-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function buildNew(name: string, spec: Record<string, unknown>, rel: string) {
  const v = validateSpecText(specYaml({ spec, findings: [], tree: [], files: [] }, rel), "gen-lb.yaml");
  expect(v.errors).toEqual([]);
  const dir = path.join(scratch, name);
  await writeFileSet(dir, buildFileSet(v.spec!, "gen-lb.yaml", TEST_TARGET));
  return dir;
}

describe("migrated fixtures build and pass nginx -t, with no unexplained difference", () => {
  for (const [name, rel] of Object.entries(CASES)) {
    it(name, async () => {
      const m = migrateFixture(rel);
      const dir = await buildNew(name, m.spec, rel);
      const t = nginxTest(dir);
      if (JSON.stringify(m.spec).includes('"http2":true') && !testBinaryInfo().http2) {
        // OpenResty as ../shared/openresty/build.sh builds it has no ngx_http_v2_module.
        expect(t.output).toContain("requires ngx_http_v2_module");
        return;
      }
      expect(t.output).toMatch(/test is successful/);
      expect(t.ok).toBe(true);
      const fresh = parseConfig(path.join(dir, "conf/nginx.conf"), fsLoader());
      expect(fresh.errors).toEqual([]);
      expect(compareConfigs(m.tree, fresh.config[0]!.parsed, m.findings)).toEqual([]);
    });
  }
});

describe("the comparison is not blind", () => {
  it("reports a changed value, a missing directive and an added one", async () => {
    const m = migrateFixture(CASES.static);
    const spec = structuredClone(m.spec) as { nginx: { http: Record<string, unknown> }; servers: Array<{ locations: Array<Record<string, unknown>> }> };
    spec.nginx.http.keepalive_timeout = "30s";
    delete spec.nginx.http.tcp_nopush;
    spec.servers[0]!.locations[3]!.directives = [{ name: "expires", args: ["7d"] }, { name: "add_header", args: ["X-New", "1"] }];
    const dir = await buildNew("static-tampered", spec, CASES.static);
    const fresh = parseConfig(path.join(dir, "conf/nginx.conf"), fsLoader());
    const diffs = compareConfigs(m.tree, fresh.config[0]!.parsed, m.findings).map((d) => `${d.kind} ${d.file.includes("static/") ? `${path.basename(d.file)}:${d.line}` : "new"}: ${d.message}`);
    expect(diffs).toEqual([
      "missing nginx.conf:21: tcp_nopush on is not in the new config",
      expect.stringMatching(/^changed nginx\.conf:22: keepalive_timeout 65s became keepalive_timeout 30s \(.*conf\/nginx\.conf:\d+\)$/),
      "added new: add_header X-New 1 is new",
    ]);
  });

  it("relative certificate paths point at the old conf directory, wherever the new prefix is", () => {
    const m = migrateFixture(CASES.mixed);
    const ssl = (m.spec.servers as Array<{ ssl?: { certificate: string } }>)[0]!.ssl!;
    expect(path.isAbsolute(ssl.certificate)).toBe(true);
  });
});
