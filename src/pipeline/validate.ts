/**
 * Validation returns data, never prints: the typed spec, or every error at
 * once, each with its spec path, file:line:column and how to fix it.
 */
import type { z } from "zod";
import { formatPath, loadSpecText, type LoadedSpec, type SpecDiagnostic } from "./load.js";
import { proxiesToUpstream, runsLogPhase, specSchema, type Directive, type Spec, type Upstream } from "../spec/schema.js";
import { checkDnsSettings, checkUpstream, isStaticUpstream } from "../spec/upstream-checks.js";
import { nginxSideChecks } from "./directive-check.js";
import { ownsAccessPhase, ownsBodyFilter } from "./plan.js";

export interface ValidationResult {
  spec?: Spec;
  warnings: SpecDiagnostic[];
  errors: SpecDiagnostic[];
}

/** Text -> validated spec (pure). */
export function validateSpecText(text: string, file: string): ValidationResult {
  const loaded = loadSpecText(text, file);
  if (!loaded.ok) return { warnings: [], errors: loaded.errors };
  return validateLoaded(loaded.spec);
}

export interface ValidateOptions {
  /**
   * The target rendered for (`--target`), when it overrides the spec's: the
   * cross checks and the directive table are the rendered target's, and the
   * returned spec carries it.
   */
  target?: Spec["target"];
}

export function validateLoaded(loaded: LoadedSpec, opts: ValidateOptions = {}): ValidationResult {
  const diag = (path: readonly PropertyKey[], message: string): SpecDiagnostic => ({
    path: formatPath(path),
    position: loaded.locate(path),
    message,
  });

  const parsed = specSchema.safeParse(loaded.data, { reportInput: true });
  if (!parsed.success) {
    return { warnings: [], errors: byPosition(parsed.error.issues.flatMap((issue) => issueDiagnostics(issue, diag))) };
  }
  const spec = opts.target === undefined ? parsed.data : { ...parsed.data, target: opts.target };
  const { errors, warnings } = crossCheck(spec, diag, rawUpstreams(loaded.data));
  if (errors.length === 0) {
    nginxSideChecks(
      spec,
      (path, message) => errors.push(diag(path, message)),
      (path, message) => warnings.push({ ...diag(path, message), needsBuildFlag: true }),
    );
  }
  return errors.length > 0 ? { warnings, errors: byPosition(errors) } : { spec, warnings: byPosition(warnings), errors };
}

/** Errors in the order they appear in the file, as a reader goes through it. */
function byPosition(list: SpecDiagnostic[]): SpecDiagnostic[] {
  return [...list].sort((a, b) => a.position.line - b.position.line || a.position.column - b.position.column);
}

type Diag = (path: readonly PropertyKey[], message: string) => SpecDiagnostic;

function issueDiagnostics(issue: z.core.$ZodIssue, diag: Diag): SpecDiagnostic[] {
  const path = issue.path as PropertyKey[];
  switch (issue.code) {
    case "unrecognized_keys":
      return issue.keys.map((key) => diag([...path, key], `unknown key "${key}"; check its spelling against \`gen-lb schema\``));
    case "invalid_key":
      // A record key (upstream name...) failed its pattern: say what the key's own rule said.
      return issue.issues.map((inner) => diag(path, `${inner.message} (got ${JSON.stringify(path[path.length - 1])})`));
    case "invalid_union":
      return [diag(path, unionMessage(issue))];
    case "invalid_type":
      return [
        diag(
          path,
          issue.input === undefined ? `missing required key (expected ${issue.expected})` : `expected ${issue.expected}, got ${describe(issue.input)}`,
        ),
      ];
    case "invalid_value":
      return [diag(path, `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}, got ${describe(issue.input)}`)];
    default:
      return [diag(path, issue.message)];
  }
}

