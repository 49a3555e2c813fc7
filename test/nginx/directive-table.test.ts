/**
 * The generated directive tables agree with the real binaries: every
 * directive the table lists is known to the binary (nginx answers anything
 * but "unknown directive" when it is put where it does not belong), and a
 * few facts the table states (context, argument count, repeat) are what the
 * binary enforces.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadDirectiveTable, type DirectiveTable } from "../../src/nginx/directives.js";
import { tempDir } from "../support/nginx.js";

const TARGETS = [
  { target: "openresty" as const, bin: "/opt/openresty/bin/openresty", modulesDir: undefined },
  { target: "nginx" as const, bin: "/usr/sbin/nginx", modulesDir: "/usr/lib/nginx/modules" },
];

function loads(table: DirectiveTable, modulesDir: string | undefined): string {
  if (!modulesDir) return "";
  const so = [...new Set(Object.values(table.modules).flatMap((m) => (m.loadModule ? [path.basename(m.loadModule)] : [])))]
    .filter((s) => existsSync(path.join(modulesDir, s)))
    // a module that needs another's symbols loads after it
    .sort((a, b) => Number(!/ndk|ngx_stream_module|ngx_mail_module/.test(a)) - Number(!/ndk|ngx_stream_module|ngx_mail_module/.test(b)));
  return so.map((s) => `load_module ${path.join(modulesDir, s)};\n`).join("");
}

function nginxT(bin: string, conf: string): string {
  const dir = tempDir("gen-lb-dirtable-");
  mkdirSync(path.join(dir, "logs"), { recursive: true });
  writeFileSync(path.join(dir, "n.conf"), conf);
  const r = spawnSync(bin, ["-t", "-p", `${dir}/`, "-c", "n.conf", "-e", "stderr"], { encoding: "utf8" });
  return r.stderr;
}

for (const { target, bin, modulesDir } of TARGETS) {
  describe(`directive table for ${target}`, () => {
    it(`${bin} exists (install it: see README, Testing)`, () => {
      expect(existsSync(bin), `${bin} is missing`).toBe(true);
    });
    const table = loadDirectiveTable(target);

    it("every listed directive is known to the binary, except those marked with the configure flag (needs) the binary was built without, which it does not know", { timeout: 180_000 }, () => {
      const head = loads(table, modulesDir);
      const unknown: string[] = [];
      const knownThoughMarked: string[] = [];
      let marked = 0;
      for (const [name, defs] of Object.entries(table.directives)) {
        // Debian builds the perl module but it is not installed here
        if (defs.every((d) => d.loadModule && !existsSync(path.join(modulesDir ?? "", path.basename(d.loadModule))))) continue;
        const err = nginxT(bin, `${head}events {}\n${name} x;\n`);
        const isUnknown = /unknown directive/.test(err);
        if (defs.every((d) => d.needs !== undefined)) {
          marked++;
          if (!isUnknown) knownThoughMarked.push(name);
        } else if (isUnknown) unknown.push(name);
      }
      expect(unknown).toEqual([]);
      expect(knownThoughMarked).toEqual([]);
      expect(Object.keys(table.directives).length).toBeGreaterThan(500);
      // the reference builds leave modules out: OpenResty's many (http_v2, stub_status...), Debian's degradation
      expect(marked).toBeGreaterThan(0);
    });

    it("context, argument count and repeat facts are what the binary enforces", () => {
      const head = `${loads(table, modulesDir)}events {}\n`;
      // server_tokens: http/server/location only, TAKE1, refuses a repeat
      expect(table.directives.server_tokens![0]).toMatchObject({ contexts: ["http", "server", "location"], args: ["TAKE1"], repeatable: false });
      expect(nginxT(bin, `${head}http { server { if ($uri) { server_tokens off; } } }`)).toMatch(/"server_tokens" directive is not allowed here/);
      expect(nginxT(bin, `${head}http { server_tokens on off; }`)).toMatch(/invalid number of arguments in "server_tokens"/);
      expect(nginxT(bin, `${head}http { server_tokens on; server_tokens off; }`)).toMatch(/"server_tokens" directive is duplicate/);
      // add_header repeats freely and takes 2 or 3
      expect(table.directives.add_header![0]).toMatchObject({ args: ["TAKE2", "TAKE3"], repeatable: true });
      expect(nginxT(bin, `${head}http { add_header A b; add_header A c; }`)).toMatch(/test is successful/);
      // lua_socket_log_errors: FLAG, no repeat
      expect(table.directives.lua_socket_log_errors![0]).toMatchObject({ args: ["FLAG"], repeatable: false });
      expect(nginxT(bin, `${head}http { lua_socket_log_errors off; lua_socket_log_errors on; }`)).toMatch(/"lua_socket_log_errors" directive is duplicate/);
    });
  });
}
