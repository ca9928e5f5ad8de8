/**
 * Taking part of a run, without the vscode API: the server's dry run (co/apply dryRun) as the
 * items of a file pick (all clean files ticked, with +/- counts, a file that would not apply
 * cleanly unticked with why), the selection to send, and what to tell the user afterwards.
 */

import { lineStarts, offsetAt } from "./edits";
import { ApplyFile, ApplyResult, DiffResult, FileStat, TextEdit, WorkspaceEdit } from "./protocol";

export interface FilePickItem {
  path: string;
  /** "M src/a.py" */
  label: string;
  /** "+3 −1", plus the dry run's word for a file that is not clean */
  description: string;
  /** why a file would not apply cleanly, and what to do */
  detail?: string;
  picked: boolean;
}

const LETTER: Record<FileStat["status"], string> = { added: "A", modified: "M", deleted: "D", renamed: "R", binary: "B" };
const WORD: Partial<Record<ApplyFile["outcome"], string>> = {
  merged: "3-way merge",
  conflict: "conflict",
  skipped: "skipped",
  already_applied: "already applied",
};

export function blockedFiles(plan: ApplyResult): ApplyFile[] {
  return (plan.files ?? []).filter((f) => f.outcome === "conflict" || f.outcome === "skipped");
}

/** One item per file of the dry run: clean ones ticked, the others unticked with why. */
export function filePickItems(diff: DiffResult, plan: ApplyResult): FilePickItem[] {
  const stats = new Map(diff.files.map((f) => [f.path, f]));
  return (plan.files ?? []).map((f) => {
    const s = stats.get(f.path);
    const name = f.oldPath ? `${f.oldPath} → ${f.path}` : f.path;
    const word = WORD[f.outcome];
    const blocked = f.outcome === "conflict" || f.outcome === "skipped";
    return {
      path: f.path,
      label: `${LETTER[f.status] ?? "?"} ${name}`,
      description: `+${s?.additions ?? 0} −${s?.deletions ?? 0}${word ? ` · ${word}` : ""}`,
      detail: f.reason ?? undefined,
      picked: !blocked,
    };
  });
}

/** The `files` to send for the paths picked: undefined when they are every file (the whole rest). */
export function filesSelection(picked: readonly string[], plan: ApplyResult): string[] | undefined {
  const all = (plan.files ?? []).map((f) => f.path);
  return picked.length === all.length && all.every((p) => picked.includes(p)) ? undefined : [...picked];
}

/** The diff narrowed to the picked files (for the confirmation's summary). */
export function narrowDiff(diff: DiffResult, files: readonly string[] | undefined): DiffResult {
  return files ? { ...diff, files: diff.files.filter((f) => files.includes(f.path)) } : diff;
}

/** "calc.py: you and the run changed the same lines …; img.bin: binary file …" */
export function blockedText(files: readonly ApplyFile[]): string {
  return files.map((f) => `${f.path}: ${f.reason ?? f.outcome}`).join("; ");
}

/** What an apply did, for a notification: its level and text (with the next step). */
export function applyOutcomeMessage(result: ApplyResult, short: string): { level: "info" | "warning"; text: string } {
  const written = (result.files ?? []).filter((f) => f.written).map((f) => f.path);
  const left = result.remaining ?? [];
  const rest = left.length ? ` Left: ${left.join(", ")} (CO: Apply applies the rest, CO: Reject declines it).` : "";
  if (result.outcome === "conflicts" && result.applied) {
    return {
      level: "warning",
      text: `co-sidecar: applied run ${short} with conflict markers in ${(result.conflictPaths ?? []).join(", ")}: resolve them, then save.${rest}`,
    };
  }
  const skipped = blockedFiles(result).filter((f) => !f.written);
  if (result.applied && skipped.length) {
    return { level: "warning", text: `co-sidecar: applied ${written.join(", ")} from run ${short}; not applied: ${blockedText(skipped)}.${rest}` };
  }
  if (result.applied) {
    return { level: "info", text: `co-sidecar: applied ${written.length} file${written.length === 1 ? "" : "s"} from run ${short}: ${written.join(", ")}.${rest}` };
  }
  const why = skipped.length ? blockedText(skipped) : (result.failureReason ?? "not applied");
  return { level: "warning", text: `co-sidecar: run ${short} was not applied (${result.outcome ?? "refused"}): ${why}` };
}

/** How a client says it applied only part of an edit (the server's apply_plan.APPLIED_ONLY). */
export const APPLIED_ONLY = "co-sidecar: applied only: ";

/** A file the client applied: whole (its URI), or only some of its text edits (their indices). */
export type AppliedItem = string | { uri: string; edits: number[] };

export function appliedOnlyReason(items: readonly AppliedItem[]): string {
  return APPLIED_ONLY + JSON.stringify(items);
}

/** A file's text edits in an edit, in order; undefined when the edit also creates, deletes or
 * renames it (such a file is taken whole). */
export function fileTextEdits(edit: WorkspaceEdit, uri: string): TextEdit[] | undefined {
  const out: TextEdit[] = [...(edit.changes?.[uri] ?? [])];
  for (const change of edit.documentChanges ?? []) {
    if ("textDocument" in change) {
      if (change.textDocument.uri === uri) out.push(...change.edits);
    } else if (change.kind === "rename" ? change.oldUri === uri || change.newUri === uri : change.uri === uri) {
      return undefined;
    }
  }
  return out;
}

/**
 * Which of a file's text edits `after` shows applied to `before` (indices, in order), or
 * undefined when no choice of them explains it (the file was changed some other way). The
 * refactor preview lets the user untick single edits of a file: one edit is one hunk.
 */
export function appliedEdits(before: string, edits: readonly TextEdit[], after: string): number[] | undefined {
  const starts = lineStarts(before);
  const spans = edits
    .map((e, i) => ({ i, start: offsetAt(before, starts, e.range.start), end: offsetAt(before, starts, e.range.end), text: e.newText }))
    .sort((a, b) => a.start - b.start);
  const seen = new Map<string, number[] | null>();
  // k: the next span; from: where `before` resumes after the last span; at: the place in `after`.
  const walk = (k: number, from: number, at: number): number[] | null => {
    const key = `${k}:${at}`;
    const known = seen.get(key);
    if (known !== undefined) return known;
    let found: number[] | null = null;
    const gap = before.slice(from, k < spans.length ? spans[k].start : before.length);
    if (after.startsWith(gap, at)) {
      const p = at + gap.length;
      if (k === spans.length) {
        found = p === after.length ? [] : null;
      } else {
        const s = spans[k];
        if (after.startsWith(s.text, p)) {
          const rest = walk(k + 1, s.end, p + s.text.length);
          if (rest) found = [s.i, ...rest];
        }
        const old = before.slice(s.start, s.end);
        if (!found && after.startsWith(old, p)) found = walk(k + 1, s.end, p + old.length);
      }
    }
    seen.set(key, found);
    return found;
  };
  const applied = walk(0, 0, 0);
  return applied ? applied.sort((a, b) => a - b) : undefined;
}

/** The files an edit touches, as URIs (a rename: its new name; no duplicates). */
export function editUris(edit: WorkspaceEdit): string[] {
  const out: string[] = [];
  for (const change of edit.documentChanges ?? []) {
    if ("textDocument" in change) out.push(change.textDocument.uri);
    else if (change.kind === "rename") out.push(change.newUri);
    else out.push(change.uri);
  }
  out.push(...Object.keys(edit.changes ?? {}));
  return [...new Set(out)];
}
