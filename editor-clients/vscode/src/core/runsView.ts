/**
 * The runs view's model (no `vscode` import): every run the server lists, grouped by the run
 * it follows up (root run), newest first, with a live elapsed time computed here from the
 * run's start, the latest step, and diff stats when known.
 *
 * Fed by `co/list` (a rebuild after activation, a reload or a server restart), by
 * `co/runUpdate` and by results of requests (through the `RunTracker`), and by `co/status`
 * (diff stats and duration of finished runs). `parentRunId` / `rootRunId` are optional on
 * list rows and updates: without them every run is its own root.
 */

import {
  DiffStats,
  FINISHED_STATES,
  Mode,
  RunManifest,
  RunState,
  RunSummary,
  RunUpdate,
  STATE_ORDER,
  isActive,
  isFinished,
} from "./protocol";
import { TrackedRun, shortRunId, stateIcon, stateLabel, truncate } from "./runs";

/** Lineage fields a server may add to list rows, updates and manifests (follow-ups). */
export interface Lineage {
  parentRunId?: string | null;
  rootRunId?: string | null;
}

type Optional = "parentRunId" | "rootRunId" | "diffStats";

/** A `co/list` row; lineage and stats optional (an older server sends neither). */
export type ListRow = Omit<RunSummary, Optional> & Lineage & { diffStats?: DiffStats | null };

/** A `co/runUpdate`; lineage and live diff stats optional (an older server sends neither). */
export type LiveUpdate = Omit<RunUpdate, Optional> & Lineage & { diffStats?: DiffStats | null };

export interface RunRow extends Lineage {
  runId: string;
  taskId: string;
  state: RunState;
  mode?: Mode | null;
  prompt?: string;
  createdAt?: string;
  /** Client clock (ms) of the run's start: the first update's arrival minus its elapsedMs, else createdAt. */
  startMs?: number;
  /** Whether startMs came from an update (no clock skew) rather than createdAt. */
  startFromUpdate: boolean;
  /** The largest elapsedMs the server reported. */
  reportedElapsedMs: number;
  /** How long execution took, once finished (when known). */
  durationMs?: number;
  /** Client clock of the last update or list row about this run. */
  seenMs: number;
  /** The latest step: a state message, an agent step or the last output line. */
  step?: string;
  failureReason?: string | null;
  cloudTaskUrl?: string | null;
  diff?: DiffStats;
  /** co/status was read for this run in its current state. */
  detailsFor?: RunState;
}

export interface RunGroup {
  run: RunRow;
  /** The other runs of the same root, newest first. */
  children: RunRow[];
}

/** What changed with one input, for the view (refresh what) and the extension (announce what). */
export interface Change {
  row: RunRow;
  /** A run the view did not list before (the tree's shape changed). */
  added: boolean;
  /** Execution ended with this input (active → finished). */
  finished: boolean;
}

const stepMax = 80;

export class RunsModel {
  private readonly rows = new Map<string, RunRow>();

  /**
   * Rebuild from a `co/list` answer. `requestedAt` is when the list was asked for: a run it
   * does not include is kept only if an update about it arrived since (it started meanwhile).
   */
  loadList(list: ListRow[], requestedAt: number, now: number): void {
    const next = new Map<string, RunRow>();
    for (const item of list) {
      const row = this.rows.get(item.runId) ?? this.blank(item.runId, item.taskId, now);
      this.setState(row, item.state, now);
      row.mode = item.mode;
      row.prompt = item.prompt;
      row.createdAt = item.createdAt;
      row.failureReason = item.failureReason;
      row.cloudTaskUrl = item.cloudTaskUrl ?? row.cloudTaskUrl;
      this.setLineage(row, item);
      // A live run's stats from its updates are newer than the list's.
      if (item.diffStats && isStats(item.diffStats) && !(row.diff && isActive(row.state))) row.diff = { ...item.diffStats };
      if (!row.startFromUpdate) {
        const created = Date.parse(item.createdAt);
        if (!Number.isNaN(created)) row.startMs = created;
      }
      row.seenMs = now;
      next.set(row.runId, row);
    }
    for (const row of this.rows.values()) {
      if (!next.has(row.runId) && row.seenMs >= requestedAt) next.set(row.runId, row);
    }
    this.rows.clear();
    for (const [id, row] of next) this.rows.set(id, row);
  }

  /** Feed one `co/runUpdate`. */
  applyUpdate(update: LiveUpdate, now: number): Change {
    const known = this.rows.get(update.runId);
    const row = known ?? this.blank(update.runId, update.taskId, now);
    if (!known) this.rows.set(row.runId, row);
    const wasActive = !known || isActive(row.state);
    const stale = known !== undefined && STATE_ORDER[update.state] < STATE_ORDER[row.state];
    row.seenMs = now;
    if (update.mode) row.mode = update.mode;
    if (update.cloudTaskUrl) row.cloudTaskUrl = update.cloudTaskUrl;
    this.setLineage(row, update);
    if (typeof update.elapsedMs === "number" && update.elapsedMs >= 0) {
      row.reportedElapsedMs = Math.max(row.reportedElapsedMs, update.elapsedMs);
      if (!row.startFromUpdate) {
        row.startMs = now - update.elapsedMs;
        row.startFromUpdate = true;
      }
    }
    if (update.diffStats && isStats(update.diffStats)) row.diff = { ...update.diffStats };
    if (!stale) {
      const text = update.stream ? lastLine(update.message) : update.message;
      if (text) row.step = truncate(text, stepMax);
    }
    this.setState(row, update.state, now, update.elapsedMs);
    return { row, added: !known, finished: wasActive && isFinished(row.state) && known !== undefined };
  }

