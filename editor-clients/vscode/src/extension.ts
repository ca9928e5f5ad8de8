/**
 * The co-sidecar VS Code extension: starts `co-sidecar serve` over stdio with
 * vscode-languageclient and puts the `co/*` methods behind commands.
 *
 * The logic that does not need the vscode API lives in ./core (tested with
 * node's test runner against the real server); this file is the UI around it.
 */

import * as vscode from "vscode";
import {
  ApplyWorkspaceEditParams,
  ApplyWorkspaceEditRequest,
  ApplyWorkspaceEditResult,
  DidChangeConfigurationNotification,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  WorkDoneProgress,
} from "vscode-languageclient/node";

import {
  ApplyDecision,
  ApplyResult,
  ApplySummary,
  PatchApplyError,
  applyFilePatch,
  hunkPickItems,
  hunkSelection,
  parsePatch,
  CloudAnswer,
  FilePickItem,
  applyOutcomeMessage,
  blockedFiles,
  filePickItems,
  filesSelection,
  narrowDiff,
  AppliedItem,
  appliedEdits,
  appliedOnlyReason,
  fileTextEdits,
  editUris,
  CoApi,
  DiffResult,
  Methods,
  RequestedMode,
  RunState,
  RunSummary,
  RunTracker,
  RunUpdate,
  confirmAndApply,
  describeError,
  describeFile,
  errorCategory,
  formatElapsed,
  isActive,
  isFinished,
  isFollowable,
  serverSettingsPayload,
  shortRunId,
  stateIcon,
  stateLabel,
  truncate,
} from "./core";
import { ReportedError, SECTION, onPythonInterpreterChange, resolveLaunch } from "./serverLaunch";
import { execFile } from "node:child_process";

import { PROPOSED_SCHEME, ProposedContentProvider, buildEntries, openAll, openEntry, previewOrigin, readBase } from "./preview";
import { RunsView, registerRunsView } from "./runsView";
import { registerFollowUp } from "./followUp";


let client: LanguageClient | undefined;
let starting: Promise<LanguageClient> | undefined;
let api: CoApi | undefined;
const tracker = new RunTracker();
let output: vscode.OutputChannel;
let runOutput: vscode.OutputChannel;
let statusItem: vscode.StatusBarItem;
let provider: ProposedContentProvider;
let runsView: RunsView | undefined;
/** Runs that already have a progress notification open. */
const watched = new Set<string>();

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

function firstFolder(): vscode.WorkspaceFolder | undefined {
  const active = vscode.window.activeTextEditor?.document.uri;
  return (active && vscode.workspace.getWorkspaceFolder(active)) ?? vscode.workspace.workspaceFolders?.[0];
}

// --- the language client ---------------------------------------------------------

let extensionPath = "";
/** Whether the running server's interpreter came from the Python extension. */
let serverFromPythonExtension = false;

async function createClient(): Promise<LanguageClient> {
  const folder = firstFolder();
  const launch = await resolveLaunch(extensionPath, folder);
  output.appendLine(`co-sidecar: starting ${launch.description}`);
  serverFromPythonExtension = launch.fromPythonExtension;
  // stdio without `transport: TransportKind.stdio`: that would append `--stdio` to the argv,
  // which `co-sidecar serve` does not take (stdio is its default).
  const serverOptions: ServerOptions = {
    command: launch.command,
    args: launch.args,
    options: { env: launch.env, ...(folder ? { cwd: folder.uri.fsPath } : {}) },
  };
  const clientOptions: LanguageClientOptions = {
    // Full sync of every open file: edits for open buffers are computed from their (unsaved) text.
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    // The editor's workspace trust: only then may the workspace's co-sidecar.toml choose the agent
    // or the cloud host (the server ignores those settings from untrusted workspaces' files).
    initializationOptions: { ...serverSettingsPayload(config().get("settings")), workspaceTrusted: vscode.workspace.isTrusted },
    outputChannel: output,
    middleware: {
      workspace: {
        // If the server pulls settings, answer "co-sidecar" with the server settings only.
        configuration: async (params, token, next) => {
          const result = await next(params, token);
          if (!Array.isArray(result)) return result;
          return params.items.map((item, i) =>
            item.section === SECTION ? serverSettingsPayload(config().get("settings"))[SECTION] : result[i],
          );
        },
      },
    },
  };
  const lc = new LanguageClient(SECTION, "co-sidecar", serverOptions, clientOptions);
  lc.onNotification(Methods.runUpdate, (update: RunUpdate) => onRunUpdate(update));
  // Instead of the client's default handler: tells the server which files the refactor preview
  // really applied (the user may untick some), so the run records exactly those.
  lc.onRequest(ApplyWorkspaceEditRequest.type, (params) => applyEditKeepingChoices(lc, params));
  return lc;
}

/** A file's state as the user would see it: the open document's text, else the file on disk. */
async function fileState(uri: vscode.Uri): Promise<string | undefined> {
  const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
  if (open) return open.getText();
  try {
    return new TextDecoder().decode(await vscode.workspace.fs.readFile(uri));
  } catch {
    return undefined; // absent
  }
}

