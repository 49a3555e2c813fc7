import { describe, expect, it } from "vitest";
import { formatPeerAddress, normaliseIPv4, normaliseIPv6, normalisePeerAddress, parsePeerAddress } from "../../src/spec/address.js";

describe("peer addresses (src/spec/address.ts)", () => {
  it("normalises so one backend is one peer", () => {
    expect(normalisePeerAddress("127.000.000.001:8080")).toBe("127.0.0.1:8080");
    expect(normalisePeerAddress("127.0.0.1:08080")).toBe("127.0.0.1:8080");
    expect(normalisePeerAddress("[0:0:0:0:0:0:0:1]:80")).toBe("[::1]:80");
    expect(normalisePeerAddress("[DEAD:BEEF::0001]:80")).toBe("[dead:beef::1]:80");
    expect(normalisePeerAddress("API.Internal.:80")).toBe("api.internal:80");
    expect(normalisePeerAddress("unix:/run/app.sock")).toBe("unix:/run/app.sock");
    expect(normaliseIPv4("010.0.0.1")).toBe("10.0.0.1"); // decimal, as nginx reads it, not octal
    expect(normaliseIPv6("::ffff:127.0.0.1")).toBe("::ffff:7f00:1");
    // An IPv4-mapped IPv6 address reaches the IPv4 backend: it is that peer.
    expect(normalisePeerAddress("[::ffff:127.0.0.1]:80")).toBe("127.0.0.1:80");
    expect(normalisePeerAddress("[::FFFF:7F00:1]:80")).toBe("127.0.0.1:80");
    expect(normalisePeerAddress("[::ffff:0:7f00:1]:80")).toBe("[::ffff:0:7f00:1]:80"); // IPv4-translated, not mapped
  });

  it("tells IPv4, IPv6, names and sockets apart", () => {
    expect(parsePeerAddress("10.0.0.1:80")).toEqual({ ok: true, address: { kind: "ipv4", host: "10.0.0.1", port: 80 } });
    expect(parsePeerAddress("[::1]:80")).toEqual({ ok: true, address: { kind: "ipv6", host: "::1", port: 80 } });
    expect(parsePeerAddress("localhost:80")).toEqual({ ok: true, address: { kind: "name", host: "localhost", port: 80 } });
    expect(parsePeerAddress("unix:/x.sock", { unix: true })).toEqual({ ok: true, address: { kind: "unix", path: "/x.sock" } });
    expect(formatPeerAddress({ kind: "ipv6", host: "::1", port: 1 })).toBe("[::1]:1");
  });

  it("says why a string is not a peer", () => {
    const reason = (s: string, unix = false) => {
      const r = parsePeerAddress(s, { unix });
      return r.ok ? "ok" : r.reason;
    };
    expect(reason("::1:80")).toMatch(/in brackets/);
    expect(reason("[::1]")).toMatch(/\[addr\]:port/);
    expect(reason("[fe80::1%eth0]:80")).toMatch(/zone/);
    expect(reason("[::g]:80")).toMatch(/not an IPv6 address/);
    expect(reason("256.0.0.1:80")).toMatch(/not an IPv4 address/);
    expect(reason("1.2.3:80")).toMatch(/not an IPv4 address/);
    expect(reason("10.0.0.1:0")).toMatch(/1-65535/);
    expect(reason("10.0.0.1:65536")).toMatch(/1-65535/);
    expect(reason("10.0.0.1")).toMatch(/needs a port/);
    expect(reason("a_b:80")).toMatch(/neither an IP address nor a host name/);
    expect(reason("-a:80")).toMatch(/neither/);
    expect(reason("unix:/x.sock")).toMatch(/cannot be used here/);
    expect(reason("unix:x.sock", true)).toMatch(/absolute/);
    expect(reason("unix:/a b", true)).toMatch(/spaces/);
  });
});