/** A union's branches each fail; say the most specific thing any of them said. */
function unionMessage(issue: z.core.$ZodIssueInvalidUnion): string {
  const branches = issue.errors.flat();
  const specific = branches.find((b) => b.code !== "invalid_type" && b.path.length === 0);
  if (specific) return specific.message;
  const expected = [...new Set(branches.flatMap((b) => (b.code === "invalid_type" ? [b.expected] : [])))];
  return `expected ${expected.join(" or ")}, got ${describe(issue.input)}`;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

/** Checks that span keys, which a per-field schema cannot express. */
/** The upstreams as written, before defaults: which keys did the user give? */
function rawUpstreams(data: unknown): Record<string, Record<string, unknown>> {
  const ups = (data as { upstreams?: unknown } | null)?.upstreams;
  return ups !== null && typeof ups === "object" ? (ups as Record<string, Record<string, unknown>>) : {};
}

function crossCheck(spec: Spec, diag: Diag, raw: Record<string, Record<string, unknown>>): { errors: SpecDiagnostic[]; warnings: SpecDiagnostic[] } {
  const errors: SpecDiagnostic[] = [];
  const warnings: SpecDiagnostic[] = [];
  const upstreamNames = Object.keys(spec.upstreams);
  const used = new Set<string>();
  const formats = new Set(["combined", ...Object.keys(spec.nginx.http.log_formats)]);

  const checkLogs = (logs: typeof spec.nginx.http.access_log, path: PropertyKey[]) => {
    if (!Array.isArray(logs)) return;
    logs.forEach((log, i) => {
      if (log.format !== undefined && !formats.has(log.format)) {
        errors.push(diag([...path, i, "format"], `unknown log format "${log.format}"; define it under nginx.http.log_formats (known: ${[...formats].join(", ")})`));
      }
    });
  };
  checkLogs(spec.nginx.http.access_log, ["nginx", "http", "access_log"]);

  const dumpProblem = dumpFileProblem(spec.consul.dump_file);
  if (dumpProblem !== undefined) errors.push(diag(["consul", "dump_file"], dumpProblem));

  for (const [name, up] of Object.entries(spec.upstreams)) {
    const path = ["upstreams", name];
    if (up.balance === "chash" && up.hash_key === undefined) {
      errors.push(diag([...path, "balance"], 'balance "chash" needs a hash_key, e.g. hash_key: $remote_addr'));
    }
    if (up.hash_key !== undefined && up.balance !== "chash") {
      errors.push(diag([...path, "hash_key"], `hash_key is used only by balance "chash" (this upstream uses "${up.balance}"); remove it or set balance: chash`));
    }
    errors.push(...checkUpstream(spec, name, up, raw[name] ?? {}, diag));
  }
  errors.push(...checkDnsSettings(spec, diag));

  // nginx picks a server by listen address, then server_name: two servers on
  // one address with the same names can never both be reached.
  const listeners = new Map<string, string>();
  const claim = (listen: string, names: readonly string[], path: PropertyKey[]) => {
    const key = `${normaliseListen(listen)} ${[...names].sort().join(",")}`;
    const first = listeners.get(key);
    if (first !== undefined) {
      errors.push(diag(path, `listen ${listen}${names.length ? ` with server_name ${names.join(" ")}` : ""} is already used by ${first}; give each server its own address or server_name`));
    } else {
      listeners.set(key, formatPath(path));
    }
  };

  spec.servers.forEach((server, si) => {
    const listens = Array.isArray(server.listen) ? server.listen : [server.listen];
    listens.forEach((l, li) => claim(String(l), server.server_name, Array.isArray(server.listen) ? ["servers", si, "listen", li] : ["servers", si, "listen"]));
    checkLogs(server.access_log, ["servers", si, "access_log"]);
    const seen = new Map<string, number>();
    server.locations.forEach((loc, li) => {
      const path = ["servers", si, "locations", li];
      if (loc.upstream !== undefined) {
        used.add(loc.upstream);
        if (!(loc.upstream in spec.upstreams)) {
          errors.push(diag([...path, "upstream"], `unknown upstream "${loc.upstream}"; defined upstreams: ${upstreamNames.length ? upstreamNames.join(", ") : "(none)"}`));
        }
      }
      const key = `${loc.match} ${loc.path}`;
      const dup = seen.get(key);
      if (dup !== undefined) errors.push(diag([...path, "path"], `duplicate location "${loc.path}" (also servers[${si}].locations[${dup}])`));
      else seen.set(key, li);
    });
  });

  if (spec.status.enabled) claim(String(spec.status.listen), [], ["status", "listen"]);

  // gen-lb's balancer accounting runs log_by_lua at server level where an
  // upstream needs it; nginx keeps one per location, so an extra one would
  // silently replace it.
  const ownLogPhase = (list: readonly Directive[], path: PropertyKey[]) => {
    list.forEach((dir, i) => {
      if (/^log_by_lua(_block|_file)?$/.test(dir.name)) {
        errors.push(diag([...path, i, "name"], `${dir.name} cannot be used where gen-lb proxies to an upstream that needs its log phase (least_conn, passive checks or counters: true): gen-lb's balancer runs its own log_by_lua there (nginx keeps only one)`));
      }
      if (dir.block) ownLogPhase(dir.block, [...path, i, "block"]);
    });
  };
  const proxying = spec.servers.map((s) => runsLogPhase(s, spec.upstreams));
  if (proxying.some(Boolean)) ownLogPhase(spec.nginx.http.directives, ["nginx", "http", "directives"]);
  spec.servers.forEach((server, si) => {
    if (!proxying[si]) return;
    ownLogPhase(server.directives, ["servers", si, "directives"]);
    server.locations.forEach((loc, li) => ownLogPhase(loc.directives, ["servers", si, "locations", li, "directives"]));
  });

  // Likewise access_by_lua in a location gen-lb holds or fails closed in,
  // and body_filter_by_lua where passive checks watch the answer's body:
  // gen-lb's own would replace the user's (or the user's would be a duplicate).
  const reported = new Set<string>();
  const ownPhase = (phase: string, list: readonly Directive[], path: PropertyKey[], upstream: string, why: string, instead: string) => {
    const pattern = new RegExp(`^${phase}_by_lua(_block|_file)?$`);
    list.forEach((dir, i) => {
      const at = formatPath([...path, i]);
      if (pattern.test(dir.name) && !reported.has(at)) {
        reported.add(at);
        errors.push(diag([...path, i, "name"], `${dir.name} cannot be used where gen-lb proxies to upstream "${upstream}": gen-lb runs its own ${phase}_by_lua there (${why}; nginx keeps only one); drop this directive, or ${instead}`));
      }
    });
  };
  const phases = [
    {
      phase: "access",
      owns: (up: Upstream) => ownsAccessPhase(spec, up),
      why: "to hold requests until its first peers, or to answer 503 with fail_open: false",
      instead: "leave gen-lb no access phase there (fail_open: true, and fallback peers that are IP addresses, or runtime.hold_for_peers: 0)",
    },
    {
      phase: "body_filter",
      owns: ownsBodyFilter,
      why: "passive checks see an answer the upstream cut short by its body's end never coming",
      instead: "leave gen-lb no body filter there (no healthcheck.passive on this upstream)",
    },
  ];
  spec.servers.forEach((server, si) => {
    server.locations.forEach((loc, li) => {
      const up = loc.upstream === undefined ? undefined : spec.upstreams[loc.upstream];
      if (up === undefined) return;
      for (const { phase, owns, why, instead } of phases) {
        if (!owns(up)) continue;
        ownPhase(phase, loc.directives, ["servers", si, "locations", li, "directives"], loc.upstream!, why, instead);
        ownPhase(phase, server.directives, ["servers", si, "directives"], loc.upstream!, why, instead);
        ownPhase(phase, spec.nginx.http.directives, ["nginx", "http", "directives"], loc.upstream!, why, instead);
      }
    });
  });

  for (const name of upstreamNames) {
    if (used.has(name)) continue;
    const up = spec.upstreams[name]!;
    const still = isStaticUpstream(up)
      ? "nginx still resolves its servers at start"
      : up.discovery === "dns"
        ? "nginx still resolves it through Consul's DNS"
        : "it is still discovered and health-checked";
    warnings.push(diag(["upstreams", name], `upstream "${name}" is not used by any location (${still})`));
  }
  return { errors, warnings };
}

/**
 * The dump file must stay inside the prefix: the master (root, usually)
 * creates its directory and chowns it to the worker user. Symlinks are the
 * runtime's to resolve (it refuses a path that leads out); here the text.
 */
function dumpFileProblem(file: string): string | undefined {
  if (file.startsWith("/")) {
    return `dump_file ${JSON.stringify(file)} is absolute; it must be a path inside the prefix, such as "state/gen_lb_peers.json" (the master makes its directory writable for the workers, and does so only inside the prefix)`;
  }
  const parts: string[] = [];
  for (const part of file.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.pop() === undefined) {
        return `dump_file ${JSON.stringify(file)} leads outside the prefix (".."); use a path inside it, such as "state/gen_lb_peers.json"`;
      }
    } else parts.push(part);
  }
  if (parts.length < 2) {
    return `dump_file ${JSON.stringify(file)} must be in a directory below the prefix, such as "state/gen_lb_peers.json" (the master hands that directory to the worker user, never the prefix itself)`;
  }
  return undefined;
}

/** 8080, "8080", "*:8080" and "0.0.0.0:8080" are one address to nginx. */
export function normaliseListen(listen: string): string {
  const s = String(listen);
  if (/^\d+$/.test(s)) return `*:${s}`;
  return s.replace(/^0\.0\.0\.0:/, "*:");
}
