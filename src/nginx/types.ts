/**
 * The parse tree. Its public face is crossplane's payload (see payload.ts), so
 * users can diff `gen-lb parse --json` against `crossplane parse`; internally
 * every node also knows its file and column, which migrate needs to point at
 * the exact place a defect comes from.
 */

/** One directive, or a comment (directive "#", text in `comment`). */
export interface Directive {
  directive: string;
  /** 1-based line of the directive's first character. */
  line: number;
  /** 1-based column, counted in characters (a tab is one). Not in the JSON. */
  column: number;
  /** The file the directive was read from, as config[].file spells it. */
  file: string;
  /**
   * Arguments after nginx's own unquoting and unescaping. For `if` the
   * surrounding parentheses are removed (as crossplane does). For every
   * `*_by_lua_block` the last argument is the Lua body, verbatim, without the
   * outer braces.
   */
  args: string[];
  /** The arguments with their escape sequences as written (crossplane's form); only when one had an escape. */
  written?: string[];
  /** Present when the directive ended with `{ ... }` (not for Lua blocks). */
  block?: Directive[];
  /** For `include`: indexes into the payload's config[] of the files it pulled in. */
  includes?: number[];
  /** For comments: the text after `#` (up to, not including, the line end). */
  comment?: string;
  /** For `*_by_lua_block`: where the body (the character after `{`) starts. */
  lua?: { line: number; column: number };
}

/** A problem found while reading a file; the file stops parsing at a syntax error. */
export interface ParseError {
  file: string;
  line: number;
  column: number;
  error: string;
}

export interface ConfigFile {
  file: string;
  status: "ok" | "failed";
  errors: ParseError[];
  parsed: Directive[];
}

export interface ParseResult {
  status: "ok" | "failed";
  errors: ParseError[];
  config: ConfigFile[];
}

/**
 * The only way the parser touches the outside world. `fsLoader()` (load.ts) is
 * the real one; tests pass an in-memory map.
 */
export interface Loader {
  /** The file's bytes (or text); throws an Error with `code` (ENOENT, EISDIR...) on failure. */
  readFile(path: string): Uint8Array | string;
  /** The entry names of a directory; throws when it cannot be listed. */
  readDir(path: string): string[];
}

/** True for every directive whose block is Lua source, not nginx syntax. */
export function isLuaBlockDirective(name: string): boolean {
  return name.endsWith("_by_lua_block");
}
