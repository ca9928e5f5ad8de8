/**
 * Hunks of a run, without the vscode API: the run's patch read per file, the items of the
 * hunk pick (co/diff's hunk list with each hunk's first changed lines), the co/apply selection
 * for the hunks kept, and a file's text at the run's base with its hunks applied (the merge
 * editor's "co-sidecar run" side).
 */

import { DiffResult, HunkStat } from "./protocol";

export interface PatchHunk {
  header: string;
  oldStart: number;
  /** the hunk's lines, each with its ' ', '-', '+' or '\' prefix */
  lines: string[];
}

export interface FilePatch {
  path: string;
  oldPath?: string;
  /** the base blob (`index <old>..<new>`), absent for a new file */
  oldBlob?: string;
  isNew: boolean;
  isDeleted: boolean;
  hunks: PatchHunk[];
}

const HEADER = /^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@/;

function stripPrefix(name: string, prefix: string): string {
  const unquoted = name.startsWith('"') && name.endsWith('"') ? name.slice(1, -1) : name;
  return unquoted.startsWith(prefix) ? unquoted.slice(prefix.length) : unquoted;
}

/** The files of a git patch, by new path (a deletion: by its old path). */
export function parsePatch(patch: string): Map<string, FilePatch> {
  const out = new Map<string, FilePatch>();
  let file: FilePatch | undefined;
  let hunk: PatchHunk | undefined;
  const finish = () => {
    if (file?.path) out.set(file.path, file);
  };
  for (const line of patch.split("\n")) {
    if (line.startsWith("diff --git ")) {
      finish();
      const m = /^diff --git a\/(.*) b\/(.*)$/.exec(line);
      file = { path: m?.[2] ?? "", oldPath: m?.[1], isNew: false, isDeleted: false, hunks: [] };
      hunk = undefined;
      continue;
    }
    if (!file) continue;
    if (hunk) {
      if (line.startsWith(" ") || line.startsWith("+") || line.startsWith("-") || line.startsWith("\\")) {
        hunk.lines.push(line);
        continue;
      }
      if (line === "") {
        hunk.lines.push(" "); // an empty context line some tools write without its space
        continue;
      }
      hunk = undefined;
    }
    const h = HEADER.exec(line);
    if (h) {
      hunk = { header: line, oldStart: Number(h[1]), lines: [] };
      file.hunks.push(hunk);
    } else if (line.startsWith("index ")) {
      const blob = /^index ([0-9a-f]+)\.\./.exec(line)?.[1];
      if (blob && !/^0+$/.test(blob)) file.oldBlob = blob;
    } else if (line.startsWith("new file mode")) file.isNew = true;
    else if (line.startsWith("deleted file mode")) file.isDeleted = true;
    else if (line.startsWith("rename from ")) file.oldPath = line.slice("rename from ".length);
    else if (line.startsWith("rename to ")) file.path = line.slice("rename to ".length);
    else if (line.startsWith("--- ") && line !== "--- /dev/null") file.oldPath = stripPrefix(line.slice(4), "a/");
    else if (line.startsWith("+++ ") && line !== "+++ /dev/null") file.path = stripPrefix(line.slice(4), "b/");
  }
  finish();
  // Drop trailing blank context a final newline of the patch added.
  for (const f of out.values()) {
    for (const h of f.hunks) while (h.lines.length && h.lines[h.lines.length - 1] === " " && !countsMatch(h)) h.lines.pop();
  }
  return out;
}

function countsMatch(h: PatchHunk): boolean {
  const m = /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(h.header);
  if (!m) return true;
  const oldLines = m[1] === undefined ? 1 : Number(m[1]);
  const newLines = m[2] === undefined ? 1 : Number(m[2]);
  const old = h.lines.filter((l) => l.startsWith(" ") || l.startsWith("-")).length;
  const neu = h.lines.filter((l) => l.startsWith(" ") || l.startsWith("+")).length;
  return old === oldLines && neu === newLines;
}

export interface HunkPickItem {
  path: string;
  number: number;
  /** "Hunk 2  @@ -10,3 +10,4 @@" */
  label: string;
  /** "+1 −0", or "already applied" */
  description: string;
  /** its first changed lines */
  detail: string;
  applied: boolean;
  picked: boolean;
}

