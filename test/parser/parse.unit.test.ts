import path from "node:path";
import { describe, expect, it } from "vitest";
import { fsLoader, memoryLoader } from "../../src/nginx/load.js";
import { MAX_DEPTH, parseConfig, parseString } from "../../src/nginx/parse.js";
import { crossplanePayload } from "../../src/nginx/crossplane.js";
import type { Directive } from "../../src/nginx/types.js";
import { fixtures, outline, readFixture, shape } from "./helpers.js";

function parseFixture(rel: string) {
  const r = parseString(readFixture(rel), rel);
  expect(r.errors, rel).toEqual([]);
  return r.parsed;
}

function find(nodes: readonly Directive[], name: string): Directive[] {
  const out: Directive[] = [];
  const walk = (ns: readonly Directive[]) => {
    for (const d of ns) {
      if (d.directive === name) out.push(d);
      if (d.block) walk(d.block);
    }
  };
  walk(nodes);
  return out;
}

describe("valid fixtures", () => {
  it("nested.conf: blocks inside blocks, with positions", () => {
    const tree = parseFixture("valid/nested.conf");
    expect(outline(tree)).toEqual([
      "1:1 user www-data",
      "2:1 worker_processes auto",
      "4:1 events",
      "  5:5 worker_connections 512",
      "8:1 http",
      "  9:5 upstream app",
      "    10:9 least_conn",
      "    11:9 server 127.0.0.1:8081 weight=2 max_fails=3 fail_timeout=10s",
      "    12:9 server 127.0.0.1:8082 backup",
      "    13:9 keepalive 16",
      "  16:5 server",
      "    17:9 listen 127.0.0.1:8080",
      "    18:9 server_name example.test",
      "    20:9 location /",
      "      21:13 proxy_pass http://app",
      "      23:13 location /api/",
      "        24:17 limit_except GET POST",
      "          25:21 deny all",
      "        27:17 location ~ ^/api/v[0-9]+/",
      "          28:21 if $request_method = POST",
      "            29:25 return 405",
      "    35:9 location = /empty",
    ]);
    expect(find(tree, "location").at(-1)?.block).toEqual([]);
    expect(tree[0]?.block).toBeUndefined();
  });

  it("quoting.conf: every quoting and escaping form reads as nginx reads it", () => {
    const tree = parseFixture("valid/quoting.conf");
    const args = tree[0]!.block!.map((d) => [d.directive, ...d.args]);
    expect(args).toEqual([
      ["log_format", "main", '$remote_addr - "$request" $status'],
      ["log_format", "both", `single ' and double " quotes`],
      ["log_format", "esc", "tab\there", "line\nbreak", "cr\r", "back\\slash"],
      ["set", "$empty1", ""],
      ["set", "$empty2", ""],
      ["set", "$braces", "${host}-x"],
      ["set", "$word", 'a"b"c'],
      ["set", "$hash", "a#b"],
      ["set", "$close", "a}b"],
      ["set", "$regex", "^/(\\d+)/\\w$"],
      ["quoted_directive", "with arg"],
      ["single", "args", "here"],
      ["return", "200", "multi\nline"],
      ["add_header", "X-Escaped", 'q"q', "always"],
      ["rewrite", "^/old/(.*){1,2}$", "/new/$1", "last"],
      ["location", "~", "^/(a|b){2}$"],
      ["location", "~*", "\\.(gif|jpg)$"],
      ["if", "$http_x"],
      ["if", "$uri", "~", "a b"],
      ["if", "$arg_q", "~", "^(x|y)$"],
      ["if", "$a", "=", ""],
      ["set", "$cont", "line\\\ncontinued"],
    ]);
    // The multi-line string moves the following lines on.
    expect(tree[0]!.block!.find((d) => d.directive === "add_header")?.line).toBe(16);
  });

  it("lua.conf: every *_by_lua_block body is one verbatim argument", () => {
    const tree = parseFixture("valid/lua.conf");
    const lua = outline(tree).filter((l) => l.includes("_by_lua_block")).map((l) => l.trim().split(" ").slice(0, 2).join(" "));
    expect(lua).toEqual([
      "3:5 init_by_lua_block",
      "17:5 init_worker_by_lua_block",
      "20:9 balancer_by_lua_block",
      "27:9 ssl_certificate_by_lua_block",
      "28:9 ssl_client_hello_by_lua_block",
      "29:9 server_rewrite_by_lua_block",
      "31:13 set_by_lua_block",
      "32:13 rewrite_by_lua_block",
      "33:13 access_by_lua_block",
      "34:13 content_by_lua_block",
      "39:13 header_filter_by_lua_block",
      "40:13 body_filter_by_lua_block",
      "41:13 log_by_lua_block",
      "45:5 exit_worker_by_lua_block",
    ]);
    const byName = (n: string) => find(tree, n)[0]!;
    expect(byName("set_by_lua_block").args).toEqual(["$res", ' return "}" ']);
    expect(byName("rewrite_by_lua_block").args).toEqual([" local t = {{}, {{}}} "]);
    expect(byName("ssl_client_hello_by_lua_block").args).toEqual([""]);
    expect(byName("log_by_lua_block").args).toEqual([" -- }\n            "]);
    expect(byName("content_by_lua_block").args[0]).toBe('\n                ngx.say([[\n{ "json": true }\n]])\n            ');
    const init = byName("init_by_lua_block");
    expect(init.args).toHaveLength(1);
    expect(init.args[0]).toContain("local sub = \"--not a comment {\"\n    ");
    expect(init.lua).toEqual({ line: 3, column: 24 });
    expect(init.block).toBeUndefined();
    // The directive after the big body is positioned right.
    expect(byName("init_worker_by_lua_block").lua).toEqual({ line: 17, column: 31 });
  });

  it("comments.conf: comments are nodes with positions, wherever they are", () => {
    const tree = parseFixture("valid/comments.conf");
    expect(outline(tree)).toEqual([
      "1:1 events",
      "  2:5 worker_connections 64",
      "4:1 # comment at top level",
      "5:1 http",
      "  5:8 # after an opening brace",
      "  6:5 # alone in a block",
      "  7:5 keepalive_timeout 5",
      "  7:26 # trailing",
      "  8:5 gzip on",
      "  8:10 # between args",
      '  10:5 add_header X-Hash #not-a-comment',
      "  11:5 #",
      "  12:5 server_tokens off",
      "  12:23 #glued",
      "14:1 # last line without newline",
    ]);
    expect(parseString(readFixture("valid/comments.conf"), "c", { comments: false }).parsed.some((d) => d.directive === "#")).toBe(false);
  });

  it("CRLF line endings give the same tree and the same lines", () => {
    for (const rel of ["valid/nested.conf", "valid/comments.conf", "valid/lua.conf"]) {
      const lf = parseString(readFixture(rel), rel);
      const crlf = parseString(readFixture(rel).replace(/\n/g, "\r\n"), rel);
      expect(crlf.errors).toEqual([]);
      const lines = (r: typeof lf) => outline(r.parsed).map((l) => l.split(" ")[0]!.split(":")[0]);
      expect(lines(crlf)).toEqual(lines(lf));
      if (rel !== "valid/lua.conf") expect(shape(crlf.parsed)).toEqual(shape(lf.parsed));
    }
  });
});

