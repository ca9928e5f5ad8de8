/**
 * The extension's logic against the REAL co-sidecar server over stdio:
 * launch → co/runUpdate to succeeded → co/diff → apply only after confirmation
 * (declined: co/apply never sent, files unchanged; accepted: the test editor
 * applies workspace/applyEdit itself) → cancel of a slow agent.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";

import { ApplySummary, confirmAndApply } from "../src/core/apply";
import { applyOutcomeMessage, filePickItems, filesSelection, narrowDiff } from "../src/core/applyPick";
import { applyFilePatch, hunkPickItems, hunkSelection, parsePatch } from "../src/core/hunks";
import { applyWorkspaceEdit, planWorkspaceEdit } from "../src/core/edits";
import { nodeEditTarget } from "../src/core/nodeTarget";
import {
  ErrorCodes,
  STATE_ORDER,
  RunState,
  TextDocumentEdit,
  isTextDocumentEdit,
} from "../src/core/protocol";
import {
  EXPECTED_FILES,
  INITIAL_FILES,
  Session,
  Workspace,
  makeWorkspace,
  python,
  serverCommand,
  settingsFor,
  startSession,
  withTimeout,
} from "./harness";

const RUN_TIMEOUT = 30_000;

function readFiles(ws: Workspace): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const rel of new Set([...Object.keys(INITIAL_FILES), ...Object.keys(EXPECTED_FILES)])) {
    const file = path.join(ws.dir, rel);
    out[rel] = existsSync(file) ? readFileSync(file, "utf8") : undefined;
  }
  return out;
}

function statesOf(session: Session, runId: string): RunState[] {
  return session.updates.filter((u) => u.runId === runId && !u.stream).map((u) => u.state);
}

async function rpcError(p: Promise<unknown>): Promise<{ code: number; message: string; data?: any }> {
  try {
    await p;
  } catch (err) {
    return err as { code: number; message: string; data?: any };
  }
  assert.fail("expected the request to fail");
}

async function launchAndFinish(session: Session, prompt: string): Promise<string> {
  const launched = await session.api.launch({ prompt, mode: "local" });
  session.tracker.noteLaunched(launched, prompt);
  const run = await session.tracker.waitForFinish(launched.runId, { timeoutMs: RUN_TIMEOUT });
  assert.equal(run.state, "succeeded", `run ended ${run.state}: ${run.message}\n${session.stderr().slice(-3000)}`);
  return launched.runId;
}

const serverExe = serverCommand()[0];
const haveServer = serverExe.includes(path.sep) ? existsSync(serverExe) : true;

describe("co-sidecar server over stdio", { skip: haveServer ? false : `no server at ${serverExe}` }, () => {
  let ws: Workspace;
  let session: Session;

  before(async () => {
    ws = makeWorkspace();
    session = await startSession(ws, settingsFor(ws));
  });

  after(async () => {
    await session?.close();
    ws?.cleanup();
  });

  it("initializes with the co.* commands and document sync", () => {
    const caps = session.initializeResult.capabilities;
    const commands: string[] = caps.executeCommandProvider?.commands ?? [];
    for (const name of ["route", "launch", "status", "list", "cancel", "diff", "apply", "reject", "doctor"]) {
      assert.ok(commands.includes(`co.${name}`), `executeCommandProvider lacks co.${name}: ${commands}`);
    }
    assert.ok(caps.textDocumentSync !== undefined, "the server must sync open documents");
  });

  it("rejects bad params with -32602 naming the field, unknown runs with -32001", async () => {
    const bad = await rpcError(session.api.launch({ prompt: "", mode: "local" }));
    assert.equal(bad.code, ErrorCodes.invalidParams);
    assert.match(bad.message, /prompt/);
    const unknown = await rpcError(session.api.status("no-such-run"));
    assert.equal(unknown.code, ErrorCodes.runNotFound);
  });

  describe("a local run", () => {
    let runId: string;

    it("launches and reports co/runUpdate states in order to succeeded", async () => {
      const token = "vscode-test-token";
      const launched = await session.api.launch({ prompt: "greet there", mode: "local", workDoneToken: token });
      assert.equal(launched.mode, "local");
      assert.ok(launched.runId);
      runId = launched.runId;
      session.tracker.noteLaunched(launched, "greet there");
      const run = await session.tracker.waitForFinish(runId, { timeoutMs: RUN_TIMEOUT });
      assert.equal(run.state, "succeeded", `${run.message}\n${session.stderr().slice(-3000)}`);

      const states = statesOf(session, runId);
      assert.ok(states.includes("running"), `no running update: ${states}`);
      assert.equal(states.at(-1), "succeeded");
      for (let i = 1; i < states.length; i++) {
        assert.ok(STATE_ORDER[states[i]] >= STATE_ORDER[states[i - 1]], `states went backwards: ${states}`);
      }
      // Agent output arrives as stream updates.
      const out = run.output.join("\n");
      assert.match(out, /agent: starting: greet there/);
      assert.match(out, /agent: done/);
      // $/progress on the token we passed: begin ... end.
      // (the end may arrive just after the succeeded update)
      const kinds = () => session.progress.filter((p) => p.token === token).map((p) => p.value.kind);
      await eventually(() => kinds().at(-1) === "end", 5000);
      assert.equal(kinds()[0], "begin", `progress: ${JSON.stringify(session.progress)}`);
      assert.equal(kinds().at(-1), "end");
    });

    it("co/diff returns the patch, file stats and a WorkspaceEdit needing confirmation", async () => {
      const diff = await session.api.diff(runId);
      assert.match(diff.patch, /hello there/);
      const byPath = Object.fromEntries(diff.files.map((f) => [f.path, f]));
      assert.equal(byPath["hello.txt"]?.status, "modified");
      assert.equal(byPath["src/added.txt"]?.status, "added");
      assert.equal(byPath["obsolete.txt"]?.status, "deleted");
      assert.equal(byPath["new_name.txt"]?.status, "renamed");
      assert.equal(byPath["new_name.txt"]?.oldPath, "old_name.txt");
      assert.deepEqual(diff.conflicts, []);

      const changes = diff.edit.documentChanges ?? [];
      assert.ok(changes.length >= 4);
      const annotations = diff.edit.changeAnnotations ?? {};
      for (const change of changes) {
        const ids = isTextDocumentEdit(change) ? change.edits.map((e) => e.annotationId) : [change.annotationId];
        for (const id of ids) {
          assert.ok(id, `change without annotation: ${JSON.stringify(change)}`);
          assert.equal(annotations[id!]?.needsConfirmation, true);
        }
      }
      // What the preview shows: the edit applied to the files on disk gives the agent's result.
      const plan = await planWorkspaceEdit(diff.edit, nodeEditTarget.read);
      for (const [rel, text] of Object.entries(EXPECTED_FILES)) {
        assert.ok(plan.finalState.has(ws.fileUri(rel)), `plan misses ${rel}`);
        assert.equal(plan.finalState.get(ws.fileUri(rel)), text, rel);
      }
      assert.deepEqual(
        plan.files.map((f) => f.kind).sort(),
        ["create", "delete", "modify", "rename"],
      );
      // Nothing was written by co/diff.
      assert.deepEqual(readFiles(ws), INITIAL_FILES_WITH_ABSENT());
    });

    it("declined confirmation: co/apply is never sent and no file changes", async () => {
      session.sent.length = 0;
      let asked: ApplySummary | undefined;
      const outcome = await confirmAndApply(session.api, runId, (summary) => {
        asked = summary;
        return false;
      });
      assert.equal(outcome.kind, "declined");
      assert.equal(asked?.files.length, 4);
      assert.match(asked!.text, /^4 files \(\+\d+ −\d+\)$/);
      assert.ok(!session.sent.includes("co/apply"), `sent: ${session.sent}`);
      assert.equal(session.applyEdits.length, 0);
      assert.deepEqual(readFiles(ws), INITIAL_FILES_WITH_ABSENT());
      assert.equal((await session.api.status(runId)).state, "succeeded");
    });

    it("co/apply without accept: true is refused", async () => {
      const err = await rpcError(session.conn.sendRequest("co/apply", { runId }));
      assert.equal(err.code, ErrorCodes.applyRefused);
      assert.deepEqual(readFiles(ws), INITIAL_FILES_WITH_ABSENT());
    });

    it("confirmed: the server sends workspace/applyEdit, the editor applies it, files change", async () => {
      session.onApplyEdit = async (params) => {
        await applyWorkspaceEdit(params.edit, nodeEditTarget);
        return { applied: true };
      };
      const outcome = await confirmAndApply(session.api, runId, () => true);
      assert.equal(outcome.kind, "applied", JSON.stringify(outcome));
      assert.equal(session.applyEdits.length, 1);
      const request = session.applyEdits[0];
      assert.ok(request.label, "workspace/applyEdit should carry a label");
      assert.ok(Object.values(request.edit.changeAnnotations ?? {}).some((a) => a.needsConfirmation));
      assert.deepEqual(readFiles(ws), EXPECTED_FILES);
      const record = await session.api.status(runId);
      assert.equal(record.state, "applied");
      await session.tracker.waitFor(runId, (r) => r.state === "applied", { timeoutMs: 5000 });
      // Applying twice is an error, and changes nothing.
      const again = await rpcError(session.api.apply({ runId }));
      assert.ok([ErrorCodes.invalidState, ErrorCodes.applyRefused].includes(again.code as -32007), `${again.code}`);
      assert.equal(session.applyEdits.length, 1);
    });
  });

  it("an edit the editor refuses is recorded as not applied", async () => {
    const w2 = makeWorkspace();
    const s2 = await startSession(w2, settingsFor(w2));
    try {
      const runId = await launchAndFinish(s2, "refuse me");
      s2.onApplyEdit = async () => ({ applied: false, failureReason: "user cancelled the refactor preview" });
      const outcome = await confirmAndApply(s2.api, runId, () => true);
      assert.equal(outcome.kind, "not-applied", JSON.stringify(outcome));
      assert.deepEqual(readFiles(w2), INITIAL_FILES_WITH_ABSENT());
      assert.notEqual((await s2.api.status(runId)).state, "applied");
    } finally {
      await s2.close();
      w2.cleanup();
    }
  });

  it("edits for a document open with unsaved changes are computed from its text and carry its version", async () => {
    const w3 = makeWorkspace();
    const s3 = await startSession(w3, settingsFor(w3));
    try {
      const runId = await launchAndFinish(s3, "open buffer");
      const uri = w3.fileUri("hello.txt");
      const unsaved = "# unsaved header\n" + INITIAL_FILES["hello.txt"];
      await s3.conn.sendNotification("textDocument/didOpen", {
        textDocument: { uri, languageId: "plaintext", version: 7, text: unsaved },
      });
      const diff = await s3.api.diff(runId);
      const edit = (diff.edit.documentChanges ?? []).find(
        (c) => isTextDocumentEdit(c) && c.textDocument.uri === uri,
      ) as TextDocumentEdit | undefined;
      assert.ok(edit, `no edit for ${uri}: ${JSON.stringify(diff.edit)}`);
      assert.equal(edit.textDocument.version, 7);
      const plan = await planWorkspaceEdit(diff.edit, async (u) =>
        u === uri ? { text: unsaved, version: 7 } : nodeEditTarget.read(u),
      );
      assert.equal(plan.finalState.get(uri), "# unsaved header\n" + EXPECTED_FILES["hello.txt"]);
    } finally {
      await s3.close();
      w3.cleanup();
    }
  });

  it("cancels a slow agent: the run ends cancelled and has no diff to apply", async () => {
    const launched = await session.api.launch({ prompt: "slow task", mode: "local" });
    session.tracker.noteLaunched(launched, "slow task");
    await session.tracker.waitFor(launched.runId, (r) => r.output.some((l) => l.includes("agent: sleeping")), {
      timeoutMs: RUN_TIMEOUT,
    });
    const started = Date.now();
    const result = await withTimeout(session.api.cancel(launched.runId), 15_000, "co/cancel");
    const run = await session.tracker.waitForFinish(launched.runId, { timeoutMs: 15_000 });
    assert.equal(run.state, "cancelled");
    assert.ok(["cancelled", "running"].includes(result.state), result.state);
    assert.ok(Date.now() - started < 12_000, "cancel took too long");
    assert.equal((await session.api.status(launched.runId)).state, "cancelled");
    const err = await rpcError(session.api.apply({ runId: launched.runId }));
    assert.equal(err.code, ErrorCodes.invalidState);
  });

  it("rejects a run and lists runs newest first with state and mode", async () => {
    const runId = await launchAndFinish(session, "to be rejected");
    const result = await session.api.reject(runId);
    assert.deepEqual(result, { runId, state: "rejected" });
    const { runs } = await session.api.list();
    assert.equal(runs[0].runId, runId);
    assert.equal(runs[0].state, "rejected");
    assert.equal(runs[0].mode, "local");
    const states = runs.map((r) => r.state);
    assert.ok(states.includes("applied") && states.includes("cancelled"), `${states}`);
    const onlyApplied = await session.api.list({ state: "applied" });
    assert.ok(onlyApplied.runs.every((r) => r.state === "applied") && onlyApplied.runs.length === 1);
  });

  it("answers workspace/executeCommand co.list like co/list", async () => {
    const viaCommand: any = await session.conn.sendRequest("workspace/executeCommand", {
      command: "co.list",
      arguments: [{ limit: 2 }],
    });
    assert.equal(viaCommand.runs.length, 2);
  });

  it("co/doctor reports checks", async () => {
    const report = await session.api.doctor();
    assert.ok(Array.isArray(report.checks) && report.checks.length > 0);
    assert.equal(typeof report.local.ok, "boolean");
  });
});

// An agent that speaks `codex exec --json` (local.output = codex-json): its events become steps.
const CODEX_JSON_AGENT = `
import json, pathlib
def emit(**event): print(json.dumps(event), flush=True)
emit(type="thread.started", thread_id="th-vscode")
emit(type="turn.started")
emit(type="item.started", item={"id": "c1", "type": "command_execution", "command": "/bin/bash -lc 'ls'", "aggregated_output": "", "exit_code": None, "status": "in_progress"})
emit(type="item.completed", item={"id": "c1", "type": "command_execution", "command": "/bin/bash -lc 'ls'", "aggregated_output": "a.txt\\n", "exit_code": 0, "status": "completed"})
pathlib.Path("STEPS.md").write_text("steps\\n")
emit(type="item.completed", item={"id": "f1", "type": "file_change", "changes": [{"path": str(pathlib.Path("STEPS.md").resolve()), "kind": "add"}], "status": "completed"})
emit(type="item.completed", item={"id": "m1", "type": "agent_message", "text": "Wrote STEPS.md."})
emit(type="turn.completed", usage={"input_tokens": 3, "output_tokens": 1})
`;

describe("a Codex agent's steps", { skip: haveServer ? false : `no server at ${serverExe}` }, () => {
  it("arrive as runUpdates with event, in order, and the tracker keeps the latest", async () => {
    const ws = makeWorkspace();
    const agent = path.join(path.dirname(ws.dir), "codex_json_agent.py");
    writeFileSync(agent, CODEX_JSON_AGENT);
    const session = await startSession(ws, settingsFor(ws, { local: { agentCommand: [python(), agent], output: "codex-json" } }));
    try {
      const runId = await launchAndFinish(session, "write the steps");
      const steps = session.updates.filter((u) => u.runId === runId && u.event).map((u) => u.message);
      assert.deepEqual(steps, [
        "codex session th-vscode",
        "codex is working",
        "$ ls",
        "exit 0: ls",
        "edited 1 file: STEPS.md",
        "Wrote STEPS.md.",
        "turn completed: 3 tokens in, 1 out",
      ]);
      const output = session.updates.filter((u) => u.runId === runId && u.stream === "stdout").map((u) => u.message);
      assert.deepEqual(output, ["a.txt"]);
      const command = session.updates.find((u) => u.runId === runId && u.message === "exit 0: ls")!.event!;
      assert.equal(command.command, "ls");
      assert.equal(command.exitCode, 0);
      assert.equal(session.tracker.get(runId)!.step!.kind, "turn.completed");
    } finally {
      await session.close();
      ws.cleanup();
    }
  });
});

describe("taking part of a run (the file pick)", { skip: haveServer ? false : `no server at ${serverExe}` }, () => {
  it("plans with a dry run, applies the picked files, records the rest, then applies the rest once", async () => {
    const ws = makeWorkspace();
    const session = await startSession(ws, settingsFor(ws));
    try {
      const runId = await launchAndFinish(session, "greet there");
      const diff = await session.api.diff(runId);
      session.sent.length = 0;
      const plan = await session.api.planApply({ runId });
      assert.equal(plan.dryRun, true);
      assert.equal(session.applyEdits.length, 0, "a dry run sends no edit");
      const items = filePickItems(diff, plan);
      assert.equal(items.length, 4);
      assert.ok(items.every((i) => i.picked), JSON.stringify(items));
      const hello = items.find((i) => i.path === "hello.txt")!;
      assert.equal(hello.label, "M hello.txt");
      assert.match(hello.description, /^\+\d+ −\d+$/);
      assert.deepEqual(readFiles(ws), INITIAL_FILES_WITH_ABSENT());

      session.onApplyEdit = async (params) => {
        await applyWorkspaceEdit(params.edit, nodeEditTarget);
        return { applied: true };
      };
      const picked = ["hello.txt", "src/added.txt"];
      const files = filesSelection(picked, plan);
      assert.deepEqual(files, picked);
      assert.equal(filesSelection(items.map((i) => i.path), plan), undefined, "every file: no selection");
      const outcome = await confirmAndApply(session.api, runId, (s) => s.files.length === 2, { diff: narrowDiff(diff, files), files });
      assert.equal(outcome.kind, "applied", JSON.stringify(outcome));
      const result = outcome.kind === "applied" ? outcome.result : undefined;
      assert.equal(result?.outcome, "partial");
      assert.deepEqual(result?.remaining?.sort(), ["new_name.txt", "obsolete.txt"]);
      assert.match(applyOutcomeMessage(result!, "abc123").text, /Left: .*CO: Apply applies the rest/);
      assert.equal(readFileSync(path.join(ws.dir, "hello.txt"), "utf8"), EXPECTED_FILES["hello.txt"]);
      assert.equal(readFileSync(path.join(ws.dir, "obsolete.txt"), "utf8"), INITIAL_FILES["obsolete.txt"]);
      const record = await session.api.status(runId);
      assert.equal(record.state, "partially_applied");
      assert.deepEqual(Object.keys(record.appliedParts ?? {}).sort(), picked);

      const rest = await session.api.apply({ runId });
      assert.equal(rest.outcome, "applied");
      assert.deepEqual(readFiles(ws), EXPECTED_FILES);
      const again = await rpcError(session.api.apply({ runId }));
      assert.equal(again.code, ErrorCodes.applyRefused);
      assert.match(again.message, /already applied/);
    } finally {
      await session.close();
      ws.cleanup();
    }
  });
});

describe("taking hunks of a file (the hunk pick)", { skip: haveServer ? false : `no server at ${serverExe}` }, () => {
  it("applies the hunk kept, shows the other as left, and rebuilds the merge editor's sides from the base", async () => {
    const ws = makeWorkspace();
    // A longer hello.txt: the agent's two changes (line 1, the end) become two hunks.
    const filler = Array.from({ length: 12 }, (_, i) => `filler ${i + 1}`).join("\n") + "\n";
    const base = `hello world\n${filler}`;
    writeFileSync(path.join(ws.dir, "hello.txt"), base);
    execFileSync("git", ["commit", "-qam", "longer hello"], { cwd: ws.dir });
    const session = await startSession(ws, settingsFor(ws));
    try {
      const runId = await launchAndFinish(session, "greet there");
      const diff = await session.api.diff(runId);
      const items = hunkPickItems(diff, "hello.txt");
      assert.deepEqual(items.map((i) => [i.number, i.picked, i.detail]), [
        [1, true, "-hello world  ⏎  +hello there"],
        [2, true, "+added by agent"],
      ]);
      assert.match(items[0].label, /^Hunk 1  @@ -1,\d+ \+1,\d+ @@$/);

      // The merge editor's sides: the base from the patch's blob, the run's version rebuilt from it.
      const file = parsePatch(diff.patch).get("hello.txt")!;
      const baseText = execFileSync("git", ["cat-file", "blob", file.oldBlob!], { cwd: ws.dir, encoding: "utf8" });
      assert.equal(baseText, base);
      assert.equal(applyFilePatch(baseText, file), `hello there\n${filler}added by agent\n`);

      const hunks = hunkSelection("hello.txt", items, [2])!;
      assert.deepEqual(hunks, { "hello.txt": [2] });
      const plan = await session.api.planApply({ runId, hunks });
      assert.deepEqual(plan.files.map((f) => [f.path, f.outcome]), [["hello.txt", "clean"]]);
      session.onApplyEdit = async (params) => {
        await applyWorkspaceEdit(params.edit, nodeEditTarget);
        return { applied: true };
      };
      const narrowed = await session.api.diff(runId, undefined, { hunks });
      const outcome = await confirmAndApply(session.api, runId, (s) => s.files.length === 1, { diff: narrowed, hunks });
      assert.equal(outcome.kind, "applied", JSON.stringify(outcome));
      assert.equal(readFileSync(path.join(ws.dir, "hello.txt"), "utf8"), `${base}added by agent\n`);
      assert.equal((await session.api.status(runId)).state, "partially_applied");

      const later = hunkPickItems(await session.api.diff(runId), "hello.txt");
      assert.deepEqual(later.map((i) => [i.number, i.applied, i.picked, i.description]), [
        [1, false, true, "+1 −1"],
        [2, true, false, "already applied"],
      ]);
      assert.equal(later[0].detail, "-hello world  ⏎  +hello there");
      assert.deepEqual(hunkSelection("hello.txt", later, [1, 2]), { "hello.txt": [1] });
    } finally {
      await session.close();
      ws.cleanup();
    }
  });
});

async function eventually(cond: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!cond() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
}

function INITIAL_FILES_WITH_ABSENT(): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const rel of Object.keys(EXPECTED_FILES)) out[rel] = undefined;
  return { ...out, ...INITIAL_FILES };
}
