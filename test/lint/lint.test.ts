/**
 * Each lint check on a config that has the problem and on one that does not;
 * plus `gen-lb lint` on a spec and on a file, and build's warning.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { lintNginxConfig, type Finding } from "../../src/lint/lint.js";
import { memoryLoader } from "../../src/nginx/load.js";
import { ROOT } from "../support/cli.js";

const wrap = (http: string) => `events {}\nhttp {\n    server_tokens off;\n${http}\n}\n`;
function lint(conf: string): Finding[] {
  return lintNginxConfig("/c/nginx.conf", memoryLoader({ "/c/nginx.conf": conf })).findings;
}
const ids = (conf: string) => lint(conf).map((f) => f.id);

const CASES: Array<{ id: string; bad: string; good: string; line: number }> = [
  {
    id: "add_header_redefinition",
    bad: wrap("    add_header X-Frame-Options DENY;\n    server {\n        location / {\n            add_header X-Other 1;\n        }\n    }"),
    good: wrap("    add_header X-Frame-Options DENY;\n    server {\n        location / {\n            add_header X-Frame-Options DENY;\n            add_header X-Other 1;\n        }\n    }"),
    line: 7,
  },
  {
    id: "alias_traversal",
    bad: wrap("    server {\n        location /i {\n            alias /data/images/;\n        }\n    }"),
    good: wrap("    server {\n        location /i/ {\n            alias /data/images/;\n        }\n    }"),
    line: 6,
  },
  {
    id: "proxy_pass_variable_no_resolver",
    bad: wrap("    server {\n        location / {\n            proxy_pass http://$arg_host;\n        }\n    }"),
    good: wrap("    resolver 127.0.0.1;\n    server {\n        location / {\n            proxy_pass http://$arg_host;\n        }\n    }"),
    line: 6,
  },
  {
    id: "host_in_redirect",
    bad: wrap("    server {\n        listen 80;\n        return 301 https://$host$request_uri;\n    }"),
    good: wrap("    server {\n        listen 80;\n        server_name lb.example.com;\n        return 301 https://$host$request_uri;\n    }"),
    line: 6,
  },
  {
    id: "server_tokens",
    bad: "events {}\nhttp {\n    server_tokens on;\n}\n",
    good: "events {}\nhttp {\n    server_tokens off;\n}\n",
    line: 3,
  },
  {
    id: "weak_tls_protocols",
    bad: wrap("    server {\n        ssl_protocols TLSv1 TLSv1.1 TLSv1.2;\n    }"),
    good: wrap("    server {\n        ssl_protocols TLSv1.2 TLSv1.3;\n    }"),
    line: 5,
  },
  {
    id: "weak_ssl_ciphers",
    bad: wrap("    server {\n        ssl_ciphers HIGH:!aNULL:!MD5:RC4-SHA;\n    }"),
    good: wrap("    server {\n        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:!aNULL;\n    }"),
    line: 5,
  },
  {
    id: "request_splitting",
    bad: wrap("    server {\n        location / {\n            proxy_set_header Host $http_host;\n            proxy_pass http://u;\n        }\n    }"),
    good: wrap("    server {\n        location / {\n            proxy_set_header Host $host;\n            proxy_pass http://u;\n        }\n    }"),
    line: 6,
  },
  {
    id: "unprotected_admin",
    bad: wrap("    server {\n        location /nginx_status {\n            stub_status;\n        }\n    }"),
    good: wrap("    server {\n        location /nginx_status {\n            allow 127.0.0.1;\n            deny all;\n            stub_status;\n        }\n    }"),
    line: 5,
  },
];

describe("lint checks", () => {
  for (const c of CASES) {
    it(`${c.id}: found where it is, with file:line and a fix; not where it is not`, () => {
      const found = lint(c.bad).filter((f) => f.id === c.id);
      expect(found).toHaveLength(1);
      expect(found[0]).toMatchObject({ file: "/c/nginx.conf", line: c.line });
      expect(found[0]!.fix.length).toBeGreaterThan(5);
      expect(["high", "medium", "low"]).toContain(found[0]!.severity);
      expect(ids(c.good)).not.toContain(c.id);
    });
  }

  it("request_splitting: a decoded $uri in a header", () => {
    expect(ids(wrap("    server {\n        add_header X-Uri $uri;\n    }"))).toContain("request_splitting");
    expect(ids(wrap("    server {\n        add_header X-Uri $request_uri;\n    }"))).not.toContain("request_splitting");
  });

  it("server_tokens left unset is nginx's on", () => {
    expect(ids("events {}\nhttp {\n}\n")).toEqual(["server_tokens"]);
  });

  it("add_header through an include is inherited as nginx does", () => {
    const files = {
      "/c/nginx.conf": "events {}\nhttp {\n    server_tokens off;\n    add_header A 1;\n    include s.conf;\n}\n",
      "/c/s.conf": "server {\n    location / {\n        add_header B 2;\n    }\n}\n",
    };
    const f = lintNginxConfig("/c/nginx.conf", memoryLoader(files)).findings;
    expect(f.map((x) => [x.id, x.file, x.line])).toEqual([["add_header_redefinition", "/c/s.conf", 3]]);
  });
});

function genLb(cwd: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [path.join(ROOT, "lib/cli.js"), ...args], { cwd, encoding: "utf8", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("gen-lb lint", () => {
  it("on a file: findings as file:line, exit 1; clean: exit 0", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "gen-lb-lint-"));
    writeFileSync(path.join(dir, "bad.conf"), "events {}\nhttp {\n    server_tokens on;\n}\n");
    writeFileSync(path.join(dir, "good.conf"), "events {}\nhttp {\n    server_tokens off;\n}\n");
    const bad = genLb(dir, "lint", "bad.conf");
    expect(bad.status).toBe(1);
    expect(bad.stdout).toBe("bad.conf:3: [low] server_tokens: server_tokens on: every response names the nginx version; fix: server_tokens off; (gen-lb's default)\n");
    const json = JSON.parse(genLb(dir, "lint", "bad.conf", "--json").stdout);
    expect(json.findings[0]).toMatchObject({ id: "server_tokens", file: "bad.conf", line: 3 });
    expect(genLb(dir, "lint", "good.conf").status).toBe(0);
  });

  it("on a spec, and build warns with the same findings", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "gen-lb-lint-"));
    const spec = [
      "target: nginx",
      "nginx:",
      "  http:",
      "    server_tokens: true",
      "servers:",
      "  - listen: 8080",
      "    locations:",
      "      - path: /",
      "        return: {code: 200, text: ok}",
      "",
    ].join("\n");
    writeFileSync(path.join(dir, "gen-lb.yaml"), spec);
    const r = genLb(dir, "lint");
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^conf\/nginx\.conf:\d+: \[low\] server_tokens: /);
    const b = genLb(dir, "build", "--out", "out");
    expect(b.status).toBe(0);
    expect(b.stderr).toMatch(/warning: lint: conf\/nginx\.conf:\d+: \[low\] server_tokens/);
    writeFileSync(path.join(dir, "gen-lb.yaml"), spec.replace("    server_tokens: true\n", "    server_tokens: false\n"));
    expect(genLb(dir, "lint").status).toBe(0);
  });
});
