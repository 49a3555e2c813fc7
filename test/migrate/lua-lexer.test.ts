import { describe, expect, it } from "vitest";
import { lexLua } from "../../src/migrate/lua-lexer.js";
import { LuaLexError, scanLuaBlock } from "../../src/nginx/lua-block.js";

describe("scanLuaBlock", () => {
  const close = (body: string) => scanLuaBlock(`{${body}} tail`, 1);

  it("ignores braces in strings, long strings and comments", () => {
    for (const body of [
      ` local a = "}" `,
      ` local a = '}' `,
      ` local a = "\\"}" `,
      ` local a = [[ } ]] `,
      ` local a = [==[ ]] } ]=] ]==] `,
      ` -- } \n`,
      ` --[[ } ]] `,
      ` --[=[ ]] } ]=] `,
      ` local t = { { } } `,
      ` local s = "a\\z\n   }" `,
      ` local s = "a\\\n}" `,
      ` x = a[b[1]] `,
      ` x = "--" .. '{' `,
    ]) {
      expect(close(body), body).toBe(body.length + 1);
    }
  });

  it("reports where an unterminated construct starts", () => {
    const cases: Array<[string, number, RegExp]> = [
      [`{ local s = [==[ x ]] `, 12, /long string.*\]==\]/],
      [`{ --[[ x `, 2, /block comment/],
      [`{ x = "abc\n" }`, 6, /unterminated Lua string/],
      [`{ local t = { `, 0, /end of file/],
    ];
    for (const [src, offset, msg] of cases) {
      try {
        scanLuaBlock(src, 1);
        expect.unreachable(src);
      } catch (e) {
        expect(e).toBeInstanceOf(LuaLexError);
        expect((e as LuaLexError).offset, src).toBe(offset);
        expect((e as LuaLexError).message).toMatch(msg);
      }
    }
  });
});

describe("lexLua", () => {
  it("produces tokens with decoded strings and file positions", () => {
    const toks = lexLua('local u = "/v1/\\"x\\"" -- note\nhttp.request = [[\nraw]]', { line: 10, column: 5 });
    expect(toks.map((t) => [t.kind, t.value, t.line, t.column])).toEqual([
      ["keyword", "local", 10, 5],
      ["name", "u", 10, 11],
      ["op", "=", 10, 13],
      ["string", '/v1/"x"', 10, 15],
      ["comment", " note", 10, 27],
      ["name", "http", 11, 1],
      ["op", ".", 11, 5],
      ["name", "request", 11, 6],
      ["op", "=", 11, 14],
      ["string", "raw", 11, 16],
    ]);
  });

  it("lexes numbers, multi-char operators and the length operator", () => {
    const toks = lexLua("a = #t .. 0x1F + 1e-3 ~= 3.5 ... b::c");
    expect(toks.map((t) => t.value)).toEqual(["a", "=", "#", "t", "..", "0x1F", "+", "1e-3", "~=", "3.5", "...", "b", "::", "c"]);
  });

  it("decodes escapes", () => {
    const [tok] = lexLua(String.raw`"\65\x42\u{43}\n\t\\\'"`);
    expect(tok?.value).toBe("ABC\n\t\\'");
  });

  it("fails with the position of an unterminated string", () => {
    try {
      lexLua('x = 1\n  y = "abc\n', { line: 3, column: 1 });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(LuaLexError);
      expect([(e as LuaLexError).line, (e as LuaLexError).column]).toEqual([4, 7]);
    }
  });
});
