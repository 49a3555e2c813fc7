/**
 * Reading what nginx says (stderr of -t and of a start, the error log) and
 * saying it in the spec's terms. Pure: text in, data out.
 */
import path from "node:path";
import { specPathForLine } from "../pipeline/render.js";

export type NginxLevel = "debug" | "info" | "notice" | "warn" | "error" | "crit" | "alert" | "emerg";

/** Levels that fail a check (the issue's list); warn and below are reported only. */
export const FAILING_LEVELS: ReadonlySet<NginxLevel> = new Set(["error", "crit", "alert", "emerg"]);

export interface NginxMessage {
  level: NginxLevel;
  /** First line of the entry, without timestamp and pid. */
  text: string;
  /** Continuation lines (Lua tracebacks, "no file ..." lists). */
  more: string[];
  /** The nginx.conf line nginx blamed ("in .../nginx.conf:27", "init_by_lua(nginx.conf:22)"). */
  confLine?: number;
}

// "2026/11/28 12:42:22 [emerg] 18455#18455: text" (log file, and stderr before the log opens)
const LOG_LINE = /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)$/;
// "nginx: [emerg] text" (stderr once nginx knows it is talking to a terminal user)
const STDERR_LINE = /^nginx: \[(\w+)\] (.*)$/;

/** Split nginx output into entries; lines that begin no entry continue the previous one. */
export function parseNginxOutput(text: string): NginxMessage[] {
  const out: NginxMessage[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    const m = LOG_LINE.exec(line) ?? STDERR_LINE.exec(line);
    if (m) {
      const entry: NginxMessage = { level: m[1] as NginxLevel, text: m[2]!.trim(), more: [] };
      const conf = confLineOf(entry.text);
      if (conf !== undefined) entry.confLine = conf;
      out.push(entry);
    } else if (line.trim() !== "" && out.length > 0 && !/^nginx: (the )?configuration file .* (test failed|syntax is ok|test is successful)$/.test(line)) {
      const entry = out[out.length - 1]!;
      entry.more.push(line.trim());
      // A Lua error names the file it failed in first; the traceback ends at "init_by_lua(nginx.conf:22)".
      if (entry.confLine === undefined) {
        const conf = confLineOf(line);
        if (conf !== undefined) entry.confLine = conf;
      }
    }
  }
  return out;
}

/** nginx.conf line named by a message, whatever the prefix directory was. */
export function confLineOf(text: string): number | undefined {
  const m = /\bin \S*?conf\/nginx\.conf:(\d+)/.exec(text) ?? /_by_lua\(nginx\.conf:(\d+)\)/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** Drop the same message seen twice (a failed start prints to stderr and to the log). */
export function dedupeMessages(list: readonly NginxMessage[]): NginxMessage[] {
  const seen = new Set<string>();
  return list.filter((m) => {
    const key = `${m.level} ${m.text}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * Socket errors from background timers: at a smoke start these are the Lua
 * runtime failing to reach Consul (or a health-checked peer), or nginx's
 * resolver failing to reach Consul's DNS, from the host running the check. The runtime retries them; they say nothing about
 * whether the config starts, so they are reported but do not fail it.
 */
export function isBackgroundNetworkError(msg: NginxMessage): boolean {
  if (msg.level !== "error") return false;
  // nginx's own resolver re-reading a discovery: dns upstream from a Consul DNS the check host cannot reach.
  if (/(?:\) failed|timed out).* while resolving, resolver: |^(?:\S+ )?\S+ could not be resolved \(\d+: /.test(msg.text)) return true;
  return (
    /context: ngx\.timer/.test(msg.text) &&
    /^(?:\S+ )?(?:connect\(\) failed|connect\(\) to .* failed|recv\(\) failed|send\(\) failed|.*timed out)/.test(msg.text)
  );
}

/** Where in the spec an nginx.conf line came from. */
export interface SpecPlace {
  path: string;
  /** "gen-lb.yaml:12:5" */
  position?: string;
}

export type LocateSpecPath = (specPath: string) => string | undefined;

/**
 * The spec path (and file:line:col) behind an nginx.conf line. The rendered
 * config carries `# servers[0]`-style comments; a `listen` message narrows
 * `servers[N]` to its listen key, where the fix goes.
 */
export function placeInSpec(msg: NginxMessage, nginxConf: string, locate: LocateSpecPath): SpecPlace | undefined {
  if (msg.confLine === undefined) return undefined;
  let specPath = specPathForLine(nginxConf, msg.confLine);
  if (specPath === undefined) return undefined;
  if (/ of the "listen" directive/.test(msg.text) && /^(servers\[\d+\]|status)$/.test(specPath)) specPath += ".listen";
  const position = locate(specPath);
  return position === undefined ? { path: specPath } : { path: specPath, position };
}

/** One line for humans: `[emerg] text (nginx.conf:27 <- servers[0].listen at gen-lb.yaml:3:5)`. */
export function formatMessage(msg: NginxMessage, place?: SpecPlace): string {
  const where: string[] = [];
  if (msg.confLine !== undefined) where.push(`nginx.conf:${msg.confLine}`);
  if (place) where.push(`from ${place.path}${place.position ? ` at ${place.position}` : ""}`);
  let text = msg.confLine === undefined ? msg.text : msg.text.replace(/ in \S*conf\/nginx\.conf:\d+/, "");
  // "module 'x' not found:" introduces a search list; the list itself is not worth a line.
  text = text.replace(/:$/, "");
  return `[${msg.level}] ${text}${where.length > 0 ? ` (${where.join(", ")})` : ""}`;
}

/**
 * A binary without the Lua module fails on the first Lua directive, or on the
 * load_module line for a module file that is not there. Name the module and
 * the package that provides it.
 */
export function missingLuaModule(messages: readonly NginxMessage[], bin: string, target: "openresty" | "nginx"): string | undefined {
  for (const m of messages) {
    const unknown = /unknown directive "((?:lua_|[a-z_]+_by_lua)[a-z_]*)"/.exec(m.text);
    if (unknown) {
      const fix =
        target === "openresty"
          ? `install OpenResty (package "openresty", binary "openresty") and pass --bin openresty, or on Debian/Ubuntu install libnginx-mod-http-lua and set \`target: nginx\` in the spec (it adds the load_module lines)`
          : `install the Debian/Ubuntu package libnginx-mod-http-lua (with lua-resty-core), or OpenResty`;
      return `${bin} has no Lua module (ngx_http_lua_module): it does not know the directive "${unknown[1]}"; ${fix}`;
    }
    const dl = /dlopen\(\) "([^"]*?(ngx_http_lua_module|ndk_http_module)\.so)" failed/.exec(m.text);
    if (dl) {
      const name = dl[2]!;
      const pkg = name === "ndk_http_module" ? "libnginx-mod-http-ndk" : "libnginx-mod-http-lua";
      return `${bin} cannot load ${name} from ${path.dirname(dl[1]!)} (no such module file): install the Debian/Ubuntu package ${pkg} (libnginx-mod-http-lua pulls in both), or point nginx.modules_dir at the directory that holds ${name}.so`;
    }
    const compat = /module "([^"]*?(ngx_http_lua_module|ndk_http_module)\.so)" (?:is not binary compatible|version \d+ instead of \d+)/.exec(m.text);
    if (compat) {
      return `${compat[1]} was built for another nginx than ${bin}: install the ${compat[2]} package that matches this nginx (libnginx-mod-http-lua from the same distribution release), or OpenResty`;
    }
  }
  return undefined;
}
