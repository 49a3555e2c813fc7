/**
 * The spec every step of check runs (nginx -t binds the listen ports and
 * opens the logs too): the user's spec with everything that would reach
 * outside the scratch prefix pointed back into it, so a check needs no
 * privileges (CI runners are not root). Rewriting the spec
 * (not regex on the rendered nginx.conf) keeps the renderer the only author
 * of nginx syntax. Pure.
 */
import { isIP } from "node:net";
import { normaliseListen } from "../pipeline/validate.js";
import type { Spec } from "../spec/schema.js";

type Listen = Spec["servers"][number]["listen"];

function listenList(listen: Listen): Array<string | number> {
  return Array.isArray(listen) ? listen : [listen];
}

/**
 * Distinct listen addresses, in order: servers sharing an address (virtual
 * hosts on :80) keep sharing one port, so nginx sees the same grouping.
 */
export function listenAddresses(spec: Spec): string[] {
  const seen = new Set<string>();
  const add = (l: string | number) => seen.add(normaliseListen(String(l)));
  for (const s of spec.servers) listenList(s.listen).forEach(add);
  if (spec.status.enabled) add(spec.status.listen);
  return [...seen];
}

const isFilePath = (p: string) => !/^(syslog:|stderr$|memory:)/.test(p);

/**
 * The host a scratch listen binds: loopback for a port, a wildcard or an IP
 * literal (the check must not need the LB's own addresses, nor root for
 * port 80); any other host is kept, so that `nginx -t` still reports one it
 * cannot resolve ("host not found"), mapped back to the spec.
 */
function scratchHost(listen: string): string {
  const host = /^\d+$/.test(listen) ? "*" : listen.replace(/:\d+$/, "");
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  return host === "*" || isIP(bare) !== 0 ? "127.0.0.1" : host;
}

/**
 * Temp paths: a distro nginx compiles in absolute ones (/var/lib/nginx/...)
 * that its workers' user owns; proxy and client body are the two every
 * gen-lb config uses.
 */
const TEMP_PATHS = [
  ["client_body_temp_path", "temp/client_body"],
  ["proxy_temp_path", "temp/proxy"],
] as const;

/** Worker count for the smoke start: enough to exercise the per-node election, cheap on big hosts. */
const SMOKE_WORKERS = 2;

/**
 * `ports` maps each address of listenAddresses() to a free loopback port.
 * Besides the listens: pid, error log, access logs (the http level gets one
 * when the spec sets none: nginx would open its compiled-in path), temp
 * paths and the dump file move into the scratch prefix (the smoke master must not overwrite the live pid
 * file or write the live dump), `daemon`/`master_process` directives go (the
 * start must daemonize and return), the error log is at least as verbose as
 * "error" (the check reads it), and the status endpoint admits 127.0.0.1 so
 * the check can ask it for the build id.
 */
export function scratchSpec(spec: Spec, ports: ReadonlyMap<string, number>): Spec {
  const portFor = (l: string | number) => {
    const port = ports.get(normaliseListen(String(l)));
    if (port === undefined) throw new Error(`no smoke port for listen ${String(l)}`);
    return `${scratchHost(String(l))}:${port}`;
  };
  const moveAccessLogs = <T extends Spec["servers"][number]["access_log"]>(logs: T): T =>
    (Array.isArray(logs) ? logs.map((l) => (l.path !== undefined && isFilePath(l.path) ? { ...l, path: "logs/access.log" } : l)) : logs) as T;
  const n = spec.nginx;
  const levels = ["debug", "info", "notice", "warn", "error"];
  const workers = n.worker_processes === "auto" ? SMOKE_WORKERS : Math.min(n.worker_processes, SMOKE_WORKERS);
  return {
    ...spec,
    consul: { ...spec.consul, dump_file: "state/gen_lb_peers.json" },
    nginx: {
      ...n,
      worker_processes: workers,
      pid: "logs/nginx.pid",
      error_log: { path: "logs/error.log", level: (levels.includes(n.error_log.level) ? n.error_log.level : "error") as Spec["nginx"]["error_log"]["level"] },
      directives: n.directives.filter((d) => d.name !== "daemon" && d.name !== "master_process"),
      http: {
        ...n.http,
        access_log: n.http.access_log === undefined ? [{ path: "logs/access.log" }] : moveAccessLogs(n.http.access_log),
        directives: [
          ...n.http.directives.filter((d) => !TEMP_PATHS.some(([name]) => name === d.name)),
          ...TEMP_PATHS.map(([name, dir]) => ({ name, args: [dir] })),
        ],
        ...(n.http.error_log !== undefined && isFilePath(n.http.error_log) ? { error_log: "logs/error.log" } : {}),
      },
    },
    servers: spec.servers.map((s) => ({
      ...s,
      listen: Array.isArray(s.listen) ? s.listen.map(portFor) : portFor(s.listen),
      access_log: moveAccessLogs(s.access_log),
    })),
    status: {
      ...spec.status,
      listen: spec.status.enabled ? portFor(spec.status.listen) : spec.status.listen,
      allow: spec.status.allow.includes("127.0.0.1") ? spec.status.allow : ["127.0.0.1", ...spec.status.allow],
    },
  };
}
