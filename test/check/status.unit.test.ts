/** check's reading of a status body: the typed document of src/contract/status.ts, or at least its build_id. */
import { describe, expect, it } from "vitest";
import { readStatusBody } from "../../src/check/status.js";

const doc = {
  build_id: "b-1",
  generator: "gen-lb 1.0.0",
  time: 1700000000.5,
  pid: 4242,
  dump: {},
  upstreams: {},
  static_upstreams: {},
};

describe("readStatusBody", () => {
  it("reads a document that matches the contract, build_id included", () => {
    const r = readStatusBody(JSON.stringify(doc));
    expect(r.buildId).toBe("b-1");
    expect(r.document?.pid).toBe(4242);
  });

  it("reads only the build_id of a document from another gen-lb version", () => {
    const r = readStatusBody(JSON.stringify({ build_id: "old", upstreams: [], extra: true }));
    expect(r).toEqual({ buildId: "old" });
  });

  it("has no build id for a mistyped build_id, a JSON that is no document, or no JSON", () => {
    expect(readStatusBody(JSON.stringify({ ...doc, build_id: 7 }))).toEqual({});
    expect(readStatusBody("[1,2]")).toEqual({});
    expect(readStatusBody("<html>502</html>")).toEqual({});
  });
});
