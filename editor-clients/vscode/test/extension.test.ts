/**
 * The bundled extension (out/extension.js) loads and activates against a
 * stand-in `vscode` module, registers exactly the commands package.json
 * contributes, and its settings defaults match what the code reads.
 * (A real VS Code cannot be downloaded here; see docs/editors.md.)
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import Module from "node:module";
import * as path from "node:path";
import { describe, it } from "node:test";

import { EXTENSION_DIR, python } from "./harness";

const manifest = JSON.parse(readFileSync(path.join(EXTENSION_DIR, "package.json"), "utf8"));

/** Anything: callable, constructible, every property is another stub. */
function stub(name: string, overrides: Record<string | symbol, unknown> = {}): any {
  const fn = function () {
    return stub(`${name}()`);
  };
  return new Proxy(fn, {
    get(target, prop) {
      if (prop in overrides) return overrides[prop];
      if (prop === "then") return undefined; // not a promise
      if (prop === Symbol.toPrimitive) return () => name;
      if (prop === "prototype") return (target as any).prototype;
      return stub(`${name}.${String(prop)}`);
    },
    apply: () => stub(`${name}()`),
    construct: () => stub(`new ${name}`),
  });
}

function fakeVscode(opts: { folder?: string; settings?: Record<string, unknown>; pythonExtension?: unknown } = {}) {
  const commands = new Map<string, (...args: unknown[]) => unknown>();
  const statusItem: Record<string, unknown> = { show() {}, hide() {}, dispose() {} };
  const settings: Record<string, unknown> = { ...(opts.settings ?? {}) };
  const defaults: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries<any>(manifest.contributes.configuration.properties)) {
    defaults[key.replace(/^co-sidecar\./, "")] = schema.default;
  }
  const shown: string[] = [];
  const buttons: string[][] = [];
  const folders = opts.folder
    ? [{ uri: { fsPath: opts.folder, toString: () => `file://${opts.folder}` }, name: "ws", index: 0 }]
    : undefined;
  const vscode = stub("vscode", {
    commands: stub("commands", {
      registerCommand: (id: string, fn: (...args: unknown[]) => unknown) => {
        commands.set(id, fn);
        return { dispose() {} };
      },
      executeCommand: async () => undefined,
    }),
    window: stub("window", {
      createOutputChannel: () => ({ appendLine() {}, show() {}, dispose() {} }),
      createStatusBarItem: () => statusItem,
      showInputBox: async () => undefined,
      showInformationMessage: async (m: string) => void shown.push(m),
      showErrorMessage: async (m: string, ...items: unknown[]) => {
        shown.push(m);
        buttons.push(items.filter((i): i is string => typeof i === "string"));
        return undefined;
      },
      activeTextEditor: undefined,
    }),
    workspace: stub("workspace", {
      workspaceFolders: folders,
      textDocuments: [],
      registerTextDocumentContentProvider: () => ({ dispose() {} }),
      onDidChangeConfiguration: () => ({ dispose() {} }),
      getConfiguration: (section: string) => {
        assert.equal(section, "co-sidecar");
        return { get: (key: string, fallback?: unknown) => settings[key] ?? defaults[key] ?? fallback };
      },
    }),
    extensions: stub("extensions", {
      getExtension: (id: string) => (id === "ms-python.python" ? opts.pythonExtension : undefined),
    }),
    StatusBarAlignment: { Left: 1, Right: 2 },
    ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
    EventEmitter: class {
      event = () => ({ dispose() {} });
      fire() {}
      dispose() {}
    },
    MarkdownString: class {
      constructor(readonly value: string) {}
    },
  });
  return { vscode: asModule(vscode), commands, statusItem, defaults, shown, buttons };
}

/**
 * esbuild's ESM interop copies a module's own enumerable keys, so the stand-in
 * module must list them: every `vscode.X` name the bundle uses.
 */
function asModule(api: any): any {
  const bundle = readFileSync(path.join(EXTENSION_DIR, "out", "extension.js"), "utf8");
  const names = new Set<string>();
  for (const m of bundle.matchAll(/\b(?:vscode\d*|vscode_1|code)\.([A-Za-z_]\w*)/g)) names.add(m[1]);
  const mod: Record<string, unknown> = {};
  for (const name of names) {
    Object.defineProperty(mod, name, { get: () => api[name], enumerable: true, configurable: true });
  }
  return mod;
}

