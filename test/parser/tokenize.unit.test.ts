import { describe, expect, it } from "vitest";
import { NginxSyntaxError, tokenize, unescapeWord } from "../../src/nginx/tokenize.js";

/** Tokens as compact strings: words as their value, punctuation as itself. */
function words(text: string): string[] {
  return tokenize(text).map((t) => (t.kind === "word" ? t.value : t.kind === "comment" ? `#${t.value}` : t.kind));
}

describe("nginx tokenizer rules (ngx_conf_read_token)", () => {
  it("splits on blanks and ;{}", () => {
    expect(words("a b\tc\r\nd;e{f}")).toEqual(["a", "b", "c", "d", ";", "e", "{", "f}"]);
  });

  it("keeps } and # inside a word, ends a word at { unless it follows $", () => {
    expect(words("a}b c#d ${x}y ${{x $a{b")).toEqual(["a}b", "c#d", "${x}y", "${{x", "$a", "{", "b"]);
    expect(words("x{y")).toEqual(["x", "{", "y"]);
  });

  it("reads quoted strings, with quotes inside words left alone", () => {
    expect(words(`"a b" 'c;d' e"f"g ""`)).toEqual(["a b", "c;d", 'e"f"g', ""]);
  });

  it("unescapes \\\" \\' \\\\ \\t \\r \\n and keeps other escapes", () => {
    expect(words(String.raw`"q\"q" 'q\'q' a\\b "\t\r\n" ^\d+\.x$`)).toEqual([
      'q"q',
      "q'q",
      "a\\b",
      "\t\r\n",
      "^\\d+\\.x$",
    ]);
    expect(unescapeWord("end\\")).toBe("end\\");
  });

  it("lets a backslash protect a separator inside a bare word", () => {
    expect(words("a\\ b c")).toEqual(["a\\ b", "c"]);
  });

  it("allows ) right after a closing quote (if conditions)", () => {
    expect(words(`if ($a = "b") {`)).toEqual(["if", "($a", "=", "b", ")", "{"]);
  });

  it("rejects anything else glued to a closing quote, at its position", () => {
    try {
      tokenize(`x "a"b;`);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(NginxSyntaxError);
      expect((e as NginxSyntaxError).line).toBe(1);
      expect((e as NginxSyntaxError).column).toBe(6);
    }
  });

  it("keeps comments to the line end, without a trailing CR", () => {
    expect(words("a; # one\r\n#two\nb;")).toEqual(["a", ";", "# one", "#two", "b", ";"]);
  });

  it("tracks lines and columns across quoted line breaks", () => {
    const toks = tokenize('a "x\ny" b\n  c;');
    expect(toks.map((t) => [t.value || t.kind, t.line, t.column])).toEqual([
      ["a", 1, 1],
      ["x\ny", 1, 3],
      ["b", 2, 4],
      ["c", 3, 3],
      [";", 3, 4],
    ]);
  });
});