describe("malformed fixtures: the first error, exactly where it is", () => {
  const cases: Array<[string, number, number, RegExp]> = [
    ["unclosed-block.conf", 2, 6, /unexpected end of file, expecting "}": the block of "http" opened here is never closed/],
    ["extra-close.conf", 4, 1, /unexpected "}": no block is open here/],
    ["stray-semicolon.conf", 2, 3, /unexpected ";"/],
    ["stray-open.conf", 2, 5, /unexpected "{"/],
    ["unterminated-double.conf", 2, 21, /unterminated quoted string: the " opened here/],
    ["unterminated-single.conf", 2, 12, /unterminated quoted string: the ' opened here/],
    ["missing-semicolon-eof.conf", 2, 1, /the directive "worker_processes" is not terminated by ";"/],
    ["missing-semicolon-brace.conf", 2, 5, /^directive "keepalive_timeout" is not terminated by ";"$/],
    ["after-quote.conf", 2, 21, /unexpected "b" right after a quoted string/],
    ["lua-long-string.conf", 3, 19, /unterminated Lua long string \(expecting "\]==\]"\)/],
    ["lua-block-comment.conf", 3, 21, /unterminated Lua block comment \(expecting "\]\]"\)/],
    ["lua-string.conf", 3, 17, /unterminated Lua string/],
    ["lua-eof.conf", 2, 26, /end of file in Lua block: the "\{" opened here is never closed/],
    ["lua-unbalanced.conf", 1, 6, /block of "http" .* never closed; the Lua code of "access_by_lua_block" at 2:5 may have taken its "}"/],
    ["lua-semicolon.conf", 2, 25, /"content_by_lua_block" needs its Lua code in a "\{ \}" block/],
    ["regex-brace.conf", 3, 27, /unquoted "\{" in the argument "\^\/\(a\|b\)\{\.\.\."/],
    ["binary.conf", 3, 5, /not a text file/],
    ["json.conf", 1, 1, /unexpected "\{"/],
    ["prose.conf", 1, 1, /the directive "This" is not terminated by ";"/],
  ];
  for (const [file, line, column, message] of cases) {
    it(file, () => {
      const rel = path.join("fixtures/parser/malformed", file);
      const r = parseConfig(path.join(fixtures, "malformed", file), fsLoader());
      expect(r.status).toBe("failed");
      expect(r.errors).toHaveLength(1);
      const e = r.errors[0]!;
      expect([e.line, e.column], rel).toEqual([line, column]);
      expect(e.error).toMatch(message);
      expect(r.config[0]!.errors).toEqual([e]);
    });
  }

  it("keeps what parsed before the error", () => {
    const r = parseString(readFixture("malformed/missing-semicolon-brace.conf"), "x");
    expect(r.parsed.map((d) => d.directive)).toEqual(["http"]);
    const s = parseString(readFixture("malformed/extra-close.conf"), "x");
    expect(s.parsed.map((d) => d.directive)).toEqual(["events", "http"]);
  });

  it("caps nesting instead of overflowing the stack", () => {
    const deep = "a {".repeat(100_000) + "}".repeat(100_000);
    const r = parseString(deep, "deep.conf");
    expect(r.errors[0]?.error).toMatch(new RegExp(`nested more than ${MAX_DEPTH}`));
    expect(r.errors[0]?.column).toBe(MAX_DEPTH * 3 + 3);
  });
});

describe("includes", () => {
  it("globs sort, skip dot files, resolve from the main file's directory and parse each file once", () => {
    const main = path.join(fixtures, "includes/nginx.conf");
    const r = parseConfig(main, fsLoader());
    expect(r.errors).toEqual([]);
    expect(r.status).toBe("ok");
    expect(r.config.map((c) => path.relative(path.join(fixtures, "includes"), c.file))).toEqual([
      "nginx.conf",
      "mime.types",
      "conf.d/a.conf",
      "conf.d/b.conf",
      "sites/alpha.conf",
      "sites/beta.conf",
      "snippets/common.conf",
    ]);
    const incs = (i: number) => find(r.config[i]!.parsed, "include").map((d) => [d.args[0], d.includes]);
    expect(incs(0)).toEqual([
      ["mime.types", [1]],
      ["conf.d/*.conf", [2, 3]],
      ["nomatch/*.conf", []],
      ["sites/[ab]*.conf", [4, 5]],
    ]);
    // conf.d/a.conf and conf.d/b.conf both include snippets/common.conf (relative to the main dir): one entry.
    expect(incs(2)).toEqual([["snippets/common.conf", [6]]]);
    expect(incs(3)).toEqual([["snippets/common.conf", [6]]]);
    expect(r.config[6]!.parsed[0]?.file).toBe(r.config[6]!.file);
  });

  it("a missing include is an error on its directive; the rest still parses", () => {
    const r = parseConfig(path.join(fixtures, "include-missing/nginx.conf"), fsLoader());
    expect(r.status).toBe("failed");
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ line: 3, column: 5 });
    expect(r.errors[0]!.error).toMatch(/^include "missing.conf": cannot read .*include-missing\/missing.conf: no such file$/);
    expect(r.config).toHaveLength(1);
    expect(r.config[0]!.parsed[1]!.block!.map((d) => d.directive)).toEqual(["include", "include", "server_tokens"]);
  });

  it("an include cycle is an error at the include that closes it, not a loop", () => {
    const r = parseConfig(path.join(fixtures, "include-cycle/nginx.conf"), fsLoader());
    expect(r.status).toBe("failed");
    expect(r.errors).toHaveLength(1);
    const e = r.errors[0]!;
    expect(path.basename(e.file)).toBe("b.conf");
    expect([e.line, e.column]).toEqual([2, 3]);
    expect(e.error).toMatch(/^include cycle: .*a\.conf -> .*b\.conf -> .*a\.conf$/);
    // The back reference is dropped so whatever inlines includes terminates.
    expect(r.config[2]!.parsed[1]!.includes).toEqual([]);
    expect(r.config.map((c) => c.status)).toEqual(["ok", "ok", "failed"]);
  });

  it("works on strings through a memory loader (self include, absolute paths, unreadable file)", () => {
    const loader = memoryLoader({
      "/etc/nginx/nginx.conf": "include /etc/nginx/nginx.conf;\ninclude x/*.conf;\n",
      "/etc/nginx/x/1.conf": "a 1;",
      "/etc/nginx/x/2.conf": new Uint8Array([0x61, 0x00]),
    });
    const r = parseConfig("/etc/nginx/nginx.conf", loader);
    expect(r.errors.map((e) => `${e.file}:${e.line}:${e.column}: ${e.error}`)).toEqual([
      "/etc/nginx/nginx.conf:1:1: include cycle: /etc/nginx/nginx.conf -> /etc/nginx/nginx.conf",
      "/etc/nginx/x/2.conf:1:2: not a text file (it contains a NUL byte): this is not an nginx config",
    ]);
    expect(r.config.map((c) => c.file)).toEqual(["/etc/nginx/nginx.conf", "/etc/nginx/x/1.conf", "/etc/nginx/x/2.conf"]);
  });

  it("single mode does not follow includes", () => {
    const r = parseConfig(path.join(fixtures, "includes/nginx.conf"), fsLoader(), { single: true });
    expect(r.config).toHaveLength(1);
  });
});