  /** A run as the tracker knows it after a launch or a request's result (co/cancel, co/apply…). */
  noteTracked(run: TrackedRun, now: number): Change {
    const known = this.rows.get(run.runId);
    const row = known ?? this.blank(run.runId, run.taskId, now);
    if (!known) this.rows.set(row.runId, row);
    const wasActive = isActive(row.state);
    if (run.prompt && !row.prompt) row.prompt = run.prompt;
    if (run.mode && !row.mode) row.mode = run.mode;
    this.setState(row, run.state, now);
    return { row, added: !known, finished: known !== undefined && wasActive && isFinished(row.state) };
  }

  /** What `co/status` says about a run: diff stats, duration, lineage. */
  noteDetails(manifest: RunManifest & Lineage): RunRow | undefined {
    const row = this.rows.get(manifest.runId);
    if (!row) return undefined;
    this.setState(row, manifest.state, row.seenMs);
    const details = detailsFromManifest(manifest);
    if (details.diff) row.diff = details.diff;
    if (details.durationMs !== undefined && isFinished(row.state)) row.durationMs = details.durationMs;
    if (!row.prompt) row.prompt = manifest.prompt;
    this.setLineage(row, manifest);
    row.detailsFor = row.state;
    return row;
  }

  get(runId: string): RunRow | undefined {
    return this.rows.get(runId);
  }

  /** Every run, newest first (run ids start with their creation time, as the server sorts). */
  all(): RunRow[] {
    return [...this.rows.values()].sort(newestFirst);
  }

  live(): RunRow[] {
    return this.all().filter((r) => isActive(r.state));
  }

  /** Finished runs whose co/status was not read in their current state (newest first). */
  needingDetails(limit: number): RunRow[] {
    return this.all()
      .filter((r) => isFinished(r.state) && r.detailsFor !== r.state && r.state !== "cancelled")
      .slice(0, limit);
  }

  /** Runs grouped by root run: groups ordered by their newest run, each headed by its root. */
  groups(): RunGroup[] {
    const byRoot = new Map<string, RunRow[]>();
    for (const row of this.all()) {
      const root = this.rootOf(row);
      const members = byRoot.get(root);
      if (members) members.push(row);
      else byRoot.set(root, [row]);
    }
    return [...byRoot.entries()].map(([root, members]) => {
      // The root heads its group; a root that is not listed (pruned) leaves its oldest follow-up.
      const head = members.find((m) => m.runId === root) ?? members[members.length - 1];
      return { run: head, children: members.filter((m) => m !== head) };
    });
  }

  /** The run a group belongs to: rootRunId, else the parent chain's end, else the run itself. */
  rootOf(row: RunRow): string {
    if (row.rootRunId) return row.rootRunId;
    let current = row;
    const seen = new Set<string>([row.runId]);
    while (current.parentRunId) {
      const parent = this.rows.get(current.parentRunId);
      if (!parent) return current.parentRunId;
      if (parent.rootRunId) return parent.rootRunId;
      if (seen.has(parent.runId)) break; // a cycle: bad data, stop
      seen.add(parent.runId);
      current = parent;
    }
    return current.runId;
  }

  private blank(runId: string, taskId: string, now: number): RunRow {
    return { runId, taskId, state: "queued", startFromUpdate: false, reportedElapsedMs: 0, seenMs: now };
  }

  private setLineage(row: RunRow, from: Lineage): void {
    if (typeof from.parentRunId === "string" && from.parentRunId) row.parentRunId = from.parentRunId;
    if (typeof from.rootRunId === "string" && from.rootRunId) row.rootRunId = from.rootRunId;
  }

  /** States only move forward; the moment a run finishes its duration is fixed. */
  private setState(row: RunRow, state: RunState, now: number, reportedMs?: number): void {
    if (STATE_ORDER[state] < STATE_ORDER[row.state]) return;
    const wasActive = isActive(row.state);
    row.state = state;
    if (wasActive && isFinished(state) && row.durationMs === undefined) {
      if (typeof reportedMs === "number" && reportedMs > 0) row.durationMs = reportedMs;
      else if (row.startMs !== undefined) row.durationMs = Math.max(0, now - row.startMs);
    }
  }
}

function newestFirst(a: RunRow, b: RunRow): number {
  return a.runId < b.runId ? 1 : a.runId > b.runId ? -1 : 0;
}

function isStats(v: unknown): v is DiffStats {
  const s = v as DiffStats;
  return [s.files, s.additions, s.deletions].every((n) => typeof n === "number" && Number.isFinite(n) && n >= 0);
}

