/**
 * The runtime config contract, both sides: plan's config parses with the
 * zod schema (src/contract/runtime-config.ts), the Lua runtime's own check
 * (runtime/gen_lb/config_check.lua, run by LuaJIT) accepts what render
 * writes, names every field the schema requires when it is missing, and
 * declares no field the schema does not have, with the same fields
 * optional on both sides; and the runtime's modules
 * read no field the check does not declare (a typo there would read nil,
 * which no check at init can see).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { runtimeConfigSchema, type RuntimeConfig } from "../../src/contract/runtime-config.js";
import { planBuild } from "../../src/pipeline/plan.js";
import { luaLiteral } from "../../src/render/quote.js";
import { validateSpecText } from "../../src/pipeline/validate.js";

const examplesDir = new URL("../../fixtures/examples/", import.meta.url);
const runtimeDir = fileURLToPath(new URL("../../runtime/gen_lb/", import.meta.url));
const checkSource = path.join(runtimeDir, "config_check.lua");
const examples = readdirSync(examplesDir).filter((f) => /\.ya?ml$/.test(f)).sort();

if (spawnSync("luajit", ["-v"]).error) throw new Error("luajit is not installed (apt-get install luajit)");

function configOf(file: string): RuntimeConfig {
  const r = validateSpecText(readFileSync(new URL(file, examplesDir), "utf8"), file);
  if (!r.spec) throw new Error(r.errors.map((e) => e.message).join("\n"));
  return planBuild(r.spec, { specFile: file, generator: "gen-lb test" }).luaConfig;
}

/** Runs `lua` (a chunk that may use `check` and `config`) in LuaJIT against `config`; its stdout. */
function runLua(config: unknown, lua: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gen-lb-contract-"));
  mkdirSync(path.join(dir, "gen_lb"));
  writeFileSync(path.join(dir, "gen_lb/config_check.lua"), readFileSync(checkSource));
  writeFileSync(path.join(dir, "gen_lb/config.lua"), `return ${luaLiteral(config)}\n`);
  const prelude = `package.path = ${JSON.stringify(`${dir}/?.lua;`)} .. package.path; local check = require("gen_lb.config_check"); local config = require("gen_lb.config");`;
  const r = spawnSync("luajit", ["-e", `${prelude} ${lua}`], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`luajit: ${r.stderr}`);
  return r.stdout;
}

const luaCheck = (config: unknown) => runLua(config, `local ok, err = check.check(config) io.write(ok and "ok" or err)`);

/** Dotted paths of the required fields present in `value`, per the schema. */
function requiredPaths(schema: z.ZodType, value: unknown, at: string): string[] {
  const def = (schema as unknown as { def: { type: string; shape?: Record<string, z.ZodType>; element?: z.ZodType; valueType?: z.ZodType; innerType?: z.ZodType } }).def;
  const join = (k: string) => (at === "" ? k : `${at}.${k}`);
  if (def.type === "object" && value && typeof value === "object") {
    return Object.entries(def.shape!).flatMap(([k, s]) => {
      const optional = (s as unknown as { def: { type: string } }).def.type === "optional";
      const v = (value as Record<string, unknown>)[k];
      const inner = optional ? (s as unknown as { def: { innerType: z.ZodType } }).def.innerType : s;
      return [...(optional ? [] : [join(k)]), ...(v === undefined ? [] : requiredPaths(inner, v, join(k)))];
    });
  }
  if (def.type === "array" && Array.isArray(value)) return value.flatMap((v, i) => requiredPaths(def.element!, v, `${at}[${i}]`));
  if (def.type === "record" && value && typeof value === "object") {
    return Object.entries(value).flatMap(([k, v]) => requiredPaths(def.valueType!, v, join(k)));
  }
  return [];
}