async function applyEditKeepingChoices(lc: LanguageClient, params: ApplyWorkspaceEditParams): Promise<ApplyWorkspaceEditResult> {
  const uris = editUris(params.edit).map((u) => vscode.Uri.parse(u));
  const before = await Promise.all(uris.map(fileState));
  const edit = await lc.protocol2CodeConverter.asWorkspaceEdit(params.edit);
  const ok = await vscode.workspace.applyEdit(edit);
  if (!ok) return { applied: false, failureReason: "VS Code did not apply the edit (Discard in the refactor preview, or a file changed meanwhile)" };
  const after = await Promise.all(uris.map(fileState));
  // Per file: untouched, taken whole, or some of its edits (hunks) unticked in the preview.
  const taken: AppliedItem[] = [];
  let whole = true;
  uris.forEach((u, i) => {
    const uri = u.toString();
    if (after[i] === before[i]) {
      whole = false;
      return;
    }
    const edits = before[i] !== undefined && after[i] !== undefined ? fileTextEdits(params.edit, uri) : undefined;
    const applied = edits && edits.length > 1 ? appliedEdits(before[i]!, edits, after[i]!) : undefined;
    if (applied && edits && applied.length < edits.length) {
      taken.push({ uri, edits: applied });
      whole = false;
    } else {
      taken.push(uri);
    }
  });
  if (whole) return { applied: true };
  if (taken.length === 0) return { applied: false, failureReason: "nothing was ticked in the refactor preview" };
  return { applied: false, failureReason: appliedOnlyReason(taken) };
}

async function ensureClient(): Promise<LanguageClient> {
  if (client && client.state === State.Running) return client;
  if (starting) return starting;
  starting = (async () => {
    try {
      const lc = client ?? (await createClient());
      client = lc;
      try {
        await lc.start();
      } catch (err) {
        client = undefined;
        const message = `co-sidecar: could not start the server: ${describeError(err)} (see the co-sidecar output)`;
        void vscode.window.showErrorMessage(message, "Show Output", "Open Settings").then((choice) => {
          if (choice === "Show Output") output.show(true);
          if (choice === "Open Settings") void vscode.commands.executeCommand("workbench.action.openSettings", SECTION);
        });
        throw new ReportedError(message);
      }
    } finally {
      starting = undefined;
    }
    api = new CoApi(client!);
    return client!;
  })();
  return starting;
}

async function getApi(): Promise<CoApi> {
  await ensureClient();
  return api!;
}

async function stopClient(): Promise<void> {
  const lc = client;
  client = undefined;
  api = undefined;
  if (lc) await lc.stop().catch(() => undefined);
}

// --- run updates, status bar, progress ---------------------------------------------

function onRunUpdate(update: RunUpdate): void {
  const run = tracker.handleUpdate(update);
  if (update.stream) {
    for (const line of update.message.split(/\r?\n/)) if (line) runOutput.appendLine(`[${shortRunId(run.runId)}] ${line}`);
  } else if (update.event) {
    runOutput.appendLine(`[${shortRunId(run.runId)}] ${update.message}`);
  } else {
    runOutput.appendLine(
      `[${shortRunId(run.runId)}] ${stateLabel(update.state)}${update.message ? `: ${update.message}` : ""}`,
    );
  }
  for (const answer of update.answers ?? []) {
    // A finished cloud run: what each attempt said, in full, in the run output.
    for (const text of answer.messages) {
      for (const line of text.split(/\r?\n/)) runOutput.appendLine(`[${shortRunId(run.runId)}] attempt ${answer.attempt}: ${line}`);
    }
    if (answer.worklog) runOutput.appendLine(`[${shortRunId(run.runId)}] attempt ${answer.attempt}: ${answer.worklog}`);
    if (answer.error) runOutput.appendLine(`[${shortRunId(run.runId)}] attempt ${answer.attempt}: ${answer.error}`);
  }
}

function updateStatusBar(): void {
  const run = tracker.activeRun();
  if (!run) {
    statusItem.text = "$(rocket) CO";
    statusItem.tooltip = "co-sidecar: no runs yet. Click to show runs.";
  } else {
    const elapsed = run.elapsedMs ? ` · ${formatElapsed(run.elapsedMs)}` : "";
    // While the run works: its elapsed time, ticking every second, and its latest step.
    const live = runsView?.statusText(run.runId);
    statusItem.text = `$(${stateIcon(run.state)}) CO: ${stateLabel(run.state)}${live ? ` ${live}` : ""}`;
    statusItem.tooltip = new vscode.MarkdownString(
      `**co-sidecar run** \`${run.runId}\`\n\n${run.prompt ? `${truncate(run.prompt, 200)}\n\n` : ""}` +
        `state: **${stateLabel(run.state)}** · mode: ${run.mode ?? "?"}${elapsed}\n\n${run.message ?? ""}`,
    );
  }
  statusItem.show();
}

