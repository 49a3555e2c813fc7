/**
 * migrate: an old nginx (+ Lua + Consul) setup -> a gen-lb spec and a report.
 * Pure apart from the Loader (which reads the config and the Lua modules);
 * the command writes the results.
 */
import path from "node:path";
import { stringify } from "yaml";
import { lintParsed } from "../lint/lint.js";
import { parseConfig } from "../nginx/parse.js";
import type { Directive, Loader } from "../nginx/types.js";
import type { SpecInput } from "../spec/schema.js";
import { unbraceTree } from "./braces.js";
import { convert } from "./convert.js";
import { flatten, isMimeTypesInclude, walk } from "./flatten.js";
import { gatherLua } from "./lua.js";
import { fitToTarget } from "./target-fit.js";
import { MigrateError, type Finding } from "./types.js";
import type { BinInfo } from "./bin.js";
import { moduleContext } from "./modules.js";

export { MigrateError, type Finding } from "./types.js";

export interface MigrateOptions {
  loader: Loader;
  /** Extra directories holding Lua modules (--lua-path). */
  luaPath?: readonly string[];
  /**
   * The old nginx prefix ($prefix, --prefix): what relative paths of the old
   * config meant. Default: for load_module, a plain nginx binary's own
   * compiled-in prefix; for the rest, the parent of a "conf" directory
   * holding the main file, else its directory.
   */
  prefix?: string;
  /** What relative paths (the main file's) are relative to; default process.cwd(). */
  cwd?: string;
  /** The nginx binary (from its -V): the target, and its prefix for relative load_module paths. */
  bin?: BinInfo;
}

export interface Migration {
  /** The spec, as plain data in the schema's key order, typed as the schema's input. */
  spec: SpecInput;
  findings: Finding[];
  /** The old config as nginx sees it (includes inlined), for --verify. */
  tree: Directive[];
  /** Every file read: config files, then Lua files. */
  files: string[];
}

export function defaultPrefix(mainFile: string): string {
  const dir = path.dirname(mainFile);
  return path.basename(dir) === "conf" ? path.dirname(dir) : dir;
}

export function migrate(mainFile: string, opts: MigrateOptions): Migration {
  const parsed = parseConfig(mainFile, opts.loader);
  if (parsed.status === "failed") {
    const n = parsed.errors.length;
    throw new MigrateError(
      `${mainFile} did not parse as an nginx config (${n} error${n === 1 ? "" : "s"})`,
      parsed.errors.map((e) => `${e.file}:${e.line}:${e.column}: ${e.error}`),
    );
  }
  const { tree, inlined } = flatten(parsed);
  const comments = new Map<string, string[]>();
  for (const cf of parsed.config) {
    const list: string[] = [];
    walk(cf.parsed, (d) => {
      if (d.directive === "#") list.push(d.comment ?? "");
    });
    comments.set(cf.file, list);
  }
  const { sources, missing } = gatherLua(tree, { loader: opts.loader, prefix: opts.prefix ?? defaultPrefix(mainFile), luaPath: opts.luaPath ?? [] });
  // The old mime.types files (include mime.types stays an include in the tree), by include node position.
  const mimeTypes = new Map<string, Directive[]>();
  for (const cf of parsed.config) {
    walk(cf.parsed, (d) => {
      if (d.directive === "include" && d.includes && isMimeTypesInclude(d)) mimeTypes.set(`${d.file}:${d.line}:${d.column}`, d.includes.flatMap((i) => parsed.config[i]!.parsed));
    });
  }
  const prefix = path.resolve(opts.cwd ?? process.cwd(), opts.prefix ?? defaultPrefix(mainFile));
  const explicitPrefix = opts.prefix !== undefined ? path.resolve(opts.cwd ?? process.cwd(), opts.prefix) : undefined;
  const modules = opts.bin ? moduleContext(opts.bin, opts.loader, tree, explicitPrefix) : undefined;
  // The converters read `${name}` as `$name` where that is the same variable (the spec refuses "${").
  const unbraced = unbraceTree(tree);
  const result = convert({ tree: unbraced.tree, sources, comments, mimeTypes, mainFile, cwd: opts.cwd ?? process.cwd(), prefix, ...(opts.bin ? { bin: opts.bin, modules } : {}) });
  // What the target's nginx still refuses among the carried directives (its directive table) is reported lost, not left to fail validation.
  fitToTarget(result.spec as unknown as Record<string, unknown>, result.findings);
  const findings: Finding[] = [
    ...inlined.map(({ node, files }): Finding => ({
      kind: "converted",
      file: node.file,
      line: node.line,
      column: node.column,
      directive: "include",
      message: `include ${node.args[0]}: ${files.length ? `inlined ${files.length} file${files.length === 1 ? "" : "s"} (${files.join(", ")})` : "matched no file"}`,
    })),
    ...missing.map(({ require: r, tried }): Finding => ({
      kind: "todo",
      file: r.source.file,
      line: r.token.line,
      column: r.token.column,
      message: `require "${r.name}": module not found (tried ${tried.length ? tried.join(", ") : "no paths: no lua_package_path"}), so its code was not read; what migrate inferred from the rest may miss what it does (pass --lua-path DIR to include it)`,
    })),
    ...unbraced.changed.map((d): Finding => ({
      kind: "converted",
      file: d.file,
      line: d.line,
      directive: d.directive,
      message: `${d.directive} ${d.args.join(" ")}: \${name} written $name (the same variable to nginx; the spec does not take "\${")`,
    })),
    ...result.findings,
    // What `gen-lb lint` says of the old config: the user sees what the old setup got wrong, beside what changed.
    ...lintParsed(parsed).map((l): Finding => ({ kind: "lint", file: l.file, line: l.line, message: `[${l.severity}] ${l.id}: ${l.message}; fix: ${l.fix}` })),
  ];
  const luaFiles = [...new Set(sources.filter((s) => s.directive === undefined || !s.directive.directive.endsWith("_block")).map((s) => s.file))];
  return { spec: result.spec, findings, tree, files: [...parsed.config.map((c) => c.file), ...luaFiles.filter((f) => !parsed.config.some((c) => c.file === f))] };
}

/**
 * The spec as YAML, with a header that points at the report. A huge spec is
 * written in YAML's JSON-compatible style (the YAML serializer needs minutes
 * for a spec migrated from a 50 MB config); `asJson` writes plain JSON, no
 * header, for --out *.json.
 */
export function specYaml(m: Migration, source: string, asJson = false): string {
  const json = JSON.stringify(m.spec, null, 2);
  if (asJson) return json + "\n";
  const counts = (k: Finding["kind"]) => m.findings.filter((f) => f.kind === k).length;
  const header = [
    `# gen-lb spec migrated from ${source} by \`gen-lb migrate\`.`,
    `# Review the migration report: ${counts("todo")} to-do item(s), ${counts("lost")} thing(s) not carried,`,
    `# ${counts("defect")} defect finding(s) in the old setup. Then: gen-lb build && gen-lb check.`,
    "",
  ].join("\n");
  return header + (json.length > 2 * 1024 * 1024 ? json + "\n" : stringify(m.spec, { lineWidth: 0 }));
}
