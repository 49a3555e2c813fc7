import { readFileSync, writeFileSync } from "node:fs";
import { expect, it } from "vitest";
import { specJsonSchema } from "../../src/spec/json-schema.js";
import { specReference } from "../../src/spec/reference.js";

const README = new URL("../../README.md", import.meta.url);
const START = "<!-- spec-reference:start (generated from the schema; UPDATE_README=1 npx vitest run test/spec/reference.unit.test.ts) -->\n";
const END = "<!-- spec-reference:end -->";

it("the README's spec reference is generated from the schema and in step with it", () => {
  const readme = readFileSync(README, "utf8");
  const table = specReference(specJsonSchema() as Parameters<typeof specReference>[0]);
  expect(table).toContain("| `upstreams.<name>.balance` |");
  expect(table).toContain("| `servers[].locations[].upstream` |");
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  expect(start, "README lacks the spec-reference markers").toBeGreaterThan(0);
  const current = readme.slice(start + START.length, end);
  if (process.env.UPDATE_README === "1") writeFileSync(README, readme.slice(0, start + START.length) + table + readme.slice(end));
  else expect(current).toBe(table);
});
