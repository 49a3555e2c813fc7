/**
 * The access_log directives of one level (http or a server) -> its typed
 * access_log: "off", or files and syslog targets with their format, buffer,
 * flush and if=. The level's logs are converted together or carried
 * together (nginx writes every one of them, so half of them typed would
 * reorder them).
 */
import type { Directive } from "../nginx/types.js";
import { duration, size, UNSAFE_RE } from "./args.js";
import type { ConvertContext } from "./context.js";
import { carryAll, type HatchAt } from "./hatch.js";
import type { AccessLogInput, HatchDirective, SyslogInput } from "./spec-input.js";

export function convertAccessLogs(
  ctx: ConvertContext,
  logs: Directive[],
  into: { access_log?: "off" | AccessLogInput[] | undefined },
  at: "nginx.http" | "servers[]",
  directives: HatchDirective[],
  hatchAt: HatchAt,
): void {
  if (logs.length === 1 && logs[0]!.args.length === 1 && logs[0]!.args[0] === "off") {
    into.access_log = "off";
    ctx.ledger.converted(logs[0]!, `${at}.access_log`);
    return;
  }
  const typed: AccessLogInput[] = [];
  for (const l of logs) {
    const entry = accessLog(l);
    if (entry === undefined) return carryAll(ctx, logs, directives, hatchAt);
    typed.push(entry);
  }
  into.access_log = typed;
  logs.forEach((l, i) => ctx.ledger.converted(l, `${at}.access_log[${i}]`));
}

/** One access_log as the spec's access log, or undefined when the spec cannot say it exactly. */
function accessLog(l: Directive): AccessLogInput | undefined {
  const [target, format, ...params] = l.args;
  if (target === undefined || target === "off" || UNSAFE_RE.test(l.args.join(" "))) return undefined;
  const entry: AccessLogInput = {};
  if (target.startsWith("syslog:")) {
    const sys: Partial<SyslogInput> = {};
    for (const part of target.slice(7).split(",")) {
      const [k, v] = part.split("=");
      if (k === "server" || k === "facility" || k === "tag" || k === "severity") sys[k] = v;
      else if (k === "nohostname") sys.nohostname = true;
      else return undefined;
    }
    // The schema wants a server; a syslog target without one fails validation, as it did before.
    entry.syslog = sys as SyslogInput;
  } else entry.path = target;
  if (format !== undefined) entry.format = format;
  for (const p of params) {
    const [k, v] = [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)];
    if (k === "buffer" && size(v) !== undefined) entry.buffer = size(v);
    else if (k === "flush" && duration(v) !== undefined) entry.flush = duration(v);
    else if (k === "if") entry.if = v;
    else return undefined;
  }
  return entry;
}
