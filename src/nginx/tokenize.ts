/**
 * nginx's own tokenizer rules (ngx_conf_read_token), re-implemented so that
 * every argument boundary, quote and escape means exactly what it means to
 * nginx:
 *  - words are split by space, tab, CR and LF; `;` ends a directive, `{` opens
 *    a block, `}` closes one;
 *  - a word that starts with `"` or `'` is a quoted string: it may contain
 *    anything, and must be followed by whitespace, `;`, `{` or `)`;
 *    a quote in the middle of a word is an ordinary character;
 *  - a backslash makes the next character ordinary; when the word is stored,
 *    `\"` `\'` `\\` lose the backslash and `\t` `\r` `\n` become control
 *    characters; every other `\x` is kept as is (so regexes like `\d` survive);
 *  - `{` right after `$` belongs to the word (`${var}`); any other unquoted
 *    `{` ends the word and opens a block, which is why regexes containing
 *    `{` must be quoted; `}` and `#` inside a word are ordinary;
 *  - `#` at the start of a word starts a comment that runs to the line end.
 * Positions are 1-based lines and columns (characters; a tab counts one).
 */
import { LuaLexError, scanLuaBlock } from "./lua-block.js";

export type TokenKind = "word" | ";" | "{" | "}" | "comment" | "eof";

export interface Token {
  kind: TokenKind;
  /** Words: the unescaped value. Comments: the text after `#`. */
  value: string;
  /** Words: whether it was written as a quoted string. */
  quoted: boolean;
  line: number;
  column: number;
  offset: number;
}

/** A syntax error at a position in the text being tokenized or parsed. */
export class NginxSyntaxError extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(message);
    this.name = "NginxSyntaxError";
  }
}

const SPACE = 32;
const TAB = 9;
const LF = 10;
const CR = 13;
const SEMI = 59;
const LBRACE = 123;
const RBRACE = 125;
const HASH = 35;
const DQ = 34;
const SQ = 39;
const BSLASH = 92;
const DOLLAR = 36;
const RPAREN = 41;

function isBlank(c: number): boolean {
  return c === SPACE || c === TAB || c === LF || c === CR;
}

/** nginx's unescaping of a stored word (see the module comment). */
export function unescapeWord(raw: string): string {
  let at = raw.indexOf("\\");
  if (at < 0) return raw;
  const parts: string[] = [];
  let from = 0;
  while (at >= 0 && at < raw.length - 1) {
    const e = raw.charCodeAt(at + 1);
    let rep: string | undefined;
    if (e === DQ || e === SQ || e === BSLASH) rep = raw[at + 1];
    else if (e === 116) rep = "\t";
    else if (e === 114) rep = "\r";
    else if (e === 110) rep = "\n";
    if (rep === undefined) {
      // Kept with its backslash; the next character is looked at afresh.
      at = raw.indexOf("\\", at + 1);
      continue;
    }
    parts.push(raw.slice(from, at), rep);
    from = at + 2;
    at = raw.indexOf("\\", from);
  }
  parts.push(raw.slice(from));
  return parts.join("");
}

/**
 * A pull tokenizer over one file's text. The current token's fields live on
 * the instance (no object per token: a 50 MB config has millions of them).
 */
export class Tokenizer {
  /** Offset of the next unread character. */
  pos = 0;
  /** Line of `pos`, and the offset where that line starts. */
  line = 1;
  lineStart = 0;

  kind: TokenKind = "eof";
  value = "";
  quoted = false;
  /** crossplane's spelling of the last word when it had an escape, else undefined. */
  written: string | undefined = undefined;
  tokLine = 1;
  tokColumn = 1;
  tokOffset = 0;

  constructor(readonly text: string) {}

  private error(message: string, offset: number): never {
    const { line, column } = this.locate(offset);
    throw new NginxSyntaxError(message, line, column);
  }

  /** Line and column of an offset at or after the current line's start. */
  locate(offset: number): { line: number; column: number } {
    let line = this.line;
    let lineStart = this.lineStart;
    if (offset < lineStart) {
      // Only error paths look backwards; count from the top.
      line = 1;
      lineStart = 0;
    }
    const s = this.text;
    for (let k = s.indexOf("\n", lineStart); k >= 0 && k < offset; k = s.indexOf("\n", k + 1)) {
      line++;
      lineStart = k + 1;
    }
    return { line, column: offset - lineStart + 1 };
  }

