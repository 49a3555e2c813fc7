/**
 * `gen-lb check`'s Consul preflight end to end: the built CLI (spawned without
 * blocking, so the stand-in in this process can answer), the real nginx for
 * check's own steps, and the Consul stand-in with the catalog each case needs.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ConsulStandin } from "../support/consul-standin.js";
import { tempDir } from "../support/nginx.js";
import { TEST_BIN } from "../support/target.js";
import { ports, runCliAsync, specObject, writeSpec } from "../install/helpers.js";

const BIN = ["--bin", TEST_BIN];
let standin: ConsulStandin | undefined;
afterEach(async () => {
  await standin?.stop();
  standin = undefined;
});

/** The preflight's warnings (the spec's own, such as an upstream no location uses, are not the subject here). */
function consulWarnings(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith("warning: consul: "));
}

async function specFile(consul: Record<string, unknown>, upstreams: Record<string, unknown>): Promise<string> {
  const p = await ports();
  const base = specObject(p, "x");
  return writeSpec(tempDir(), "lb.json", { ...base, consul, upstreams });
}

describe("gen-lb check: Consul preflight", () => {
  it("per upstream: exists, passing count, usable addresses (why not), as warnings; --strict fails on them", async () => {
    standin = new ConsulStandin();
    await standin.start();
    standin.registerService({ ID: "web-1", Name: "web", Address: "127.0.0.11", Port: 8081 });
    standin.registerService({ ID: "web-2", Name: "web", Address: "127.0.0.12", Port: 8082, Check: { TTL: "30s", Status: "critical" } });
    standin.registerService({ ID: "v6-1", Name: "v6", Address: "::1", Port: 8081 });
    standin.registerService({ ID: "odd-name", Name: "odd", Address: "web.internal", Port: 80 });
    standin.registerService({ ID: "odd-port", Name: "odd", Address: "10.0.0.1:8080", Port: 80 });
    standin.registerService({ ID: "odd-junk", Name: "odd", Address: "not an ip!", Port: 80 });
    standin.registerService({ ID: "down-1", Name: "down", Address: "127.0.0.13", Port: 80, Check: { TTL: "30s", Status: "critical" } });
    const spec = await specFile(
      { addresses: [standin.url] },
      { app: { service: "web" }, six: { service: "v6" }, odd: { service: "odd" }, ghost: { service: "ghost" }, down: { service: "down" } },
    );

    const r = await runCliAsync(["check", "--spec", spec, ...BIN]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`consul: asked ${standin.url}`);
    expect(r.stdout).toMatch(/^consul: upstream app \(service web\): 1 of 2 instance\(s\) passing, 1 usable peer\(s\)$/m);
    expect(r.stdout).toMatch(/^consul: upstream six \(service v6\): 1 of 1 instance\(s\) passing, 1 usable peer\(s\)$/m);
    expect(r.stdout).toMatch(/^consul: upstream odd \(service odd\): 3 of 3 instance\(s\) passing, 0 usable peer\(s\) - 3 warning\(s\)$/m);
    expect(r.stdout).toMatch(/^check passed in \d+ ms \(5 Consul warning\(s\)\)$/m);
    expect(consulWarnings(r.stderr).sort()).toEqual([
      "warning: consul: upstream down: none of the 1 instance(s) of down passes its health checks",
      "warning: consul: upstream ghost: service ghost is not registered in Consul",
      `warning: consul: upstream odd: instance odd-junk is not a usable peer: address "not an ip!" is not an IP address`,
      `warning: consul: upstream odd: instance odd-name is not a usable peer: address "web.internal" is a host name, which the runtime resolves only on target openresty with nginx.http.resolver set (register the instance's IP, or set both)`,
      `warning: consul: upstream odd: instance odd-port is not a usable peer: address "10.0.0.1:8080" carries a port: Consul's Address takes the IP alone (the port goes in Port)`,
    ]);

    const strict = await runCliAsync(["check", "--spec", spec, ...BIN, "--strict"]);
    expect(strict.status).toBe(1);
    expect(strict.stderr).toMatch(/^gen-lb: check of .*lb\.json failed: the Consul preflight has 5 warnings \(--strict\)$/m);

    const json = await runCliAsync(["--json", "check", "--spec", spec, ...BIN]);
    expect(json.stderr).toBe("");
    const doc = JSON.parse(json.stdout);
    expect(doc.consul).toMatchObject({ ran: true, reachable: true, address: standin.url });
    expect(doc.consul.upstreams.find((u: { name: string }) => u.name === "app")).toMatchObject({ exists: true, instances: 2, passing: 1, usable: 1, warnings: [] });
    expect(doc.consul.upstreams.find((u: { name: string }) => u.name === "ghost")).toMatchObject({ exists: false, instances: 0 });
  });

  it("a refused token is named: 403, ACL, unknown token or missing permission; an unset token variable is said too", async () => {
    standin = new ConsulStandin({ token: "right" });
    await standin.start();
    standin.registerService({ ID: "web-1", Name: "web", Address: "127.0.0.11", Port: 8081 });
    const spec = await specFile({ addresses: [standin.url], token_env: "LB_CONSUL_TOKEN" }, { app: { service: "web" } });

    const wrong = await runCliAsync(["check", "--spec", spec, ...BIN], { env: { LB_CONSUL_TOKEN: "wrong" } });
    expect(wrong.status, wrong.stderr).toBe(0);
    expect(consulWarnings(wrong.stderr)).toEqual(["warning: consul: upstream app: Consul refused the token: 403 (ACL: the token is not known to Consul): ACL not found"]);
    // The token is never printed.
    expect(wrong.stdout + wrong.stderr).not.toContain("wrong");

    const unset = await runCliAsync(["check", "--spec", spec, ...BIN]);
    expect(unset.status).toBe(0);
    expect(unset.stderr).toContain("warning: consul: consul.token_env names LB_CONSUL_TOKEN, which is not set here: Consul was asked without a token");
    expect(unset.stderr).toMatch(/warning: consul: upstream app: Consul refused the token: 403 \(ACL: the token lacks a permission\): Permission denied: token with AccessorID '.*' lacks permission 'service:read' on "web"/);

    const right = await runCliAsync(["check", "--spec", spec, ...BIN, "--strict"], { env: { LB_CONSUL_TOKEN: "right" } });
    expect(consulWarnings(right.stderr)).toEqual([]);
    expect(right.status).toBe(0);
    expect(right.stdout).toMatch(/^consul: upstream app \(service web\): 1 of 1 instance\(s\) passing, 1 usable peer\(s\)$/m);
    expect(standin.requests.filter((q) => q.headers["x-consul-token"] === "right").length).toBeGreaterThan(0);
  });

  it("Consul with default_policy=deny filtering an anonymous read: the empty answer is said to be ACL filtering, not a missing service", async () => {
    standin = new ConsulStandin({ token: "right", aclMissingToken: "filter" });
    await standin.start();
    standin.registerService({ ID: "web-1", Name: "web", Address: "127.0.0.11", Port: 8081 });
    const spec = await specFile({ addresses: [standin.url] }, { app: { service: "web" } });
    const r = await runCliAsync(["check", "--spec", spec, ...BIN]);
    expect(r.status, r.stderr).toBe(0);
    expect(consulWarnings(r.stderr)).toEqual([
      "warning: consul: upstream app: service web is not listed: Consul filtered the list by ACLs (the token may lack service:read on web)",
      "warning: consul: upstream app: Consul filtered the instances by ACLs (the token may lack service:read on web or node:read)",
    ]);
  });

  it("an unreachable Consul is a warning (a failure with --strict), never a silent pass; --no-consul skips the preflight", async () => {
    const spec = await specFile({ addresses: ["http://127.0.0.1:1"] }, { app: { service: "web" } });
    const r = await runCliAsync(["check", "--spec", spec, ...BIN]);
    expect(r.status, r.stderr).toBe(0);
    expect(consulWarnings(r.stderr)).toEqual([
      "warning: consul: Consul cannot be reached (http://127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1): no upstream's service was checked; the runtime's discovery is unverified (use --no-consul to skip this preflight)",
    ]);
    expect(r.stdout).toMatch(/^check passed in \d+ ms \(1 Consul warning\(s\)\)$/m);

    const strict = await runCliAsync(["check", "--spec", spec, ...BIN, "--strict"]);
    expect(strict.status).toBe(1);
    expect(strict.stderr).toContain("the Consul preflight has 1 warning (--strict)");

    const skip = await runCliAsync(["check", "--spec", spec, ...BIN, "--no-consul", "--strict"]);
    expect(consulWarnings(skip.stderr)).toEqual([]);
    expect(skip.status).toBe(0);
    expect(skip.stdout).toMatch(/^consul preflight skipped: --no-consul$/m);
  });
});
