import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fsLoader } from "../../src/nginx/load.js";
import { parseConfig, parseString } from "../../src/nginx/parse.js";
import { print, quoteArg } from "../../src/nginx/print.js";
import { tokenize } from "../../src/nginx/tokenize.js";
import { fixtureFiles, fixtures, readFixture, shape } from "./helpers.js";

const NGINX = "/usr/sbin/nginx";
const scratch = mkdtempSync(path.join(tmpdir(), "gen-lb-print-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Every fixture that parses cleanly on its own (the malformed ones exist to fail). */
const parsable = [
  ...fixtureFiles("valid"),
  ...fixtureFiles("includes"),
  ...fixtureFiles("include-missing"),
  ...fixtureFiles("include-cycle"),
];

describe("round trip: parse -> print -> parse", () => {
  for (const rel of parsable) {
    it(rel, () => {
      const first = parseString(readFixture(rel), rel);
      expect(first.errors).toEqual([]);
      const printed = print(first.parsed);
      const second = parseString(printed, rel);
      expect(second.errors).toEqual([]);
      expect(shape(second.parsed)).toEqual(shape(first.parsed));
      // Printing is stable: the printed text prints back to itself.
      expect(print(second.parsed)).toBe(printed);
    });
  }

  it("keeps a trailing comment on its directive's line", () => {
    const text = "a 1; # one\nb {\n    c; #two\n}\n";
    expect(print(parseString(text, "t").parsed)).toBe(text);
  });
});

/** A small deterministic PRNG (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = ["a", "$", "{", "}", ";", '"', "'", "\\", " ", "\t", "\n", "\r", "#", "(", ")", "t", "n", "r", "x", "é"];

function randomValue(next: () => number): string {
  const len = Math.floor(next() * 9);
  let s = "";
  for (let i = 0; i < len; i++) s += ALPHABET[Math.floor(next() * ALPHABET.length)];
  return s;
}

describe("quoteArg", () => {
  it("quotes only when needed", () => {
    expect(quoteArg("plain")).toBe("plain");
    expect(quoteArg("${host}:$port")).toBe("${host}:$port");
    expect(quoteArg("^/(\\d+)$")).toBe("^/(\\d+)$");
    expect(quoteArg("a}b")).toBe("a}b");
    expect(quoteArg("")).toBe('""');
    expect(quoteArg("a b")).toBe('"a b"');
    expect(quoteArg("^/(a|b){2}$")).toBe('"^/(a|b){2}$"');
    expect(quoteArg('say "hi"')).toBe(`'say "hi"'`);
    expect(quoteArg(`it's "x"`)).toBe(`"it's \\"x\\""`);
    expect(quoteArg("line\nbreak")).toBe('"line\\nbreak"');
    expect(quoteArg("#x")).toBe('"#x"');
    expect(quoteArg("end\\")).toBe("end\\\\");
  });

  it("every value reads back as itself (20,000 random values)", () => {
    const next = rng(6);
    for (let i = 0; i < 20_000; i++) {
      const v = randomValue(next);
      const q = quoteArg(v);
      const toks = tokenize(`d ${q};`);
      expect(toks.map((t) => t.value), JSON.stringify({ v, q })).toEqual(["d", v, ""]);
    }
  });

  it("if conditions read back as themselves (5,000 random argument lists)", () => {
    const next = rng(7);
    for (let i = 0; i < 5_000; i++) {
      const args = Array.from({ length: 1 + Math.floor(next() * 3) }, () => randomValue(next));
      const text = print([{ directive: "if", args, block: [] }]);
      const r = parseString(text, "if.conf");
      expect(r.errors, text).toEqual([]);
      expect(r.parsed[0]?.args, text).toEqual(args);
    }
  });
});

describe("printed configs pass the real nginx -t", () => {
  function nginxTest(prefix: string): string {
    mkdirSync(path.join(prefix, "logs"), { recursive: true });
    // -t prints its verdict on stderr; execFileSync throws (with that output) if it fails.
    return execFileSync(NGINX, ["-t", "-q", "-e", "stderr", "-p", prefix + "/", "-c", "conf/nginx.conf"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  }

  it("valid/openresty.conf (Lua blocks, map, if, quoted regexes), before and after printing", () => {
    const original = readFixture("valid/openresty.conf");
    for (const [name, text] of [
      ["original", original],
      ["printed", print(parseString(original, "openresty.conf").parsed)],
    ] as const) {
      const prefix = path.join(scratch, name);
      mkdirSync(path.join(prefix, "conf"), { recursive: true });
      writeFileSync(path.join(prefix, "conf/nginx.conf"), text);
      expect(() => nginxTest(prefix), name).not.toThrow();
    }
  });

  it("the include fixture, every file printed in place", () => {
    const main = path.join(fixtures, "includes/nginx.conf");
    const r = parseConfig(main, fsLoader());
    expect(r.errors).toEqual([]);
    const prefix = path.join(scratch, "includes");
    for (const cf of r.config) {
      const target = path.join(prefix, "conf", path.relative(path.dirname(main), cf.file));
      mkdirSync(path.dirname(target), { recursive: true });
      writeFileSync(target, print(cf.parsed));
    }
    expect(() => nginxTest(prefix)).not.toThrow();
  });
});
