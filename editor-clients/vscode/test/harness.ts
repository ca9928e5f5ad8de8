/**
 * Test harness: the real Python server over stdio, driven with vscode-jsonrpc,
 * with the test playing the editor (it answers workspace/applyEdit itself).
 */

import { ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import {
  MessageConnection,
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection,
} from "vscode-jsonrpc/node";

import { CoApi, RequestSender } from "../src/core/api";
import { Methods, RunUpdate, WorkspaceEdit } from "../src/core/protocol";
import { RunTracker } from "../src/core/runs";

/** editor-clients/vscode (tests run from out/test/). */
export const EXTENSION_DIR = path.resolve(__dirname, "..", "..");
export const REPO_ROOT = path.resolve(EXTENSION_DIR, "..", "..");

/** The server's argv: $CO_SIDECAR_CMD (a path, or a JSON argv) or the project's venv console script. */
export function serverCommand(): string[] {
  const env = process.env.CO_SIDECAR_CMD;
  if (env && env.trim().startsWith("[")) return JSON.parse(env) as string[];
  const exe = env && env.trim() ? env.trim() : path.join(REPO_ROOT, ".venv", "bin", "co-sidecar");
  return [exe, "serve"];
}

/** A Python for the test agent: $CO_PYTHON, the project's venv, else python3. */
export function python(): string {
  if (process.env.CO_PYTHON) return process.env.CO_PYTHON;
  const venv = path.join(REPO_ROOT, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

/**
 * Deterministic agent: edits, creates, deletes and renames a file (each only if it can, so it
 * also runs on an already changed tree); a prompt with "slow" sleeps first, "fail" exits 3.
 */
export const AGENT_SCRIPT = String.raw`
import os, pathlib, sys, time
prompt = sys.argv[1]
print("agent: starting: " + prompt, flush=True)
if "slow" in prompt:
    print("agent: sleeping", flush=True)
    time.sleep(60)
if "fail" in prompt:
    print("agent: giving up", file=sys.stderr, flush=True)
    sys.exit(3)
hello = pathlib.Path("hello.txt")
hello.write_text(hello.read_text().replace("world", "there") + "added by agent\n")
pathlib.Path("src").mkdir(exist_ok=True)
pathlib.Path("src/added.txt").write_text("brand new\nfile\n")
if os.path.exists("obsolete.txt"):
    os.remove("obsolete.txt")
if os.path.exists("old_name.txt"):
    os.rename("old_name.txt", "new_name.txt")
print("agent: edited 4 files", flush=True)
print("agent: done", flush=True)
`;

export const INITIAL_FILES: Record<string, string> = {
  "hello.txt": "hello world\nsecond line\n",
  "obsolete.txt": "to be deleted\n",
  "old_name.txt": "this file keeps its content\nbut moves\nto a new name\n",
};

/** The workspace files after the agent ran (path → text; absent = deleted). */
export const EXPECTED_FILES: Record<string, string | undefined> = {
  "hello.txt": "hello there\nsecond line\nadded by agent\n",
  "src/added.txt": "brand new\nfile\n",
  "obsolete.txt": undefined,
  "old_name.txt": undefined,
  "new_name.txt": INITIAL_FILES["old_name.txt"],
};

export interface Workspace {
  dir: string;
  uri: string;
  agent: string;
  cleanup(): void;
  fileUri(rel: string): string;
}

/** A temp git repository with INITIAL_FILES committed, and the agent script beside it. */
export function makeWorkspace(): Workspace {
  const base = mkdtempSync(path.join(tmpdir(), "co-vscode-"));
  const dir = path.join(base, "repo");
  mkdirSync(dir);
  for (const [rel, text] of Object.entries(INITIAL_FILES)) writeFileSync(path.join(dir, rel), text);
  const git = (...args: string[]) => execFileSync("git", args, { cwd: dir, stdio: "pipe" });
  git("init", "-q", "-b", "main");
  git("config", "user.email", "test@example.com");
  git("config", "user.name", "co-sidecar test");
  git("config", "commit.gpgsign", "false");
  writeFileSync(path.join(dir, ".gitignore"), ".runs/\n");
  git("add", "-A");
  git("commit", "-q", "-m", "initial");
  const agent = path.join(base, "agent.py");
  writeFileSync(agent, AGENT_SCRIPT);
  return {
    dir,
    uri: pathToFileURL(dir).toString(),
    agent,
    cleanup: () => rmSync(base, { recursive: true, force: true }),
    fileUri: (rel: string) => pathToFileURL(path.join(dir, rel)).toString(),
  };
}

export interface ApplyEditParams {
  label?: string;
  edit: WorkspaceEdit;
}

export interface Session {
  conn: MessageConnection;
  api: CoApi;
  tracker: RunTracker;
  /** Every co/runUpdate, in arrival order. */
  updates: RunUpdate[];
  /** Every $/progress {token, value}, in arrival order. */
  progress: { token: string | number; value: { kind: string; message?: string } }[];
  /** Every request method the test client sent (to prove co/apply was not sent). */
  sent: string[];
  /** workspace/applyEdit requests the server sent. */
  applyEdits: ApplyEditParams[];
  /** How the test editor answers workspace/applyEdit (set per test). */
  onApplyEdit: (params: ApplyEditParams) => Promise<{ applied: boolean; failureReason?: string }>;
  initializeResult: any;
  stderr(): string;
  close(): Promise<void>;
}

export async function startSession(
  ws: Workspace,
  settings: Record<string, unknown> = {},
  extraEnv: Record<string, string> = {},
): Promise<Session> {
  const [cmd, ...args] = serverCommand();
  const child: ChildProcessWithoutNullStreams = spawn(cmd, args, {
    cwd: ws.dir,
    env: { ...process.env, ...extraEnv },
    stdio: "pipe",
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const spawnError = new Promise<never>((_, reject) => child.on("error", reject));
  const conn = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  const tracker = new RunTracker();
  const session: Session = {
    conn,
    api: undefined as unknown as CoApi,
    tracker,
    updates: [],
    progress: [],
    sent: [],
    applyEdits: [],
    onApplyEdit: async () => ({ applied: false, failureReason: "no handler in this test" }),
    initializeResult: undefined,
    stderr: () => stderr,
    close: async () => {
      try {
        await withTimeout(conn.sendRequest("shutdown"), 5000, "shutdown");
        await conn.sendNotification("exit");
      } catch {
        // fall through to kill
      }
      await new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => {
          child.kill("SIGKILL");
        }, 3000);
        child.on("exit", () => {
          clearTimeout(timer);
          resolve();
        });
      });
      conn.dispose();
    },
  };
  conn.onNotification(Methods.runUpdate, (u: RunUpdate) => {
    session.updates.push(u);
    tracker.handleUpdate(u);
  });
  conn.onNotification("$/progress", (p: any) => session.progress.push(p));
  conn.onNotification(() => undefined); // window/logMessage and friends
  conn.onRequest("workspace/applyEdit", async (params: ApplyEditParams) => {
    session.applyEdits.push(params);
    return session.onApplyEdit(params);
  });
  conn.onRequest("window/workDoneProgress/create", () => null);
  conn.onRequest("client/registerCapability", () => null);
  conn.onRequest("workspace/configuration", (p: { items: { section?: string }[] }) =>
    p.items.map((i) => (i.section === "co-sidecar" ? settings : null)),
  );
  conn.onRequest("window/showMessageRequest", () => null);
  conn.listen();

  const sender: RequestSender = {
    sendRequest: <R>(method: string, params: unknown) => {
      session.sent.push(method);
      return conn.sendRequest(method, params) as Promise<R>;
    },
  };
  session.api = new CoApi(sender);

  session.initializeResult = await Promise.race([
    spawnError,
    withTimeout(
      conn.sendRequest("initialize", {
        processId: process.pid,
        clientInfo: { name: "co-sidecar-vscode-tests" },
        rootUri: ws.uri,
        workspaceFolders: [{ uri: ws.uri, name: "repo" }],
        initializationOptions: { "co-sidecar": settings },
        capabilities: {
          workspace: {
            applyEdit: true,
            workspaceEdit: {
              documentChanges: true,
              resourceOperations: ["create", "rename", "delete"],
              failureHandling: "abort",
              changeAnnotationSupport: { groupsOnLabel: true },
            },
            configuration: true,
            workspaceFolders: true,
          },
          window: { workDoneProgress: true },
          textDocument: { synchronization: { dynamicRegistration: false } },
        },
      }),
      20_000,
      `initialize (server stderr: ${stderr.slice(-2000)})`,
    ),
  ]);
  await conn.sendNotification("initialized", {});
  return session;
}

export function settingsFor(ws: Workspace, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    local: { agentCommand: [python(), ws.agent, "{prompt}"], timeoutSeconds: 120 },
    cloud: { fallback: "allow" },
    ...extra,
  };
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}
