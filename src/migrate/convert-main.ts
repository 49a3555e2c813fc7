/**
 * The main and events contexts of the old config -> spec.nginx (user,
 * workers, error_log, pid, modules, events settings), the target the new
 * config is for, and the http block handed to the http converter. What the
 * spec has no key for is carried through nginx.directives or
 * nginx.events_directives.
 */
import type { Directive } from "../nginx/types.js";
import { text, UNSAFE_RE } from "./args.js";
import type { ConvertContext } from "./context.js";
import { convertHttp, type HttpLevel } from "./convert-http.js";
import { carry } from "./hatch.js";
import { convertLoadModule } from "./modules.js";
import type { HatchDirective, HttpInput, NginxInput, ServerInput } from "./spec-input.js";
import { readArgs, setTableValue, tableEntry } from "./table.js";

export interface MainResult {
  target: "openresty" | "nginx";
  nginx: NginxInput;
  servers: ServerInput[];
  /** The escape hatch at main level (the token's `env` may still be taken out of it). */
  main: HatchDirective[];
}

export function convertMain(ctx: ConvertContext): MainResult {
  const { ledger, input } = ctx;
  const nginx: NginxInput = {};
  const http: HttpInput = {};
  const servers: ServerInput[] = [];
  const level: HttpLevel = { ssl: {}, headers: [] };
  const main: HatchDirective[] = [];
  const events: HatchDirective[] = [];
  // The binary's -V decides; without it, a config loading the lua module is for a distro nginx.
  let target: "openresty" | "nginx" = input.bin?.target ?? "openresty";

  for (const d of input.tree) {
    if (d.directive === "#") {
      ledger.comments++;
      continue;
    }
    switch (d.directive) {
      case "user":
        nginx.user = d.args.join(" ");
        ledger.converted(d, "nginx.user");
        break;
      case "worker_processes":
      case "worker_rlimit_nofile": {
        const entry = tableEntry("main", d.directive)!;
        const v = readArgs(entry.kind, d.args);
        if (v === undefined) carry(ctx, d, main, "nginx.directives");
        else {
          setTableValue(nginx, entry, v);
          ledger.converted(d, entry.key);
        }
        break;
      }
      case "error_log": {
        const level = d.args[1] ?? "error";
        if (d.args.length <= 2 && isErrorLevel(level) && d.args[0] && !UNSAFE_RE.test(d.args[0])) {
          nginx.error_log = { path: d.args[0], level };
          ledger.converted(d, "nginx.error_log", d.args[1] === undefined ? "nginx's default level error made explicit" : "");
        } else {
          carry(ctx, d, main, "nginx.directives");
        }
        break;
      }
      case "pid":
        nginx.pid = d.args[0];
        ledger.converted(d, "nginx.pid");
        break;
      case "load_module": {
        // What the target has decides (src/migrate/modules.ts); a relative path means the old prefix.
        const r = d.args.length === 1 && !UNSAFE_RE.test(d.args[0]!) ? convertLoadModule(d.args[0]!, target, input.modules) : undefined;
        if (r === undefined) carry(ctx, d, main, "nginx.directives");
        else if (r.kind === "carried") {
          main.push({ name: "load_module", args: r.args });
          const f = ledger.add("carried", d, `${text(d)}${r.note ? ` (${r.note})` : ""}`, "nginx.directives");
          if (r.args[0] !== d.args[0]) f.newArgs = r.args;
        } else {
          if (r.kind === "dropped" && r.target) target = r.target;
          if (r.kind === "dropped" && r.modulesDir && target === "nginx") nginx.modules_dir = r.modulesDir;
          const f = ledger.add(r.kind, d, `${text(d)}: ${r.note}`, r.kind === "dropped" ? "target" : undefined);
          if (r.kind === "lost" && r.blocking) f.blocking = true;
        }
        break;
      }
      case "events":
        convertEvents(ctx, d, nginx, events);
        break;
      case "http":
        convertHttp(ctx, d, { nginx, http, servers, level });
        break;
      default:
        carry(ctx, d, main, "nginx.directives");
    }
  }

  if (main.length) nginx.directives = main;
  if (events.length) nginx.events_directives = events;
  if (Object.keys(http).length) nginx.http = http;
  return { target, nginx, servers, main };
}

const ERROR_LEVELS = ["debug", "info", "notice", "warn", "error", "crit", "alert", "emerg"] as const;
function isErrorLevel(level: string): level is (typeof ERROR_LEVELS)[number] {
  return (ERROR_LEVELS as readonly string[]).includes(level);
}

function convertEvents(ctx: ConvertContext, d: Directive, nginx: NginxInput, events: HatchDirective[]): void {
  for (const e of d.block ?? []) {
    if (e.directive === "#") {
      ctx.ledger.comments++;
      continue;
    }
    const entry = tableEntry("events", e.directive);
    const v = entry && readArgs(entry.kind, e.args);
    if (entry && v !== undefined) {
      setTableValue(nginx, entry, v);
      ctx.ledger.converted(e, entry.key);
    } else {
      carry(ctx, e, events, "nginx.events_directives");
    }
  }
}
