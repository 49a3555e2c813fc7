import { describe, expect, it } from "vitest";
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