describe("crossplane payload (what `gen-lb parse --json` prints)", () => {
  it("has crossplane's keys and order, and no internal fields", () => {
    const r = parseConfig(path.join(fixtures, "includes/nginx.conf"), fsLoader(), { comments: true });
    const p = crossplanePayload(r, { includeComments: true });
    expect(Object.keys(p)).toEqual(["status", "errors", "config"]);
    expect(Object.keys(p.config[0]!)).toEqual(["file", "status", "errors", "parsed"]);
    const http = p.config[0]!.parsed[1]!;
    expect(http).toEqual({
      directive: "http",
      line: 2,
      args: [],
      block: [
        { directive: "include", line: 3, args: ["mime.types"], includes: [1] },
        { directive: "include", line: 4, args: ["conf.d/*.conf"], includes: [2, 3] },
        { directive: "include", line: 5, args: ["nomatch/*.conf"], includes: [] },
        {
          directive: "server",
          line: 6,
          args: [],
          block: [
            { directive: "listen", line: 7, args: ["127.0.0.1:8080"] },
            { directive: "include", line: 8, args: ["sites/[ab]*.conf"], includes: [4, 5] },
          ],
        },
      ],
    });
    expect(p.config[2]!.parsed[0]).toEqual({
      directive: "#",
      line: 1,
      args: [],
      comment: " conf.d/a.conf: includes are relative to the main file's directory",
    });
  });
});
