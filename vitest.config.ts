import { defineConfig } from "vitest/config";

/**
 * Two projects:
 * - unit: pure code (spec, plan, render, parser, migrate's converter, check's
 *   message parsing); no nginx, no network, no built CLI. Seconds.
 * - e2e: everything that starts the real binary, backends on loopback, the
 *   Consul stand-in or the built CLI. `.ci/run` runs it once per binary of
 *   the test matrix (test/support/target.ts).
 * `npx vitest run` runs both against the default binary (Debian's nginx).
 */
const UNIT = [
  "test/check/units.test.ts",
  "test/migrate/migrate.test.ts",
  "test/parser/large.test.ts",
  "test/parser/lua-lexer.test.ts",
  "test/parser/parse.test.ts",
  "test/parser/tokenize.test.ts",
  "test/render/plan.test.ts",
  "test/spec/reference.test.ts",
  "test/spec/validate.test.ts",
  "test/target/*.test.ts",
];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default"],
    projects: [
      {
        extends: true,
        // Its own group, first: vitest runs projects with different maxWorkers in separate groups.
        test: { name: "unit", include: UNIT, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: {
          name: "e2e",
          include: ["test/**/*.test.ts"],
          exclude: UNIT,
          globalSetup: ["test/support/global-setup.ts"],
          // End-to-end files start real nginx masters and backends; two at a
          // time is what a 2-core machine carries without starving timers.
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
