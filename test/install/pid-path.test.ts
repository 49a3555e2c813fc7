/**
 * A hand-written nginx.conf with no `pid` line: the master writes the pid
 * file compiled into the binary (Debian's nginx: /run/nginx.pid; OpenResty:
 * PREFIX/logs/nginx.pid), and install --reload must find it there, yet
 * signal only a master that runs this prefix.
 *
 * /run is the host's: each case runs in its own mount namespace (unshare)
 * with a private tmpfs on /run, so no other nginx on the machine, nor its
 * /run/nginx.pid, is seen or touched. Loopback is shared, so the test
 * process talks to the masters directly.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CLI, MATRIX_PATH } from "../support/cli.js";
import { NGINX_BIN, tempDir } from "../support/nginx.js";
import { waitFor } from "../support/ports.js";
import { TEST_TARGET } from "../support/target.js";
import { body, makePrefix, ports, type Ports, specObject, writeSpec } from "./helpers.js";

const masters: number[] = [];
afterAll(() => {
  for (const pid of masters) {
    try {
      process.kill(pid, "SIGQUIT");
    } catch {
      /* gone */
    }
  }
});

/** Where this binary's master writes its pid when the config has no `pid` (its -V). */
const pidFileOf = (prefix: string) => (TEST_TARGET === "nginx" ? "/run/nginx.pid" : path.join(prefix, "logs/nginx.pid"));

function handWritten(prefix: string, p: Ports): void {
  writeFileSync(path.join(prefix, "conf/nginx.conf"), `error_log logs/error.log;\nevents {}\nhttp {\n  server { listen 127.0.0.1:${p.http}; return 200 "site"; }\n}\n`);
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Run `steps` (shell) in a private mount namespace with an empty /run; `gen_lb ARGS` runs the built CLI. */
function inNamespace(steps: string): { status: number; out: string } {
  const script = [
    "set -u",
    "mount -t tmpfs -o size=1m tmpfs /run",
    `gen_lb() { ${q(process.execPath)} ${q(CLI)} "$@"; echo "::rc $?"; }`,
    `master() { ${q(NGINX_BIN)} -p "$1/" -c conf/nginx.conf || echo "::start-failed $1"; for i in 1 2 3 4 5 6 7 8 9 10; do [ -s "$2" ] && break; sleep 0.1; done; echo "::master $(cat "$2")"; }`,
    steps,
  ].join("\n");
  const r = spawnSync("unshare", ["--mount", "--propagation", "private", "sh", "-c", script], {
    encoding: "utf8",
    env: { PATH: MATRIX_PATH, HOME: process.env.HOME ?? "/root" },
    timeout: 120_000,
  });
  if (r.error) throw new Error(`unshare (util-linux) is needed to give the test its own /run: ${r.error.message}`);
  const out = `${r.stdout}${r.stderr}`;
  for (const m of out.matchAll(/^::master (\d+)$/gm)) masters.push(Number(m[1]));
  return { status: r.status ?? -1, out };
}


describe("install --reload with a live config that sets no pid", () => {
  it("finds the master through the binary's compiled-in pid path and reloads it; a master of another prefix there is refused, unsignalled", async () => {
    const dir = tempDir();
    const mine = makePrefix();
    const other = makePrefix();
    const pm = await ports();
    const po = await ports();
    handWritten(mine, pm);
    handWritten(other, po);
    const spec = writeSpec(dir, "lb.json", specObject(pm, "gen-lb"));
    const install = `gen_lb install --prefix ${q(mine)} --spec ${q(spec)} --bin ${q(NGINX_BIN)} --reload`;

    // Only the other prefix's nginx runs, and its pid file is the one this prefix's master would write.
    const refused = inNamespace([`master ${q(other)} ${q(pidFileOf(other))}`, TEST_TARGET === "nginx" ? install : `echo "::skip"`].join("\n"));
    expect(refused.out).not.toContain("::start-failed");
    if (TEST_TARGET === "nginx") {
      const otherPid = /^::master (\d+)$/m.exec(refused.out)![1];
      expect(refused.out).toContain("::rc 1");
      expect(refused.out).toContain(`gen-lb: cannot --reload: the pid file /run/nginx.pid names pid ${otherPid}, an nginx master that runs ${other}/conf/nginx.conf`);
      expect(refused.out).toContain("nothing was signalled");
      expect(await body(po)).toBe("site");
    }

    // This prefix's own master: found where its binary writes the pid, reloaded, serving gen-lb's config.
    const ok = inNamespace([`master ${q(mine)} ${q(pidFileOf(mine))}`, install].join("\n"));
    expect(ok.out).not.toContain("::start-failed");
    expect(ok.out).toContain("::rc 0");
    expect(ok.out).toMatch(/reloaded in \d+ ms: \d new worker\(s\) up; .* serves build [0-9a-f]{16}/);
    await waitFor(async () => (await body(pm)) === "gen-lb", "the installed config serving", 5_000);
  }, 120_000);
});
