/**
 * Generates src/nginx/directives/<target>-<version>.json: every directive a
 * given nginx build has, read from the sources' ngx_command_t arrays.
 *
 *   npx tsx scripts/gen-directives.ts --target openresty --version 1.31.1.1 \
 *     --src /tmp/src/openresty-1.31.1.1/bundle/nginx-1.31.1 \
 *     --configure="$(/opt/openresty/bin/openresty -V 2>&1 | sed -n 's/^configure arguments: //p')"
 *
 *   npx tsx scripts/gen-directives.ts --target nginx --version 1.22.1 \
 *     --src /tmp/src/nginx-1.22.1 \
 *     --configure="$(/usr/sbin/nginx -V 2>&1 | sed -n 's/^configure arguments: //p')" \
 *     --dynamic-addon /tmp/src/libnginx-mod-http-ndk-0.3.2 \
 *     --dynamic-addon /tmp/src/libnginx-mod-http-lua-0.10.23
 *
 * (`apt-get source nginx libnginx-mod-http-lua libnginx-mod-http-ndk` for the
 * second; on bookworm the Lua and NDK modules are their own source packages,
 * not nginx's debian/modules/. Without deb-src lines in the system's
 * sources, give apt a list of its own: `-o Dir::Etc::SourceList=FILE -o
 * Dir::Etc::SourceParts=/nonexistent -o Dir::State::Lists=DIR` on both
 * `apt-get update` and `apt-get source`. The committed table was generated
 * from 1.22.1-9+deb12u9, the newest source in the archive then; the
 * installed binary's -V gives the configure flags. The same inputs give
 * the same file, byte for byte.)
 *
 * Which modules a build has is decided the way nginx's configure decides it:
 * auto/options gives each variable's default and the flag that changes it,
 * auto/modules says, under which `if`, which ngx_module_name is linked with
 * which ngx_module_link; `--add-module` / `--add-dynamic-module` directories
 * contribute every ngx_module_t their sources define. A module linked
 * DYNAMIC (or inside a DYNAMIC group such as --with-stream=dynamic) is marked
 * with the .so that load_module must name.
 *
 * Modules the build leaves out: a module of nginx's own source tree that
 * the configure flags given do not link is not dropped. Its directives are
 * listed all the same, each with `needs`: the configure flag(s) that would
 * link it, found the same way (the `if [ ... ]` tests of auto/modules it
 * sits under that fail, and its `ngx_module_link=$VAR`, each turned into
 * the auto/options arm that sets the variable; several flags are
 * space-separated, "--with-mail --with-mail_ssl_module"). The module gets
 * `link: "absent"` and the same `needs`. An entry under an `#if` the build
 * leaves off (NGX_HTTP_V2...) is kept the same way when turning on the
 * macros' flags makes the condition hold. What no flag builds (another OS's
 * event module, say) is left out, as are add-on directories not given.
 * So an OpenResty table generated from a minimal build still knows
 * `http2`, marked `"needs": "--with-http_v2_module"`: the official packages
 * (openresty-packaging's rpm spec and deb rules) build with
 * --with-http_v2_module, --with-http_stub_status_module,
 * --with-http_realip_module, --with-http_gzip_static_module, --with-threads
 * and more. Readers: src/nginx/directives.ts (`needs` on a definition).
 *
 * Repeat rule: nginx itself has no "may repeat" bit. A second occurrence in
 * the same block is refused when the directive's handler refuses it, which
 * every ngx_conf_set_*_slot that stores one value does by returning
 * "is duplicate". So a directive is marked `repeatable: false` when its
 * handler's body (or the body of a function it returns the result of)
 * returns "is duplicate" or logs "directive is duplicate". That over-marks a
 * handler which refuses only some repeats (e.g. one that refuses `off` after
 * a value); it under-marks none we know of.
 */
import { readdirSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve, relative, basename } from 'node:path';
import { parseArgs } from 'node:util';

