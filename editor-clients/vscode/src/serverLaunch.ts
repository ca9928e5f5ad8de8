/**
 * How the extension starts its server: `co-sidecar.serverCommand` when the user set one, else
 * the server bundled in the extension, run by the first suitable Python of
 * `co-sidecar.interpreter`, the Python extension's selection (ms-python.python API), PATH.
 */

import * as os from "node:os";
import * as vscode from "vscode";

import {
  BundleManifest,
  PythonCandidate,
  ServerLaunch,
  bundledServerLaunch,
  choosePython,
  importStrategy,
  interpreterSetting,
  noPythonMessage,
  pathCandidates,
  readBundle,
  resolveServerCommand,
} from "./core";

export const SECTION = "co-sidecar";

/** The part of the Python extension's API used here (ms-python.python `environments`). */
interface PythonExtensionApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { path: string };
    resolveEnvironment(env: { path: string } | string): Promise<{ executable?: { uri?: vscode.Uri } } | undefined>;
    onDidChangeActiveEnvironmentPath?: vscode.Event<unknown>;
  };
}

/** Thrown when the user was already told why the server cannot start (one message, not two). */
export class ReportedError extends Error {
  readonly reported = true;
}

async function pythonExtension(): Promise<PythonExtensionApi | undefined> {
  const ext = vscode.extensions.getExtension<PythonExtensionApi>("ms-python.python");
  if (!ext) return undefined;
  try {
    return ext.isActive ? ext.exports : await ext.activate();
  } catch {
    return undefined;
  }
}

/** The interpreter the Python extension selected for this folder, if it is installed. */
async function pythonExtensionInterpreter(folder?: vscode.WorkspaceFolder): Promise<string | undefined> {
  const environments = (await pythonExtension())?.environments;
  if (!environments) return undefined;
  try {
    const active = environments.getActiveEnvironmentPath(folder?.uri);
    const resolved = await environments.resolveEnvironment(active);
    return resolved?.executable?.uri?.fsPath ?? active.path;
  } catch {
    return undefined;
  }
}

/** Calls `listener` when the Python extension's selected interpreter changes. */
export async function onPythonInterpreterChange(listener: () => void): Promise<vscode.Disposable | undefined> {
  return (await pythonExtension())?.environments?.onDidChangeActiveEnvironmentPath?.(() => listener());
}

export interface Launch extends ServerLaunch {
  /** For the output channel: what runs and why. */
  description: string;
  /** Whether the interpreter came from the Python extension (a change there restarts the server). */
  fromPythonExtension: boolean;
}

/** The server's command line; shows the one "no Python" message and throws ReportedError when none fits. */
export async function resolveLaunch(extensionPath: string, folder?: vscode.WorkspaceFolder): Promise<Launch> {
  const config = vscode.workspace.getConfiguration(SECTION, folder?.uri);
  const vars = { workspaceFolder: folder?.uri.fsPath, home: os.homedir() };
  const custom = resolveServerCommand(config.get("serverCommand"), vars);
  if (custom) {
    return {
      command: custom[0],
      args: custom.slice(1),
      env: { ...process.env },
      description: `${custom.join(" ")} (co-sidecar.serverCommand)`,
      fromPythonExtension: false,
    };
  }
  const bundle = readBundle(extensionPath);
  const strategy = importStrategy(config.get("importStrategy"));
  if (!bundle && strategy === "useBundled") {
    const message =
      "co-sidecar: this build of the extension carries no server (bundled/libs is missing). Install a " +
      "platform package (co-sidecar-<platform>-<version>.vsix, built by `npm run package`), or set " +
      'co-sidecar.importStrategy to "fromEnvironment" with co-sidecar installed in the interpreter.';
    void vscode.window.showErrorMessage(message);
    throw new ReportedError(message);
  }
  const candidates: PythonCandidate[] = [];
  const setting = interpreterSetting(config.get("interpreter"), vars);
  if (setting) {
    candidates.push({ source: "co-sidecar.interpreter", argv: setting });
  } else {
    const selected = await pythonExtensionInterpreter(folder);
    if (selected) candidates.push({ source: "the Python extension", argv: [selected] });
    candidates.push(...pathCandidates());
  }
  const chosen = await choosePython(candidates, bundle, strategy);
  if ("problems" in chosen) {
    void reportNoPython(chosen.problems, bundle); // not awaited: the button is the user's, later
    throw new ReportedError(noPythonMessage(chosen.problems, bundle));
  }
  // The interpreter itself, not a launcher or shim that might resolve differently later.
  const launch = bundledServerLaunch({ argv: [chosen.executable] }, extensionPath, strategy);
  return {
    ...launch,
    description:
      `${bundle ? "the bundled server" : "the server"} with ${chosen.executable} ` +
      `(Python ${chosen.version.join(".")}, from ${chosen.source}; importStrategy ${strategy})`,
    fromPythonExtension: chosen.source === "the Python extension",
  };
}

async function reportNoPython(problems: string[], bundle: BundleManifest | undefined): Promise<void> {
  const setInterpreter = "Set co-sidecar.interpreter";
  const download = "Download Python";
  const choice = await vscode.window.showErrorMessage(noPythonMessage(problems, bundle), setInterpreter, download);
  if (choice === setInterpreter) {
    await vscode.commands.executeCommand("workbench.action.openSettings", `${SECTION}.interpreter`);
  } else if (choice === download) {
    await vscode.env.openExternal(vscode.Uri.parse("https://www.python.org/downloads/"));
  }
}