/** A cancellable notification that follows a run to its end, fed by co/runUpdate and $/progress. */
function watchRun(runId: string, prompt: string, workDoneToken?: string): void {
  if (watched.has(runId)) return;
  watched.add(runId);
  void vscode.window
    .withProgress(
      { location: vscode.ProgressLocation.Notification, title: `CO: ${truncate(prompt, 50)}`, cancellable: true },
      async (progress, token) => {
        const stop = new AbortController();
        token.onCancellationRequested(async () => {
          try {
            const a = await getApi();
            const result = await a.cancel(runId);
            tracker.noteState(runId, result.state);
          } catch (err) {
            void vscode.window.showErrorMessage(`co-sidecar: cancel failed: ${describeError(err)}`);
          }
        });
        const subs: { dispose(): void }[] = [];
        subs.push(
          tracker.onDidChange((run, update) => {
            if (run.runId !== runId) return;
            const text = update?.stream ? update.message : run.message;
            progress.report({ message: `${stateLabel(run.state)}${text ? ` — ${truncate(text, 80)}` : ""}` });
          }),
        );
        if (workDoneToken && client) {
          subs.push(
            client.onProgress(WorkDoneProgress.type, workDoneToken, (value) => {
              if (value.kind !== "end" && value.message) progress.report({ message: truncate(value.message, 80) });
            }),
          );
        }
        // Missed notifications (or a server restart) must not leave the notification open forever.
        const poll = setInterval(async () => {
          if (!api || client?.state !== State.Running) {
            stop.abort();
            return;
          }
          try {
            const record = await api.status(runId);
            tracker.noteState(runId, record.state);
          } catch {
            // The next update or poll will tell.
          }
        }, 5000);
        try {
          const run = await tracker.waitForFinish(runId, { signal: stop.signal });
          void announceFinished(run.runId, run.state, run.message, run.answers);
        } catch {
          // The server went away; the status bar keeps the last known state.
        } finally {
          clearInterval(poll);
          subs.forEach((s) => s.dispose());
          watched.delete(runId);
        }
      },
    );
}

async function announceFinished(
  runId: string,
  state: RunState,
  message: string,
  answers: CloudAnswer[] = [],
): Promise<void> {
  const short = shortRunId(runId);
  const said = answers.flatMap((a) => a.messages).find((m) => m.trim());
  if (state === "succeeded" && answers.length > 0 && !answers.some((a) => a.hasDiff)) {
    // A cloud task that answered without changing files: the answer is the result.
    const choice = await vscode.window.showInformationMessage(
      `CO run ${short} answered${said ? `: ${truncate(said, 200)}` : " with no changes"}`,
      "Show Answer",
    );
    if (choice === "Show Answer") runOutput.show(true);
  } else if (state === "succeeded") {
    const choice = await vscode.window.showInformationMessage(
      `CO run ${short} succeeded${message ? `: ${truncate(message, 80)}` : ""}`,
      "Preview Diff",
      "Apply…",
      "Reject",
      "Show Output",
    );
    if (choice === "Preview Diff") await previewDiff(runId);
    else if (choice === "Apply…") await applyRun(runId);
    else if (choice === "Reject") await rejectRun(runId);
    else if (choice === "Show Output") runOutput.show(true);
  } else if (state === "failed" || state === "timed_out") {
    const choice = await vscode.window.showErrorMessage(
      `CO run ${short} ${stateLabel(state)}${message ? `: ${truncate(message, 120)}` : ""}`,
      "Show Output",
    );
    if (choice === "Show Output") runOutput.show(true);
  } else if (state === "cancelled") {
    void vscode.window.showInformationMessage(`CO run ${short} cancelled.`);
  }
}

// --- pickers -----------------------------------------------------------------------

interface RunPick extends vscode.QuickPickItem {
  run: RunSummary;
}

function runItem(run: RunSummary): RunPick {
  const when = new Date(run.updatedAt);
  return {
    label: `$(${stateIcon(run.state)}) ${truncate(run.prompt, 70)}`,
    description: `${stateLabel(run.state)} · ${run.mode}${run.requestedMode !== run.mode ? ` (asked ${run.requestedMode})` : ""}`,
    detail: `${run.runId} · ${isNaN(when.getTime()) ? run.updatedAt : when.toLocaleString()}${
      run.failureReason ? ` · ${truncate(run.failureReason, 80)}` : ""
    }`,
    run,
  };
}