interface Definition {
  module: string;
  contexts: string[];
  args: string[];
  block: boolean;
  repeatable: boolean;
  /** contexts the block's contents are parsed in (http, server, ...), when they are directives */
  opens?: string[];
  /** .so that load_module must name before this directive is known; absent when built in */
  loadModule?: string;
  /** preprocessor condition the entry sits under, as written */
  condition?: string;
  /**
   * configure flag(s) the directive needs, space-separated, when the sources
   * have it but the reference build does not (its module, or the #if it
   * sits under, is off without them): "--with-http_v2_module"
   */
  needs?: string;
  source: string;
}

const CONTEXT_BITS: Record<string, string> = {
  NGX_MAIN_CONF: 'main',
  NGX_EVENT_CONF: 'events',
  NGX_HTTP_MAIN_CONF: 'http',
  NGX_HTTP_SRV_CONF: 'server',
  NGX_HTTP_LOC_CONF: 'location',
  NGX_HTTP_UPS_CONF: 'upstream',
  NGX_HTTP_SIF_CONF: 'server_if',
  NGX_HTTP_LIF_CONF: 'location_if',
  NGX_HTTP_LMT_CONF: 'limit_except',
  NGX_MAIL_MAIN_CONF: 'mail',
  NGX_MAIL_SRV_CONF: 'mail_server',
  NGX_STREAM_MAIN_CONF: 'stream',
  NGX_STREAM_SRV_CONF: 'stream_server',
  NGX_STREAM_UPS_CONF: 'stream_upstream',
};
const ANY_CONTEXTS = Object.values(CONTEXT_BITS);
const ARG_BITS = ['NOARGS', 'TAKE1', 'TAKE2', 'TAKE3', 'TAKE4', 'TAKE5', 'TAKE6', 'TAKE7', 'FLAG', 'ANY', '1MORE', '2MORE'];

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) {
      // test suites and docs hold C snippets that are no part of the build
      if (['t', 'test', 'tests', 'doc', 'docs', 'examples', 'util', 'misc', 'contrib'].includes(name)) continue;
      walk(p, out);
    } else if (/\.[ch]$/.test(name)) out.push(p);
  }
  return out;
}

function stripComments(c: string): string {
  return c.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' ')).replace(/\/\/[^\n]*/g, '');
}

/** ---- which modules the build links ---- */
interface ModuleLink {
  link: 'static' | 'dynamic' | 'no';
  so?: string;
  /** for `no`: the configure flags that would link it, when configure's own scripts say */
  needs?: string[];
}

/** configure's variables, and which flag sets each to which value (auto/options). */
interface Configure {
  vars: Map<string, string>;
  /** `--with-http_v2_module` -> [[HTTP_V2, YES]] */
  arms: Map<string, Array<[string, string]>>;
}

/** Variables auto/modules derives from others, as the flag that sets them. */
const DERIVED_FLAG: Record<string, string> = { USE_OPENSSL: '--with-http_ssl_module' };

/**
 * The flag that makes `$name op value` hold (op `=` or `!=`), from
 * auto/options' arms; a static arm over a =dynamic one. Undefined when no flag does.
 */
function flagFor(cfg: Configure, name: string, op: string, value: string): string | undefined {
  if (DERIVED_FLAG[name] && op === '=' && value === 'YES') return DERIVED_FLAG[name];
  let found: string | undefined;
  for (const [arg, sets] of cfg.arms) {
    if (!arg.startsWith('--with') || arg.endsWith('=dynamic')) continue;
    if (sets.some(([k, v]) => k === name && (op === '=' ? v === value : v !== value))) found ??= arg;
  }
  return found;
}

/** The flags that make a failing `[ test ]` of auto/modules pass, or undefined if none do. */
function flagsFor(expr: string, cfg: Configure): string[] | undefined {
  for (const conj of expr.split(/\s-o\s/)) {
    const flags: string[] = [];
    let ok = true;
    for (const t of conj.split(/\s-a\s/)) {
      if (evalTest(t, cfg.vars)) continue;
      const m = /\$(\w+)\s*(!?=)\s*"?(\w*)"?/.exec(t.trim());
      const flag = m ? flagFor(cfg, m[1], m[2], m[3]) : undefined;
      if (flag === undefined) { ok = false; break; }
      flags.push(flag);
    }
    if (ok) return flags;
  }
  return undefined;
}

