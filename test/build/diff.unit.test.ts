import { describe, expect, it } from "vitest";
import { inDiffOrder, unifiedDiff } from "../../src/util/diff.js";

describe("unifiedDiff", () => {
  it("writes the --- / +++ / @@ shape diff(1) and git write, empty sides before line 1", () => {
    expect(unifiedDiff("same\n", "same\n", "a/f", "b/f")).toBe("");
    expect(unifiedDiff("", "x\ny\n", "/dev/null", "b/f")).toBe("--- /dev/null\n+++ b/f\n@@ -0,0 +1,2 @@\n+x\n+y\n");
    expect(unifiedDiff("x\n", "", "a/f", "/dev/null")).toBe("--- a/f\n+++ /dev/null\n@@ -1,1 +0,0 @@\n-x\n");
    const ten = Array.from({ length: 10 }, (_, i) => `l${i + 1}`);
    const edited = ten.map((l) => (l === "l6" ? "L6" : l));
    expect(unifiedDiff(ten.join("\n") + "\n", edited.join("\n") + "\n", "a/f", "b/f")).toBe(
      "--- a/f\n+++ b/f\n@@ -3,7 +3,7 @@\n l3\n l4\n l5\n-l6\n+L6\n l7\n l8\n l9\n",
    );
  });

  it("shows a change of the last line's newline (the hand-written diff printed headers and no hunk)", () => {
    expect(unifiedDiff("x", "x\n", "a/f", "b/f")).toBe("--- a/f\n+++ b/f\n@@ -1,1 +1,1 @@\n-x\n\\ No newline at end of file\n+x\n");
  });

  it("orders nginx.conf first", () => {
    expect(inDiffOrder([{ path: "conf/mime.types" }, { path: "lua/gen_lb/a.lua" }, { path: "conf/nginx.conf" }]).map((f) => f.path)).toEqual([
      "conf/nginx.conf",
      "conf/mime.types",
      "lua/gen_lb/a.lua",
    ]);
  });
});
