import { defineConfig } from "vitest/config";

// Two projects, told apart by the file name:
// - unit: test/**/*.unit.test.ts, pure code (spec, plan, render, parser,
//   migrate's converter, check's message parsing): no nginx or OpenResty, no
//   network (loopback included), no built CLI, no child process (luajit
//   included). Seconds; `.ci/run` runs it once.
// - e2e: every other test/**/*.test.ts: whatever starts the real binary,
//   backends on loopback, the Consul stand-in, luajit or the built CLI.
//   `.ci/run` runs it once per binary of the test matrix (test/support/target.ts).
// test/support/test-files.unit.test.ts keeps the rule: it fails for a
// .unit.test.ts file that reaches for any of those, and for a plain .test.ts
// file that reaches for none (rename it to .unit.test.ts).
// `npx vitest run` runs both against the default binary (Debian's nginx).
const UNIT = ["test/**/*.unit.test.ts"];

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
          // Every e2e file runs on both legs of .ci/run; a test whose subject is one binary names it.
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
