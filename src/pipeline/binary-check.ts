/**
 * What the spec asks of the binary that its `-V` says it cannot do, found
 * before `nginx -t` (check and install, which read -V): HTTP/2 on a binary
 * built without ngx_http_v2_module. Each refusal names the spec key and its
 * file:line. `build` reads no binary, so it cannot know this; it judges only
 * by the target's directive table (src/pipeline/directive-check.ts).
 */
import { RejectedError } from "../errors.js";
import { describeTarget, type TargetInfo } from "../target/index.js";
import type { PreparedSpec } from "./prepare.js";

/** [spec path, message] for each setting `bin` cannot run. */
export function binaryLacks(spec: PreparedSpec["spec"], bin: string, info: TargetInfo): Array<[string, string]> {
  if (info.http2) return [];
  return spec.servers.flatMap((s, i): Array<[string, string]> =>
    s.http2 ? [[`servers[${i}].http2`, `${bin} is ${describeTarget(info)}, built without ngx_http_v2_module (its -V has no --with-http_v2_module), so nginx -t refuses HTTP/2: remove http2: true, or run a binary built with it`]] : [],
  );
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