async function pickRun(placeHolder: string, states?: RunState[]): Promise<RunSummary | undefined> {
  const a = await getApi();
  const { runs } = await a.list({ limit: 100 });
  const wanted = states ? runs.filter((r) => states.includes(r.state)) : runs;
  if (wanted.length === 0) {
    void vscode.window.showInformationMessage(
      states ? `co-sidecar: no ${states.map(stateLabel).join(" or ")} runs.` : "co-sidecar: no runs yet.",
    );
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(wanted.map(runItem), {
    placeHolder,
    matchOnDescription: true,
    matchOnDetail: true,
  });
  return pick?.run;
}

/** A run id from a command argument (string or {runId}), else the user's pick. */
async function runIdFrom(arg: unknown, placeHolder: string, states?: RunState[]): Promise<string | undefined> {
  if (typeof arg === "string" && arg) return arg;
  if (arg && typeof arg === "object" && typeof (arg as { runId?: unknown }).runId === "string") {
    return (arg as { runId: string }).runId;
  }
  return (await pickRun(placeHolder, states))?.runId;
}

// --- commands ----------------------------------------------------------------------

async function runTask(): Promise<void> {
  const prompt = await vscode.window.showInputBox({
    title: "CO: Run Task",
    prompt: "What should the agent do?",
    placeHolder: "e.g. add type hints to utils.py",
    ignoreFocusOut: true,
    validateInput: (v) => (v.trim() ? undefined : "Describe the task"),
  });
  if (!prompt) return;
  let mode = config().get<string>("defaultMode", "ask") as RequestedMode | "ask";
  if (mode === "ask") {
    const picked = await vscode.window.showQuickPick(
      [
        { label: "auto", description: "let the mode policy choose (cloud when ready, else local)" },
        { label: "local", description: "run the agent here, in a scratch copy of the workspace" },
        { label: "cloud", description: "run in Codex Cloud" },
      ],
      { title: "CO: Run Task", placeHolder: "Where should it run?" },
    );
    if (!picked) return;
    mode = picked.label as RequestedMode;
  }
  const folder = firstFolder();
  const a = await getApi();
  const token = `co-sidecar-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    const result = await a.launch({
      prompt,
      mode,
      ...(folder ? { workspaceFolder: folder.uri.toString() } : {}),
      workDoneToken: token,
    });
    tracker.noteLaunched(result, prompt);
    if (result.fallback) {
      void vscode.window.showWarningMessage(`co-sidecar: running ${result.mode}: ${result.fallback.reason}`);
    }
    watchRun(result.runId, prompt, token);
  } catch (err) {
    const category = errorCategory(err);
    const data = (err as { data?: { issues?: { message: string; fix?: string }[] } }).data;
    const issues = data?.issues?.map((i) => `• ${i.message}${i.fix ? ` (${i.fix})` : ""}`).join("\n");
    void vscode.window.showErrorMessage(`co-sidecar: launch failed: ${describeError(err)}`, {
      modal: category === "preflight",
      detail: issues,
    });
  }
}

async function showRuns(): Promise<void> {
  const run = await pickRun("co-sidecar runs (newest first)");
  if (!run) return;
  type Action = vscode.QuickPickItem & { id: string };
  const actions: Action[] = [];
  if (isActive(run.state)) actions.push({ id: "cancel", label: "$(circle-slash) Cancel" });
  if (run.state === "succeeded" || run.state === "partially_applied") {
    actions.push(
      { id: "preview", label: "$(diff) Preview Diff" },
      { id: "apply", label: "$(check) Apply…" },
      { id: "reject", label: "$(close) Reject" },
    );
  }
  if (isFollowable(run.state)) actions.push({ id: "followUp", label: "$(comment-discussion) Follow Up…" });
  if (isFinished(run.state) && run.state !== "cancelled") actions.push({ id: "patch", label: "$(file-code) Open Patch" });
  if (isActive(run.state) && !watched.has(run.runId)) actions.push({ id: "follow", label: "$(eye) Follow Progress" });
  actions.push({ id: "details", label: "$(json) Show Details" }, { id: "output", label: "$(output) Show Output" });
  if (run.cloudTaskUrl) actions.push({ id: "cloud", label: "$(link-external) Open Cloud Task" });
  const action = await vscode.window.showQuickPick(actions, {
    title: truncate(run.prompt, 60),
    placeHolder: `${stateLabel(run.state)} · ${run.mode} · ${run.runId}`,
  });
  switch (action?.id) {
    case "cancel":
      return cancelRun(run.runId);
    case "preview":
      return previewDiff(run.runId);
    case "apply":
      return applyRun(run.runId);
    case "reject":
      return rejectRun(run.runId);
    case "followUp":
      return void (await vscode.commands.executeCommand("co-sidecar.followUp", run.runId));
    case "patch":
      return openPatch(run.runId);
    case "follow":
      return watchRun(run.runId, run.prompt);
    case "details": {
      const record = await (await getApi()).status(run.runId);
      const doc = await vscode.workspace.openTextDocument({ language: "json", content: JSON.stringify(record, null, 2) });
      await vscode.window.showTextDocument(doc, { preview: true });
      return;
    }
    case "output":
      runOutput.show(true);
      return;
    case "cloud":
      await vscode.env.openExternal(vscode.Uri.parse(run.cloudTaskUrl!));
      return;
  }
}

async function fetchDiff(runId: string): Promise<DiffResult | undefined> {
  try {
    return await (await getApi()).diff(runId);
  } catch (err) {
    void vscode.window.showErrorMessage(`co-sidecar: no diff for run ${shortRunId(runId)}: ${describeError(err)}`);
    return undefined;
  }
}

async function previewDiff(arg?: unknown): Promise<void> {
  const runId = await runIdFrom(arg, "Preview the diff of which run?", ["succeeded", "partially_applied", "applied", "rejected"]);
  if (!runId) return;
  const diff = await fetchDiff(runId);
  if (!diff) return;
  if (diff.files.length === 0) {
    void vscode.window.showInformationMessage(`co-sidecar: run ${shortRunId(runId)} changed no files.`);
    return;
  }
  let entries;
  try {
    entries = await buildEntries(diff, provider);
  } catch (err) {
    void vscode.window.showWarningMessage(
      `co-sidecar: cannot preview against the current files (${describeError(err)}); showing the patch.`,
    );
    return openPatch(runId, diff);
  }
  const binary = diff.files.filter((f) => f.status === "binary").map((f) => f.path);
  if (binary.length) void vscode.window.showInformationMessage(`co-sidecar: binary files not previewed: ${binary.join(", ")}`);
  if (entries.length === 1) return openEntry(entries[0]);
  type Pick = vscode.QuickPickItem & { index: number };
  const picks: Pick[] = [
    { index: -1, label: `$(diff-multiple) All ${entries.length} files`, description: "one multi-diff editor" },
    { index: -2, label: "$(file-code) Unified patch" },
    ...entries.map((e, index) => {
      const stat = diff.files.find((f) => e.file.uri.endsWith(`/${f.path}`));
      return {
        index,
        label: vscode.workspace.asRelativePath(e.resource),
        description: stat ? describeFile(stat) : e.file.kind,
      };
    }),
  ];
  const pick = await vscode.window.showQuickPick(picks, {
    title: `CO: Preview Diff (${shortRunId(runId)})`,
    placeHolder: "Open which file's diff?",
  });
  if (!pick) return;
  if (pick.index === -2) return openPatch(runId, diff);
  if (pick.index === -1) {
    if (await openAll(entries, `CO run ${shortRunId(runId)}: proposed changes`)) return;
    for (const e of entries) await openEntry(e); // no multi-diff editor: one tab per file
    return;
  }
  return openEntry(entries[pick.index]);
}

async function openPatch(runId: string, known?: DiffResult): Promise<void> {
  const diff = known ?? (await fetchDiff(runId));
  if (!diff) return;
  const doc = await vscode.workspace.openTextDocument({ language: "diff", content: diff.patch });
  await vscode.window.showTextDocument(doc, { preview: true });
}

async function confirmModal(summary: ApplySummary): Promise<boolean> {
  const lines = summary.files.slice(0, 15).map(describeFile);
  if (summary.files.length > 15) lines.push(`… and ${summary.files.length - 15} more`);
  if (summary.conflicts.length) {
    lines.push("", "Conflicts:", ...summary.conflicts.map((c) => `! ${c.path}: ${c.reason}`));
  }
  const choice = await vscode.window.showWarningMessage(
    `Apply the changes of CO run ${shortRunId(summary.runId)}: ${summary.text}?`,
    {
      modal: true,
      detail:
        `${lines.join("\n")}\n\nVS Code's refactor preview opens next: tick the changes you accept ` +
        "(they start unticked) and press Apply there.",
    },
    "Apply",
    "Preview Diff First",
  );
  if (choice === "Preview Diff First") void previewDiff(summary.runId);
  return choice === "Apply";
}

