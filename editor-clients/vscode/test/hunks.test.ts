/**
 * Choosing hunks and rebuilding a run's version of a file, on their own: the hunk pick's items
 * from co/diff's hunk list, the co/apply selection, and the patch applied to the base text.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import { PatchApplyError, applyFilePatch, hunkPickItems, hunkSelection, parsePatch } from "../src/core/hunks";
import { DiffResult } from "../src/core/protocol";

const BASE = Array.from({ length: 20 }, (_, i) => `line ${i + 1}`).join("\n") + "\n";

/** A real git patch: two hunks in calc.txt, a new file, a deleted one. */
function gitPatch(): { patch: string; after: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), "co-hunks-"));
  const git = (...args: string[]) => execFileSync("git", ["-C", dir, ...args], { encoding: "utf-8" });
  git("init", "-q");
  writeFileSync(join(dir, "calc.txt"), BASE);
  writeFileSync(join(dir, "gone.txt"), "bye\n");
  git("add", ".");
  git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "base");
  const after = BASE.replace("line 2\n", "line 2\nadded near the top\n").replace("line 18\n", "LINE 18\n");
  writeFileSync(join(dir, "calc.txt"), after);
  writeFileSync(join(dir, "new.txt"), "fresh\nno newline");
  execFileSync("rm", [join(dir, "gone.txt")]);
  git("add", "-A");
  return { patch: git("diff", "--cached"), after, dir };
}

function diffOf(patch: string, applied: number[] = []): DiffResult {
  return {
    runId: "r1", attempt: null, patch, files: [], edit: {}, conflicts: [], overBudget: false,
    budget: { files: 0, lines: 0, bytes: 0, maxFiles: 0, maxLines: 0, maxBytes: 0 }, appliedPaths: [], view: null, partial: false,
    hunks: [
      { path: "calc.txt", number: 1, header: "@@ -1,5 +1,6 @@", additions: 1, deletions: 0, applied: applied.includes(1) },
      { path: "calc.txt", number: 2, header: "@@ -15,6 +16,6 @@", additions: 1, deletions: 1, applied: applied.includes(2) },
      { path: "new.txt", number: 1, header: "@@ -0,0 +1,2 @@", additions: 2, deletions: 0, applied: false },
    ],
  };
}

describe("the hunk pick", () => {
  const { patch, after, dir } = gitPatch();

  it("lists each hunk of the file with its @@ line, counts and first changed lines, all ticked", () => {
    const items = hunkPickItems(diffOf(patch), "calc.txt");
    assert.deepEqual(items.map((i) => [i.number, i.label, i.description, i.picked]), [
      [1, "Hunk 1  @@ -1,5 +1,6 @@", "+1 −0", true],
      [2, "Hunk 2  @@ -15,6 +16,6 @@", "+1 −1", true],
    ]);
    assert.equal(items[0].detail, "+added near the top");
    assert.equal(items[1].detail, "-line 18  ⏎  +LINE 18");
  });

  it("shows an already applied hunk as such, unticked, and never selects it", () => {
    // After hunk 1 was applied, co/diff's patch holds only hunk 2.
    const rest = patch.replace(/@@ -1,5 \+1,6 @@[\s\S]*?(?=@@ -15)/, "");
    const items = hunkPickItems(diffOf(rest, [1]), "calc.txt");
    assert.deepEqual(items.map((i) => [i.number, i.description, i.picked, i.applied]), [
      [1, "already applied", false, true],
      [2, "+1 −1", true, false],
    ]);
    assert.equal(items[1].detail, "-line 18  ⏎  +LINE 18");
    assert.deepEqual(hunkSelection("calc.txt", items, [1, 2]), { "calc.txt": [2] });
    assert.equal(hunkSelection("calc.txt", items, [1]), undefined);
  });

  it("turns the kept hunks into co/apply's {path: [n]} selection", () => {
    const items = hunkPickItems(diffOf(patch), "calc.txt");
    assert.deepEqual(hunkSelection("calc.txt", items, [2, 1, 2]), { "calc.txt": [1, 2] });
    assert.deepEqual(hunkSelection("calc.txt", items, [2]), { "calc.txt": [2] });
    assert.equal(hunkSelection("calc.txt", items, []), undefined);
    assert.equal(hunkSelection("calc.txt", items, [7]), undefined);
  });

  it("rebuilds the run's version of each file from the base text as git would", () => {
    const files = parsePatch(patch);
    assert.deepEqual([...files.keys()].sort(), ["calc.txt", "gone.txt", "new.txt"]);
    const calc = files.get("calc.txt")!;
    assert.equal(calc.hunks.length, 2);
    assert.match(calc.oldBlob ?? "", /^[0-9a-f]{7,}$/);
    assert.equal(execFileSync("git", ["-C", dir, "cat-file", "-p", calc.oldBlob!], { encoding: "utf-8" }), BASE);
    assert.equal(applyFilePatch(BASE, calc), after);
    assert.equal(files.get("new.txt")!.isNew, true);
    assert.equal(applyFilePatch("", files.get("new.txt")!), readFileSync(join(dir, "new.txt"), "utf-8"));
    assert.equal(applyFilePatch("bye\n", files.get("gone.txt")!), "");
  });

  it("refuses a base the patch was not made against", () => {
    const calc = parsePatch(patch).get("calc.txt")!;
    assert.throws(() => applyFilePatch(BASE.replace("line 17", "mine"), calc), PatchApplyError);
  });
});
