import { describe, expect, it } from "vitest";
import { LuaLexError, lexLua } from "../../src/migrate/lua-lexer.js";

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