async function applyRun(arg?: unknown): Promise<void> {
  const runId = await runIdFrom(arg, "Apply which run?", ["succeeded", "partially_applied"]);
  if (!runId) return;
  const a = await getApi();
  const short = shortRunId(runId);
  const diff = await fetchDiff(runId);
  if (!diff) return;
  let plan: ApplyResult;
  try {
    plan = await a.planApply({ runId });
  } catch (err) {
    void vscode.window.showErrorMessage(`co-sidecar: cannot apply run ${short}: ${describeError(err)}`);
    return;
  }
  const blocked = blockedFiles(plan);
  let files: string[] | undefined;
  if (blocked.length && !plan.overBudget) {
    // Conflicts are never written silently: the user chooses what happens.
    const choice = await vscode.window.showWarningMessage(
      `co-sidecar: ${blocked.length} file${blocked.length === 1 ? "" : "s"} of run ${short} would not apply cleanly.`,
      { modal: true, detail: blocked.map((f) => `${f.path}: ${f.reason ?? f.outcome}`).join("\n") },
      "Apply Clean Files Only",
      "Apply with Conflict Markers",
      "Open in Merge Editor",
      "Choose Files…",
    );
    if (!choice) return;
    if (choice === "Apply with Conflict Markers") return applyWithMarkers(runId, plan);
    if (choice === "Open in Merge Editor") return openMergeEditors(runId, diff, plan);
    const items = filePickItems(diff, plan);
    files = choice === "Choose Files…" ? await pickFiles(runId, items) : items.filter((i) => i.picked).map((i) => i.path);
    if (!files?.length) return;
  } else if (diff.files.length > 1) {
    files = await pickFiles(runId, filePickItems(diff, plan));
    if (!files?.length) return;
  }
  const selection = files && filesSelection(files, plan);
  const outcome = await confirmAndApply(a, runId, confirmModal, { diff: narrowDiff(diff, selection), files: selection });
  reportApply(outcome, runId);
}

