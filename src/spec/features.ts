/**
 * What the target's nginx can do, judged from the spec alone (build is pure:
 * it never runs the binary): its `target_version` when set (check and
 * install fill it from the binary's -V), else the version gen-lb is tested
 * against for the target kind. Rendering choices whose wrong guess breaks
 * `-t` (http2) use the conservative baseline instead (src/target/).
 */
import type { Spec } from "./schema.js";

export type NginxVersion = readonly [major: number, minor: number, patch: number];

/** The nginx core version of the target: OpenResty 1.31 bundles nginx 1.31; "nginx" is Debian's 1.22. */
export function targetNginxVersion(spec: Pick<Spec, "target"> & { target_version?: string | undefined }): NginxVersion {
  if (spec.target_version !== undefined) {
    const [major = 0, minor = 0, patch = 0] = spec.target_version.split(".").map(Number);
    return [major, minor, patch];
  }
  return spec.target === "openresty" ? [1, 31, 1] : [1, 22, 1];
}

function atLeast(v: NginxVersion, want: NginxVersion): boolean {
  for (let i = 0; i < 3; i++) if (v[i] !== want[i]) return v[i]! > want[i]!;
  return true;
}

const show = (v: NginxVersion) => v.join(".");

/** `server ... resolve` in an upstream {} (open-source nginx 1.27.3+): the reason it cannot be used, or undefined. */
export function upstreamResolveUnsupported(spec: Pick<Spec, "target" | "target_version">): string | undefined {
  const v = targetNginxVersion(spec);
  return atLeast(v, [1, 27, 3])
    ? undefined
    : `target "${spec.target}"${spec.target_version ? ` ${spec.target_version}` : ""} is nginx ${show(v)}, and \`server ... resolve\` in an upstream needs nginx 1.27.3 or later (OpenResty 1.31 has it): remove resolve (nginx then resolves the names once at start and on reload)`;
}

/** `discovery: dns` (zone + `server NAME service=... resolve`, the same nginx 1.27.3 feature): the reason it cannot be used, or undefined. */
export function upstreamDnsUnsupported(spec: Pick<Spec, "target">): string | undefined {
  const v = targetNginxVersion(spec);
  return atLeast(v, [1, 27, 3])
    ? undefined
    : `target "${spec.target}" is nginx ${show(v)}, and discovery: dns needs \`server ... service=... resolve\` in an upstream, which nginx has from 1.27.3 (OpenResty 1.31 has it): use discovery: blocking (the default) on this target`;
}

/** Does the target ship lua-upstream-nginx-module (`ngx.upstream`), which the status endpoint reads static peer state from? */
export function hasUpstreamModule(spec: Pick<Spec, "target">): boolean {
  return spec.target === "openresty";
}

/**
 * Does the target ship lua-resty-dns, with which gen-lb's Lua runtime
 * resolves host names (fallback peers, Consul Addresses)? The reason it
 * does not, or undefined.
 */
export function luaDnsUnsupported(spec: Pick<Spec, "target">): string | undefined {
  return spec.target === "openresty" ? undefined : `target "${spec.target}" has no lua-resty-dns (Debian's nginx packages ship none; OpenResty does)`;
}

/** Does the runtime resolve host names (Consul Addresses, fallback peers) for this spec: lua-resty-dns and nginx.http.resolver. */
export function runtimeResolvesNames(spec: Pick<Spec, "target" | "nginx">): boolean {
  return luaDnsUnsupported(spec) === undefined && (spec.nginx.http.resolver?.length ?? 0) > 0;
}
