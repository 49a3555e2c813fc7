/**
 * A Lua token stream with positions (Lua 5.1 as extended by LuaJIT), which
 * migrate reads to recognise the hand-built Consul discovery modules. The
 * string and long-bracket rules are the nginx parser's own
 * (src/nginx/lua-block.ts). Pure; never evaluates anything.
 */
import { CR, DASH, DQ, isSpace, LBRACKET, LF, longBracketEnd, longBracketLevel, LuaLexError, shortStringEnd, SQ } from "../nginx/lua-block.js";

/** lexLua throws the scanner's own error type, with line and column filled in. */
export { LuaLexError };

export type LuaTokenKind = "name" | "keyword" | "number" | "string" | "comment" | "op";

export interface LuaToken {
  kind: LuaTokenKind;
  /** Names, keywords, numbers and ops: the source text. Strings: the decoded value. Comments: the text after `--` (inside the brackets for block comments). */
  value: string;
  /** For strings and comments: whether the long-bracket form was used. */
  long?: boolean;
  line: number;
  column: number;
  /** Offsets of the token in the lexed text: [offset, end). */
  offset: number;
  end: number;
}

const KEYWORDS = new Set([
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
  "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
]);

const OPS3 = ["..."];
const OPS2 = ["..", "==", "~=", "<=", ">=", "::", "//", "<<", ">>"];

function isNameStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
}
function isNameChar(c: number): boolean {
  return isNameStart(c) || (c >= 48 && c <= 57);
}
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Decode the inside of a short string literal (escapes as Lua/LuaJIT define them). */
export function decodeLuaString(raw: string): string {
  if (!raw.includes("\\")) return raw;
  let out = "";
  let i = 0;
  const n = raw.length;
  while (i < n) {
    const c = raw[i]!;
    if (c !== "\\") {
      out += c;
      i++;
      continue;
    }
    const e = raw[i + 1] ?? "";
    i += 2;
    switch (e) {
      case "n": out += "\n"; break;
      case "t": out += "\t"; break;
      case "r": out += "\r"; break;
      case "a": out += "\x07"; break;
      case "b": out += "\b"; break;
      case "f": out += "\f"; break;
      case "v": out += "\v"; break;
      case "\\": case '"': case "'": out += e; break;
      case "\n": case "\r": {
        out += "\n";
        const f = raw[i];
        if ((f === "\n" || f === "\r") && f !== e) i++;
        break;
      }
      case "z":
        while (i < n && /\s/.test(raw[i]!)) i++;
        break;
      case "x": {
        out += String.fromCharCode(parseInt(raw.slice(i, i + 2), 16) || 0);
        i += 2;
        break;
      }
      case "u": {
        const close = raw.indexOf("}", i);
        const cp = parseInt(raw.slice(i + 1, close), 16);
        out += Number.isFinite(cp) ? String.fromCodePoint(cp) : "";
        i = close < 0 ? n : close + 1;
        break;
      }
      default:
        if (isDigit(e.charCodeAt(0))) {
          let d = e;
          while (d.length < 3 && i < n && isDigit(raw.charCodeAt(i))) d += raw[i++];
          out += String.fromCharCode(Number(d) & 0xff);
        } else {
          out += e; // Lua rejects other escapes; keeping the character is the kindest reading.
        }
    }
  }
  return out;
}

/** Lua drops the first line break right after a long bracket's opening. */
function stripFirstNewline(s: string): string {
  if (s.startsWith("\r\n") || s.startsWith("\n\r")) return s.slice(2);
  if (s.startsWith("\n") || s.startsWith("\r")) return s.slice(1);
  return s;
}

/**
 * Tokenize Lua source. `at` says where `src` sits in its file (for a Lua body
 * inside nginx.conf, the position of its first character), so token
 * positions are file positions. Whitespace is skipped; comments are tokens
 * (migrate reads the "TODO" in them).
 */