/** Tells the user what an apply did (the file pick's and the hunk pick's alike). */
function reportApply(outcome: ApplyDecision, runId: string): void {
  const short = shortRunId(runId);
  switch (outcome.kind) {
    case "applied": {
      const message = applyOutcomeMessage(outcome.result, short);
      tracker.noteState(runId, outcome.result.remaining?.length ? "partially_applied" : "applied");
      if (message.level === "warning") void vscode.window.showWarningMessage(message.text);
      else if (outcome.result.remaining?.length) void vscode.window.showInformationMessage(message.text);
      else void vscode.window.showInformationMessage(`co-sidecar: applied ${outcome.summary.text} from run ${short}.`);
      break;
    }
    case "empty":
      void vscode.window.showInformationMessage(`co-sidecar: run ${short} changed no files.`);
      break;
    case "declined":
      break;
    case "not-applied":
      void vscode.window.showWarningMessage(
        `co-sidecar: not applied: ${outcome.reason}. (In the refactor preview, tick the changes to accept ` +
          "before pressing Apply; Discard leaves the run unapplied.)",
      );
      break;
    case "error":
      void vscode.window.showErrorMessage(`co-sidecar: apply failed: ${outcome.reason}`);
      break;
  }
}

/** The file pick before an apply: every file with its +/- counts, clean ones ticked. */
async function pickFiles(runId: string, items: FilePickItem[]): Promise<string[] | undefined> {
  type Pick = vscode.QuickPickItem & { path: string };
  const picks: Pick[] = items.map((i) => ({ ...i, alwaysShow: true }));
  const chosen = await vscode.window.showQuickPick(picks, {
    canPickMany: true,
    title: `CO: Apply run ${shortRunId(runId)}: which files?`,
    placeHolder: "Untick the files to leave out (they stay for a later CO: Apply), then press Enter",
    ignoreFocusOut: true,
  });
  if (!chosen) return undefined;
  if (chosen.length === 0) {
    void vscode.window.showInformationMessage(`co-sidecar: no file chosen; run ${shortRunId(runId)} was not applied.`);
    return undefined;
  }
  return chosen.map((c) => c.path);
}

/** git writes its conflict markers (the user's explicit choice), then the files open for resolving. */
async function applyWithMarkers(runId: string, plan: ApplyResult): Promise<void> {
  const short = shortRunId(runId);
  let result: ApplyResult;
  try {
    result = await (await getApi()).apply({ runId, strategy: "git", onConflict: "markers" });
  } catch (err) {
    void vscode.window.showErrorMessage(`co-sidecar: apply failed: ${describeError(err)}`);
    return;
  }
  tracker.noteState(runId, result.remaining?.length ? "partially_applied" : "applied");
  const message = applyOutcomeMessage(result, short);
  void (message.level === "warning" ? vscode.window.showWarningMessage(message.text) : vscode.window.showInformationMessage(message.text));
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
  if (!folder) return;
  // Each file opens with its markers and VS Code's inline Accept Current / Incoming / Both actions.
  for (const path of result.conflictPaths ?? plan.conflictPaths ?? []) {
    await vscode.window.showTextDocument(vscode.Uri.joinPath(folder, path), { preview: false });
  }
}

/** The run and file of a co-sidecar diff editor: the command's argument, else the active editor or tab. */
function diffOrigin(arg: unknown): ReturnType<typeof previewOrigin> {
  const candidates: vscode.Uri[] = [];
  if (arg instanceof vscode.Uri) candidates.push(arg);
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active) candidates.push(active);
  const tab = vscode.window.tabGroups?.activeTabGroup.activeTab?.input;
  if (tab instanceof vscode.TabInputTextDiff) candidates.push(tab.modified);
  for (const uri of candidates) {
    const origin = previewOrigin(uri);
    if (origin) return origin;
  }
  return undefined;
}

/** "CO: Choose Hunks…" on a run's diff of one file: keep some hunks, apply those through co/apply. */
async function chooseHunks(arg?: unknown): Promise<void> {
  const origin = diffOrigin(arg);
  if (!origin) {
    void vscode.window.showInformationMessage("co-sidecar: open a run's diff of a file first (CO: Preview Diff), then CO: Choose Hunks….");
    return;
  }
  const { runId, path } = origin;
  const short = shortRunId(runId);
  const diff = await fetchDiff(runId);
  if (!diff) return;
  const items = hunkPickItems(diff, path);
  if (!items.some((i) => !i.applied)) {
    void vscode.window.showInformationMessage(`co-sidecar: every hunk of ${path} in run ${short} is already applied.`);
    return;
  }
  type Pick = vscode.QuickPickItem & { number: number };
  // Applied hunks show as separators: visible, never pickable.
  const picks: Pick[] = items.map((i) =>
    i.applied
      ? { number: i.number, label: `${i.label} · already applied`, kind: vscode.QuickPickItemKind.Separator }
      : { number: i.number, label: i.label, description: i.description, detail: i.detail, picked: true, alwaysShow: true },
  );
  const chosen = await vscode.window.showQuickPick(picks, {
    canPickMany: true,
    title: `CO: Apply run ${short}: which hunks of ${path}?`,
    placeHolder: "Untick the hunks to leave out (they stay for a later CO: Apply), then press Enter",
    ignoreFocusOut: true,
  });
  if (!chosen) return;
  const hunks = hunkSelection(path, items, chosen.map((c) => c.number));
  if (!hunks) {
    void vscode.window.showInformationMessage(`co-sidecar: no hunk chosen; run ${short} was not applied.`);
    return;
  }
  const a = await getApi();
  let plan: ApplyResult;
  let narrowed: DiffResult;
  try {
    plan = await a.planApply({ runId, hunks });
    narrowed = await a.diff(runId, origin.attempt, { hunks });
  } catch (err) {
    void vscode.window.showErrorMessage(`co-sidecar: cannot apply run ${short}: ${describeError(err)}`);
    return;
  }
  const blocked = blockedFiles(plan);
  if (blocked.length) {
    // Nothing is written: the hunks would not apply cleanly; CO: Apply offers the conflict choices.
    const choice = await vscode.window.showWarningMessage(
      `co-sidecar: the chosen hunks of ${path} would not apply cleanly; nothing was applied.`,
      { modal: true, detail: blocked.map((f) => `${f.path}: ${f.reason ?? f.outcome}`).join("\n") },
      "Open in Merge Editor",
    );
    if (choice === "Open in Merge Editor") return openMergeEditors(runId, diff, plan);
    return;
  }
  reportApply(await confirmAndApply(a, runId, confirmModal, { diff: narrowed, hunks }), runId);
}