  /** Advance to the next token and return its kind. */
  next(): TokenKind {
    const s = this.text;
    const n = s.length;
    let i = this.pos;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c === LF) {
        this.line++;
        this.lineStart = i + 1;
      } else if (c !== SPACE && c !== TAB && c !== CR) {
        break;
      }
    }
    this.tokOffset = i;
    this.tokLine = this.line;
    this.tokColumn = i - this.lineStart + 1;
    this.quoted = false;
    this.value = "";
    this.written = undefined;
    if (i >= n) {
      this.pos = n;
      return (this.kind = "eof");
    }
    const c = s.charCodeAt(i);
    switch (c) {
      case SEMI:
        this.pos = i + 1;
        return (this.kind = ";");
      case LBRACE:
        this.pos = i + 1;
        return (this.kind = "{");
      case RBRACE:
        this.pos = i + 1;
        return (this.kind = "}");
      case HASH: {
        let nl = s.indexOf("\n", i);
        if (nl < 0) nl = n;
        let end = nl;
        if (end > i + 1 && s.charCodeAt(end - 1) === CR) end--;
        this.value = s.slice(i + 1, end);
        this.pos = nl;
        return (this.kind = "comment");
      }
      case DQ:
      case SQ:
        return this.quotedWord(i, c);
      default:
        return this.bareWord(i);
    }
  }

  private quotedWord(i: number, quote: number): TokenKind {
    const s = this.text;
    const n = s.length;
    let j = i + 1;
    let escaped = false;
    for (;;) {
      if (j >= n) {
        throw new NginxSyntaxError(
          `unterminated quoted string: the ${String.fromCharCode(quote)} opened here is never closed`,
          this.tokLine,
          this.tokColumn,
        );
      }
      const c = s.charCodeAt(j);
      if (c === BSLASH) {
        escaped = true;
        if (s.charCodeAt(j + 1) === LF) {
          this.line++;
          this.lineStart = j + 2;
        }
        j += 2;
        continue;
      }
      if (c === quote) break;
      if (c === LF) {
        this.line++;
        this.lineStart = j + 1;
      }
      j++;
    }
    const raw = s.slice(i + 1, j);
    this.value = escaped ? unescapeWord(raw) : raw;
    // crossplane's form: quotes dropped, `\"` inside "..." is the quote, every other escape as written
    this.written = escaped ? raw.split(`\\${String.fromCharCode(quote)}`).join(String.fromCharCode(quote)) : undefined;
    this.quoted = true;
    this.pos = j + 1;
    // nginx insists on a separator after the closing quote; `)` is allowed so
    // that `if ($a = "b")` works (it then starts a word of its own).
    const after = s.charCodeAt(j + 1);
    if (j + 1 < n && !isBlank(after) && after !== SEMI && after !== LBRACE && after !== RPAREN) {
      this.error(
        `unexpected "${s[j + 1]}" right after a quoted string (expecting a space, ";" or "{")`,
        j + 1,
      );
    }
    return (this.kind = "word");
  }

  private bareWord(i: number): TokenKind {
    const s = this.text;
    const n = s.length;
    let j = i;
    let escaped = false;
    let variable = false;
    for (;;) {
      if (j >= n) break;
      const c = s.charCodeAt(j);
      if (c === LBRACE && variable) {
        j++;
        continue;
      }
      variable = false;
      if (c === BSLASH) {
        escaped = true;
        if (s.charCodeAt(j + 1) === LF) {
          this.line++;
          this.lineStart = j + 2;
        }
        j += 2;
        continue;
      }
      if (c === DOLLAR) {
        variable = true;
        j++;
        continue;
      }
      if (isBlank(c) || c === SEMI || c === LBRACE) break;
      j++;
    }
    if (j > n) j = n;
    const raw = s.slice(i, j);
    this.value = escaped ? unescapeWord(raw) : raw;
    this.written = escaped ? raw : undefined;
    this.pos = j;
    return (this.kind = "word");
  }

  /**
   * Called right after the `{` of a `*_by_lua_block`: read the Lua body with
   * Lua's rules up to its matching `}` (consumed) and return it verbatim.
   */
  readLuaBody(): { body: string; line: number; column: number } {
    const start = this.pos;
    const at = { line: this.line, column: start - this.lineStart + 1 };
    let close: number;
    try {
      close = scanLuaBlock(this.text, start);
    } catch (e) {
      if (!(e instanceof LuaLexError)) throw e;
      if (e.offset === start - 1) {
        this.error(`unexpected end of file in Lua block: the "{" opened here is never closed`, e.offset);
      }
      this.error(e.message, e.offset);
    }
    const s = this.text;
    for (let k = s.indexOf("\n", start); k >= 0 && k < close; k = s.indexOf("\n", k + 1)) {
      this.line++;
      this.lineStart = k + 1;
    }
    this.pos = close + 1;
    return { body: s.slice(start, close), ...at };
  }

  /** The current token as an object (for tests and small callers). */
  token(): Token {
    return {
      kind: this.kind,
      value: this.value,
      quoted: this.quoted,
      line: this.tokLine,
      column: this.tokColumn,
      offset: this.tokOffset,
    };
  }
}

/** All tokens of a text (Lua bodies are not special here; see parse.ts). */
export function tokenize(text: string): Token[] {
  const t = new Tokenizer(text);
  const out: Token[] = [];
  while (t.next() !== "eof") out.push(t.token());
  return out;
}
