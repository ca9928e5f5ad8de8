/**
 * The acceptance flow, as a function of a `confirm` callback (no `vscode` import).
 *
 * The server applies nothing by itself: `co/apply` with `accept: true` is the
 * user's explicit acceptance, and while handling it the server sends
 * `workspace/applyEdit` to the editor. So the editor must ask the user BEFORE
 * calling `co/apply`; when the answer is no, `co/apply` is never sent.
 */

import { CoApi, describeError } from "./api";
import { ApplyResult, DiffResult, FileStat } from "./protocol";

export interface ApplySummary {
  runId: string;
  attempt?: number;
  files: FileStat[];
  additions: number;
  deletions: number;
  conflicts: DiffResult["conflicts"];
  /** "3 files (+10 −2)" */
  text: string;
}

export function summarizeDiff(diff: DiffResult): ApplySummary {
  const additions = diff.files.reduce((n, f) => n + (f.additions ?? 0), 0);
  const deletions = diff.files.reduce((n, f) => n + (f.deletions ?? 0), 0);
  const count = diff.files.length;
  return {
    runId: diff.runId,
    attempt: diff.attempt ?? undefined,
    files: diff.files,
    additions,
    deletions,
    conflicts: diff.conflicts ?? [],
    text: `${count} file${count === 1 ? "" : "s"} (+${additions} −${deletions})`,
  };
}

/** One line per file: "M src/a.py +3 −1", "R old.txt → new.txt". */
export function describeFile(file: FileStat): string {
  const letter = { added: "A", modified: "M", deleted: "D", renamed: "R", binary: "B" }[file.status] ?? "?";
  const name = file.status === "renamed" && file.oldPath ? `${file.oldPath} → ${file.path}` : file.path;
  return `${letter} ${name} +${file.additions} −${file.deletions}`;
}

export type ConfirmApply = (summary: ApplySummary) => Promise<boolean> | boolean;

export type ApplyDecision =
  | { kind: "declined"; summary: ApplySummary }
  | { kind: "empty"; summary: ApplySummary }
  | { kind: "applied"; summary: ApplySummary; result: ApplyResult }
  | { kind: "not-applied"; summary: ApplySummary; result: ApplyResult; reason: string }
  | { kind: "error"; summary?: ApplySummary; error: unknown; reason: string };

export interface ConfirmAndApplyOptions {
  attempt?: number;
  strategy?: "client" | "git";
  force?: boolean;
  /** An already fetched diff (e.g. the one the user previewed); fetched if absent. */
  diff?: DiffResult;
  /** Only these files of the run (the file pick); the rest stays for a later apply. */
  files?: string[];
  /** Only these hunks (`{path: [n]}`, numbers from co/diff's hunk list). */
  hunks?: Record<string, number[]>;
}

/** Fetch the diff, ask `confirm`, and only on yes call `co/apply` with accept: true. */
export async function confirmAndApply(
  api: CoApi,
  runId: string,
  confirm: ConfirmApply,
  options: ConfirmAndApplyOptions = {},
): Promise<ApplyDecision> {
  let summary: ApplySummary;
  try {
    const diff = options.diff ?? (await api.diff(runId, options.attempt));
    summary = summarizeDiff(diff);
  } catch (error) {
    return { kind: "error", error, reason: describeError(error) };
  }
  if (summary.files.length === 0) return { kind: "empty", summary };
  if (!(await confirm(summary))) return { kind: "declined", summary };
  try {
    const result = await api.apply({
      runId,
      ...(options.attempt !== undefined ? { attempt: options.attempt } : {}),
      ...(options.strategy ? { strategy: options.strategy } : {}),
      ...(options.force ? { force: true } : {}),
      ...(options.files ? { files: options.files } : {}),
      ...(options.hunks ? { hunks: options.hunks } : {}),
    });
    if (result.applied) return { kind: "applied", summary, result };
    const reason =
      result.failureReason ??
      (result.conflicts?.length ? result.conflicts.map((c) => `${c.path}: ${c.reason}`).join("; ") : "not applied");
    return { kind: "not-applied", summary, result, reason };
  } catch (error) {
    return { kind: "error", summary, error, reason: describeError(error) };
  }
}