function git(cwd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("git", args, { cwd, encoding: "utf-8", maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
      err ? reject(new Error(stderr.trim() || err.message)) : resolve(stdout),
    );
  });
}

/**
 * VS Code's merge editor on each conflicting file: the file at the run's base, the user's current
 * text ("Workspace") and the run's version (base + the run's change), all read-only; the result is
 * the workspace file, written only when the user saves it. Nothing is recorded as applied.
 */
async function openMergeEditors(runId: string, diff: DiffResult, plan: ApplyResult): Promise<void> {
  const short = shortRunId(runId);
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
  if (!folder) return;
  const patches = parsePatch(diff.patch);
  const opened: string[] = [];
  const failed: string[] = [];
  for (const f of plan.files ?? []) {
    if (f.outcome !== "conflict") continue;
    const patch = patches.get(f.path);
    const output = vscode.Uri.joinPath(folder, f.path);
    const mine = await readBase(output.toString());
    if (!patch || mine.text === undefined) {
      failed.push(`${f.path}: ${mine.text === undefined ? "not in the workspace" : "not in the run's patch"}`);
      continue;
    }
    let base: string;
    let theirs: string;
    try {
      const source = patch.oldPath ?? f.path;
      if (patch.isNew) base = "";
      else if (patch.oldBlob) base = await git(folder.fsPath, ["cat-file", "blob", patch.oldBlob]);
      else if (plan.workspace?.baseHead) base = await git(folder.fsPath, ["show", `${plan.workspace.baseHead}:${source}`]);
      else throw new Error("the run's base is unknown");
      theirs = applyFilePatch(base, patch);
    } catch (err) {
      const why = err instanceof PatchApplyError ? "the run's base could not be rebuilt" : describeError(err);
      failed.push(`${f.path}: ${why}`);
      continue;
    }
    const at = output.path;
    try {
      await vscode.commands.executeCommand("_open.mergeEditor", {
        base: provider.put(at, base, "base"),
        input1: { uri: provider.put(at, mine.text, "workspace"), title: "Workspace" },
        input2: { uri: provider.put(at, theirs, "run"), title: `co-sidecar run ${short}` },
        output,
      });
      opened.push(f.path);
    } catch (err) {
      failed.push(`${f.path}: ${describeError(err)}`);
    }
  }
  if (opened.length) {
    void vscode.window.showInformationMessage(
      `co-sidecar: ${opened.join(", ")} open in the merge editor: nothing is written until you complete the merge and save. ` +
        `You resolve by hand, so run ${short} records nothing as applied (CO: Reject declines the rest, CO: Apply takes it).`,
    );
  }
  if (failed.length) {
    void vscode.window.showWarningMessage(
      `co-sidecar: cannot open the merge editor for ${failed.join("; ")}. Apply with Conflict Markers still works.`,
    );
  }
}

async function rejectRun(arg?: unknown): Promise<void> {
  const runId = await runIdFrom(arg, "Reject which run?", ["succeeded", "partially_applied"]);
  if (!runId) return;
  try {
    const result = await (await getApi()).reject(runId);
    tracker.noteState(runId, result.state);
    void vscode.window.showInformationMessage(`co-sidecar: run ${shortRunId(runId)} rejected.`);
  } catch (err) {
    void vscode.window.showErrorMessage(`co-sidecar: reject failed: ${describeError(err)}`);
  }
}

async function cancelRun(arg?: unknown): Promise<void> {
  const runId = await runIdFrom(arg, "Cancel which run?", ["queued", "routing", "launching", "running"]);
  if (!runId) return;
  try {
    const result = await (await getApi()).cancel(runId);
    tracker.noteState(runId, result.state);
    void vscode.window.showInformationMessage(`co-sidecar: run ${shortRunId(runId)} ${stateLabel(result.state)}.`);
  } catch (err) {
    void vscode.window.showErrorMessage(`co-sidecar: cancel failed: ${describeError(err)}`);
  }
}

