/**
 * The only two ways a spec value reaches generated text: as one nginx
 * argument (quoted when needed) or as Lua data (a serialized literal). Both
 * reject what no quoting can make safe instead of trying to be clever.
 */

export class UnsafeValueError extends Error {}

const CONTROL_RE = /[\u0000-\u001f\u007f]/;
/** Control characters nginx's tokenizer has escapes for (inside or outside quotes: \t, \r, \n). */
const ESCAPABLE_RE = /[\t\r\n]/g;
const OTHER_CONTROL_RE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
/** Characters an unquoted nginx word may hold without changing its meaning. */
const BARE_NGINX_RE = /^[A-Za-z0-9_\-.,:/@=+*%~^!?|&<>()[\]$]+$/;
const NGINX_NAME_RE = /^[a-z_][a-z0-9_]*$/;

/** One nginx argument: bare when that is unambiguous, else double-quoted. */
export function nginxArg(value: string | number | boolean): string {
  const text = typeof value === "boolean" ? (value ? "on" : "off") : String(value);
  if (OTHER_CONTROL_RE.test(text)) throw new UnsafeValueError(`cannot put a control character (NUL, escape...) into nginx.conf: ${JSON.stringify(text)}`);
  if (text.includes("${")) throw new UnsafeValueError(`"\${" would be read by nginx as a variable: ${JSON.stringify(text)}`);
  if (text !== "" && BARE_NGINX_RE.test(text)) return text;
  // nginx unescapes \\, the quote characters and \t \r \n, nothing else we
  // emit. Single quotes keep log formats full of "..." readable.
  const escaped = text.replace(/\\/g, "\\\\").replace(ESCAPABLE_RE, (c) => (c === "\t" ? "\\t" : c === "\r" ? "\\r" : "\\n"));
  if (text.includes('"') && !text.includes("'")) return `'${escaped}'`;
  return `"${escaped.replace(/"/g, '\\"')}"`;
}

export function nginxName(name: string): string {
  if (!NGINX_NAME_RE.test(name)) throw new UnsafeValueError(`not an nginx directive name: ${JSON.stringify(name)}`);
  return name;
}

/** A directive as data: rendered as `name arg arg;` or `name args { ... }`. */
export interface NginxDirective {
  name: string;
  args: Array<string | number | boolean>;
  block?: NginxDirective[] | undefined;
  /** Lua body of a *_by_lua_block directive: our own code, never spec data. */
  lua?: string | undefined;
  /** The first word is data (a map entry's match value), quoted like an argument. */
  entry?: boolean | undefined;
  /** A `# comment` line printed before the directive (spec paths, for the source map). */
  comment?: string | undefined;
}

export function renderDirective(d: NginxDirective, depth: number): string {
  const pad = "    ".repeat(depth);
  const head = [d.entry ? nginxArg(d.name) : nginxName(d.name), ...d.args.map(nginxArg)].join(" ");
  const comment = d.comment === undefined ? "" : `${pad}# ${d.comment.replace(CONTROL_RE, " ")}\n`;
  if (d.lua !== undefined) return `${comment}${pad}${head} { ${d.lua} }`;
  if (d.block === undefined) return `${comment}${pad}${head};`;
  const inner = d.block.map((c) => renderDirective(c, depth + 1)).join("\n");
  return `${comment}${pad}${head} {\n${inner}${inner ? "\n" : ""}${pad}}`;
}

// ---------------------------------------------------------------- Lua

const LUA_KEYWORDS = new Set(
  "and break do else elseif end false for function goto if in local nil not or repeat return then true until while".split(" "),
);
const LUA_IDENT_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

const PLAIN_LUA_RE = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/;

/** A Lua string literal; every byte outside printable ASCII is a \\ddd escape. */
export function luaString(text: string): string {
  if (PLAIN_LUA_RE.test(text)) return `"${text}"`;
  const parts: string[] = ['"'];
  for (const byte of Buffer.from(text, "utf8")) {
    if (byte === 0x22) parts.push('\\"');
    else if (byte === 0x5c) parts.push("\\\\");
    else if (byte < 0x20 || byte >= 0x7f) parts.push(`\\${byte.toString().padStart(3, "0")}`);
    else parts.push(String.fromCharCode(byte));
  }
  parts.push('"');
  return parts.join("");
}

/**
 * Serialize plain data as a Lua literal: objects with sorted keys (so the
 * output is deterministic), arrays as sequences, undefined/null omitted.
 */
export function luaLiteral(value: unknown): string {
  const parts: string[] = [];
  writeLua(value, 0, parts);
  return parts.join("");
}

function luaKey(key: string): string {
  return LUA_IDENT_RE.test(key) && !LUA_KEYWORDS.has(key) ? key : `[${luaString(key)}]`;
}

function writeLua(value: unknown, depth: number, out: string[]): void {
  if (value === null || value === undefined) {
    out.push("nil");
  } else if (typeof value === "string") {
    out.push(luaString(value));
  } else if (typeof value === "boolean") {
    out.push(value ? "true" : "false");
  } else if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new UnsafeValueError(`not a finite number: ${value}`);
    out.push(String(value));
  } else if (Array.isArray(value)) {
    if (value.length === 0) {
      out.push("{}");
    } else if (value.every((v) => v === null || typeof v !== "object")) {
      out.push("{ ");
      value.forEach((v, i) => {
        if (i > 0) out.push(", ");
        writeLua(v, depth + 1, out);
      });
      out.push(" }");
    } else {
      const pad = "  ".repeat(depth + 1);
      out.push("{\n");
      for (const v of value) {
        out.push(pad);
        writeLua(v, depth + 1, out);
        out.push(",\n");
      }
      out.push("  ".repeat(depth), "}");
    }
  } else if (typeof value === "object") {
    const keys = Object.keys(value)
      .filter((k) => (value as Record<string, unknown>)[k] != null)
      .sort();
    if (keys.length === 0) {
      out.push("{}");
      return;
    }
    const pad = "  ".repeat(depth + 1);
    out.push("{\n");
    for (const k of keys) {
      out.push(pad, luaKey(k), " = ");
      writeLua((value as Record<string, unknown>)[k], depth + 1, out);
      out.push(",\n");
    }
    out.push("  ".repeat(depth), "}");
  } else {
    throw new UnsafeValueError(`cannot serialize ${typeof value} to Lua`);
  }
}