function evalTest(expr: string, vars: Map<string, string>): boolean {
  // `$A = YES -o $B != NO -a ...`: -a binds tighter than -o, as in test(1)
  return expr.split(/\s-o\s/).some((conj) =>
    conj.split(/\s-a\s/).every((t) => {
      const m = /\$(\w+)\s*(!?=)\s*"?(\w*)"?/.exec(t.trim());
      if (!m) return false;
      const v = vars.get(m[1]) ?? 'NO';
      return m[2] === '=' ? v === m[3] : v !== m[3];
    }),
  );
}

function configureVars(src: string, configure: string[]): Configure {
  const options = readFileSync(join(src, 'auto/options'), 'utf8');
  const vars = new Map<string, string>();
  for (const m of options.matchAll(/^([A-Z][A-Z0-9_]*)=(YES|NO|NONE|DYNAMIC)\s*$/gm)) {
    if (!vars.has(m[1])) vars.set(m[1], m[2]);
  }
  const arms = new Map<string, Array<[string, string]>>();
  for (const m of options.matchAll(/^\s+(--[\w-]+(?:=dynamic)?)\)\s*((?:[A-Z_0-9]+=\w+\s*;?\s*)+);;/gm)) {
    const sets = [...m[2].matchAll(/([A-Z_0-9]+)=(\w+)/g)].map((s) => [s[1], s[2]] as [string, string]);
    arms.set(m[1], sets);
  }
  for (const arg of configure) {
    for (const [k, v] of arms.get(arg) ?? []) vars.set(k, v);
  }
  // derived in auto/options / auto/modules, needed by module conditions
  if (vars.get('HTTP_SSL') === 'YES' || vars.get('STREAM_SSL') === 'YES' || vars.get('MAIL_SSL') === 'YES') vars.set('USE_OPENSSL', 'YES');
  return { vars, arms };
}

function moduleLinks(src: string, cfg: Configure): Map<string, ModuleLink> {
  const { vars } = cfg;
  const text = readFileSync(join(src, 'auto/modules'), 'utf8').split('\n');
  const links = new Map<string, ModuleLink>();
  const stack: boolean[] = [];
  // the test of each if-level, as written; null in an elif/else arm (its flags are not read)
  const tests: Array<string | null> = [];
  let linkVar: string | undefined;
  const groups: Array<string | null> = []; // DYNAMIC group var per if-level
  let names: string[] = [];
  let collecting = false;
  let linkValue = 'NO';
  for (const raw of text) {
    const line = raw.trim();
    const ifm = /^if \[ (.*) \]; then/.exec(line);
    const elifm = /^elif \[ (.*) \]; then/.exec(line);
    if (ifm) {
      stack.push(evalTest(ifm[1], vars));
      tests.push(ifm[1]);
      const g = /^\$(HTTP|MAIL|STREAM) != NO$/.exec(ifm[1]);
      groups.push(g && vars.get(g[1]) === 'DYNAMIC' ? g[1] : null);
      continue;
    }
    if (elifm) { stack[stack.length - 1] = !stack[stack.length - 1] && evalTest(elifm[1], vars); tests[tests.length - 1] = null; continue; }
    if (line === 'else') { stack[stack.length - 1] = !stack[stack.length - 1]; tests[tests.length - 1] = null; continue; }
    if (line === 'fi') { stack.pop(); tests.pop(); groups.pop(); continue; }
    const nm = /^ngx_module_name="?([^"\\]*)(\\?)"?$/.exec(line);
    if (nm) { names = nm[1].split(/\s+/).filter(Boolean); collecting = nm[2] === '\\'; continue; }
    if (collecting) {
      const more = /^([^"\\]*)(\\?)"?$/.exec(line)!;
      names.push(...more[1].split(/\s+/).filter(Boolean));
      collecting = more[2] === '\\';
      continue;
    }
    const assign = /^([A-Z][A-Z0-9_]*)=(YES|NO|DYNAMIC)$/.exec(line);
    if (assign && stack.every(Boolean)) { vars.set(assign[1], assign[2]); continue; }
    const lm = /^ngx_module_link=(\$?)(\w+)$/.exec(line);
    if (lm) { linkValue = lm[1] ? vars.get(lm[2]) ?? 'NO' : lm[2]; linkVar = lm[1] ? lm[2] : undefined; continue; }
    // a module takes whatever ngx_module_link was set last, as auto/module reads it
    if (line === '. auto/module' && names.length && !names[0].startsWith('$')) {
      const active = stack.every(Boolean);
      const group = groups.find((g) => g !== null) ?? null;
      for (const n of names) {
        let link: ModuleLink = { link: 'no' };
        if (active && linkValue === 'YES') {
          link = group ? { link: 'dynamic', so: `ngx_${group.toLowerCase()}_module.so` } : { link: 'static' };
        } else if (active && linkValue === 'DYNAMIC') {
          link = { link: 'dynamic', so: `${names[0]}.so` };
        } else {
          const needs = linkNeeds(stack, tests, linkValue, linkVar, cfg);
          if (needs) link = { link: 'no', needs };
        }
        if (!links.has(n) || links.get(n)!.link === 'no') links.set(n, link);
      }
    }
  }
  return links;
}

