/**
 * What the spec asks of the binary that its `-V` says it cannot do, found
 * before `nginx -t` (check and install, which read -V): HTTP/2 on a binary
 * built without ngx_http_v2_module, and any directive gen-lb emits or the
 * spec carries whose every defining module the binary was built without
 * (src/target/modules.ts reads that from -V; the directive table says which
 * module defines what, and which flag a module its reference build left out
 * needs). Each refusal names the spec key and its file:line. `build` reads
 * no binary, so it cannot know this; it judges only by the target's
 * directive table (src/pipeline/directive-check.ts) and warns about what
 * that table's reference build lacks.
 */
import { RejectedError } from "../errors.js";
import { loadDirectiveTable } from "../nginx/directives.js";
import { describeTarget, type TargetInfo } from "../target/index.js";
import { lacksEvery } from "../target/modules.js";
import { checkDirectives } from "./directive-check.js";
import { formatPath } from "./load.js";
import { planBuild } from "./plan.js";
import type { PreparedSpec } from "./prepare.js";

/** [spec path, message] for each setting `bin` cannot run. */
export function binaryLacks(spec: PreparedSpec["spec"], bin: string, info: TargetInfo): Array<[string, string]> {
  const out: Array<[string, string]> = info.http2
    ? []
    : spec.servers.flatMap((s, i): Array<[string, string]> =>
        s.http2 ? [[`servers[${i}].http2`, `${bin} is ${describeTarget(info)}, built without ngx_http_v2_module (its -V has no --with-http_v2_module), so nginx -t refuses HTTP/2: remove http2: true, or run a binary built with it`]] : [],
      );
  const seen = new Set(out.map(([p]) => p));
  let model;
  try {
    // rendered as check renders it: for the version -V shows unless the spec names one
    model = planBuild(spec.target_version === undefined ? { ...spec, target_version: info.version } : spec, { specFile: "spec", generator: "gen-lb" });
  } catch {
    return out; // render reports what plan cannot do
  }
  const table = loadDirectiveTable(spec.target);
  checkDirectives(spec, model, () => {}, {
    table,
    visit: ({ directive, at, fromSpec, fits }) => {
      const p = formatPath(at.at(-1) === "name" ? at.slice(0, -1) : at);
      if (seen.has(p)) return;
      const why = lacksEvery(info.configure, fits.map((f) => ({ module: f.module, needs: f.needs ?? table.modules[f.module]?.needs })));
      if (!why) return;
      seen.add(p);
      const fix = fromSpec ? "remove it" : "remove the setting that makes gen-lb emit it";
      out.push([p, `${bin} is ${describeTarget(info)}, ${why.join(" and ")}, so nginx -t refuses "${directive.name}": ${fix}, or run a binary built with it`]);
    },
  });
  return out;
}

/** The refusal for what `bin` lacks, or undefined; `suffix` ends the headline ("; nothing was installed"). */
export function binaryRefusal(prepared: PreparedSpec, bin: string, info: TargetInfo | undefined, suffix = ""): RejectedError | undefined {
  const lacks = info ? binaryLacks(prepared.spec, bin, info) : [];
  if (lacks.length === 0) return undefined;
  const errors = lacks.map(([p, message]) => ({ path: p, at: prepared.locate(p), message }));
  return new RejectedError(
    `${prepared.file}: ${lacks.length} setting${lacks.length === 1 ? "" : "s"} ${bin} cannot run${suffix}`,
    errors.map((e) => `${e.path}${e.at ? ` (${e.at})` : ""}: ${e.message}`),
    { bin, errors },
  );
}

/** The spec's warnings once `info` (a binary's -V) is known: what the directive table's reference build lacks is then that binary's to judge. */
export function warningsFor<W extends { needsBuildFlag?: true }>(warnings: readonly W[], info: TargetInfo | undefined): W[] {
  return info ? warnings.filter((w) => !w.needsBuildFlag) : [...warnings];
}
