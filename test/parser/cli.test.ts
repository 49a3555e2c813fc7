/**
 * `gen-lb parse` end to end: spawn the built CLI (the global setup compiles
 * src/ to lib/) with a clean environment and assert stdout, stderr and the
 * exit code, as a user or CI script sees them.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { fsLoader } from "../../src/nginx/load.js";
import { parseConfig } from "../../src/nginx/parse.js";
import { crossplanePayload } from "../../src/nginx/crossplane.js";
import { root } from "./helpers.js";

function genLb(...args: string[]) {
  const r = spawnSync(process.execPath, [path.join(root, "lib/cli.js"), ...args], {
    cwd: root,
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("gen-lb parse", () => {
  it("--json prints exactly the crossplane payload, exit 0", () => {
    const file = "fixtures/parser/includes/nginx.conf";
    const r = genLb("parse", file, "--json", "--include-comments");
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const payload = JSON.parse(r.stdout);
    expect(payload).toEqual(crossplanePayload(parseConfig(file, fsLoader(root)), { includeComments: true }));
    expect(JSON.stringify(payload)).toContain('"directive":"#"');
    expect(payload.config[0].file).toBe(file);
    expect(payload.config[1].file).toBe("fixtures/parser/includes/mime.types");
  });

  it("prints a per-file summary without --json", () => {
    const r = genLb("parse", "fixtures/parser/includes/nginx.conf");
    expect(r.status).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(
      [
        "fixtures/parser/includes/nginx.conf: 8 directives, 4 includes",
        "fixtures/parser/includes/mime.types: 3 directives",
        // comments are left out unless --include-comments, as in crossplane
        "fixtures/parser/includes/conf.d/a.conf: 2 directives, 1 include",
        "fixtures/parser/includes/conf.d/b.conf: 2 directives, 1 include",
        "fixtures/parser/includes/sites/alpha.conf: 2 directives",
        "fixtures/parser/includes/sites/beta.conf: 2 directives",
        "fixtures/parser/includes/snippets/common.conf: 1 directive",
        "7 files, 20 directives, 0 comments: ok",
        "",
      ].join("\n"),
    );
  });

  it("a binary file: clear message with file:line:col, exit 1", () => {
    const r = genLb("parse", "fixtures/parser/malformed/binary.conf");
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      "gen-lb: fixtures/parser/malformed/binary.conf did not parse as an nginx config (1 error)\n" +
        "  fixtures/parser/malformed/binary.conf:3:5: not a text file (it contains a NUL byte): this is not an nginx config\n",
    );
    expect(r.stdout).toBe("fixtures/parser/malformed/binary.conf: 0 directives, 1 error\n1 file, 0 directives, 0 comments: failed\n");
  });

  it("garbage text: the first syntax error with its position, exit 1", () => {
    const r = genLb("parse", "fixtures/parser/malformed/prose.conf");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      'fixtures/parser/malformed/prose.conf:1:1: unexpected end of file: the directive "This" is not terminated by ";"',
    );
  });

  it("an include cycle with --json: crossplane's failed payload, exit 1", () => {
    const r = genLb("parse", "fixtures/parser/include-cycle/nginx.conf", "--json");
    expect(r.status).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(Object.keys(doc)).toEqual(["status", "errors", "config"]);
    expect(doc.errors).toEqual([
      {
        file: "fixtures/parser/include-cycle/b.conf",
        error:
          "include cycle: fixtures/parser/include-cycle/a.conf -> fixtures/parser/include-cycle/b.conf -> fixtures/parser/include-cycle/a.conf in fixtures/parser/include-cycle/b.conf:2",
        line: 2,
      },
    ]);
    expect(doc.status).toBe("failed");
    expect(doc.config.map((c: { file: string }) => c.file)).toEqual([
      "fixtures/parser/include-cycle/nginx.conf",
      "fixtures/parser/include-cycle/a.conf",
      "fixtures/parser/include-cycle/b.conf",
    ]);
    expect(r.stderr).toContain("b.conf:2:3: include cycle");
  });

  it("a missing include is reported and the rest still parsed, exit 1", () => {
    const r = genLb("parse", "fixtures/parser/include-missing/nginx.conf");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      'fixtures/parser/include-missing/nginx.conf:3:5: include "missing.conf": cannot read fixtures/parser/include-missing/missing.conf: no such file',
    );
    expect(r.stdout).toContain("fixtures/parser/include-missing/nginx.conf: 5 directives, 2 includes, 1 error");
  });

  it("crossplane's CLI names: --strict, --ignore (repeatable), --no-check-ctx, --single-file, --combine; failed payload exit 1", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "gen-lb-parse-"));
    writeFileSync(path.join(dir, "nginx.conf"), "events {}\nhttp {\n    proxy_passs x;\n    include s.conf;\n}\n");
    writeFileSync(path.join(dir, "s.conf"), "proxy_pass http://x;\nserver_tokens off;\n");
    const file = path.join(dir, "nginx.conf");
    const strict = genLb("parse", file, "--json", "--strict");
    expect(strict.status).toBe(1);
    const doc = JSON.parse(strict.stdout);
    expect(doc.status).toBe("failed");
    expect(doc.errors).toEqual([
      { file, error: `unknown directive "proxy_passs" in ${file}:3`, line: 3 },
      { file: path.join(dir, "s.conf"), error: `"proxy_pass" directive is not allowed here in ${path.join(dir, "s.conf")}:1`, line: 1 },
    ]);
    expect(strict.stderr).toContain(`${file}:3: unknown directive "proxy_passs"`);
    expect(genLb("parse", file, "--json", "--strict", "--ignore", "proxy_passs", "--ignore", "proxy_pass").status).toBe(0);
    expect(genLb("parse", file, "--json", "--no-check-ctx").status).toBe(0);
    const single = JSON.parse(genLb("parse", file, "--json", "--single-file").stdout);
    expect(single.config).toHaveLength(1);
    const combined = JSON.parse(genLb("parse", file, "--json", "--no-check-ctx", "--combine").stdout);
    expect(combined.config).toHaveLength(1);
    expect(combined.config[0].parsed[1].block.map((d: { directive: string; file: string }) => `${d.directive}@${path.basename(d.file)}`)).toEqual([
      "proxy_passs@nginx.conf",
      "proxy_pass@s.conf",
      "server_tokens@s.conf",
    ]);
  });

  it("a file that does not exist is a usage error, exit 2", () => {
    const r = genLb("parse", "fixtures/parser/nope.conf");
    expect(r.status).toBe(2);
    expect(r.stderr).toBe("gen-lb: cannot read fixtures/parser/nope.conf: no such file\n");
    expect(r.stdout).toBe("");
  });

  it("a directory is a usage error, exit 2", () => {
    const r = genLb("parse", "fixtures/parser/includes");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/is a directory; give the main nginx config file/);
  });
});
