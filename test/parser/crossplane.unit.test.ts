/**
 * crossplane's parse options, each on a config of the kind crossplane's own
 * tests/test_parse.py uses, against the payload crossplane documents for it
 * (written out here by hand, not produced by the code under test).
 */
import { describe, expect, it } from "vitest";
import { crossplanePayload, type CrossplaneOptions } from "../../src/nginx/crossplane.js";
import { memoryLoader } from "../../src/nginx/load.js";
import { parseConfig } from "../../src/nginx/parse.js";

function parse(files: Record<string, string>, opts: CrossplaneOptions & { single?: boolean } = {}) {
  const r = parseConfig("/c/nginx.conf", memoryLoader(files), { comments: opts.includeComments === true, single: opts.single === true });
  return crossplanePayload(r, opts);
}

const includesRegular = {
  "/c/nginx.conf": "events {}\nhttp {\n    include conf.d/server.conf;\n}\n",
  "/c/conf.d/server.conf": "server {\n    listen 127.0.0.1:8080;\n    server_name default_server;\n    include foo.conf;\n    include bar.conf;\n}\n",
  "/c/foo.conf": "location /foo {\n    return 200 foo;\n}\n",
};

const simple = {
  "/c/nginx.conf":
    "events {\n    worker_connections 1024;\n}\n\nhttp {\n    server {\n        listen 127.0.0.1:8080;\n        server_name default_server;\n        location / {\n            return 200 \"foo bar baz\";\n        }\n    }\n}\n",
};

const withComments = {
  "/c/nginx.conf":
    "events {\n    worker_connections 1024;\n}\n#comment\nhttp {\n    server {\n        listen 127.0.0.1:8080; #listen\n        server_name default_server;\n        location / { ## this is brace\n            # location /\n            return 200 \"foo bar baz\";\n        }\n    }\n}\n",
};