async function doctor(): Promise<void> {
  const report = await (await getApi()).doctor();
  output.appendLine(`co-sidecar doctor (default mode ${report.defaultMode}, fallback ${report.fallbackPolicy}):`);
  for (const c of report.checks) {
    output.appendLine(`  ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.message}${c.fix ? ` — fix: ${c.fix}` : ""}`);
  }
  output.show(true);
  const text = `local ${report.local.ok ? "ready" : "not ready"}, cloud ${report.cloud.ok ? "ready" : "not ready"}`;
  void vscode.window.showInformationMessage(`co-sidecar doctor: ${text} (details in the output).`);
}

function wrap(fn: (...args: unknown[]) => Promise<void>): (...args: unknown[]) => Promise<void> {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (err) {
      if (err instanceof ReportedError) return; // the user has seen it
      void vscode.window.showErrorMessage(`co-sidecar: ${describeError(err)}`);
    }
  };
}

// --- activation --------------------------------------------------------------------

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  extensionPath = context.extensionPath;
  output = vscode.window.createOutputChannel("co-sidecar");
  runOutput = vscode.window.createOutputChannel("co-sidecar runs");
  provider = new ProposedContentProvider();
  statusItem = vscode.window.createStatusBarItem("co-sidecar.status", vscode.StatusBarAlignment.Left, 50);
  statusItem.name = "co-sidecar";
  statusItem.command = "co-sidecar.showRuns";
  const trackerSub = tracker.onDidChange(() => updateStatusBar());
  runsView = registerRunsView(context, {
    tracker,
    currentApi: () => (client?.state === State.Running ? api : undefined),
    getApi,
    runIdFrom: (arg, placeHolder) => runIdFrom(arg, placeHolder),
    // A run that no progress notification follows gets the same finish notification.
    onFinished: (runId) => {
      const run = tracker.get(runId);
      if (run && run.state !== "cancelled" && !watched.has(runId)) void announceFinished(run.runId, run.state, run.message, run.answers);
    },
    onTick: () => updateStatusBar(),
    runsRoot: () => (config().get<{ runs?: { root?: unknown } }>("settings") ?? {}).runs?.root,
  });

  registerFollowUp(context, {
    getApi,
    runIdFrom: (arg, placeHolder) => runIdFrom(arg, placeHolder, ["succeeded", "applied"]),
    onLaunched: (result, prompt, token) => {
      tracker.noteLaunched(result, prompt);
      watchRun(result.runId, prompt, token);
    },
  });
  context.subscriptions.push(
    output,
    runOutput,
    provider,
    statusItem,
    { dispose: () => trackerSub.dispose() },
    vscode.workspace.registerTextDocumentContentProvider(PROPOSED_SCHEME, provider),
    vscode.commands.registerCommand("co-sidecar.runTask", wrap(runTask)),
    vscode.commands.registerCommand("co-sidecar.showRuns", wrap(showRuns)),
    vscode.commands.registerCommand("co-sidecar.previewDiff", wrap(previewDiff)),
    vscode.commands.registerCommand("co-sidecar.apply", wrap(applyRun)),
    vscode.commands.registerCommand("co-sidecar.chooseHunks", wrap(chooseHunks)),
    vscode.commands.registerCommand("co-sidecar.reject", wrap(rejectRun)),
    vscode.commands.registerCommand("co-sidecar.cancel", wrap(cancelRun)),
    vscode.commands.registerCommand("co-sidecar.doctor", wrap(doctor)),
    vscode.commands.registerCommand(
      "co-sidecar.restartServer",
      wrap(async () => {
        await stopClient();
        await ensureClient();
        void vscode.window.showInformationMessage("co-sidecar: server restarted.");
      }),
    ),
    vscode.commands.registerCommand("co-sidecar.showOutput", () => runOutput.show(true)),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (
        e.affectsConfiguration(`${SECTION}.serverCommand`) ||
        e.affectsConfiguration(`${SECTION}.interpreter`) ||
        e.affectsConfiguration(`${SECTION}.importStrategy`)
      ) {
        const choice = await vscode.window.showInformationMessage(
          "co-sidecar: how the server starts changed.",
          "Restart Server",
        );
        if (choice === "Restart Server") await vscode.commands.executeCommand("co-sidecar.restartServer");
      } else if (e.affectsConfiguration(`${SECTION}.settings`) && client?.state === State.Running) {
        await client.sendNotification(DidChangeConfigurationNotification.type, {
          settings: serverSettingsPayload(config().get("settings")),
        });
      }
    }),
    { dispose: () => void stopClient() },
  );
  // A new interpreter picked in the Python extension: restart a server that runs with it.
  void onPythonInterpreterChange(() => {
    if (client && serverFromPythonExtension) void vscode.commands.executeCommand("co-sidecar.restartServer");
  }).then((sub) => sub && context.subscriptions.push(sub));
  updateStatusBar();
  if (config().get<boolean>("autoStart", true) && vscode.workspace.workspaceFolders?.length) {
    ensureClient().catch(() => undefined);
  }
}

export async function deactivate(): Promise<void> {
  await stopClient();
}

/** For test/extension.test.ts: how the server would be started, under a stand-in `vscode`. */
export const _resolveLaunch = resolveLaunch;
