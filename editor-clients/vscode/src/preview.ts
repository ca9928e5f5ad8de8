/**
 * "CO: Preview Diff": VS Code's own diff editor, file by file.
 *
 * The proposed text is computed here by applying the run's WorkspaceEdit to the
 * base text (the open document if there is one, else the file on disk) with
 * `planWorkspaceEdit`, and served by a TextDocumentContentProvider.
 */

import * as vscode from "vscode";

import { DiffResult, FileSnapshot, PlannedFile, baseName, planWorkspaceEdit, shortRunId } from "./core";

export const PROPOSED_SCHEME = "co-sidecar";

/** Serves the snapshots the preview builds: `co-sidecar:/<path>?<key>`. */
export class ProposedContentProvider implements vscode.TextDocumentContentProvider {
  private readonly contents = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private counter = 0;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.contents.get(uri.query) ?? "";
  }

  /** A URI whose document shows `text`, named like `forPath` so the language mode matches. */
  put(forPath: string, text: string, label: string): vscode.Uri {
    const key = `${label}-${++this.counter}`;
    this.contents.set(key, text);
    // Keep memory bounded: previews of old runs are dropped after a while.
    if (this.contents.size > 400) {
      const oldest = this.contents.keys().next().value;
      if (oldest !== undefined) this.contents.delete(oldest);
    }
    return vscode.Uri.from({ scheme: PROPOSED_SCHEME, path: forPath, query: key });
  }

  dispose(): void {
    this.changed.dispose();
    this.contents.clear();
  }
}

/** Base text as the editor sees it: the open (possibly unsaved) document, else disk. */
export async function readBase(uri: string): Promise<FileSnapshot> {
  const parsed = vscode.Uri.parse(uri);
  const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === parsed.toString());
  // No version: the preview shows the edit against the current text even if it moved on.
  if (open) return { text: open.getText() };
  try {
    const bytes = await vscode.workspace.fs.readFile(parsed);
    return { text: new TextDecoder("utf-8").decode(bytes) };
  } catch (err) {
    if (err instanceof vscode.FileSystemError && err.code === "FileNotFound") return { text: undefined };
    throw err;
  }
}

/** Which run and file a proposed-side URI shows (for CO: Choose Hunks… on a diff editor). */
export interface PreviewOrigin {
  runId: string;
  attempt?: number;
  path: string;
}

const origins = new Map<string, PreviewOrigin>();

export function previewOrigin(uri: vscode.Uri): PreviewOrigin | undefined {
  return uri.scheme === PROPOSED_SCHEME ? origins.get(uri.toString()) : undefined;
}

export interface DiffEntry {
  file: PlannedFile;
  resource: vscode.Uri;
  left: vscode.Uri;
  right: vscode.Uri;
  title: string;
}

export async function buildEntries(
  diff: DiffResult,
  provider: ProposedContentProvider,
): Promise<DiffEntry[]> {
  const plan = await planWorkspaceEdit(diff.edit, readBase);
  const tag = `${shortRunId(diff.runId)}${diff.attempt ? `#${diff.attempt}` : ""}`;
  return plan.files.map((file) => {
    const resource = vscode.Uri.parse(file.uri);
    const name = baseName(file.uri);
    let left: vscode.Uri;
    let right: vscode.Uri;
    let what: string;
    switch (file.kind) {
      case "create":
        left = provider.put(resource.path, "", "empty");
        right = provider.put(resource.path, file.after ?? "", "proposed");
        what = "added";
        break;
      case "delete":
        left = resource;
        right = provider.put(resource.path, "", "deleted");
        what = "deleted";
        break;
      case "rename": {
        const old = vscode.Uri.parse(file.oldUri!);
        left = old;
        right = provider.put(resource.path, file.after ?? "", "proposed");
        what = `renamed from ${baseName(file.oldUri!)}`;
        break;
      }
      default:
        left = resource;
        right = provider.put(resource.path, file.after ?? "", "proposed");
        what = "modified";
    }
    const stat = diff.files.find((f) => file.uri.endsWith(`/${f.path}`));
    if (stat) {
      if (origins.size > 400) origins.delete(origins.keys().next().value as string);
      origins.set(right.toString(), { runId: diff.runId, attempt: diff.attempt ?? undefined, path: stat.path });
    }
    return { file, resource, left, right, title: `${name} (${what}) ↔ CO run ${tag}` };
  });
}

export async function openEntry(entry: DiffEntry): Promise<void> {
  await vscode.commands.executeCommand("vscode.diff", entry.left, entry.right, entry.title, {
    preview: false,
  });
}

/** All files in one multi-diff editor (`vscode.changes`); false where VS Code lacks it. */
export async function openAll(entries: DiffEntry[], title: string): Promise<boolean> {
  try {
    await vscode.commands.executeCommand(
      "vscode.changes",
      title,
      entries.map((e) => [e.resource, e.left, e.right]),
    );
    return true;
  } catch {
    return false;
  }
}
