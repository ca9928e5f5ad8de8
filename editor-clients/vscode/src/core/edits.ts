/**
 * Applying LSP text edits and WorkspaceEdits to text (no `vscode` import).
 *
 * `planWorkspaceEdit` computes every file's before/after text first and touches
 * nothing: the extension's diff preview shows that plan, the node tests (acting
 * as the editor) write it to disk with `nodeEditTarget`. Positions are LSP
 * line/character in UTF-16 code units, which is what JS strings index by.
 */

import {
  ChangeAnnotation,
  DocumentChange,
  Position,
  TextEdit,
  WorkspaceEdit,
  isTextDocumentEdit,
} from "./protocol";

export class EditError extends Error {
  constructor(
    message: string,
    readonly uri?: string,
  ) {
    super(message);
    this.name = "EditError";
  }
}

/** Offsets of each line start; a line ends at \n, \r\n or a lone \r. */
export function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 13 /* \r */) {
      if (text.charCodeAt(i + 1) === 10) i++;
      starts.push(i + 1);
    } else if (ch === 10 /* \n */) {
      starts.push(i + 1);
    }
  }
  return starts;
}

/** LSP position → string offset; out-of-range positions clamp like VS Code does. */
export function offsetAt(text: string, starts: number[], pos: Position): number {
  if (pos.line < 0) return 0;
  if (pos.line >= starts.length) return text.length;
  const lineStart = starts[pos.line];
  let lineEnd = pos.line + 1 < starts.length ? starts[pos.line + 1] : text.length;
  // The character offset never reaches into the line break.
  while (lineEnd > lineStart && (text[lineEnd - 1] === "\n" || text[lineEnd - 1] === "\r")) lineEnd--;
  return Math.min(lineStart + Math.max(0, pos.character), lineEnd);
}

/**
 * Apply LSP TextEdits to a string. Ranges refer to the original text; edits
 * starting at the same place apply in array order; overlapping edits are an error.
 */
export function applyTextEdits(text: string, edits: readonly TextEdit[]): string {
  if (edits.length === 0) return text;
  const starts = lineStarts(text);
  const spans = edits
    .map((edit, index) => ({
      start: offsetAt(text, starts, edit.range.start),
      end: offsetAt(text, starts, edit.range.end),
      newText: edit.newText,
      index,
    }))
    .sort((a, b) => a.start - b.start || a.end - b.end || a.index - b.index);
  let out = "";
  let cursor = 0;
  for (const span of spans) {
    if (span.end < span.start) throw new EditError(`edit ${span.index} has its end before its start`);
    if (span.start < cursor) throw new EditError(`edit ${span.index} overlaps an earlier edit`);
    out += text.slice(cursor, span.start) + span.newText;
    cursor = span.end;
  }
  return out + text.slice(cursor);
}

/** What an editor knows about a file: its text (undefined: no such file) and open-buffer version. */
export interface FileSnapshot {
  text: string | undefined;
  version?: number | null;
}

export type ReadFile = (uri: string) => Promise<FileSnapshot>;

export type FileChangeKind = "create" | "modify" | "delete" | "rename";

export interface PlannedFile {
  /** Where the file ends up (for a deletion: the file that goes). */
  uri: string;
  kind: FileChangeKind;
  /** For a rename: the file it came from. */
  oldUri?: string;
  /** Text before the edit (at `oldUri` for a rename); undefined if the file did not exist. */
  before: string | undefined;
  /** Text after the edit; undefined if the file is deleted. */
  after: string | undefined;
}

export interface EditPlan {
  files: PlannedFile[];
  /** Every URI whose content the plan writes or removes, in final state. */
  finalState: Map<string, string | undefined>;
  /** Annotations whose changes need the user's confirmation. */
  needsConfirmation: string[];
}

/** documentChanges, or the older `changes` map turned into TextDocumentEdits. */
export function documentChangesOf(edit: WorkspaceEdit): DocumentChange[] {
  if (edit.documentChanges) return edit.documentChanges;
  return Object.entries(edit.changes ?? {}).map(([uri, edits]) => ({
    textDocument: { uri, version: null },
    edits,
  }));
}

function annotationIdsOf(change: DocumentChange): string[] {
  if (isTextDocumentEdit(change)) {
    return change.edits.map((e) => e.annotationId).filter((a): a is string => typeof a === "string");
  }
  return change.annotationId ? [change.annotationId] : [];
}

