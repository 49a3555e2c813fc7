/**
 * `gen-lb parse` end to end: spawn the built CLI (the global setup compiles
 * src/ to lib/) with a clean environment and assert stdout, stderr and the
 * exit code, as a user or CI script sees them.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { fsLoader } from "../../src/nginx/load.js";
import { parseConfig } from "../../src/nginx/parse.js";
import { toPayload } from "../../src/nginx/payload.js";
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
    const r = genLb("parse", file, "--json");
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const payload = JSON.parse(r.stdout);
    expect(payload).toEqual(toPayload(parseConfig(file, fsLoader(root))));
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
        "fixtures/parser/includes/conf.d/a.conf: 2 directives, 1 comment, 1 include",
        "fixtures/parser/includes/conf.d/b.conf: 2 directives, 1 include",
        "fixtures/parser/includes/sites/alpha.conf: 2 directives",
        "fixtures/parser/includes/sites/beta.conf: 2 directives",
        "fixtures/parser/includes/snippets/common.conf: 1 directive",
        "7 files, 20 directives, 1 comment: ok",
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

  it("an include cycle with --json: one JSON document carrying the payload, exit 1", () => {
    const r = genLb("parse", "fixtures/parser/include-cycle/nginx.conf", "--json");
    expect(r.status).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(false);
    expect(doc.error.exitCode).toBe(1);
    expect(doc.error.details).toEqual([
      "fixtures/parser/include-cycle/b.conf:2:3: include cycle: fixtures/parser/include-cycle/a.conf -> fixtures/parser/include-cycle/b.conf -> fixtures/parser/include-cycle/a.conf",
    ]);
    expect(doc.payload.status).toBe("failed");
    expect(doc.payload.config.map((c: { file: string }) => c.file)).toEqual([
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
