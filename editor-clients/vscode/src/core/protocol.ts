/**
 * The co-sidecar wire contract (custom `co/*` LSP methods), as plain types.
 *
 * No `vscode` import here: node tests use this module against the real server.
 * docs/editors.md ("## VS Code") describes the same contract for people.
 */

export type RunState =
  | "queued"
  | "routing"
  | "launching"
  | "running"
  | "succeeded"
  | "failed"
  | "cancelled"
  | "timed_out"
  | "applied"
  | "rejected";

export type Mode = "local" | "cloud";
export type RequestedMode = "auto" | Mode;

/** States in which the executor is still working. */
export const ACTIVE_STATES: ReadonlySet<RunState> = new Set<RunState>([
  "queued",
  "routing",
  "launching",
  "running",
]);

/** States after which execution is over (the run may still be applied or rejected). */
export const FINISHED_STATES: ReadonlySet<RunState> = new Set<RunState>([
  "succeeded",
  "failed",
  "cancelled",
  "timed_out",
  "applied",
  "rejected",
]);

/** The order a run moves through; used to check that updates never go backwards. */
export const STATE_ORDER: Readonly<Record<RunState, number>> = {
  queued: 0,
  routing: 1,
  launching: 2,
  running: 3,
  succeeded: 4,
  failed: 4,
  cancelled: 4,
  timed_out: 4,
  applied: 5,
  rejected: 5,
};

export function isActive(state: RunState): boolean {
  return ACTIVE_STATES.has(state);
}

export function isFinished(state: RunState): boolean {
  return FINISHED_STATES.has(state);
}

export const Methods = {
  route: "co/route",
  launch: "co/launch",
  status: "co/status",
  list: "co/list",
  cancel: "co/cancel",
  diff: "co/diff",
  apply: "co/apply",
  reject: "co/reject",
  doctor: "co/doctor",
  runUpdate: "co/runUpdate",
} as const;

/** JSON-RPC error codes the server uses (error.data.category carries a string code). */
export const ErrorCodes = {
  invalidParams: -32602,
  runNotFound: -32001,
  invalidState: -32007,
  applyRefused: -32003,
  preflightFailed: -32004,
  patchRefused: -32005,
  workspaceError: -32006,
  cloudError: -32010,
} as const;

export interface Issue {
  code: string;
  message: string;
  fix?: string | null;
}

export interface Fallback {
  reason: string;
  issues?: Issue[];
  at?: string | null;
}

export interface CloudParams {
  envId?: string | null;
  branch?: string | null;
  attempts?: number;
}

export interface LaunchParams {
  prompt: string;
  mode?: RequestedMode;
  taskId?: string;
  metadata?: Record<string, unknown>;
  cloud?: CloudParams;
  workspaceFolder?: string;
  workDoneToken?: string | number;
}

export interface RouteResult {
  mode: Mode;
  requestedMode: RequestedMode;
  reason: string;
  issues: Issue[];
  fallback?: Fallback | null;
  denied: boolean;
}

export interface LaunchResult {
  runId: string;
  taskId: string;
  mode: Mode;
  state: RunState;
  reason: string;
  fallback?: Fallback | null;
}

export interface RunUpdate {
  runId: string;
  taskId: string;
  state: RunState;
  mode?: Mode | null;
  message: string;
  attempt?: number | null;
  pollCount?: number;
  elapsedMs?: number;
  cloudTaskId?: string | null;
  cloudTaskUrl?: string | null;
  stream?: "stdout" | "stderr" | null;
  errorCode?: string | null;
  /** One step of a Codex agent (`message` is its one-line form); docs/codex.md. */
  event?: AgentEvent | null;
  /** The terminal update of a cloud run: what each attempt said. */
  answers?: CloudAnswer[] | null;
}

/** `co/runUpdate.answers[]`: one cloud attempt's assistant messages and worklog summary. */
export interface CloudAnswer {
  attempt: number;
  status?: string | null;
  messages: string[];
  worklog?: string | null;
  hasDiff: boolean;
  error?: string | null;
}