/** Compute every file's before/after text. Throws EditError (touching nothing) if the edit cannot apply. */
export async function planWorkspaceEdit(edit: WorkspaceEdit, read: ReadFile): Promise<EditPlan> {
  const original = new Map<string, FileSnapshot>();
  const current = new Map<string, string | undefined>();
  const annotations: Record<string, ChangeAnnotation> = edit.changeAnnotations ?? {};
  const needsConfirmation = new Set<string>();
  // Per final URI: how it came to be, for the preview.
  const origin = new Map<string, { kind: FileChangeKind; oldUri?: string }>();

  const load = async (uri: string): Promise<string | undefined> => {
    if (current.has(uri)) return current.get(uri);
    const snap = await read(uri);
    original.set(uri, snap);
    current.set(uri, snap.text);
    return snap.text;
  };

  for (const change of documentChangesOf(edit)) {
    for (const id of annotationIdsOf(change)) {
      if (annotations[id]?.needsConfirmation) needsConfirmation.add(id);
    }
    if (isTextDocumentEdit(change)) {
      const uri = change.textDocument.uri;
      const text = await load(uri);
      if (text === undefined) throw new EditError(`cannot edit ${uri}: no such file`, uri);
      const snap = original.get(uri);
      const expected = change.textDocument.version;
      if (
        expected !== null &&
        expected !== undefined &&
        snap?.version !== undefined &&
        snap.version !== null &&
        snap.version !== expected &&
        !origin.has(uri)
      ) {
        throw new EditError(
          `${uri} changed since the diff was computed (version ${snap.version}, edit is for ${expected})`,
          uri,
        );
      }
      current.set(uri, applyTextEdits(text, change.edits));
      if (!origin.has(uri)) origin.set(uri, { kind: "modify" });
    } else if (change.kind === "create") {
      const exists = (await load(change.uri)) !== undefined;
      if (exists && !change.options?.overwrite) {
        if (change.options?.ignoreIfExists) continue;
        throw new EditError(`cannot create ${change.uri}: it already exists`, change.uri);
      }
      current.set(change.uri, "");
      origin.set(change.uri, { kind: exists ? "modify" : "create" });
    } else if (change.kind === "rename") {
      const text = await load(change.oldUri);
      if (text === undefined) throw new EditError(`cannot rename ${change.oldUri}: no such file`, change.oldUri);
      const targetExists = (await load(change.newUri)) !== undefined;
      if (targetExists && !change.options?.overwrite) {
        if (change.options?.ignoreIfExists) continue;
        throw new EditError(`cannot rename to ${change.newUri}: it already exists`, change.newUri);
      }
      current.set(change.newUri, text);
      current.set(change.oldUri, undefined);
      const prior = origin.get(change.oldUri);
      origin.set(change.newUri, {
        kind: prior?.kind === "create" ? "create" : "rename",
        oldUri: prior?.oldUri ?? change.oldUri,
      });
      origin.set(change.oldUri, { kind: "delete" });
    } else if (change.kind === "delete") {
      const exists = (await load(change.uri)) !== undefined;
      if (!exists) {
        if (change.options?.ignoreIfNotExists) continue;
        throw new EditError(`cannot delete ${change.uri}: no such file`, change.uri);
      }
      current.set(change.uri, undefined);
      origin.set(change.uri, { kind: "delete" });
    } else {
      throw new EditError(`unsupported document change: ${JSON.stringify(change)}`);
    }
  }

  const renamedAway = new Set<string>();
  for (const o of origin.values()) if (o.kind === "rename" && o.oldUri) renamedAway.add(o.oldUri);

  const files: PlannedFile[] = [];
  for (const [uri, o] of origin) {
    const after = current.get(uri);
    if (o.kind === "delete") {
      if (renamedAway.has(uri) && after === undefined) continue; // shown as the rename
      const before = original.get(uri)?.text;
      if (before === undefined && after === undefined) continue; // created then deleted
      files.push({ uri, kind: after === undefined ? "delete" : "modify", before, after });
    } else if (o.kind === "rename") {
      files.push({ uri, kind: "rename", oldUri: o.oldUri, before: original.get(o.oldUri!)?.text, after });
    } else if (o.kind === "create") {
      files.push({ uri, kind: "create", before: undefined, after });
    } else {
      files.push({ uri, kind: "modify", before: original.get(uri)?.text, after });
    }
  }

  const finalState = new Map<string, string | undefined>();
  for (const [uri, text] of current) {
    if (text !== original.get(uri)?.text) finalState.set(uri, text);
  }
  return { files, finalState, needsConfirmation: [...needsConfirmation] };
}

/** Where plans are written: the node tests use the file system, anything else can plug in. */
export interface EditTarget {
  read: ReadFile;
  write(uri: string, text: string): Promise<void>;
  remove(uri: string): Promise<void>;
}

/** Plan, then write: deletions first (a rename frees its old path), then writes. */
export async function applyWorkspaceEdit(edit: WorkspaceEdit, target: EditTarget): Promise<EditPlan> {
  const plan = await planWorkspaceEdit(edit, target.read);
  for (const [uri, text] of plan.finalState) if (text === undefined) await target.remove(uri);
  for (const [uri, text] of plan.finalState) if (text !== undefined) await target.write(uri, text);
  return plan;
}

/** The last path segment of a URI, decoded. */
export function baseName(uri: string): string {
  const path = uri.replace(/[?#].*$/, "");
  return decodeURIComponent(path.slice(path.lastIndexOf("/") + 1));
}