/** The flags that would link a module auto/modules leaves out: those of each failing if, and of its link variable. */
function linkNeeds(stack: boolean[], tests: Array<string | null>, linkValue: string, linkVar: string | undefined, cfg: Configure): string[] | undefined {
  const flags: string[] = [];
  for (let i = 0; i < stack.length; i++) {
    if (stack[i]) continue;
    const f = tests[i] === null ? undefined : flagsFor(tests[i]!, cfg);
    if (f === undefined) return undefined;
    flags.push(...f);
  }
  if (linkValue === 'NO') {
    const f = linkVar ? flagFor(cfg, linkVar, '=', 'YES') : undefined;
    if (f === undefined) return undefined;
    flags.push(f);
  }
  return flags.length ? [...new Set(flags)] : undefined;
}

/** Modules configure adds outside auto/modules (auto/sources, auto/os/linux). */
function coreModuleLink(file: string, name: string, cfg: Configure): ModuleLink {
  const { vars } = cfg;
  const byFlag = (v: string): ModuleLink => {
    if (vars.get(v) === 'YES') return { link: 'static' };
    const flag = flagFor(cfg, v, '=', 'YES');
    return flag ? { link: 'no', needs: [flag] } : { link: 'no' };
  };
  if (name === 'ngx_thread_pool_module') return byFlag('USE_THREADS');
  if (name === 'ngx_google_perftools_module') return byFlag('NGX_GOOGLE_PERFTOOLS');
  if (/src\/event\/modules\//.test(file)) return { link: /ngx_epoll_module\.c$/.test(file) ? 'static' : 'no' };
  if (/src\/(core|event|os\/unix)\//.test(file)) return { link: 'static' };
  return { link: 'no' };
}

/** ---- C sources ---- */
interface Sources {
  defines: Map<string, string>;
  functions: Map<string, string>;
}

function collect(files: string[]): { text: Map<string, string>; sources: Sources } {
  const text = new Map<string, string>();
  const defines = new Map<string, string>();
  const functions = new Map<string, string>();
  for (const f of files) {
    const c = stripComments(readFileSync(f, 'latin1'));
    text.set(f, c);
    for (const m of c.matchAll(/^#\s*define\s+(\w+)\s+((?:[^\n\\]|\\\n)*)/gm)) {
      if (!defines.has(m[1])) defines.set(m[1], m[2].replace(/\\\n/g, ' '));
    }
    // function definitions: `name(ngx_conf_t *cf, ...)\n{ ... \n}` at column 0
    for (const m of c.matchAll(/^(\w+)\s*\([^;{]*\)\s*\n\{([\s\S]*?)\n\}/gm)) {
      if (!functions.has(m[1])) functions.set(m[1], m[2]);
    }
  }
  return { text, sources: { defines, functions } };
}

function expandMask(expr: string, defines: Map<string, string>, depth = 0): string[] {
  const out: string[] = [];
  for (const tok of expr.replace(/[()]/g, ' ').split(/[|\s]+/).filter(Boolean)) {
    if (/^(NGX_CONF_|NGX_\w*_CONF$|NGX_DIRECT_CONF$)/.test(tok) && !defines.get(tok)?.includes('|')) out.push(tok);
    else if (defines.has(tok) && depth < 8) out.push(...expandMask(defines.get(tok)!, defines, depth + 1));
    else out.push(tok);
  }
  return out;
}

function refusesRepeat(handler: string, fns: Map<string, string>, depth = 0): boolean {
  const body = fns.get(handler);
  if (!body) return false;
  if (/return\s+"is duplicate"|directive is duplicate|is duplicate"/.test(body)) return true;
  if (depth >= 2) return false;
  // handlers that hand the directive on (`*_by_lua_block` parses its block,
  // then calls `*_by_lua(cf, cmd, conf)`, which holds the duplicate check)
  for (const m of body.matchAll(/(\w+)\s*\(\s*cf\s*,\s*cmd\s*,\s*conf\s*\)/g)) {
    if (refusesRepeat(m[1], fns, depth + 1)) return true;
  }
  return false;
}

function opens(handler: string, fns: Map<string, string>): string[] | undefined {
  const body = fns.get(handler);
  if (!body || !/ngx_conf_parse\s*\(/.test(body)) return undefined;
  const ctx = [...body.matchAll(/cf->cmd_type\s*=\s*(NGX_\w+)/g)].map((m) => CONTEXT_BITS[m[1]]).filter(Boolean);
  return ctx.length ? [...new Set(ctx)] : undefined;
}

/** Splits `{ a, b, {c}, d }` entries of a ngx_command_t initialiser, keeping #if lines. */
function commandEntries(body: string): Array<{ fields: string[]; condition?: string }> {
  const out: Array<{ fields: string[]; condition?: string }> = [];
  const conds: string[] = [];
  let i = 0;
  while (i < body.length) {
    if (body[i] === '#' && (i === 0 || body[i - 1] === '\n' || /^\s*$/.test(body.slice(body.lastIndexOf('\n', i - 1) + 1, i)))) {
      const end = body.indexOf('\n', i);
      const line = body.slice(i, end < 0 ? undefined : end).trim();
      const m = /^#\s*(if|ifdef|ifndef|elif|else|endif)\b\s*(.*)$/.exec(line);
      if (m) {
        if (m[1] === 'if') conds.push(m[2]);
        else if (m[1] === 'ifdef') conds.push(`defined(${m[2]})`);
        else if (m[1] === 'ifndef') conds.push(`!defined(${m[2]})`);
        else if (m[1] === 'else') conds.push(`!(${conds.pop()})`);
        else if (m[1] === 'elif') { conds.pop(); conds.push(m[2]); }
        else conds.pop();
      }
      i = end < 0 ? body.length : end + 1;
      continue;
    }
    if (body[i] === '{') {
      let depth = 0;
      let j = i;
      for (; j < body.length; j++) {
        if (body[j] === '"') { j++; while (body[j] !== '"') { if (body[j] === '\\') j++; j++; } }
        else if (body[j] === '{') depth++;
        else if (body[j] === '}' && --depth === 0) break;
      }
      const inner = body.slice(i + 1, j);
      const fields = splitTop(inner);
      out.push({ fields, condition: conds.length ? conds.join(' && ') : undefined });
      i = j + 1;
      continue;
    }
    i++;
  }
  return out;
}

function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '"') { const j = s.indexOf('"', i + 1); cur += s.slice(i, j + 1); i = j; continue; }
    if (ch === '(' || ch === '{') depth++;
    if (ch === ')' || ch === '}') depth--;
    if (ch === ',' && depth === 0) { out.push(cur.trim()); cur = ''; continue; }
    cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** Macros configure defines when a variable is YES (auto/have under its if). */
const MACRO_VARS: Record<string, string> = {
  NGX_HTTP_SSL: 'HTTP_SSL',
  NGX_SSL: 'USE_OPENSSL',
  NGX_STREAM_SSL: 'STREAM_SSL',
  NGX_MAIL_SSL: 'MAIL_SSL',
  NGX_HTTP_V2: 'HTTP_V2',
  NGX_HTTP_V3: 'HTTP_V3',
  NGX_QUIC: 'HTTP_V3',
  NGX_HTTP_REALIP: 'HTTP_REALIP',
  NGX_HTTP_DAV: 'HTTP_DAV',
  NGX_HTTP_DEGRADATION: 'HTTP_DEGRADATION',
  NGX_THREADS: 'USE_THREADS',
  NGX_PCRE: 'USE_PCRE',
  NGX_HAVE_FILE_AIO: 'NGX_FILE_AIO',
  NGX_DEBUG: 'NGX_DEBUG',
};

/**
 * The flags under which a failing #if condition holds: those of its macros
 * the build leaves off, all turned on; undefined when that is not enough.
 */
function conditionNeeds(cond: string, cfg: Configure, defined: Set<string>, nginxVersionNumber: number): string[] | undefined {
  const vars = new Map(cfg.vars);
  const flags: string[] = [];
  for (const [macro, v] of Object.entries(MACRO_VARS)) {
    if (!new RegExp(`\\b${macro}\\b`).test(cond) || vars.get(v) === 'YES') continue;
    const flag = flagFor(cfg, v, '=', 'YES');
    if (flag === undefined) continue;
    vars.set(v, 'YES');
    flags.push(flag);
  }
  return flags.length && conditionHolds(cond, vars, defined, nginxVersionNumber) ? [...new Set(flags)] : undefined;
}

/** Preprocessor macros a build defines, from its configure variables. */
function conditionHolds(cond: string, vars: Map<string, string>, defined: Set<string>, nginxVersionNumber: number): boolean {
  const macro: Record<string, boolean> = {
    ...Object.fromEntries(Object.entries(MACRO_VARS).map(([m, v]) => [m, vars.get(v) === 'YES'])),
    NGX_HTTP_CACHE: vars.get('HTTP_CACHE') !== 'NO',
    NGX_HTTP_GZIP: true,
    NGX_HTTP_X_FORWARDED_FOR: true,
    NGX_HTTP_HEADERS: true,
    NGX_HAVE_INET6: true,
    NGX_HAVE_UNIX_DOMAIN: true,
    NGX_HAVE_REUSEPORT: true,
    NGX_HAVE_TRANSPARENT_PROXY: true,
    NGX_HAVE_SO_SNDLOWAT: false,
    NGX_HAVE_DEFERRED_ACCEPT: true,
    NGX_HAVE_SETFIB: false,
    NGX_HAVE_TCP_FASTOPEN: true,
    NGX_HAVE_KEEPALIVE_TUNABLE: true,
    NGX_HAVE_OPENAT: true,
    NGX_HAVE_SENDFILE: true,
    NGX_LINUX: true,
    NGX_WIN32: false,
    NGX_DARWIN: false,
    NGX_SOLARIS: false,
    NGX_FREEBSD: false,
    NGX_HAVE_CPU_AFFINITY: true,
    NGX_HAVE_CPUSET_SETAFFINITY: false,
    NGX_HAVE_SCHED_SETAFFINITY: true,
    NGX_HAVE_DLOPEN: true,
    NGX_HAVE_EPOLL: true,
    NGX_HAVE_EPOLLRDHUP: true,
    NGX_HAVE_EVENTFD: true,
    NGX_HAVE_PR_SET_DUMPABLE: true,
    NGX_HAVE_CAPABILITIES: true,
    NGX_HAVE_PR_SET_KEEPCAPS: true,
    NGX_HAVE_POSIX_MEMALIGN: true,
    NGX_HAVE_MAP_ANON: true,
    NGX_HAVE_BPF: true,
    NGX_QUIC_BPF: false,
  };
  const known = (n: string): boolean | undefined => (n in macro ? macro[n] : defined.has(n) ? true : undefined);
  const js = cond
    .replace(/^!\((.*)\)$/, '!($1)')
    .replace(/defined\s*\(?\s*(\w+)\s*\)?/g, (_, n) => String(known(n) ?? false))
    .replace(/\bnginx_version\b/g, String(nginxVersionNumber))
    // configure's own feature tests (NGX_HAVE_*) pass on Linux unless listed above;
    // any other macro the sources never define is 0, as in C
    .replace(/\b[A-Za-z_]\w*\b/g, (n) => (/^(true|false)$/.test(n) ? n : String(known(n) ?? n.startsWith('NGX_'))));
  try {
    // the expression is built only from true/false, !, &&, ||, parentheses and integer comparisons
    if (!/^[\s()!&|<>=0-9a-z]*$/.test(js)) return true;
    return Boolean(new Function(`return (${js});`)());
  } catch {
    return true;
  }
}

/** ---- main ---- */
function main(): void {
  const { values } = parseArgs({
    options: {
      target: { type: 'string' },
      version: { type: 'string' },
      src: { type: 'string' },
      configure: { type: 'string', default: '' },
      'dynamic-addon': { type: 'string', multiple: true, default: [] },
      out: { type: 'string' },
    },
  });
  if (!values.target || !values.version || !values.src) {
    throw new Error('usage: gen-directives --target NAME --version V --src NGINX_SOURCE_DIR [--configure ARGS] [--dynamic-addon DIR]...');
  }
  const src = resolve(values.src);
  const configure = (values.configure.match(/(?:[^\s']+|'[^']*')+/g) ?? []).map((a) => a.replace(/'/g, ''));
  const cfg = configureVars(src, configure);
  const { vars } = cfg;
  const links = moduleLinks(src, cfg);
  const addons: Array<{ dir: string; dynamic: boolean }> = [];
  for (const a of configure) {
    const m = /^--add(-dynamic)?-module=(.*)$/.exec(a);
    if (m) addons.push({ dir: resolve(src, m[2]), dynamic: Boolean(m[1]) });
  }
  for (const d of values['dynamic-addon']) addons.push({ dir: resolve(d), dynamic: true });

  const coreFiles = walk(join(src, 'src'));
  const addonFiles = addons.map((a) => ({ ...a, files: walk(a.dir) }));
  const { text, sources } = collect([...coreFiles, ...addonFiles.flatMap((a) => a.files)]);

  const nginxVersion = /#define NGINX_VERSION\s+"([^"]+)"/.exec(readFileSync(join(src, 'src/core/nginx.h'), 'utf8'))![1];
  const nginxVersionNumber = Number(/#define nginx_version\s+(\d+)/.exec(readFileSync(join(src, 'src/core/nginx.h'), 'utf8'))![1]);
  const definedMacros = new Set(sources.defines.keys());
  // the NDK's config adds -DNDK to every module's CFLAGS
  if (addons.some((a) => /devel_kit|ndk/.test(basename(a.dir)))) definedMacros.add('NDK');
  const directives: Record<string, Definition[]> = {};
  const modules: Record<string, { link: string; loadModule?: string; needs?: string; from: string }> = {};

  const addonSo = (dir: string): string | undefined => {
    try {
      const cfg = readFileSync(join(dir, 'config'), 'utf8');
      const addonName = /ngx_addon_name=(\S+)/.exec(cfg)?.[1];
      const mod = /ngx_module_name="?\$?([\w]+)/.exec(cfg)?.[1];
      const name = mod === 'ngx_addon_name' ? addonName : mod ?? addonName;
      return name ? `${name}.so` : undefined;
    } catch {
      return undefined;
    }
  };

  for (const [file, c] of text) {
    if (!file.endsWith('.c')) continue;
    const addon = addonFiles.find((a) => a.files.includes(file));
    for (const mm of c.matchAll(/ngx_module_t\s+(\w+)\s*=\s*\{\s*NGX_MODULE_V1\s*,\s*([^,]+),\s*([^,]+),\s*(\w+)/g)) {
      const [, modName, , cmdsName, modType] = mm;
      let link: ModuleLink;
      if (addon) link = addon.dynamic ? { link: 'dynamic', so: addonSo(addon.dir) } : { link: 'static' };
      else link = links.get(modName) ?? coreModuleLink(relative(src, file), modName, cfg);
      // a module of nginx's own tree this build leaves out is kept, marked
      // with the flags that would build it; one no flag builds is dropped
      if (link.link === 'no' && !link.needs) continue;
      const moduleNeeds = link.link === 'no' ? link.needs!.join(' ') : undefined;
      modules[modName] = {
        link: moduleNeeds ? 'absent' : link.link,
        loadModule: link.so ? `modules/${link.so}` : undefined,
        needs: moduleNeeds,
        from: addon ? basename(addon.dir) : `nginx-${nginxVersion}`,
      };
      if (cmdsName.trim() === 'NULL') continue;
      const arr = new RegExp(`ngx_command_t\\s+${cmdsName.trim()}\\s*\\[\\]\\s*=\\s*\\{([\\s\\S]*?)ngx_null_command`).exec(c);
      // NDK builds its array at configure time from command initialisers in
      // its headers (objs/.../ndk_config.c); read those headers instead
      const body = arr?.[1] ?? (addon ? addon.files.filter((f) => f.endsWith('.h')).map((f) => {
        const h = text.get(f)!;
        return /^\s*\{\s*ngx_string\s*\(/m.test(h) ? h.replace(/^#\s*(if|ifdef|ifndef|else|elif|endif).*$/gm, '') : '';
      }).join('\n') : undefined);
      if (!body) continue;
      for (const { fields, condition } of commandEntries(body)) {
        const nameM = /ngx_string\s*\(\s*"([^"]+)"\s*\)/.exec(fields[0] ?? '');
        if (!nameM || fields.length < 3) continue;
        let needs = moduleNeeds;
        if (condition && !conditionHolds(condition, vars, definedMacros, nginxVersionNumber)) {
          const more = conditionNeeds(condition, cfg, definedMacros, nginxVersionNumber);
          if (!more) continue;
          needs = [...new Set([...(needs?.split(' ') ?? []), ...more])].join(' ');
        }
        const mask = expandMask(fields[1], sources.defines);
        let contexts: string[] = [];
        if (mask.includes('NGX_ANY_CONF')) contexts = [...ANY_CONTEXTS];
        for (const t of mask) if (CONTEXT_BITS[t]) contexts.push(CONTEXT_BITS[t]);
        contexts = [...new Set(contexts)];
        const args = ARG_BITS.filter((b) => mask.includes(`NGX_CONF_${b}`));
        const handler = fields[2].trim();
        const def: Definition = {
          module: modName,
          contexts,
          args,
          block: mask.includes('NGX_CONF_BLOCK'),
          repeatable: !refusesRepeat(handler, sources.functions),
          source: relative(addon ? join(addon.dir, '..') : join(src, '..'), file),
        };
        const o = def.block ? opens(handler, sources.functions) : undefined;
        if (o) def.opens = o;
        if (link.so) def.loadModule = `modules/${link.so}`;
        if (condition) def.condition = condition;
        if (needs) def.needs = needs;
        (directives[nameM[1]] ??= []).push(def);
      }
    }
  }

  const sorted: Record<string, Definition[]> = {};
  for (const k of Object.keys(directives).sort()) sorted[k] = directives[k];
  const sortedModules: typeof modules = {};
  for (const k of Object.keys(modules).sort()) sortedModules[k] = modules[k];
  const table = {
    target: values.target,
    version: values.version,
    nginx: nginxVersion,
    configure: configure.filter((a) => !/^--with-(cc|ld)-opt/.test(a)),
    generatedBy: 'scripts/gen-directives.ts',
    modules: sortedModules,
    directives: sorted,
  };
  const out = values.out ?? join('src/nginx/directives', `${values.target}-${values.version}.json`);
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(table, null, 1)}\n`);
  process.stdout.write(`${out}: ${Object.keys(sorted).length} directives from ${Object.keys(modules).length} modules\n`);
}

main();