function lastLine(text: string | null | undefined): string | undefined {
  const lines = (text ?? "").split(/\r?\n/).filter((l) => l.trim());
  return lines[lines.length - 1];
}

/** Diff stats and the execution time a manifest records. */
export function detailsFromManifest(m: RunManifest): { diff?: DiffStats; durationMs?: number } {
  const out: { diff?: DiffStats; durationMs?: number } = {};
  if (m.diff) out.diff = { files: m.diff.files.length, additions: m.diff.additions, deletions: m.diff.deletions };
  const end = m.transitions.find((t) => FINISHED_STATES.has(t.state) && t.state !== "applied" && t.state !== "rejected");
  const start = Date.parse(m.createdAt);
  if (end && !Number.isNaN(start) && !Number.isNaN(Date.parse(end.at))) {
    out.durationMs = Math.max(0, Date.parse(end.at) - start);
  } else if (typeof m.executor?.durationMs === "number") {
    out.durationMs = m.executor.durationMs;
  }
  return out;
}

/** Elapsed time to show: live from the start while the run works, fixed once it finished. */
export function elapsedOf(row: RunRow, now: number): number | undefined {
  if (isActive(row.state)) {
    const live = row.startMs !== undefined ? now - row.startMs : 0;
    return Math.max(0, live, row.reportedElapsedMs);
  }
  return row.durationMs;
}

/** A clock that reads well while it ticks every second: "7s", "1m 05s", "1h 02m". */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  if (total < 60) return `${total}s`;
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}h ${pad(m)}m` : `${m}m ${pad(s)}s`;
}

/** "+12 -3 in 2 files" */
export function formatDiffStats(d: DiffStats): string {
  return `+${d.additions} -${d.deletions} in ${d.files} file${d.files === 1 ? "" : "s"}`;
}

export interface RunPresentation {
  label: string;
  description: string;
  /** Markdown. */
  tooltip: string;
  /** A codicon name. */
  icon: string;
  /** The tree item's contextValue: `coRun:<state>` (package.json menus match on it). */
  contextValue: string;
}

/** How one run reads in the view. */
export function presentRun(row: RunRow, now: number): RunPresentation {
  const elapsed = elapsedOf(row, now);
  const parts = [stateLabel(row.state)];
  if (row.mode) parts.push(row.mode);
  if (elapsed !== undefined) parts.push(formatDuration(elapsed));
  if (row.diff) parts.push(formatDiffStats(row.diff));
  if (isActive(row.state)) {
    if (row.step) parts.push(row.step);
  } else if (row.failureReason && (row.state === "failed" || row.state === "timed_out")) {
    parts.push(truncate(row.failureReason, stepMax));
  }
  const lines = [
    `**${escapeMd(truncate(row.prompt ?? `run ${row.runId}`, 300))}**`,
    "",
    `\`${row.runId}\` · task \`${row.taskId}\``,
    "",
    `${stateLabel(row.state)}${row.mode ? ` · ${row.mode}` : ""}${elapsed !== undefined ? ` · ${formatDuration(elapsed)}` : ""}` +
      (row.diff ? ` · ${formatDiffStats(row.diff)}` : ""),
  ];
  if (row.parentRunId) lines.push("", `follows up \`${row.parentRunId}\``);
  if (row.step) lines.push("", `latest: ${escapeMd(row.step)}`);
  if (row.failureReason && row.state !== "succeeded") lines.push("", escapeMd(truncate(row.failureReason, 300)));
  return {
    label: truncate(row.prompt ?? `run ${shortRunId(row.runId)}`, 60),
    description: parts.join(" · "),
    tooltip: lines.join("\n"),
    icon: stateIcon(row.state),
    contextValue: `coRun:${row.state}`,
  };
}

/** The status bar's live part: "1m 05s · $ pytest -q" (empty once the run finished). */
export function liveStatusText(row: RunRow | undefined, now: number, stepWidth = 40): string {
  if (!row || !isActive(row.state)) return "";
  const elapsed = elapsedOf(row, now) ?? 0;
  return `${formatDuration(elapsed)}${row.step ? ` · ${truncate(row.step, stepWidth)}` : ""}`;
}

/**
 * Where a run's manifest may be: `<runs.root>/<taskId>/<runId>/manifest.json`, the runs root
 * from the settings (relative to the workspace) first, then the default `.runs`.
 */
export function manifestCandidates(workspace: string, taskId: string, runId: string, runsRoot?: unknown): string[] {
  const join = (...parts: string[]) => parts.join("/").replace(/\/+/g, "/");
  const roots: string[] = [];
  if (typeof runsRoot === "string" && runsRoot.trim()) {
    const root = runsRoot.trim();
    roots.push(/^(\/|[A-Za-z]:[\\/])/.test(root) ? root : join(workspace, root));
  }
  roots.push(join(workspace, ".runs"));
  return [...new Set(roots.map((r) => join(r, taskId, runId, "manifest.json")))];
}

function escapeMd(text: string): string {
  return text.replace(/[\\`*_{}[\]()#+!|<>]/g, (c) => `\\${c}`);
}
