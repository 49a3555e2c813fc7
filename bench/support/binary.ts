/**
 * The binary a benchmark runs, and the target its prefix is rendered for:
 *
 *   npx tsx bench/balancer-instructions.ts --bin /opt/openresty/bin/openresty [--target openresty]
 *   BIN=/usr/sbin/nginx TARGET=nginx npx tsx bench/balancer.ts
 *
 * Default: Debian's nginx, target nginx; the target otherwise follows the
 * binary's name. Import this module first: it hands the choice to the test
 * helpers (test/support/target.ts) before they read it.
 */
function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0) return process.argv[i + 1];
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

const bin = arg("bin") ?? process.env.BIN;
const target = arg("target") ?? process.env.TARGET;
if (bin !== undefined) process.env.GEN_LB_TEST_BIN = bin;
if (target !== undefined) process.env.GEN_LB_TEST_TARGET = target;
