import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { formatDiagnostic } from "../../src/pipeline/load.js";
import { validateSpecText } from "../../src/pipeline/validate.js";

const basic = readFileSync(new URL("../../fixtures/examples/basic.yaml", import.meta.url), "utf8");

function errorsOf(text: string, file = "gen-lb.yaml"): string[] {
  const r = validateSpecText(text, file);
  expect(r.spec).toBeUndefined();
  return r.errors.map(formatDiagnostic);
}

describe("spec validation", () => {
  it("accepts the basic example and applies defaults", () => {
    const r = validateSpecText(basic, "basic.yaml");
    expect(r.errors).toEqual([]);
    expect(r.spec?.upstreams.web?.balance).toBe("round_robin");
    expect(r.spec?.upstreams.web?.healthcheck.active?.valid_statuses).toEqual([200, 302]);
    expect(r.spec?.consul.empty).toBe("keep");
    expect(r.spec?.nginx.http.include_mime_types).toBe(true);
  });

  it("names the path and line:column of an unknown key, and suggests the fix", () => {
    const errors = errorsOf("upstreams:\n  web:\n    service: web\n    balanse: least_conn\n");
    expect(errors).toEqual([
      'upstreams.web.balanse (gen-lb.yaml:4:5): unknown key "balanse"; check its spelling against `gen-lb schema`',
    ]);
  });

  it("reports every error at once, each with its own position", () => {
    const errors = errorsOf(
      ["upstreams:", "  web:", "    service: web", "    retries: many", "    balance: fastest", "servers:", "  - listen: 99999", ""].join("\n"),
    );
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatch(/^upstreams\.web\.retries \(gen-lb\.yaml:4:5\): expected number, got the string "many"$/);
    expect(errors[1]).toMatch(/^upstreams\.web\.balance \(gen-lb\.yaml:5:5\): expected one of "round_robin", "least_conn", "chash", "random"/);
    expect(errors[2]).toMatch(/^servers\[0\]\.listen \(gen-lb\.yaml:7:5\): /);
  });

  it("points at malformed YAML", () => {
    const errors = errorsOf("upstreams:\n  web: {service: web\n");
    expect(errors[0]).toMatch(/^gen-lb\.yaml:\d+:\d+: invalid YAML: /);
  });

  it("reads JSON with positions too", () => {
    const errors = errorsOf('{\n  "upstreams": {\n    "web": {"service": "web", "keepalive": -1}\n  }\n}\n', "spec.json");
    expect(errors).toEqual([expect.stringMatching(/^upstreams\.web\.keepalive \(spec\.json:3:\d+\): /)]);
  });

  it("rejects an empty spec and a non-mapping spec", () => {
    expect(errorsOf("")).toEqual(["gen-lb.yaml:1:1: the spec is empty; run `gen-lb init` for a starter spec"]);
    expect(errorsOf("- a\n- b\n")[0]).toMatch(/must be a mapping/);
  });

  it("cross-checks upstream references, duplicate listens and hash_key", () => {
    const errors = errorsOf(
      [
        "upstreams:",
        "  web: {service: web, hash_key: $remote_addr}",
        "  sticky: {service: s, balance: chash}",
        "servers:",
        "  - listen: 8080",
        "    locations: [{path: /, upstream: api}, {path: /s, upstream: sticky}]",
        "  - listen: '8080'",
        "status: {listen: 127.0.0.1:8081}",
        "",
      ].join("\n"),
    );
    expect(errors).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^upstreams\.sticky\.balance \(gen-lb\.yaml:3:\d+\): balance "chash" needs a hash_key/),
        expect.stringMatching(/^upstreams\.web\.hash_key \(gen-lb\.yaml:2:\d+\): hash_key is used only by balance "chash"/),
        expect.stringMatching(/^servers\[0\]\.locations\[0\]\.upstream \(gen-lb\.yaml:6:\d+\): unknown upstream "api"; defined upstreams: web, sticky/),
        expect.stringMatching(/^servers\[1\]\.listen \(gen-lb\.yaml:7:5\): listen 8080 is already used by servers\[0\]\.listen/),
      ]),
    );
    expect(errors).toHaveLength(4);
  });

  it("takes fallback peers as \"host:port\" or {address, weight}, and says where a weight is wrong", () => {
    expect(validateSpecText('upstreams:\n  web: {service: web, fallback: ["10.0.0.1:80", {address: "10.0.0.2:80", weight: 3}]}\n', "gen-lb.yaml").errors).toEqual([]);
    expect(errorsOf('upstreams:\n  web:\n    service: web\n    fallback:\n      - {address: "10.0.0.2:80", weight: 0}\n')).toEqual([
      expect.stringMatching(/^upstreams\.web\.fallback\[0\]/),
    ]);
  });

  it("runs no log phase for an upstream that needs none, so the user's log_by_lua is allowed there", () => {
    const text = (extra: string) =>
      `upstreams: {web: {service: web${extra}}}\nnginx: {http: {directives: [{name: log_by_lua_file, args: [a.lua]}]}}\nservers: [{listen: 8080, locations: [{path: /, upstream: web}]}]\n`;
    expect(validateSpecText(text(""), "gen-lb.yaml").errors).toEqual([]);
    for (const extra of [", counters: true", ", balance: least_conn", ", healthcheck: {passive: {}}"]) {
      expect(errorsOf(text(extra)), extra).toEqual([expect.stringMatching(/log_by_lua_file cannot be used where gen-lb proxies to an upstream that needs its log phase/)]);
    }
  });

  it("rejects a body_filter_by_lua of the user's where passive checks run gen-lb's own, and only there", () => {
    const text = (extra: string) =>
      `upstreams: {web: {service: web${extra}}}\nservers: [{listen: 8080, directives: [{name: body_filter_by_lua, args: [f()]}], locations: [{path: /, upstream: web}]}]\n`;
    for (const extra of ["", ", counters: true", ", balance: least_conn"]) expect(validateSpecText(text(extra), "gen-lb.yaml").errors, extra).toEqual([]);
    expect(errorsOf(text(", healthcheck: {passive: {}}"))).toEqual([
      expect.stringMatching(/^servers\[0\]\.directives\[0\]\.name \(gen-lb\.yaml:2:\d+\): body_filter_by_lua cannot be used where gen-lb proxies to upstream "web": gen-lb runs its own body_filter_by_lua there/),
    ]);
  });

  it("rejects a log_by_lua of the user's where gen-lb runs its own, and only there", () => {
    const errors = errorsOf(
      [
        "upstreams: {web: {service: web, counters: true}}",
        "nginx: {http: {directives: [{name: log_by_lua_file, args: [a.lua]}]}}",
        "servers:",
        "  - listen: 8080",
        "    locations:",
        "      - path: /",
        "        upstream: web",
        "        directives: [{name: if, args: [$x], block: [{name: log_by_lua, args: [x()]}]}]",
        "  - listen: 8081",
        "    directives: [{name: log_by_lua_block, args: [y()]}]",
        "    locations: [{path: /, root: html}]",
        "",
      ].join("\n"),
    );
    expect(errors).toEqual([
      expect.stringMatching(/^nginx\.http\.directives\[0\]\.name \(gen-lb\.yaml:2:\d+\): log_by_lua_file cannot be used where gen-lb proxies to an upstream/),
      expect.stringMatching(/^servers\[0\]\.locations\[0\]\.directives\[0\]\.block\[0\]\.name \(gen-lb\.yaml:8:\d+\): log_by_lua cannot be used/),
    ]);
  });

  it.each([
    ["a newline", '"a\\nb"'],
    ["${", '"x${y}"'],
    ["]]", '"a]]b"'],
    ["a tab", '"a\\tb"'],
  ])("rejects %s in free text that reaches nginx or Lua", (_what, value) => {
    const errors = errorsOf(`servers:\n  - listen: 8080\n    server_name: [${value}]\n`);
    expect(errors).toEqual([expect.stringMatching(/^servers\[0\]\.server_name\[0\] \(gen-lb\.yaml:3:\d+\): a server name must not contain control characters/)]);
  });

  it("rejects names that become identifiers unless they are plain", () => {
    expect(errorsOf('upstreams:\n  "we b;": {service: web}\n')).toEqual([
      'upstreams.we b; (gen-lb.yaml:2:3): an upstream name may use only letters, digits, "_", "." and "-" (and not start with "." or "-") (got "we b;")',
    ]);
    expect(errorsOf('upstreams:\n  web: {service: "x}y"}\n')).toEqual([
      expect.stringMatching(/^upstreams\.web\.service \(gen-lb\.yaml:2:\d+\): a Consul service name may use only letters/),
    ]);
  });

  it("warns, without failing, about an upstream no location uses", () => {
    const r = validateSpecText("upstreams:\n  idle: {service: idle}\n", "gen-lb.yaml");
    expect(r.errors).toEqual([]);
    expect(r.warnings.map(formatDiagnostic)).toEqual([expect.stringMatching(/^upstreams\.idle \(gen-lb\.yaml:2:3\): upstream "idle" is not used/)]);
  });
});