describe("the bundled extension", () => {
  it("contributes commands titled 'CO: …' and the documented settings", () => {
    const titles = manifest.contributes.commands.map((c: any) => `${c.category}: ${c.title}`);
    for (const t of ["CO: Run Task", "CO: Show Runs", "CO: Preview Diff", "CO: Apply", "CO: Reject", "CO: Cancel"]) {
      assert.ok(titles.includes(t), `missing command ${t}`);
    }
    const props = manifest.contributes.configuration.properties;
    // Zero set-up: no server command, the bundled server run by a Python the extension finds.
    assert.deepEqual(props["co-sidecar.serverCommand"].default, []);
    assert.deepEqual(props["co-sidecar.interpreter"].default, []);
    assert.equal(props["co-sidecar.importStrategy"].default, "useBundled");
    assert.deepEqual(props["co-sidecar.importStrategy"].enum, ["useBundled", "fromEnvironment"]);
    assert.equal(props["co-sidecar.serverCommand"].type, "array");
    assert.equal(props["co-sidecar.settings"].type, "object");
    assert.equal(manifest.main, "./out/extension.js");
  });

  it("activates with a stand-in vscode, registering exactly the contributed commands", async () => {
    const fake = fakeVscode();
    const anyModule = Module as any;
    const originalLoad = anyModule._load;
    anyModule._load = function (request: string, ...rest: unknown[]) {
      if (request === "vscode") return fake.vscode;
      return originalLoad.call(this, request, ...rest);
    };
    try {
      const bundle = path.join(EXTENSION_DIR, "out", "extension.js");
      delete require.cache[bundle];
      const ext = require(bundle);
      assert.equal(typeof ext.activate, "function");
      assert.equal(typeof ext.deactivate, "function");
      const subscriptions: { dispose(): void }[] = [];
      await ext.activate({ subscriptions, extensionPath: EXTENSION_DIR });
      const contributed = manifest.contributes.commands.map((c: any) => c.command).sort();
      assert.deepEqual([...fake.commands.keys()].sort(), contributed);
      assert.equal(fake.statusItem.text, "$(rocket) CO");
      assert.equal(fake.statusItem.command, "co-sidecar.showRuns");
      // No folder open: the server is not started; a cancelled input box does nothing.
      await fake.commands.get("co-sidecar.runTask")!();
      assert.deepEqual(fake.shown, []);
      for (const s of subscriptions) s.dispose();
      await ext.deactivate();
    } finally {
      anyModule._load = originalLoad;
    }
  });

  it("with no usable Python, says so once, with the fix and buttons, and starts nothing", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "co-ext-"));
    const ws = mkdtempSync(path.join(tmpdir(), "co-ws-"));
    // An extension directory with a bundle, and an interpreter setting that does not exist.
    mkdirSync(path.join(dir, "bundled", "libs", "co_sidecar"), { recursive: true });
    writeFileSync(path.join(dir, "bundled", "manifest.json"), JSON.stringify({ pythons: ["3.11", "3.12"] }));
    const fake = fakeVscode({ folder: ws, settings: { interpreter: [path.join(dir, "no-python")] } });
    const anyModule = Module as any;
    const originalLoad = anyModule._load;
    anyModule._load = function (request: string, ...rest: unknown[]) {
      if (request === "vscode") return fake.vscode;
      return originalLoad.call(this, request, ...rest);
    };
    try {
      const bundle = path.join(EXTENSION_DIR, "out", "extension.js");
      delete require.cache[bundle];
      const ext = require(bundle);
      const subscriptions: { dispose(): void }[] = [];
      await ext.activate({ subscriptions, extensionPath: dir });
      for (let i = 0; i < 100 && fake.shown.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      // A command afterwards tries again: the same single message, not a second generic one.
      await fake.commands.get("co-sidecar.doctor")!();
      assert.equal(fake.shown.length, 2, fake.shown.join("\n"));
      assert.equal(fake.shown[0], fake.shown[1]);
      assert.match(fake.shown[0], /co-sidecar needs Python 3\.11 or newer \(3\.11, 3\.12\) to start its server/);
      assert.match(fake.shown[0], /no-python \(co-sidecar\.interpreter\): not found/);
      assert.deepEqual(fake.buttons[0], ["Set co-sidecar.interpreter", "Download Python"]);
      for (const s of subscriptions) s.dispose();
      await ext.deactivate();
    } finally {
      anyModule._load = originalLoad;
      rmSync(dir, { recursive: true, force: true });
      rmSync(ws, { recursive: true, force: true });
    }
  });

  describe("which Python starts the bundled server", () => {
    const withFake = async (fake: ReturnType<typeof fakeVscode>, fn: (ext: any) => Promise<void>) => {
      const anyModule = Module as any;
      const originalLoad = anyModule._load;
      anyModule._load = function (request: string, ...rest: unknown[]) {
        if (request === "vscode") return fake.vscode;
        return originalLoad.call(this, request, ...rest);
      };
      try {
        const bundle = path.join(EXTENSION_DIR, "out", "extension.js");
        delete require.cache[bundle];
        await fn(require(bundle));
      } finally {
        anyModule._load = originalLoad;
      }
    };
    const bundleDir = () => {
      const dir = mkdtempSync(path.join(tmpdir(), "co-ext-"));
      mkdirSync(path.join(dir, "bundled", "libs", "co_sidecar"), { recursive: true });
      const [major, minor] = execFileSync(python(), ["-c", "import sys; print(*sys.version_info[:2])"], { encoding: "utf8" })
        .trim()
        .split(" ");
      writeFileSync(path.join(dir, "bundled", "manifest.json"), JSON.stringify({ pythons: [`${major}.${minor}`] }));
      return dir;
    };
    const folder = { uri: { fsPath: tmpdir() } };
    const realExecutable = execFileSync(python(), ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).trim();

    it("the Python extension's selected interpreter, through its environments API", async () => {
      const dir = bundleDir();
      const pythonExtension = {
        isActive: true,
        exports: {
          environments: {
            getActiveEnvironmentPath: () => ({ path: "/selected/in/the/python/extension" }),
            resolveEnvironment: async () => ({ executable: { uri: { fsPath: python() } } }),
          },
        },
      };
      try {
        await withFake(fakeVscode({ pythonExtension }), async (ext) => {
          const launch = await ext._resolveLaunch(dir, folder);
          assert.equal(launch.command, realExecutable);
          assert.deepEqual(launch.args, [path.join(dir, "bundled", "tool", "server.py")]);
          assert.equal(launch.env.CO_SIDECAR_IMPORT_STRATEGY, "useBundled");
          assert.equal(launch.fromPythonExtension, true);
          assert.match(launch.description, /the bundled server with .* from the Python extension; importStrategy useBundled/);
        });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("co-sidecar.interpreter wins over the Python extension; importStrategy is passed on", async () => {
      const dir = bundleDir();
      const pythonExtension = {
        isActive: true,
        exports: {
          environments: {
            getActiveEnvironmentPath: () => ({ path: "/nonexistent/python" }),
            resolveEnvironment: async () => undefined,
          },
        },
      };
      try {
        const settings = { interpreter: [python()], importStrategy: "fromEnvironment" };
        await withFake(fakeVscode({ pythonExtension, settings }), async (ext) => {
          const launch = await ext._resolveLaunch(dir, folder);
          assert.equal(launch.command, realExecutable);
          assert.equal(launch.env.CO_SIDECAR_IMPORT_STRATEGY, "fromEnvironment");
          assert.equal(launch.fromPythonExtension, false);
          assert.match(launch.description, /from co-sidecar\.interpreter/);
        });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("a set co-sidecar.serverCommand is run as given", async () => {
      await withFake(fakeVscode({ settings: { serverCommand: ["/opt/co/bin/co-sidecar", "serve"] } }), async (ext) => {
        const launch = await ext._resolveLaunch(path.join(tmpdir(), "no-bundle"), folder);
        assert.equal(launch.command, "/opt/co/bin/co-sidecar");
        assert.deepEqual(launch.args, ["serve"]);
      });
    });
  });
});
