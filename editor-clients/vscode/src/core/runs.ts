/**
 * Run tracking from `co/runUpdate` notifications (no `vscode` import).
 *
 * Updates can arrive before the `co/launch` response does (the server reports
 * queued/routing while it handles the request), so unknown run ids are
 * accepted and `noteLaunched` merges the response in whenever it comes.
 */

import {
  AgentEvent,
  CloudAnswer,
  LaunchResult,
  Mode,
  RunState,
  RunUpdate,
  STATE_ORDER,
  isActive,
  isFinished,
} from "./protocol";

export interface TrackedRun {
  runId: string;
  taskId: string;
  state: RunState;
  mode?: Mode | null;
  prompt?: string;
  /** The last state-change message or agent step (not agent output). */
  message: string;
  /** The last agent step (a Codex agent's command, edit, message, ...). */
  step?: AgentEvent;
  /** Distinct states in the order they were first seen. */
  states: RunState[];
  /** Agent output lines (`stream` updates), newest last, bounded. */
  output: string[];
  elapsedMs: number;
  pollCount: number;
  cloudTaskUrl?: string | null;
  errorCode?: string | null;
  /** A finished cloud run: what each attempt said (assistant messages, worklog). */
  answers?: CloudAnswer[];
  /** Monotonic counter: which run changed last. */
  seq: number;
}

export type RunListener = (run: TrackedRun, update: RunUpdate | undefined) => void;

export interface Disposable {
  dispose(): void;
}

export class RunTracker {
  private readonly runs = new Map<string, TrackedRun>();
  private readonly listeners = new Set<RunListener>();
  private seq = 0;

  constructor(private readonly maxOutputLines = 500) {}

  /** Feed one `co/runUpdate` notification. */
  handleUpdate(update: RunUpdate): TrackedRun {
    const run = this.ensure(update.runId, update.taskId);
    // A late or duplicated notification must not move a finished run back (nor its message).
    const stale = run.states.length > 0 && STATE_ORDER[update.state] < STATE_ORDER[run.state];
    run.seq = ++this.seq;
    if (update.mode) run.mode = update.mode;
    // Counters only move forward: a late update carries older values.
    if (typeof update.elapsedMs === "number") run.elapsedMs = Math.max(run.elapsedMs, update.elapsedMs);
    if (typeof update.pollCount === "number") run.pollCount = Math.max(run.pollCount, update.pollCount);
    if (update.cloudTaskUrl) run.cloudTaskUrl = update.cloudTaskUrl;
    if (update.errorCode) run.errorCode = update.errorCode;
    if (update.answers) run.answers = update.answers;
    if (update.stream) {
      for (const line of (update.message ?? "").split(/\r?\n/)) {
        if (line.length > 0) run.output.push(line);
      }
      if (run.output.length > this.maxOutputLines) {
        run.output.splice(0, run.output.length - this.maxOutputLines);
      }
    } else if (update.message && !stale) {
      run.message = update.message;
    }
    if (update.event && !stale) run.step = update.event;
    this.setState(run, update.state);
    this.emit(run, update);
    return run;
  }

  /** Merge the `co/launch` response (and the prompt the client sent). */
  noteLaunched(result: LaunchResult, prompt?: string): TrackedRun {
    const run = this.ensure(result.runId, result.taskId);
    run.mode = run.mode ?? result.mode;
    if (prompt !== undefined) run.prompt = prompt;
    if (run.states.length === 0) this.setState(run, result.state);
    run.seq = ++this.seq;
    this.emit(run, undefined);
    return run;
  }

  /** Record a state learned from a request result (co/cancel, co/reject, co/apply). */
  noteState(runId: string, state: RunState): TrackedRun | undefined {
    const run = this.runs.get(runId);
    if (!run) return undefined;
    this.setState(run, state);
    run.seq = ++this.seq;
    this.emit(run, undefined);
    return run;
  }

  get(runId: string): TrackedRun | undefined {
    return this.runs.get(runId);
  }

