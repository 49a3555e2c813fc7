/**
 * Lua's lexical rules (Lua 5.1 as extended by LuaJIT) that the nginx parser
 * needs: `scanLuaBlock` finds the `}` that closes a `*_by_lua_block` body, so
 * that braces inside Lua strings, long brackets and comments never end it
 * early (the rules the lua-nginx-module applies to the same text). The token
 * lexer migrate reads Lua with (src/migrate/lua-lexer.ts) shares these
 * string and bracket rules. Pure; never evaluates anything.
 */

/** A lexical error at `offset` in the scanned text. */
export class LuaLexError extends Error {
  constructor(
    message: string,
    readonly offset: number,
    /** Filled in by lexLua, which tracks positions; scanLuaBlock leaves them to its caller. */
    readonly line = 0,
    readonly column = 0,
  ) {
    super(message);
    this.name = "LuaLexError";
  }
}

export const LF = 10;
export const CR = 13;
const BSLASH = 92;
export const LBRACKET = 91;
const RBRACKET = 93;
const EQ = 61;
export const DASH = 45;
export const DQ = 34;
export const SQ = 39;
const LBRACE = 123;
const RBRACE = 125;

/**
 * If `src[i..]` opens a long bracket (`[[`, `[=[`, `[==[`...), its level (the
 * number of `=`), else -1. A lone `[` (indexing) is not one.
 */
export function longBracketLevel(src: string, i: number): number {
  if (src.charCodeAt(i) !== LBRACKET) return -1;
  let j = i + 1;
  while (src.charCodeAt(j) === EQ) j++;
  return src.charCodeAt(j) === LBRACKET ? j - i - 1 : -1;
}

/**
 * The index just past the long bracket that opens at `i` with `level` and
 * closes with `]` `=`*level `]`; -1 when it never closes.
 */
export function longBracketEnd(src: string, i: number, level: number): number {
  const close = "]" + "=".repeat(level) + "]";
  const at = src.indexOf(close, i + level + 2);
  return at < 0 ? -1 : at + close.length;
}

export function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === LF || c === CR || c === 11 || c === 12;
}

/**
 * The index of the quote that closes the short string opening at `i`. Lua
 * allows a newline inside only when escaped (`\` newline, or after `\z`), so a
 * raw newline or the end of the text means the string is unterminated.
 */
export function shortStringEnd(src: string, i: number): number {
  const quote = src.charCodeAt(i);
  const n = src.length;
  let j = i + 1;
  for (;;) {
    if (j >= n) throw new LuaLexError("unterminated Lua string", i);
    const c = src.charCodeAt(j);
    if (c === quote) return j;
    if (c === LF || c === CR) throw new LuaLexError("unterminated Lua string (a raw line break ends it)", i);
    if (c === BSLASH) {
      const e = src.charCodeAt(j + 1);
      if (e === 122 /* z: skip the following whitespace, line breaks included */) {
        j += 2;
        while (j < n && isSpace(src.charCodeAt(j))) j++;
        continue;
      }
      if (e === CR || e === LF) {
        // An escaped line break: \r\n and \n\r count as one.
        const f = src.charCodeAt(j + 2);
        j += (f === CR || f === LF) && f !== e ? 3 : 2;
        continue;
      }
      j += 2;
      continue;
    }
    j++;
  }
}

/**
 * Scan a Lua block body that starts at `start` (just after its opening `{`)
 * and return the index of the `}` that closes it. Throws LuaLexError with the
 * offset of the construct that never ends.
 */
export function scanLuaBlock(src: string, start: number): number {
  const n = src.length;
  let depth = 1;
  let i = start;
  while (i < n) {
    const c = src.charCodeAt(i);
    if (c === DASH && src.charCodeAt(i + 1) === DASH) {
      const level = longBracketLevel(src, i + 2);
      if (level >= 0) {
        const end = longBracketEnd(src, i + 2, level);
        if (end < 0) throw new LuaLexError(`unterminated Lua block comment (expecting "]${"=".repeat(level)}]")`, i);
        i = end;
      } else {
        const nl = src.indexOf("\n", i + 2);
        i = nl < 0 ? n : nl + 1;
      }
      continue;
    }
    if (c === LBRACKET) {
      const level = longBracketLevel(src, i);
      if (level >= 0) {
        const end = longBracketEnd(src, i, level);
        if (end < 0) throw new LuaLexError(`unterminated Lua long string (expecting "]${"=".repeat(level)}]")`, i);
        i = end;
        continue;
      }
    } else if (c === DQ || c === SQ) {
      i = shortStringEnd(src, i) + 1;
      continue;
    } else if (c === LBRACE) {
      depth++;
    } else if (c === RBRACE) {
      depth--;
      if (depth === 0) return i;
    }
    i++;
  }
  throw new LuaLexError('unexpected end of file in Lua block, expecting "}"', start - 1);
}