export function lexLua(src: string, at: { line: number; column: number } = { line: 1, column: 1 }): LuaToken[] {
  const tokens: LuaToken[] = [];
  const n = src.length;
  let line = at.line;
  // lineStart is the offset of the current line's first character; for the
  // first line, shifted so columns continue from `at.column`.
  let lineStart = -(at.column - 1);
  let i = 0;

  const advanceTo = (to: number) => {
    for (let k = src.indexOf("\n", i); k >= 0 && k < to; k = src.indexOf("\n", k + 1)) {
      line++;
      lineStart = k + 1;
    }
    i = to;
  };
  const fail = (err: LuaLexError): never => {
    // Recompute the position of err.offset from the current line.
    let l = line;
    let ls = lineStart;
    for (let k = src.indexOf("\n", i); k >= 0 && k < err.offset; k = src.indexOf("\n", k + 1)) {
      l++;
      ls = k + 1;
    }
    throw new LuaLexError(err.message, err.offset, l, err.offset - ls + 1);
  };
  const push = (kind: LuaTokenKind, value: string, start: number, end: number, long?: boolean) => {
    const tok: LuaToken = { kind, value, line, column: start - lineStart + 1, offset: start, end };
    if (long !== undefined) tok.long = long;
    tokens.push(tok);
    advanceTo(end);
  };

  while (i < n) {
    const c = src.charCodeAt(i);
    if (c === LF) {
      line++;
      i++;
      lineStart = i;
      continue;
    }
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === DASH && src.charCodeAt(i + 1) === DASH) {
      const level = longBracketLevel(src, i + 2);
      if (level >= 0) {
        const end = longBracketEnd(src, i + 2, level);
        if (end < 0) fail(new LuaLexError(`unterminated Lua block comment (expecting "]${"=".repeat(level)}]")`, i));
        push("comment", src.slice(i + 4 + level, end - level - 2), i, end, true);
      } else {
        let nl = src.indexOf("\n", i);
        if (nl < 0) nl = n;
        let e = nl;
        if (e > i + 2 && src.charCodeAt(e - 1) === CR) e--;
        push("comment", src.slice(i + 2, e), i, nl, false);
      }
      continue;
    }
    if (c === LBRACKET) {
      const level = longBracketLevel(src, i);
      if (level >= 0) {
        const end = longBracketEnd(src, i, level);
        if (end < 0) fail(new LuaLexError(`unterminated Lua long string (expecting "]${"=".repeat(level)}]")`, i));
        push("string", stripFirstNewline(src.slice(i + level + 2, end - level - 2)), i, end, true);
        continue;
      }
    }
    if (c === DQ || c === SQ) {
      let close = i;
      try {
        close = shortStringEnd(src, i);
      } catch (e) {
        fail(e as LuaLexError);
      }
      push("string", decodeLuaString(src.slice(i + 1, close)), i, close + 1, false);
      continue;
    }
    if (isNameStart(c)) {
      let j = i + 1;
      while (j < n && isNameChar(src.charCodeAt(j))) j++;
      const word = src.slice(i, j);
      push(KEYWORDS.has(word) ? "keyword" : "name", word, i, j);
      continue;
    }
    if (isDigit(c) || (c === 46 && isDigit(src.charCodeAt(i + 1)))) {
      let j = i + 1;
      for (;;) {
        const d = src.charCodeAt(j);
        if (isNameChar(d) || d === 46) {
          j++;
        } else if ((d === 43 || d === DASH) && /[eEpP]/.test(src[j - 1] ?? "")) {
          j++;
        } else {
          break;
        }
      }
      push("number", src.slice(i, j), i, j);
      continue;
    }
    const three = src.slice(i, i + 3);
    const two = src.slice(i, i + 2);
    const op = OPS3.includes(three) ? three : OPS2.includes(two) ? two : src[i]!;
    push("op", op, i, i + op.length);
  }
  return tokens;
}
