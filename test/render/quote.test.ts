import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { luaLiteral, luaString, nginxArg, renderDirective, UnsafeValueError } from "../../src/render/quote.js";

/** Let the real LuaJIT read a literal back and print it as JSON-ish text. */
function luaRoundTrip(literal: string): string {
  const script = `local v = ${literal}; io.write(v)`;
  return execFileSync("luajit", ["-e", script]).toString("utf8");
}

describe("nginxArg", () => {
  it.each([
    ["8080", "8080"],
    ["127.0.0.1:8080", "127.0.0.1:8080"],
    ["$host", "$host"],
    ["/static/", "/static/"],
    ["", '""'],
    ["a b", '"a b"'],
    ["a;b", '"a;b"'],
    ["a}b{", '"a}b{"'],
    ["#x", '"#x"'],
    ['say "hi"', `'say "hi"'`],
    [`it's "x"`, `"it's \\"x\\""`],
    ["\\.php$", '"\\\\.php$"'],
    // nginx's own escapes for newline, carriage return and tab (return 200 "ok\n").
    ["ok\n", '"ok\\n"'],
    ["a\r\n\tb", '"a\\r\\n\\tb"'],
  ])("%j -> %s", (input, expected) => {
    expect(nginxArg(input)).toBe(expected);
  });

  it.each(["x${y}", "\u0000", "a\u001bb", "\u007f"])("refuses %j", (input) => {
    expect(() => nginxArg(input)).toThrow(UnsafeValueError);
  });

  it("renders booleans as on/off and nested blocks with indentation", () => {
    expect(
      renderDirective({ name: "server", args: [], block: [{ name: "gzip", args: [true] }, { name: "listen", args: [80] }] }, 0),
    ).toBe("server {\n    gzip on;\n    listen 80;\n}");
  });

  it("refuses a directive name that is not one", () => {
    expect(() => renderDirective({ name: "x; evil", args: [] }, 0)).toThrow(UnsafeValueError);
  });
});

describe("Lua serializer (read back by the real LuaJIT)", () => {
  it.each([
    'plain',
    'quote " and backslash \\',
    "long bracket ]] and [[ and ]=]",
    "newline\nand tab\t and NUL \u0000",
    "unicode ✓ ünï",
    "'); os.exit(1) --",
  ])("string %j survives", (text) => {
    expect(luaRoundTrip(luaString(text))).toBe(text);
  });

  it("emits tables with sorted keys, quoting keys that are not identifiers", () => {
    const literal = luaLiteral({ b: 1, a: [1, 2], "not-ident": true, end: "kw", skip: undefined });
    expect(literal).toBe('{\n  a = { 1, 2 },\n  b = 1,\n  ["end"] = "kw",\n  ["not-ident"] = true,\n}');
    const script = `local t = ${literal}; io.write(t.a[2], t.b, tostring(t["not-ident"]), t["end"])`;
    expect(execFileSync("luajit", ["-e", script]).toString()).toBe("21truekw");
  });

  it("refuses non-finite numbers", () => {
    expect(() => luaLiteral(Number.NaN)).toThrow(UnsafeValueError);
  });
});