describe("crossplane parse options", () => {
  it("includes: one config per file, includes[] indexes, a missing include fails its file", () => {
    const p = parse(includesRegular);
    expect(p.status).toBe("failed");
    expect(p.errors).toHaveLength(1);
    expect(p.errors[0]).toMatchObject({ file: "/c/conf.d/server.conf", line: 5 });
    expect(p.errors[0]!.error).toMatch(/ in \/c\/conf\.d\/server\.conf:5$/);
    expect(p.config.map((c) => [c.file, c.status])).toEqual([
      ["/c/nginx.conf", "ok"],
      ["/c/conf.d/server.conf", "failed"],
      ["/c/foo.conf", "ok"],
    ]);
    expect(p.config[0]!.parsed).toEqual([
      { directive: "events", line: 1, args: [], block: [] },
      { directive: "http", line: 2, args: [], block: [{ directive: "include", line: 3, args: ["conf.d/server.conf"], includes: [1] }] },
    ]);
    expect(p.config[1]!.parsed[0]!.block).toEqual([
      { directive: "listen", line: 2, args: ["127.0.0.1:8080"] },
      { directive: "server_name", line: 3, args: ["default_server"] },
      { directive: "include", line: 4, args: ["foo.conf"], includes: [2] },
      { directive: "include", line: 5, args: ["bar.conf"], includes: [] },
    ]);
    expect(p.config[2]!.parsed).toEqual([{ directive: "location", line: 1, args: ["/foo"], block: [{ directive: "return", line: 2, args: ["200", "foo"] }] }]);
  });

  it("--single-file: only the main file, include nodes without includes", () => {
    const p = parse(includesRegular, { single: true });
    expect(p).toEqual({
      status: "ok",
      errors: [],
      config: [
        {
          file: "/c/nginx.conf",
          status: "ok",
          errors: [],
          parsed: [
            { directive: "events", line: 1, args: [], block: [] },
            { directive: "http", line: 2, args: [], block: [{ directive: "include", line: 3, args: ["conf.d/server.conf"] }] },
          ],
        },
      ],
    });
  });

  it("--combine: one config, includes inlined, every node names its file, errors kept", () => {
    const p = parse(includesRegular, { combine: true });
    expect(p.status).toBe("failed");
    expect(p.config).toHaveLength(1);
    expect(p.config[0]!.status).toBe("failed");
    expect(p.config[0]!.errors).toEqual([{ error: p.errors[0]!.error, line: 5 }]);
    expect(p.config[0]!.parsed).toEqual([
      { directive: "events", file: "/c/nginx.conf", line: 1, args: [], block: [] },
      {
        directive: "http",
        file: "/c/nginx.conf",
        line: 2,
        args: [],
        block: [
          {
            directive: "server",
            file: "/c/conf.d/server.conf",
            line: 1,
            args: [],
            block: [
              { directive: "listen", file: "/c/conf.d/server.conf", line: 2, args: ["127.0.0.1:8080"] },
              { directive: "server_name", file: "/c/conf.d/server.conf", line: 3, args: ["default_server"] },
              {
                directive: "location",
                file: "/c/foo.conf",
                line: 1,
                args: ["/foo"],
                block: [{ directive: "return", file: "/c/foo.conf", line: 2, args: ["200", "foo"] }],
              },
            ],
          },
        ],
      },
    ]);
  });

  it("--ignore (repeatable): plain and block directives left out", () => {
    const p = parse(simple, { ignore: ["listen", "server_name"] });
    expect(p.config[0]!.parsed).toEqual([
      { directive: "events", line: 1, args: [], block: [{ directive: "worker_connections", line: 2, args: ["1024"] }] },
      {
        directive: "http",
        line: 5,
        args: [],
        block: [
          { directive: "server", line: 6, args: [], block: [{ directive: "location", line: 9, args: ["/"], block: [{ directive: "return", line: 10, args: ["200", "foo bar baz"] }] }] },
        ],
      },
    ]);
    expect(parse(simple, { ignore: ["events", "server"] }).config[0]!.parsed).toEqual([{ directive: "http", line: 5, args: [], block: [] }]);
  });

  it("comments: off by default, --include-comments keeps them with args []", () => {
    const off = parse(withComments);
    expect(JSON.stringify(off)).not.toContain('"#"');
    const on = parse(withComments, { includeComments: true });
    const http = on.config[0]!.parsed;
    expect(http[1]).toEqual({ directive: "#", line: 4, args: [], comment: "comment" });
    const server = http[2]!.block![0]!.block!;
    expect(server[1]).toEqual({ directive: "#", line: 7, args: [], comment: "listen" });
    expect(server[3]!.block).toEqual([
      { directive: "#", line: 9, args: [], comment: "# this is brace" },
      { directive: "#", line: 10, args: [], comment: " location /" },
      { directive: "return", line: 11, args: ["200", "foo bar baz"] },
    ]);
  });

  it("--strict: an unknown directive is an error, left out of parsed", () => {
    const files = { "/c/nginx.conf": "events {\n}\n\nhttp {\n    server {\n        location / {\n            proxy_passs http://foo.bar;\n        }\n    }\n}\n" };
    const p = parse(files, { strict: true });
    expect(p.status).toBe("failed");
    expect(p.errors).toEqual([{ file: "/c/nginx.conf", error: 'unknown directive "proxy_passs" in /c/nginx.conf:7', line: 7 }]);
    expect(p.config[0]!.errors).toEqual([{ error: 'unknown directive "proxy_passs" in /c/nginx.conf:7', line: 7 }]);
    expect(p.config[0]!.parsed[1]!.block![0]!.block![0]!.block).toEqual([]);
    // without --strict the same config is fine
    expect(parse(files).status).toBe("ok");
  });

  it("context check on by default, --no-check-ctx turns it off", () => {
    const files = { "/c/nginx.conf": "events {}\nhttp {\n    proxy_pass http://x;\n    server { listen 80; }\n}\n" };
    const p = parse(files);
    expect(p.errors).toEqual([{ file: "/c/nginx.conf", error: '"proxy_pass" directive is not allowed here in /c/nginx.conf:3', line: 3 }]);
    expect(p.config[0]!.parsed[1]!.block!.map((d) => d.directive)).toEqual(["server"]);
    expect(parse(files, { checkCtx: false }).status).toBe("ok");
  });

  it("the context of an included file is the include's", () => {
    const files = { "/c/nginx.conf": "events {}\nhttp {\n    include s.conf;\n}\n", "/c/s.conf": "server { listen 80; }\nworker_processes 2;\n" };
    const p = parse(files);
    expect(p.errors).toEqual([{ file: "/c/s.conf", error: '"worker_processes" directive is not allowed here in /c/s.conf:2', line: 2 }]);
  });

  it("argument check on by default, --no-check-args turns it off; FLAG must be on or off", () => {
    const files = { "/c/nginx.conf": "events {}\nhttp {\n    add_header X;\n    server_tokens on off;\n    sendfile yes;\n}\n" };
    const p = parse(files);
    expect(p.errors.map((e) => e.error)).toEqual([
      'invalid number of arguments in "add_header" directive in /c/nginx.conf:3',
      'invalid number of arguments in "server_tokens" directive in /c/nginx.conf:4',
      'invalid value "yes" in "sendfile" directive, it must be "on" or "off" in /c/nginx.conf:5',
    ]);
    expect(parse(files, { checkArgs: false }).status).toBe("ok");
  });

  it("block/terminator mismatch is an argument error", () => {
    const p = parse({ "/c/nginx.conf": "events {}\nhttp {\n    server;\n    sendfile on { }\n}\n" });
    expect(p.errors.map((e) => e.error)).toEqual([
      'directive "server" has no opening "{" in /c/nginx.conf:3',
      'directive "sendfile" is not terminated by ";" in /c/nginx.conf:4',
    ]);
  });

  it("arguments keep escape sequences as written (comments between args)", () => {
    const p = parse(
      { "/c/nginx.conf": "http { #comment 1\n    log_format \\#arg\\ 1 '#arg 2' #comment 2\n    ; }\n" },
      { includeComments: true, checkArgs: false },
    );
    const block = p.config[0]!.parsed[0]!.block!;
    expect(block[0]).toEqual({ directive: "#", line: 1, args: [], comment: "comment 1" });
    expect(block[1]).toEqual({ directive: "log_format", line: 2, args: ["\\#arg\\ 1", "#arg 2"] });
    expect(block[2]).toEqual({ directive: "#", line: 2, args: [], comment: "comment 2" });
  });

  it("a quoted \\\" is the quote, other escapes stay", () => {
    const p = parse({ "/c/nginx.conf": 'events {}\nhttp { add_header X "a\\"b\\tc"; }\n' });
    expect(p.config[0]!.parsed[1]!.block![0]!.args).toEqual(["X", 'a"b\\tc']);
  });

  it("a directive a \"}\" ends without \";\": reported at its line, left out, the rest read (crossplane's missing-semicolon case)", () => {
    const conf =
      "http {\n    server {\n        location /is-broken {\n            proxy_pass http://is.broken.example\n        }\n\n        location /not-broken {\n            proxy_pass http://not.broken.example;\n        }\n    }\n}\n";
    const p = parse({ "/c/nginx.conf": conf });
    expect(p.errors).toEqual([{ file: "/c/nginx.conf", error: 'directive "proxy_pass" is not terminated by ";" in /c/nginx.conf:4', line: 4 }]);
    expect(p.config[0]!.parsed[0]!.block![0]!.block).toEqual([
      { directive: "location", line: 3, args: ["/is-broken"], block: [] },
      { directive: "location", line: 7, args: ["/not-broken"], block: [{ directive: "proxy_pass", line: 8, args: ["http://not.broken.example"] }] },
    ]);
  });

  it("a failed parse: status failed, errors[] with file, line, error", () => {
    const p = parse({ "/c/nginx.conf": "events {}\nhttp {\n    server {\n" });
    expect(p.status).toBe("failed");
    expect(Object.keys(p.errors[0]!)).toEqual(["file", "error", "line"]);
    expect(p.errors[0]!.file).toBe("/c/nginx.conf");
    expect(p.errors[0]!.error).toMatch(/ in \/c\/nginx\.conf:\d+$/);
    expect(Object.keys(p.config[0]!.errors[0]!)).toEqual(["error", "line"]);
  });
});
