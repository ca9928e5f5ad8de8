/**
 * Finding a Python for the bundled server and building its command line (no `vscode` import).
 *
 * The packaged extension carries the server and its dependencies in bundled/libs (built per
 * platform by scripts/bundle.py, for the CPython versions listed in bundled/manifest.json) and
 * starts bundled/tool/server.py with the first suitable interpreter of: the
 * `co-sidecar.interpreter` setting, the Python extension's selection, a Python on PATH.
 */

import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";

export const MIN_PYTHON: readonly [number, number] = [3, 11];

export type ImportStrategy = "useBundled" | "fromEnvironment";

export interface PythonCandidate {
  /** Where it came from, for messages: "co-sidecar.interpreter", "the Python extension", "PATH". */
  source: string;
  /** The interpreter's argv (e.g. ["/usr/bin/python3"] or ["py", "-3"]). */
  argv: string[];
}

export interface PythonInfo {
  executable: string;
  version: [number, number];
}

export interface ChosenPython extends PythonInfo {
  source: string;
  argv: string[];
}

/** What scripts/bundle.py wrote into bundled/manifest.json. */
export interface BundleManifest {
  target?: string;
  pythons: string[];
  coSidecar?: string | null;
}

export interface ServerLaunch {
  command: string;
  args: string[];
  env: Record<string, string | undefined>;
}

export function readBundle(extensionPath: string): BundleManifest | undefined {
  const file = path.join(extensionPath, "bundled", "manifest.json");
  if (!existsSync(file) || !existsSync(path.join(extensionPath, "bundled", "libs", "co_sidecar"))) return undefined;
  try {
    const data = JSON.parse(readFileSync(file, "utf8"));
    return Array.isArray(data?.pythons) ? (data as BundleManifest) : undefined;
  } catch {
    return undefined;
  }
}

/** The `co-sidecar.interpreter` setting as an argv (a string is one path), or undefined when unset. */
export function interpreterSetting(setting: unknown, vars: { workspaceFolder?: string; home?: string } = {}): string[] | undefined {
  let argv: string[] | undefined;
  if (Array.isArray(setting) && setting.length > 0 && setting.every((a) => typeof a === "string" && a)) argv = [...setting];
  else if (typeof setting === "string" && setting.trim()) argv = [setting.trim()];
  return argv?.map((arg) => expand(arg, vars));
}

function expand(arg: string, vars: { workspaceFolder?: string; home?: string }): string {
  let out = arg;
  if (vars.workspaceFolder !== undefined) out = out.split("${workspaceFolder}").join(vars.workspaceFolder);
  if (vars.home !== undefined && (out === "~" || out.startsWith("~/"))) out = vars.home + out.slice(1);
  return out;
}

/** Pythons to try on PATH, most specific last so that `python3` wins when it is new enough. */
export function pathCandidates(platform: NodeJS.Platform = process.platform): PythonCandidate[] {
  const names: string[][] =
    platform === "win32"
      ? [["python"], ["py", "-3"], ["python3"]]
      : [["python3"], ["python"], ["python3.14"], ["python3.13"], ["python3.12"], ["python3.11"]];
  return names.map((argv) => ({ source: "PATH", argv }));
}

const PROBE = "import json, sys; print(json.dumps([sys.executable, sys.version_info[0], sys.version_info[1]]))";

/** Runs the interpreter once: its real executable and version, or why it cannot be used. */
export function probePython(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 15_000,
): Promise<PythonInfo | { error: string }> {
  return new Promise((resolve) => {
    execFile(argv[0], [...argv.slice(1), "-c", PROBE], { env, timeout: timeoutMs, windowsHide: true }, (err, stdout) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        resolve({ error: code === "ENOENT" ? "not found" : `does not run (${err.message.split("\n")[0]})` });
        return;
      }
      try {
        const [executable, major, minor] = JSON.parse(stdout.trim().split("\n").pop() ?? "");
        resolve({ executable: String(executable || argv[0]), version: [Number(major), Number(minor)] });
      } catch {
        resolve({ error: `gave no version (${truncateOut(stdout)})` });
      }
    });
  });
}

function truncateOut(s: string): string {
  const t = s.replace(/\s+/g, " ").trim();
  return t.length > 60 ? `${t.slice(0, 59)}…` : t || "no output";
}

/** Why this interpreter cannot run the server, or undefined when it can. */
export function unsuitable(info: PythonInfo, bundle: BundleManifest | undefined, strategy: ImportStrategy): string | undefined {
  const [major, minor] = info.version;
  const version = `${major}.${minor}`;
  if (major < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])) {
    return `is Python ${version}; the server needs ${MIN_PYTHON.join(".")} or newer`;
  }
  if (strategy === "useBundled" && bundle && !bundle.pythons.includes(version)) {
    return `is Python ${version}; the bundled server carries compiled libraries for ${bundle.pythons.join(", ")}`;
  }
  return undefined;
}

/**
 * The first suitable candidate, or the reasons each was turned down (one line per candidate).
 * Candidates with the same argv are tried once.
 */
export async function choosePython(
  candidates: PythonCandidate[],
  bundle: BundleManifest | undefined,
  strategy: ImportStrategy,
  probe: (argv: string[]) => Promise<PythonInfo | { error: string }> = (argv) => probePython(argv),
): Promise<ChosenPython | { problems: string[] }> {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const candidate of candidates) {
    const key = JSON.stringify(candidate.argv);
    if (seen.has(key)) continue;
    seen.add(key);
    const info = await probe(candidate.argv);
    const label = `${candidate.argv.join(" ")} (${candidate.source})`;
    if ("error" in info) {
      // Absent PATH names are expected; only say so when nothing is found at all.
      if (candidate.source !== "PATH" || info.error !== "not found") problems.push(`${label}: ${info.error}`);
      continue;
    }
    const why = unsuitable(info, bundle, strategy);
    if (why) {
      problems.push(`${label} ${why}`);
      continue;
    }
    return { ...info, source: candidate.source, argv: candidate.argv };
  }
  if (!problems.some((p) => p.includes("(PATH)"))) problems.push("no python3 or python on PATH");
  return { problems };
}

/** The bundled server's command line for a chosen interpreter. */
export function bundledServerLaunch(
  python: { argv: string[] },
  extensionPath: string,
  strategy: ImportStrategy,
  env: NodeJS.ProcessEnv = process.env,
): ServerLaunch {
  return {
    command: python.argv[0],
    args: [...python.argv.slice(1), path.join(extensionPath, "bundled", "tool", "server.py")],
    env: { ...env, CO_SIDECAR_IMPORT_STRATEGY: strategy, PYTHONUNBUFFERED: "1" },
  };
}

export function importStrategy(setting: unknown): ImportStrategy {
  return setting === "fromEnvironment" ? "fromEnvironment" : "useBundled";
}

/** The one message shown when no interpreter can run the server. */
export function noPythonMessage(problems: string[], bundle: BundleManifest | undefined): string {
  const versions = bundle?.pythons.length ? ` (${bundle.pythons.join(", ")})` : "";
  return (
    `co-sidecar needs Python ${MIN_PYTHON.join(".")} or newer${versions} to start its server and found none: ` +
    `${problems.join("; ")}. Install Python from python.org (or your package manager), or set ` +
    "co-sidecar.interpreter to a Python's path, then run CO: Restart Server."
  );
}