/** Every leaf of the Lua SHAPE, as dotted paths ("*" for map values, "[]" for array items). */
function shapeLeaves(): string[] {
  const out = runLua(
    {},
    `local function walk(s, at, out) for k, v in pairs(s) do if k ~= "_optional" then
       local p = (k == "_each" and at .. "[]") or (k == "_values" and at .. ".*") or (at == "" and k or at .. "." .. k)
       if type(v) == "table" then walk(v, p, out) else out[#out + 1] = p end end end end
     local out = {} walk(check.SHAPE, "", out) table.sort(out) io.write(table.concat(out, "\\n"))`,
  );
  return out.split("\n").map((l) => l.replace(/\.\*\.\*/g, ".*"));
}

/** The paths the Lua SHAPE lets be absent (a "?" leaf, an _optional table). */
function luaOptionalPaths(): string[] {
  const out = runLua(
    {},
    `local function walk(s, at, out) for k, v in pairs(s) do if k ~= "_optional" then
       local p = (k == "_each" and at .. "[]") or (k == "_values" and at .. ".*") or (at == "" and k or at .. "." .. k)
       if type(v) == "table" then if v._optional then out[#out + 1] = p end walk(v, p, out)
       elseif v:sub(-1) == "?" then out[#out + 1] = p end end end end
     local out = {} walk(check.SHAPE, "", out) table.sort(out) io.write(table.concat(out, "\\n"))`,
  );
  return out.split("\n").map((l) => l.replace(/\.\*\.\*/g, ".*"));
}

/** The paths the zod schema lets be absent. */
function zodOptionalPaths(schema: z.ZodType, at: string): string[] {
  const def = (schema as unknown as { def: { type: string; shape?: Record<string, z.ZodType>; element?: z.ZodType; valueType?: z.ZodType; innerType?: z.ZodType } }).def;
  if (def.type === "optional") return [at, ...zodOptionalPaths(def.innerType!, at)];
  if (def.type === "object") return Object.entries(def.shape!).flatMap(([k, s]) => zodOptionalPaths(s, at === "" ? k : `${at}.${k}`));
  if (def.type === "array") return zodOptionalPaths(def.element!, `${at}[]`);
  if (def.type === "record") return zodOptionalPaths(def.valueType!, `${at}.*`);
  return [];
}

function without(config: unknown, dotted: string): unknown {
  const copy = structuredClone(config) as Record<string, unknown>;
  const keys = dotted.split(/\.|\[(\d+)\]/).filter((k) => k !== undefined && k !== "");
  let node: Record<string, unknown> = copy;
  for (const k of keys.slice(0, -1)) node = node[k] as Record<string, unknown>;
  delete node[keys[keys.length - 1]!];
  return copy;
}