/** `co/runUpdate.event`: a Codex agent's step (kind is the item or event type). */
export interface AgentEvent {
  kind: string;
  type: string;
  itemId?: string | null;
  status?: string | null;
  command?: string | null;
  exitCode?: number | null;
  files?: { path: string; kind: string }[] | null;
  text?: string | null;
}

export interface RunSummary {
  runId: string;
  taskId: string;
  state: RunState;
  mode: Mode;
  requestedMode: RequestedMode;
  prompt: string;
  createdAt: string;
  updatedAt: string;
  failureReason?: string | null;
  cloudTaskUrl?: string | null;
}

export interface ListParams {
  state?: RunState;
  taskId?: string;
  limit?: number;
}

export interface ListResult {
  runs: RunSummary[];
}

export interface RunStateResult {
  runId: string;
  state: RunState;
}

export type FileStatus = "added" | "modified" | "deleted" | "renamed" | "binary";

export interface FileStat {
  path: string;
  oldPath?: string | null;
  status: FileStatus;
  additions: number;
  deletions: number;
}

export interface Conflict {
  path: string;
  reason: string;
}

// --- the LSP WorkspaceEdit subset the server produces -------------------------

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface TextEdit {
  range: Range;
  newText: string;
  annotationId?: string;
}

export interface TextDocumentEdit {
  textDocument: { uri: string; version: number | null };
  edits: TextEdit[];
}

export interface CreateFile {
  kind: "create";
  uri: string;
  options?: { overwrite?: boolean; ignoreIfExists?: boolean };
  annotationId?: string;
}

export interface RenameFile {
  kind: "rename";
  oldUri: string;
  newUri: string;
  options?: { overwrite?: boolean; ignoreIfExists?: boolean };
  annotationId?: string;
}

export interface DeleteFile {
  kind: "delete";
  uri: string;
  options?: { recursive?: boolean; ignoreIfNotExists?: boolean };
  annotationId?: string;
}

export type DocumentChange = TextDocumentEdit | CreateFile | RenameFile | DeleteFile;

export interface ChangeAnnotation {
  label: string;
  needsConfirmation?: boolean;
  description?: string;
}

export interface WorkspaceEdit {
  changes?: Record<string, TextEdit[]>;
  documentChanges?: DocumentChange[];
  changeAnnotations?: Record<string, ChangeAnnotation>;
}

export interface DiffResult {
  runId: string;
  attempt?: number | null;
  patch: string;
  files: FileStat[];
  edit: WorkspaceEdit;
  conflicts: Conflict[];
}

export interface ApplyParams {
  runId: string;
  accept: boolean;
  attempt?: number;
  strategy?: "client" | "git";
  force?: boolean;
}

export interface ApplyResult {
  applied: boolean;
  strategy: "client" | "git";
  paths: string[];
  failureReason?: string | null;
  conflicts: Conflict[];
}

export interface DoctorCheck {
  name: string;
  ok: boolean;
  message: string;
  fix?: string | null;
  code?: string | null;
}

export interface DoctorResult {
  checks: DoctorCheck[];
  fallbackPolicy: "allow" | "deny";
  defaultMode: Mode;
  local: { ok: boolean; issues: Issue[] };
  cloud: { ok: boolean; issues: Issue[] };
}

/** The run record `co/status` returns (the manifest); only the fields the client reads are typed. */
export interface RunRecord {
  runId: string;
  taskId: string;
  prompt: string;
  state: RunState;
  selectedMode?: Mode | null;
  requestedMode?: RequestedMode;
  routingReason?: string | null;
  failureReason?: string | null;
  transitions?: { state: RunState; at: string; message?: string | null }[];
  diff?: { files?: number; additions?: number; deletions?: number } | null;
  [key: string]: unknown;
}

export function isTextDocumentEdit(change: DocumentChange): change is TextDocumentEdit {
  return (change as TextDocumentEdit).textDocument !== undefined;
}
