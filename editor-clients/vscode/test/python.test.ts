/**
 * Finding the Python that runs the bundled server (src/core/python.ts), with real interpreters
 * where it matters: the test's own Python, a missing one, and the bundled server started
 * through bundled/tool/server.py when this checkout has been bundled (scripts/bundle.py).
 */

import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";

import {
  BundleManifest,
  bundledServerLaunch,
  choosePython,
  importStrategy,
  interpreterSetting,
  noPythonMessage,
  probePython,
  readBundle,
  unsuitable,
} from "../src/core/python";
import { EXTENSION_DIR, python } from "./harness";

const bundle: BundleManifest = { target: "linux-x64", pythons: ["3.11", "3.12", "3.13", "3.14"] };

describe("choosing a Python for the server", () => {
  it("probes a real interpreter for its executable and version", async () => {
    const info = await probePython([python()]);
    assert.ok(!("error" in info), JSON.stringify(info));
    const expected = execFileSync(python(), ["-c", "import sys; print(sys.version_info[0], sys.version_info[1])"], {
      encoding: "utf8",
    })
      .trim()
      .split(" ")
      .map(Number);
    assert.deepEqual(info.version, expected);
    assert.ok(existsSync(info.executable), info.executable);
    assert.deepEqual(await probePython(["/nonexistent/python3"]), { error: "not found" });
  });

  it("refuses Pythons older than 3.11, and versions the bundle carries no libraries for", () => {
    assert.match(unsuitable({ executable: "p", version: [3, 10] }, bundle, "useBundled")!, /3\.10; the server needs 3\.11/);
    assert.match(unsuitable({ executable: "p", version: [3, 15] }, bundle, "useBundled")!, /carries compiled libraries for 3\.11, 3\.12/);
    // From the environment, the bundle's versions do not matter.
    assert.equal(unsuitable({ executable: "p", version: [3, 15] }, bundle, "fromEnvironment"), undefined);
    assert.equal(unsuitable({ executable: "p", version: [3, 12] }, bundle, "useBundled"), undefined);
  });

  it("takes the first suitable candidate and says why the others were turned down", async () => {
    const versions: Record<string, [number, number]> = { old: [3, 9], new: [3, 12] };
    const probe = async (argv: string[]) =>
      versions[argv[0]] ? { executable: `/usr/bin/${argv[0]}`, version: versions[argv[0]] } : { error: "not found" };
    const chosen = await choosePython(
      [
        { source: "the Python extension", argv: ["old"] },
        { source: "PATH", argv: ["missing"] },
        { source: "PATH", argv: ["new"] },
      ],
      bundle,
      "useBundled",
      probe,
    );
    assert.deepEqual(chosen, { executable: "/usr/bin/new", version: [3, 12], source: "PATH", argv: ["new"] });
    const none = await choosePython(
      [
        { source: "co-sidecar.interpreter", argv: ["missing"] },
        { source: "PATH", argv: ["old"] },
      ],
      bundle,
      "useBundled",
      probe,
    );
    assert.ok("problems" in none);
    assert.deepEqual(none.problems, [
      "missing (co-sidecar.interpreter): not found",
      "old (PATH) is Python 3.9; the server needs 3.11 or newer",
    ]);
    const message = noPythonMessage(none.problems, bundle);
    assert.match(message, /needs Python 3\.11 or newer \(3\.11, 3\.12, 3\.13, 3\.14\)/);
    assert.match(message, /set co-sidecar\.interpreter/);
    const empty = await choosePython([{ source: "PATH", argv: ["missing"] }], bundle, "useBundled", probe);
    assert.deepEqual("problems" in empty && empty.problems, ["no python3 or python on PATH"]);
  });

  it("reads the settings", () => {
    assert.equal(interpreterSetting([]), undefined);
    assert.equal(interpreterSetting(""), undefined);
    assert.deepEqual(interpreterSetting("~/py/bin/python", { home: "/h" }), ["/h/py/bin/python"]);
    assert.deepEqual(interpreterSetting(["${workspaceFolder}/.venv/bin/python"], { workspaceFolder: "/w" }), [
      "/w/.venv/bin/python",
    ]);
    assert.equal(importStrategy(undefined), "useBundled");
    assert.equal(importStrategy("fromEnvironment"), "fromEnvironment");
  });

  it("reads a bundle only when it has the server", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "co-bundle-"));
    try {
      mkdirSync(path.join(dir, "bundled"));
      writeFileSync(path.join(dir, "bundled", "manifest.json"), JSON.stringify(bundle));
      assert.equal(readBundle(dir), undefined, "no bundled/libs/co_sidecar");
      mkdirSync(path.join(dir, "bundled", "libs", "co_sidecar"), { recursive: true });
      assert.deepEqual(readBundle(dir), bundle);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("bundled/tool/server.py", () => {
  const tool = path.join(EXTENSION_DIR, "bundled", "tool", "server.py");

  it("imports the server from the environment with fromEnvironment (co_sidecar installed there)", () => {
    const launch = bundledServerLaunch({ argv: [python()] }, EXTENSION_DIR, "fromEnvironment");
    assert.deepEqual(launch.args, [tool]);
    // --help of `serve`: the server's own argument parser answered.
    const proc = spawnSync(launch.command, [...launch.args, "--help"], { env: launch.env, encoding: "utf8" });
    assert.equal(proc.status, 0, proc.stderr);
    assert.match(proc.stdout, /usage: co-sidecar serve/);
  });

  it("says what to do when the environment has no co-sidecar and nothing is bundled", () => {
    // A copy of the tool with no bundled/libs beside it, run without site-packages.
    const dir = mkdtempSync(path.join(tmpdir(), "co-ext-"));
    try {
      mkdirSync(path.join(dir, "bundled", "tool"), { recursive: true });
      copyFileSync(tool, path.join(dir, "bundled", "tool", "server.py"));
      const launch = bundledServerLaunch({ argv: [python(), "-S"] }, dir, "fromEnvironment");
      const proc = spawnSync(launch.command, launch.args, { env: launch.env, encoding: "utf8" });
      assert.equal(proc.status, 3, proc.stderr);
      assert.match(proc.stderr, /cannot import the server with .*install co-sidecar into that environment/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
