/**
 * The only two ways a spec value reaches generated text: as one nginx
 * argument (quoted when needed) or as Lua data (a serialized literal). Both
 * reject what no quoting can make safe instead of trying to be clever.
 */

export class UnsafeValueError extends Error {}

const CONTROL_RE = /[\u0000-\u001f\u007f]/;
/** Characters an unquoted nginx word may hold without changing its meaning. */
const BARE_NGINX_RE = /^[A-Za-z0-9_\-.,:/@=+*%~^!?|&<>()[\]$]+$/;
const NGINX_NAME_RE = /^[a-z_][a-z0-9_]*$/;

/** One nginx argument: bare when that is unambiguous, else double-quoted. */
export function nginxArg(value: string | number | boolean): string {
  const text = typeof value === "boolean" ? (value ? "on" : "off") : String(value);
  if (CONTROL_RE.test(text)) throw new UnsafeValueError(`cannot put a control character (newline, tab...) into nginx.conf: ${JSON.stringify(text)}`);
  if (text.includes("${")) throw new UnsafeValueError(`"\${" would be read by nginx as a variable: ${JSON.stringify(text)}`);
  if (text !== "" && BARE_NGINX_RE.test(text)) return text;
  // Inside quotes nginx unescapes \\ and the quote character, nothing else we
  // emit. Single quotes keep log formats full of "..." readable.
  const escaped = text.replace(/\\/g, "\\\\");
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

/** A Lua string literal; every byte outside printable ASCII is a \ddd escape. */
export function luaString(text: string): string {
  let out = '"';
  for (const byte of Buffer.from(text, "utf8")) {
    if (byte === 0x22) out += '\\"';
    else if (byte === 0x5c) out += "\\\\";
    else if (byte < 0x20 || byte >= 0x7f) out += `\\${byte.toString().padStart(3, "0")}`;
    else out += String.fromCharCode(byte);
  }
  return out + '"';
}

/**
 * Serialize plain data as a Lua literal: objects with sorted keys (so the
 * output is deterministic), arrays as sequences, undefined/null omitted.
 */
export function luaLiteral(value: unknown, depth = 0): string {
  if (value === null || value === undefined) return "nil";
  if (typeof value === "string") return luaString(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new UnsafeValueError(`not a finite number: ${value}`);
    return String(value);
  }
  const pad = "  ".repeat(depth + 1);
  const end = "  ".repeat(depth);
  if (Array.isArray(value)) {
    if (value.length === 0) return "{}";
    if (value.every((v) => v === null || typeof v !== "object")) return `{ ${value.map((v) => luaLiteral(v)).join(", ")} }`;
    return `{\n${value.map((v) => `${pad}${luaLiteral(v, depth + 1)},`).join("\n")}\n${end}}`;
  }
  if (typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined && v !== null)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (entries.length === 0) return "{}";
    const lines = entries.map(([k, v]) => {
      const key = LUA_IDENT_RE.test(k) && !LUA_KEYWORDS.has(k) ? k : `[${luaString(k)}]`;
      return `${pad}${key} = ${luaLiteral(v, depth + 1)},`;
    });
    return `{\n${lines.join("\n")}\n${end}}`;
  }
  throw new UnsafeValueError(`cannot serialize ${typeof value} to Lua`);
}