describe("runtime config contract", () => {
  it("has examples with active and passive checks, a token and fallback peers", () => {
    const c = configOf("basic.yaml");
    const up = Object.values(c.upstreams)[0]!;
    expect(up.healthcheck.active).toBeDefined();
    expect(up.healthcheck.passive).toBeDefined();
    expect(c.consul.token_env).toBeDefined();
  });

  it.each(examples)("%s: plan's config parses with the schema and passes the Lua check", (file) => {
    const c = configOf(file);
    expect(runtimeConfigSchema.parse(c)).toEqual(c);
    expect(luaCheck({ ...c, build_id: "x", generator: "gen-lb test" })).toBe("ok");
  });

  it.each(examples)("%s: the Lua check names every required field when it is missing", (file) => {
    const c = { ...configOf(file), build_id: "x", generator: "gen-lb test" };
    const paths = requiredPaths(runtimeConfigSchema, c, "").concat(["build_id", "generator"]);
    expect(paths.some((p) => /^upstreams\.[^.]+\.healthcheck\.active\.valid_statuses$/.test(p))).toBe(true);
    for (const p of paths) {
      // An empty array renders as {} either way; its absence is what counts.
      expect(luaCheck(without(c, p)), p).toMatch(new RegExp(`^${p.replace(/[.[\]]/g, "\\$&")} is missing`));
    }
  });

  it("the Lua check declares no field the schema does not have", () => {
    const luaLeaves = shapeLeaves();
    const zodLeaves = (schema: z.ZodType, at: string): string[] => {
      const def = (schema as unknown as { def: { type: string; shape?: Record<string, z.ZodType>; element?: z.ZodType; valueType?: z.ZodType; innerType?: z.ZodType } }).def;
      if (def.type === "optional") return zodLeaves(def.innerType!, at);
      if (def.type === "object") return Object.entries(def.shape!).flatMap(([k, s]) => zodLeaves(s, at === "" ? k : `${at}.${k}`));
      if (def.type === "array") return zodLeaves(def.element!, `${at}[]`);
      if (def.type === "record") return zodLeaves(def.valueType!, `${at}.*`);
      return [at];
    };
    const schemaLeaves = new Set([...zodLeaves(runtimeConfigSchema, ""), "build_id", "generator"]);
    expect(luaLeaves.filter((l) => !schemaLeaves.has(l))).toEqual([]);
    expect([...schemaLeaves].filter((l) => !luaLeaves.includes(l))).toEqual([]);
  });

  it("a field is optional on both sides or on neither", () => {
    // A field the schema lets be absent but the Lua check requires would pass
    // every example as long as plan happens to emit it.
    expect(luaOptionalPaths()).toEqual(zodOptionalPaths(runtimeConfigSchema, "").sort());
  });

  it("the runtime reads no config field the check does not declare (config.X.Y chains, and `up.X` of an upstream's config)", () => {
    const leaves = shapeLeaves();
    // What a direct chain may name: a leaf or a table on the way to one.
    const declared = new Set(leaves.flatMap((l) => l.replace(/\[\]/g, "").split(".").map((_, i, parts) => parts.slice(0, i + 1).join("."))));
    // `up` is the runtime's name for one upstream's config, of any kind.
    const upstreamFields = new Set(leaves.filter((l) => /^(upstreams|static_upstreams|dns_upstreams)\.\*\./.test(l)).map((l) => l.split(".")[2]!.replace(/\[\]$/, "")));
    const undeclared: string[] = [];
    for (const file of readdirSync(runtimeDir).filter((f) => f.endsWith(".lua"))) {
      const code = readFileSync(path.join(runtimeDir, file), "utf8").replace(/--.*$/gm, "");
      for (const m of code.matchAll(/(?<![./\w])config((?:\.[a-z_]+)+)/g)) {
        const chain = m[1]!.slice(1);
        if (!declared.has(chain)) undeclared.push(`${file}: config.${chain}`);
      }
      for (const m of code.matchAll(/(?<![.\w])up\.([a-z_]+)/g)) {
        if (!upstreamFields.has(m[1]!)) undeclared.push(`${file}: up.${m[1]} (rename the local if it is not an upstream's config)`);
      }
    }
    expect(undeclared).toEqual([]);
  });

  it("the runtime gives no required config field an `or` fallback (defaults live in the spec schema)", () => {
    const optional = new Set(luaOptionalPaths());
    // `up.X` is an upstream's config of any kind: optional in one kind is enough.
    const upOptional = new Set([...optional].flatMap((p) => /^(?:upstreams|static_upstreams|dns_upstreams)\.\*\.([a-z_]+)$/.exec(p)?.[1] ?? []));
    const fallbacks: string[] = [];
    // `a == config.x or b` is logic, not a fallback: a comparison's operand is left out.
    const compared = (code: string, at: number) => /(?:[=~<>]=|[<>]|\bnot)\s*$/.test(code.slice(Math.max(0, at - 8), at));
    for (const file of readdirSync(runtimeDir).filter((f) => f.endsWith(".lua"))) {
      const code = readFileSync(path.join(runtimeDir, file), "utf8").replace(/--.*$/gm, "");
      for (const m of code.matchAll(/(?<![./\w])config((?:\.[a-z_]+)+)\s+or\b/g)) {
        if (!optional.has(m[1]!.slice(1)) && !compared(code, m.index)) fallbacks.push(`${file}: config${m[1]} or ...`);
      }
      for (const m of code.matchAll(/(?<![.\w])up\.([a-z_]+)\s+or\b/g)) {
        if (!upOptional.has(m[1]!) && !compared(code, m.index)) fallbacks.push(`${file}: up.${m[1]} or ...`);
      }
    }
    expect(fallbacks).toEqual([]);
  });
});
