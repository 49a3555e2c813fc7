#!/usr/bin/env node
/**
 * The entry: declares commands and options, nothing else. Each action imports
 * its command module lazily (so `gen-lb --version` loads almost nothing), and
 * the one try/catch at the bottom is the only place that sets the exit code.
 */
import { readFileSync } from "node:fs";
import type { Command as CommandType } from "commander";
import { GenLbError } from "./errors.js";
import { processIo, type Io } from "./commands/io.js";

// A reader that goes away (`gen-lb diff | head`) is not an error: stop
// writing, quietly, and end with the command's own exit code.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE" || stream.destroyed) return;
    throw error;
  });
}

// `gen-lb --version` answers before commander is even loaded.
const argv = process.argv.slice(2);
const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
  process.stdout.write(`${pkg.version}\n`);
  process.exit(0);
}
const { Command, CommanderError, Option } = await import("commander");

type Action = (opts: Record<string, unknown>, io: Io, args: string[]) => Promise<void>;

/** Lazily import `./commands/<name>.js` and run its default export. */
function lazy(name: string) {
  return async (...argv: unknown[]) => {
    const cmd = argv[argv.length - 1] as CommandType;
    const opts = { ...cmd.optsWithGlobals() } as Record<string, unknown>;
    const args = cmd.args.slice(0, cmd.registeredArguments.length);
    const io = processIo(Boolean(opts.json));
    const mod = (await import(`./commands/${name}.js`)) as { default: Action };
    await mod.default(opts, io, args);
  };
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function program(): CommandType {
  const p = new Command("gen-lb")
    .description(
      "Generate, validate and install an OpenResty load balancer that discovers its backends from Consul.",
    )
    .version(pkg.version, "-V, --version")
    .option("--json", "machine-readable output on stdout")
    .showHelpAfterError()
    .exitOverride()
    .addHelpText(
      "after",
      `
Examples:
  $ gen-lb init                          write a starter gen-lb.yaml
  $ gen-lb build                         gen-lb.yaml -> dist/ (an nginx prefix)
  $ gen-lb build --check                 exit 1 when dist/ is stale (CI gate)
  $ gen-lb check --prefix /usr/local/openresty/nginx
  $ gen-lb install --prefix /usr/local/openresty/nginx --reload
  $ gen-lb migrate /etc/nginx/nginx.conf --out gen-lb.yaml

Exit codes: 0 ok, 1 spec or config rejected, 2 usage error or crash.`,
    );

  p.command("init")
    .description("write a commented starter spec that builds as is")
    .option("-o, --out <file>", "where to write the spec", "gen-lb.yaml")
    .option("--force", "overwrite an existing file")
    .option("--bin <path>", "the binary the spec is for (default: first of openresty, nginx found); its -V decides the target")
    .action(lazy("init"));

  p.command("build")
    .description("render the spec into an nginx prefix: conf/nginx.conf, lua/gen_lb/*.lua, logs/, state/")
    .option("-s, --spec <file>", "spec file (YAML or JSON)", "gen-lb.yaml")
    .option("-o, --out <dir>", "output prefix directory", "dist")
    .addOption(new Option("-t, --target <target>", "override the spec's target").choices(["openresty", "nginx"]))
    .option("--check", "write nothing; exit 1 with a diff when --out differs from what the spec produces")
    .option("--force", "replace or remove files in --out that gen-lb did not write")
    .action(lazy("build"));

  p.command("schema")
    .description("print the JSON Schema of the spec (for yaml-language-server)")
    .action(lazy("schema"));

  p.command("check")
    .description("validate the generated config with the real binary: -t, Lua syntax, and a real start")
    .option("-s, --spec <file>", "spec file", "gen-lb.yaml")
    .option("--bin <path>", "openresty or nginx binary (default: openresty on PATH, else nginx)")
    .option("--prefix <dir>", "an existing nginx prefix whose files (mime.types...) the check should use")
    .addOption(new Option("-t, --target <target>", "override the spec's target").choices(["openresty", "nginx"]))
    .option("--consul", "ask the spec's Consul about every upstream (the default): service, passing instances, usable addresses, token")
    .option("--no-consul", "skip the Consul preflight")
    .option("--strict", "fail (exit 1) on Consul preflight warnings")
    .action(lazy("check"));

  p.command("install")
    .description("check, then install atomically into an existing prefix, with backup and rollback")
    .requiredOption("--prefix <dir>", "the live nginx prefix (conf/, logs/, html/)")
    .option("-s, --spec <file>", "spec file", "gen-lb.yaml")
    .option("--bin <path>", "openresty or nginx binary")
    .addOption(new Option("-t, --target <target>", "override the spec's target").choices(["openresty", "nginx"]))
    .option("--reload", "signal the running master and verify the new config is live")
    .option("--dry-run", "print the plan and a diff; change nothing")
    .option("--keep <n>", "how many backups to keep", "5")
    .option("--force", "replace files changed by hand since the last install (backed up first)")
    .action(lazy("install"));

  p.command("rollback")
    .description("restore the previous install from its backup")
    .requiredOption("--prefix <dir>", "the live nginx prefix")
    .option("--bin <path>", "openresty or nginx binary that tests (-t) the restored files before --reload signals")
    .option("--reload", "test the restored files, signal the running master and verify the restored build is live")
    .option("--force", "replace files changed by hand since the last install (a copy of them is kept in .gen-lb/)")
    .action(lazy("rollback"));

  p.command("diff")
    .description("show what install would change in a prefix")
    .requiredOption("--prefix <dir>", "the live nginx prefix")
    .option("-s, --spec <file>", "spec file", "gen-lb.yaml")
    .addOption(new Option("-t, --target <target>", "override the spec's target").choices(["openresty", "nginx"]))
    .option("--exit-code", "exit 1 when install would change something (as git diff --exit-code)")
    .option("--no-runtime", "leave the runtime Lua modules (the same for every spec) out of the diff")
    .action(lazy("diff"));

  p.command("parse")
    .description("parse an nginx config (with includes) and print its tree in crossplane's shape")
    .argument("<file>", "nginx.conf to parse")
    .option("--include-comments", "include comments in the tree")
    .option("--single-file", "do not follow include directives")
    .option("--ignore <directive>", "leave this directive out (repeatable)", collect, [])
    .option("--combine", "inline every include into one config")
    .option("--strict", "unknown directives are errors")
    .option("--no-check-ctx", "do not check that each directive is allowed where it is")
    .option("--no-check-args", "do not check each directive's number of arguments")
    .action(lazy("parse"));

  p.command("lint")
    .description("gixy-style checks on an nginx config (FILE, with its includes) or on what the spec renders")
    .argument("[file]", "an existing nginx.conf; without it, the spec's output")
    .option("-s, --spec <file>", "spec file", "gen-lb.yaml")
    .addOption(new Option("-t, --target <target>", "override the spec's target").choices(["openresty", "nginx"]))
    .action(lazy("lint"));

  p.command("migrate")
    .description("turn a hand-written nginx (+ Lua + Consul) setup into a gen-lb spec, with a report")
    .argument("<file>", "the old nginx.conf")
    .option("-o, --out <spec>", "where to write the spec", "gen-lb.yaml")
    .option("--lua-path <dir>", "where to look for Lua modules (repeatable)", collect, [])
    .option("--report <file>", "write the migration report here instead of stdout")
    .option("--verify [kind]", "build the new spec and compare its directive tree with the old config; --verify=traffic also runs both side by side on scratch loopback ports and compares their answers")
    .option("--bin <path>", "the binary the new config will run on: its -V decides the target and which modules and HTTP/2 it has; --verify runs it")
    .option("--prefix <dir>", "the old nginx's prefix, which relative paths in the old config (load_module modules/x.so, lua_package_path $prefix) meant (default: a plain nginx --bin's own; else the parent of the config's conf/ directory)")
    .option("--force", "overwrite --out or --report files that gen-lb did not write")
    .action(lazy("migrate"));

  return p;
}

async function main(argv: string[]): Promise<number> {
  const json = argv.includes("--json");
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end through here too, with exit code 0.
      return error.exitCode === 0 ? 0 : 2;
    }
    if (error instanceof GenLbError) {
      if (json) {
        // The command's own result fields (check's steps, build's diff...) stay
        // top-level beside ok, as on success; the error itself is one more key.
        // a command whose --json output is another tool's document (parse: crossplane's payload) gives it whole
        const doc =
          error.data?.document !== undefined
            ? error.data.document
            : { ok: false, ...error.data, error: { message: error.message, exitCode: error.exitCode, details: error.details } };
        process.stdout.write(JSON.stringify(doc, null, 2) + "\n");
      }
      process.stderr.write(`gen-lb: ${error.message}\n${error.details.map((d) => `  ${d}\n`).join("")}`);
      return error.exitCode;
    }
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`gen-lb: internal error (please report it): ${message}\n`);
    return 2;
  }
}

process.exitCode = await main(process.argv);
