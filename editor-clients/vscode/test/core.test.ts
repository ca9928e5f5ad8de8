/**
 * The plain modules on their own: text edits, WorkspaceEdit plans, run tracking,
 * the confirmation flow and settings helpers.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { CoApi, describeError, errorCategory } from "../src/core/api";
import { confirmAndApply, describeFile, summarizeDiff } from "../src/core/apply";
import { appliedEdits, applyOutcomeMessage, blockedFiles, fileTextEdits, filePickItems, filesSelection } from "../src/core/applyPick";
import { resolveServerCommand, serverSettingsPayload } from "../src/core/config";
import { EditError, applyTextEdits, applyWorkspaceEdit, planWorkspaceEdit } from "../src/core/edits";
import { DiffResult, RunUpdate, TextEdit, WorkspaceEdit } from "../src/core/protocol";
import { RunTracker, formatElapsed, truncate } from "../src/core/runs";

const edit = (sl: number, sc: number, el: number, ec: number, newText: string): TextEdit => ({
  range: { start: { line: sl, character: sc }, end: { line: el, character: ec } },
  newText,
});

describe("applyTextEdits", () => {
  it("replaces, inserts and deletes across lines", () => {
    const text = "one\ntwo\nthree\n";
    assert.equal(applyTextEdits(text, [edit(1, 0, 1, 3, "TWO")]), "one\nTWO\nthree\n");
    assert.equal(applyTextEdits(text, [edit(0, 3, 2, 0, "\n")]), "one\nthree\n");
    assert.equal(applyTextEdits(text, [edit(3, 0, 3, 0, "four\n")]), "one\ntwo\nthree\nfour\n");
    assert.equal(applyTextEdits("", [edit(0, 0, 0, 0, "new\n")]), "new\n");
  });

  it("uses ranges of the original text whatever the order of the edits", () => {
    const text = "a\nb\nc\n";
    const edits = [edit(2, 0, 2, 1, "C"), edit(0, 0, 0, 1, "A")];
    assert.equal(applyTextEdits(text, edits), "A\nb\nC\n");
  });

  it("applies inserts at the same position in array order", () => {
    assert.equal(applyTextEdits("x", [edit(0, 0, 0, 0, "1"), edit(0, 0, 0, 0, "2")]), "12x");
  });

  it("handles CRLF and lone CR line ends without splitting them", () => {
    assert.equal(applyTextEdits("a\r\nb\r\n", [edit(1, 0, 1, 1, "B")]), "a\r\nB\r\n");
    assert.equal(applyTextEdits("a\rb", [edit(1, 0, 1, 1, "B")]), "a\rB");
    // A character past the end of the line stops before the line break.
    assert.equal(applyTextEdits("ab\r\ncd", [edit(0, 99, 0, 99, "!")]), "ab!\r\ncd");
  });

  it("counts characters in UTF-16 code units like LSP", () => {
    const text = "😀x\n"; // the emoji is two UTF-16 code units
    assert.equal(applyTextEdits(text, [edit(0, 2, 0, 3, "y")]), "😀y\n");
  });

  it("clamps positions beyond the end of the document", () => {
    assert.equal(applyTextEdits("a\n", [edit(5, 0, 9, 0, "b\n")]), "a\nb\n");
  });

  it("refuses overlapping edits", () => {
    assert.throws(() => applyTextEdits("abcdef", [edit(0, 0, 0, 3, "x"), edit(0, 2, 0, 4, "y")]), EditError);
  });
});

function memoryFs(files: Record<string, string>) {
  const state = new Map(Object.entries(files));
  return {
    state,
    target: {
      read: async (uri: string) => ({ text: state.get(uri) }),
      write: async (uri: string, text: string) => void state.set(uri, text),
      remove: async (uri: string) => void state.delete(uri),
    },
  };
}

const ann = { annotationId: "co-sidecar" };
const sampleEdit: WorkspaceEdit = {
  documentChanges: [
    { textDocument: { uri: "file:///w/a.txt", version: null }, edits: [{ ...edit(0, 0, 0, 1, "A"), ...ann }] },
    { kind: "create", uri: "file:///w/new.txt", ...ann },
    { textDocument: { uri: "file:///w/new.txt", version: null }, edits: [{ ...edit(0, 0, 0, 0, "hi\n"), ...ann }] },
    { kind: "delete", uri: "file:///w/gone.txt", ...ann },
    { kind: "rename", oldUri: "file:///w/old.txt", newUri: "file:///w/sub/renamed.txt", ...ann },
    {
      textDocument: { uri: "file:///w/sub/renamed.txt", version: null },
      edits: [{ ...edit(1, 0, 1, 0, "inserted\n"), ...ann }],
    },
  ],
  changeAnnotations: { "co-sidecar": { label: "co-sidecar run", needsConfirmation: true } },
};

describe("planWorkspaceEdit / applyWorkspaceEdit", () => {
  it("plans create, modify, delete and rename (with edits after the rename) and touches nothing", async () => {
    const fs = memoryFs({ "file:///w/a.txt": "abc\n", "file:///w/gone.txt": "bye\n", "file:///w/old.txt": "1\n2\n" });
    const plan = await planWorkspaceEdit(sampleEdit, fs.target.read);
    assert.deepEqual(plan.needsConfirmation, ["co-sidecar"]);
    const kinds = Object.fromEntries(plan.files.map((f) => [f.uri, f.kind]));
    assert.deepEqual(kinds, {
      "file:///w/a.txt": "modify",
      "file:///w/new.txt": "create",
      "file:///w/gone.txt": "delete",
      "file:///w/sub/renamed.txt": "rename",
    });
    const renamed = plan.files.find((f) => f.kind === "rename")!;
    assert.equal(renamed.oldUri, "file:///w/old.txt");
    assert.equal(renamed.before, "1\n2\n");
    assert.equal(renamed.after, "1\ninserted\n2\n");
    assert.equal(fs.state.size, 3, "planning must not write");
  });

  it("applies the plan: the final file set is exact", async () => {
    const fs = memoryFs({ "file:///w/a.txt": "abc\n", "file:///w/gone.txt": "bye\n", "file:///w/old.txt": "1\n2\n" });
    await applyWorkspaceEdit(sampleEdit, fs.target);
    assert.deepEqual(Object.fromEntries(fs.state), {
      "file:///w/a.txt": "Abc\n",
      "file:///w/new.txt": "hi\n",
      "file:///w/sub/renamed.txt": "1\ninserted\n2\n",
    });
  });

  it("fails before writing anything when one change cannot apply", async () => {
    const fs = memoryFs({ "file:///w/a.txt": "abc\n", "file:///w/old.txt": "x" }); // gone.txt is missing
    await assert.rejects(applyWorkspaceEdit(sampleEdit, fs.target), /cannot delete file:\/\/\/w\/gone.txt/);
    assert.equal(fs.state.get("file:///w/a.txt"), "abc\n");
    assert.equal(fs.state.size, 2);
  });

  it("refuses an edit for an open document whose version moved on", async () => {
    const e: WorkspaceEdit = {
      documentChanges: [{ textDocument: { uri: "file:///w/a.txt", version: 3 }, edits: [edit(0, 0, 0, 0, "x")] }],
    };
    await assert.rejects(
      planWorkspaceEdit(e, async () => ({ text: "abc", version: 4 })),
      /changed since the diff was computed/,
    );
    const ok = await planWorkspaceEdit(e, async () => ({ text: "abc", version: 3 }));
    assert.equal(ok.finalState.get("file:///w/a.txt"), "xabc");
  });

  it("refuses to create over an existing file unless told to", async () => {
    const e: WorkspaceEdit = { documentChanges: [{ kind: "create", uri: "file:///w/a.txt" }] };
    const read = async () => ({ text: "exists" });
    await assert.rejects(planWorkspaceEdit(e, read), /already exists/);
    const ignore: WorkspaceEdit = {
      documentChanges: [{ kind: "create", uri: "file:///w/a.txt", options: { ignoreIfExists: true } }],
    };
    assert.equal((await planWorkspaceEdit(ignore, read)).finalState.size, 0);
  });

  it("accepts the older `changes` map", async () => {
    const fs = memoryFs({ "file:///w/a.txt": "abc" });
    await applyWorkspaceEdit({ changes: { "file:///w/a.txt": [edit(0, 3, 0, 3, "d")] } }, fs.target);
    assert.equal(fs.state.get("file:///w/a.txt"), "abcd");
  });
});

const update = (state: RunUpdate["state"], extra: Partial<RunUpdate> = {}): RunUpdate => ({
  runId: "r1",
  taskId: "adhoc",
  state,
  mode: "local",
  message: `now ${state}`,
  attempt: null,
  pollCount: 0,
  elapsedMs: 0,
  cloudTaskId: null,
  cloudTaskUrl: null,
  stream: null,
  errorCode: null,
  event: null,
  answers: null,
  ...extra,
} as RunUpdate);

describe("RunTracker", () => {
  it("follows updates, keeps output apart from messages, and ignores late updates that go backwards", () => {
    const t = new RunTracker();
    const seen: string[] = [];
    t.onDidChange((run) => seen.push(run.state));
    t.handleUpdate(update("queued"));
    t.handleUpdate(update("running"));
    t.handleUpdate(update("running", { stream: "stdout", message: "line 1\nline 2\n" }));
    t.handleUpdate(update("succeeded", { elapsedMs: 1234 }));
    t.handleUpdate(update("running")); // late duplicate
    const run = t.get("r1")!;
    assert.equal(run.state, "succeeded");
    assert.deepEqual(run.states, ["queued", "running", "succeeded"]);
    assert.deepEqual(run.output, ["line 1", "line 2"]);
    assert.equal(run.message, "now succeeded");
    assert.equal(run.elapsedMs, 1234);
    assert.equal(seen.length, 5);
  });

  it("keeps a Codex agent's latest step as the run's message and step", () => {
    const t = new RunTracker();
    t.handleUpdate(update("running"));
    const event = { kind: "command_execution", type: "item.started", itemId: "i1", status: "in_progress", command: "pytest -q", exitCode: null, files: null, text: null };
    t.handleUpdate(update("running", { message: "$ pytest -q", event }));
    t.handleUpdate(update("running", { stream: "stdout", message: "3 passed" }));
    const run = t.get("r1")!;
    assert.equal(run.message, "$ pytest -q");
    assert.deepEqual(run.step, event);
    assert.deepEqual(run.output, ["3 passed"]);
  });

  it("keeps a finished cloud run's answers", () => {
    const t = new RunTracker();
    t.handleUpdate(update("running", { mode: "cloud" }));
    const answers = [{ attempt: 1, status: "completed", messages: ["It returns 1."], worklog: "worklog: 1 entry (tool 1)", hasDiff: false, error: null }];
    t.handleUpdate(update("succeeded", { mode: "cloud", answers }));
    assert.deepEqual(t.get("r1")!.answers, answers);
  });

  it("accepts updates before the launch response and merges the response later", () => {
    const t = new RunTracker();
    t.handleUpdate(update("running"));
    t.noteLaunched({ runId: "r1", taskId: "adhoc", mode: "local", state: "queued", reason: "", fallback: null, cloudEnv: null, warnings: [] }, "the prompt");
    assert.equal(t.get("r1")!.state, "running");
    assert.equal(t.get("r1")!.prompt, "the prompt");
  });

  it("picks the latest still-working run as the active one", () => {
    const t = new RunTracker();
    t.handleUpdate(update("running", { runId: "a" }));
    t.handleUpdate(update("succeeded", { runId: "b" }));
    assert.equal(t.activeRun()!.runId, "a");
    t.handleUpdate(update("failed", { runId: "a" }));
    assert.equal(t.activeRun()!.runId, "a", "latest run when none is working");
  });

  it("waitForFinish resolves on a terminal state and times out otherwise", async () => {
    const t = new RunTracker();
    t.handleUpdate(update("running"));
    const done = t.waitForFinish("r1", { timeoutMs: 1000 });
    setTimeout(() => t.handleUpdate(update("cancelled")), 10);
    assert.equal((await done).state, "cancelled");
    assert.equal((await t.waitForFinish("r1")).state, "cancelled", "already finished resolves at once");
    t.handleUpdate(update("running", { runId: "slow" }));
    await assert.rejects(t.waitForFinish("slow", { timeoutMs: 20 }), /still running/);
    const abort = new AbortController();
    const waiting = t.waitForFinish("slow", { signal: abort.signal });
    abort.abort();
    await assert.rejects(waiting, /stopped waiting/);
  });

  it("bounds agent output", () => {
    const t = new RunTracker(3);
    for (let i = 0; i < 10; i++) t.handleUpdate(update("running", { stream: "stdout", message: `l${i}` }));
    assert.deepEqual(t.get("r1")!.output, ["l7", "l8", "l9"]);
  });
});

const diffResult: DiffResult = {
  runId: "r1",
  attempt: null,
  view: null,
  partial: false,
  patch: "",
  files: [
    { path: "a.py", oldPath: null, status: "modified", additions: 3, deletions: 1 },
    { path: "b.py", oldPath: "old_b.py", status: "renamed", additions: 0, deletions: 0 },
  ],
  edit: { documentChanges: [] },
  conflicts: [],
  overBudget: false,
  budget: { files: 2, lines: 4, bytes: 0, maxFiles: 500, maxLines: 50000, maxBytes: 50000000 },
  hunks: [],
  appliedPaths: [],
};

function fakeApi(result: object = { applied: true, strategy: "client", paths: ["a.py"], conflicts: [] }) {
  const calls: { method: string; params: any }[] = [];
  const api = new CoApi({
    sendRequest: async <R>(method: string, params: unknown) => {
      calls.push({ method, params });
      if (method === "co/diff") return diffResult as R;
      if (method === "co/apply") return result as R;
      throw { code: -32001, message: "unknown runId: 'x'", data: { category: "run_not_found" } };
    },
  });
  return { api, calls };
}

describe("confirmAndApply", () => {
  it("never sends co/apply when the user declines", async () => {
    const { api, calls } = fakeApi();
    const outcome = await confirmAndApply(api, "r1", async () => false);
    assert.equal(outcome.kind, "declined");
    assert.deepEqual(
      calls.map((c) => c.method),
      ["co/diff"],
    );
  });

  it("sends co/apply with accept: true after a yes, and reports a refusal", async () => {
    const { api, calls } = fakeApi();
    const outcome = await confirmAndApply(api, "r1", () => true, { attempt: 2 });
    assert.equal(outcome.kind, "applied");
    assert.deepEqual(calls[1], { method: "co/apply", params: { runId: "r1", attempt: 2, accept: true } });
    const refused = fakeApi({ applied: false, strategy: "client", paths: [], failureReason: "stale", conflicts: [] });
    const no = await confirmAndApply(refused.api, "r1", () => true);
    assert.equal(no.kind, "not-applied");
    assert.equal(no.kind === "not-applied" && no.reason, "stale");
  });

  it("does not ask when there is nothing to apply, and reports request errors", async () => {
    const { api } = fakeApi();
    let asked = false;
    const empty = await confirmAndApply(api, "r1", () => (asked = true), { diff: { ...diffResult, files: [] } });
    assert.equal(empty.kind, "empty");
    assert.equal(asked, false);
    const failing = new CoApi({
      sendRequest: async () => {
        throw { code: -32001, message: "unknown runId: 'x'", data: { category: "run_not_found" } };
      },
    });
    const err = await confirmAndApply(failing, "x", () => true);
    assert.equal(err.kind, "error");
    assert.equal(err.kind === "error" && errorCategory(err.error), "run_not_found");
  });

  it("summarizes a diff for the confirmation", () => {
    const s = summarizeDiff(diffResult);
    assert.equal(s.text, "2 files (+3 −1)");
    assert.equal(describeFile(diffResult.files[1]), "R old_b.py → b.py +0 −0");
  });
});

describe("settings and text helpers", () => {
  it("resolves the server command", () => {
    assert.equal(resolveServerCommand(undefined), undefined);
    assert.equal(resolveServerCommand([]), undefined);
    assert.equal(resolveServerCommand(["", "serve"]), undefined);
    assert.deepEqual(resolveServerCommand("co-sidecar  serve --log x"), ["co-sidecar", "serve", "--log", "x"]);
    assert.deepEqual(
      resolveServerCommand(["${workspaceFolder}/.venv/bin/co-sidecar", "serve"], { workspaceFolder: "/w" }),
      ["/w/.venv/bin/co-sidecar", "serve"],
    );
    assert.deepEqual(resolveServerCommand(["~/bin/co", "serve"], { home: "/home/u" }), ["/home/u/bin/co", "serve"]);
  });

  it("sends server settings under co-sidecar", () => {
    assert.deepEqual(serverSettingsPayload({ local: { timeoutSeconds: 5 } }), {
      "co-sidecar": { local: { timeoutSeconds: 5 } },
    });
    assert.deepEqual(serverSettingsPayload(null), { "co-sidecar": {} });
  });

  it("formats", () => {
    assert.equal(describeError({ code: -32007, message: "run is running" }), "not possible in this state: run is running");
    assert.equal(formatElapsed(1500), "1.5 s");
    assert.equal(formatElapsed(125_000), "2 min 5 s");
    assert.equal(truncate("a  b\nc", 10), "a b c");
    assert.equal(truncate("abcdefghijk", 5), "abcd…");
  });
});

describe("shortRunId", () => {
  it("keeps the distinguishing end of timestamp-first run ids", async () => {
    const { shortRunId } = await import("../src/core/runs");
    assert.equal(shortRunId("20261124T201618557135-ffdd07"), "ffdd07");
    assert.equal(shortRunId("abc"), "abc");
    assert.equal(shortRunId("0123456789abcdef"), "89abcdef");
  });
});

describe("the file pick", () => {
  const plan = {
    applied: false, strategy: "client", paths: [], failureReason: null, conflicts: [], restored: [], outcome: "dry_run",
    dryRun: true, skippedPaths: ["b.py"], conflictPaths: ["b.py"], remaining: ["a.py", "b.py"], workspace: null, overBudget: false,
    files: [
      { path: "a.py", oldPath: null, status: "modified", outcome: "clean", reason: null, hunks: [], written: false },
      { path: "b.py", oldPath: "old_b.py", status: "renamed", outcome: "conflict", reason: "old_b.py was deleted since the run's base", hunks: [], written: false },
    ],
  } as const;

  it("ticks clean files, leaves a conflicting one unticked with why, and shows +/- counts", () => {
    const items = filePickItems(diffResult, plan as never);
    assert.deepEqual(items.map((i) => [i.label, i.description, i.picked]), [
      ["M a.py", "+3 −1", true],
      ["R old_b.py → b.py", "+0 −0 · conflict", false],
    ]);
    assert.equal(items[1].detail, "old_b.py was deleted since the run's base");
    assert.deepEqual(blockedFiles(plan as never).map((f) => f.path), ["b.py"]);
    assert.deepEqual(filesSelection(["a.py"], plan as never), ["a.py"]);
    assert.equal(filesSelection(["b.py", "a.py"], plan as never), undefined);
  });

  it("says what an apply left and what to do next", () => {
    const partial = { ...plan, applied: true, outcome: "partial", dryRun: false, remaining: ["b.py"],
      files: [{ ...plan.files[0], written: true }, plan.files[1]] };
    const m = applyOutcomeMessage(partial as never, "abc123");
    assert.equal(m.level, "warning");
    assert.match(m.text, /applied a\.py from run abc123; not applied: b\.py: old_b\.py was deleted/);
    assert.match(m.text, /Left: b\.py \(CO: Apply applies the rest, CO: Reject declines it\)/);
    const refused = applyOutcomeMessage({ ...plan, dryRun: false, outcome: "conflicts" } as never, "abc123");
    assert.match(refused.text, /was not applied \(conflicts\): b\.py: /);
  });
});

describe("appliedEdits (a file with some hunks unticked in the refactor preview)", () => {
  const before = "a\nb\nc\nd\ne\n";
  const edits = [edit(1, 0, 2, 0, "B\n"), edit(3, 0, 4, 0, "D1\nD2\n")];

  it("names exactly the edits the text shows applied", () => {
    assert.deepEqual(appliedEdits(before, edits, applyTextEdits(before, edits)), [0, 1]);
    assert.deepEqual(appliedEdits(before, edits, applyTextEdits(before, [edits[1]])), [1]);
    assert.deepEqual(appliedEdits(before, edits, applyTextEdits(before, [edits[0]])), [0]);
    assert.deepEqual(appliedEdits(before, edits, before), []);
  });

  it("says when no choice of edits explains the text", () => {
    assert.equal(appliedEdits(before, edits, "a\nB\nc\nd\nX\n"), undefined);
  });

  it("tells an insertion that repeats its neighbour from one that was not made", () => {
    const text = "x\nx\n";
    const ins = [edit(1, 0, 1, 0, "x\n"), edit(2, 0, 2, 0, "y\n")];
    assert.deepEqual(appliedEdits(text, ins, "x\nx\nx\n"), [0]);
    assert.deepEqual(appliedEdits(text, ins, "x\nx\ny\n"), [1]);
  });

  it("takes a file that is also created, deleted or renamed whole", () => {
    const uri = "file:///w/a.py";
    const textEdit = { textDocument: { uri, version: null }, edits };
    assert.equal(fileTextEdits({ documentChanges: [textEdit] }, uri)?.length, 2);
    assert.equal(fileTextEdits({ documentChanges: [{ kind: "create", uri }, textEdit] }, uri), undefined);
    assert.equal(fileTextEdits({ changes: { [uri]: edits } }, uri)?.length, 2);
  });
});