/** The first `max` changed lines of a hunk, shortened for one line of a quick pick. */
export function firstChangedLines(hunk: PatchHunk | undefined, max = 3): string {
  if (!hunk) return "";
  const changed = hunk.lines.filter((l) => l.startsWith("+") || l.startsWith("-"));
  const shown = changed.slice(0, max).map((l) => (l.length > 80 ? `${l.slice(0, 79)}…` : l));
  if (changed.length > max) shown.push(`… ${changed.length - max} more`);
  return shown.join("  ⏎  ");
}

/**
 * One item per hunk of `path` in co/diff's list: not applied ones ticked; the patch's hunks (of the
 * parts not applied yet) give each its first changed lines.
 */
export function hunkPickItems(diff: DiffResult, path: string): HunkPickItem[] {
  const stats: HunkStat[] = (diff.hunks ?? []).filter((h) => h.path === path).sort((a, b) => a.number - b.number);
  const inPatch = parsePatch(diff.patch).get(path)?.hunks ?? [];
  const pending = stats.filter((h) => !h.applied);
  // The patch holds the hunks not applied yet, in order; match by @@ line, else by position.
  const bodyOf = (h: HunkStat): PatchHunk | undefined =>
    inPatch.find((p) => p.header === h.header) ??
    (pending.length === inPatch.length ? inPatch[pending.indexOf(h)] : undefined);
  return stats.map((h) => {
    const at = /^@@[^@]*@@/.exec(h.header)?.[0] ?? h.header;
    return {
      path,
      number: h.number,
      label: `Hunk ${h.number}  ${at}`,
      description: h.applied ? "already applied" : `+${h.additions} −${h.deletions}`,
      detail: h.applied ? "" : firstChangedLines(bodyOf(h)),
      applied: h.applied,
      picked: !h.applied,
    };
  });
}

/**
 * The co/apply selection for the hunks kept: `{path: [n...]}` (sorted, no duplicates, only hunks
 * not applied yet), or undefined when none is left to apply.
 */
export function hunkSelection(path: string, items: readonly HunkPickItem[], kept: readonly number[]): Record<string, number[]> | undefined {
  const open = new Set(items.filter((i) => !i.applied).map((i) => i.number));
  const numbers = [...new Set(kept)].filter((n) => open.has(n)).sort((a, b) => a - b);
  return numbers.length ? { [path]: numbers } : undefined;
}

export class PatchApplyError extends Error {}

/**
 * `base` with the file's hunks applied, strictly (every context and removed line must match where
 * the hunk says): the run's version of the file. Throws PatchApplyError when `base` is not the
 * text the patch was made against.
 */
export function applyFilePatch(base: string, file: Pick<FilePatch, "hunks" | "isDeleted">): string {
  if (file.isDeleted) return "";
  const eol = base.includes("\r\n") ? "\r\n" : "\n";
  const lines = base === "" ? [] : base.split(/\r?\n/);
  const baseNewline = base === "" || base.endsWith("\n");
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  // "\ No newline at end of file" after a '-' line: the base lacked it; after '+' (or ' '): the result does.
  let oldNoEol = false;
  let newNoEol = false;
  const out: string[] = [];
  let at = 0; // next base line (0-based) not yet copied
  for (const hunk of file.hunks) {
    // A hunk of zero old lines starts after line oldStart; otherwise at line oldStart.
    const oldCount = hunk.lines.filter((l) => l.startsWith(" ") || l.startsWith("-")).length;
    const start = oldCount === 0 ? hunk.oldStart : hunk.oldStart - 1;
    if (start < at || start > lines.length) throw new PatchApplyError(`hunk ${hunk.header} is out of place`);
    out.push(...lines.slice(at, start));
    at = start;
    let last = "";
    for (const line of hunk.lines) {
      const body = line.slice(1);
      if (line.startsWith("\\")) {
        if (last === "-" || last === " ") oldNoEol = true;
        if (last === "+" || last === " ") newNoEol = true;
        continue;
      }
      if (line.startsWith("+")) {
        out.push(body);
      } else {
        if (lines[at] !== body) throw new PatchApplyError(`hunk ${hunk.header} does not match line ${at + 1}`);
        if (line.startsWith(" ")) out.push(body);
        at++;
      }
      last = line[0];
    }
  }
  out.push(...lines.slice(at));
  if (out.length === 0) return "";
  const finalNewline = newNoEol ? false : oldNoEol ? true : baseNewline;
  return out.join(eol) + (finalNewline ? eol : "");
}