  all(): TrackedRun[] {
    return [...this.runs.values()].sort((a, b) => b.seq - a.seq);
  }

  /** The run a status bar should show: the latest still-working run, else the latest run. */
  activeRun(): TrackedRun | undefined {
    const runs = this.all();
    return runs.find((r) => isActive(r.state)) ?? runs[0];
  }

  onDidChange(listener: RunListener): Disposable {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  /**
   * Resolves with the run once `predicate` holds (checked now and on each update);
   * rejects after `timeoutMs` (if given) or when `signal` aborts.
   */
  waitFor(
    runId: string,
    predicate: (run: TrackedRun) => boolean,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<TrackedRun> {
    const current = this.runs.get(runId);
    if (current && predicate(current)) return Promise.resolve(current);
    return new Promise<TrackedRun>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cleanup = () => {
        sub.dispose();
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        cleanup();
        reject(new Error(`stopped waiting for run ${runId}`));
      };
      const sub = this.onDidChange((run) => {
        if (run.runId === runId && predicate(run)) {
          cleanup();
          resolve(run);
        }
      });
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          cleanup();
          const state = this.runs.get(runId)?.state ?? "unknown";
          reject(new Error(`run ${runId} still ${state} after ${options.timeoutMs} ms`));
        }, options.timeoutMs);
      }
      options.signal?.addEventListener("abort", onAbort);
    });
  }

  /** Resolves when execution is over: succeeded, failed, cancelled or timed_out (or later). */
  waitForFinish(runId: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<TrackedRun> {
    return this.waitFor(runId, (run) => isFinished(run.state), options);
  }

  private ensure(runId: string, taskId: string): TrackedRun {
    let run = this.runs.get(runId);
    if (!run) {
      run = {
        runId,
        taskId,
        state: "queued",
        message: "",
        states: [],
        output: [],
        elapsedMs: 0,
        pollCount: 0,
        seq: 0,
      };
      this.runs.set(runId, run);
    }
    return run;
  }

  private setState(run: TrackedRun, state: RunState): void {
    // A late or duplicated notification must not move a finished run back to "running".
    if (run.states.length > 0 && STATE_ORDER[state] < STATE_ORDER[run.state]) return;
    run.state = state;
    if (!run.states.includes(state)) run.states.push(state);
  }

  private emit(run: TrackedRun, update: RunUpdate | undefined): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(run, update);
      } catch {
        // A listener's failure must not stop the others.
      }
    }
  }
}

/** Short, human text for a state (status bar, quick picks). */
export function stateLabel(state: RunState): string {
  switch (state) {
    case "timed_out":
      return "timed out";
    case "partially_applied":
      return "partly applied";
    default:
      return state;
  }
}

/** A codicon name for a state (the extension renders `$(name)`). */
export function stateIcon(state: RunState): string {
  switch (state) {
    case "queued":
    case "routing":
    case "launching":
      return "loading~spin";
    case "running":
      return "sync~spin";
    case "succeeded":
      return "check";
    case "failed":
      return "error";
    case "cancelled":
      return "circle-slash";
    case "timed_out":
      return "watch";
    case "applied":
      return "check-all";
    case "partially_applied":
      return "checklist";
    case "rejected":
      return "close";
  }
}

/** "local · 12.3 s" */
export function formatElapsed(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function truncate(text: string, max = 60): string {
  const oneLine = text.replace(/\s+/g, " ").trim();
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

/**
 * A short, distinguishing form of a run id for messages and titles. Run ids start
 * with a timestamp (`20261124T201618557135-ffdd07`), so the distinguishing part
 * is the end: the random suffix after the last "-", else the last 8 characters.
 */
export function shortRunId(runId: string): string {
  const dash = runId.lastIndexOf("-");
  if (dash >= 0 && runId.length - dash - 1 >= 4) return runId.slice(dash + 1);
  return runId.length <= 8 ? runId : runId.slice(-8);
}
