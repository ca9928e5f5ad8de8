/**
 * The co-sidecar runs view (its own view container): a thin `TreeDataProvider` over
 * `RunsModel` (src/core/runsView.ts, where the grouping, ordering, elapsed time and text
 * live), fed by the `RunTracker` and rebuilt from `co/list`; plus its two commands
 * (Refresh Runs, Open Manifest). The run actions are the extension's own commands.
 */

import * as vscode from "vscode";

import {
  CoApi,
  ListRow,
  RunRow,
  RunTracker,
  RunsModel,
  describeError,
  liveStatusText,
  manifestCandidates,
  presentRun,
} from "./core";

export const RUNS_VIEW_ID = "co-sidecar.runs";
/** A live run with no update for this long: ask co/list (it may have ended elsewhere). */
const QUIET_MS = 5000;
const DETAILS_PER_LOAD = 40;

export interface RunsViewDeps {
  tracker: RunTracker;
  /** The server's API if it is running now (never starts it). */
  currentApi(): CoApi | undefined;
  /** The server's API, starting the server if needed. */
  getApi(): Promise<CoApi>;
  /** A run id from a command argument, else the user's pick. */
  runIdFrom(arg: unknown, placeHolder: string): Promise<string | undefined>;
  /** A run's execution ended (from a co/runUpdate). */
  onFinished(runId: string): void;
  /** Every second while a run works, and when runs change (the status bar's clock). */
  onTick(): void;
  /** The runs.root server setting, if the user set one. */
  runsRoot(): unknown;
}

export class RunsView implements vscode.TreeDataProvider<RunRow>, vscode.Disposable {
  readonly model = new RunsModel();
  private readonly changed = new vscode.EventEmitter<RunRow | undefined | void>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly disposables: vscode.Disposable[] = [];
  private tree?: vscode.TreeView<RunRow>;
  private children = new Map<string, RunRow[]>();
  private timer?: ReturnType<typeof setInterval>;
  private loadedFrom?: CoApi;
  private loading?: Promise<void>;
  private listedAt = 0;
  private fetching = false;

  constructor(private readonly deps: RunsViewDeps) {
    this.disposables.push(
      this.changed,
      deps.tracker.onDidChange((run, update) => {
        const now = Date.now();
        const change = update ? this.model.applyUpdate(update, now) : this.model.noteTracked(run, now);
        if (change.added) {
          this.changed.fire();
          // An update carries no prompt: a run started elsewhere needs its co/list row.
          if (!change.row.prompt) void this.reload();
        } else {
          this.changed.fire(change.row);
        }
        if (change.finished) {
          if (update) deps.onFinished(run.runId);
          void this.fetchDetails();
        }
        // The status bar reads this model: it was drawn for this change before the model had it.
        deps.onTick();
        this.schedule();
      }),
    );
  }

  attach(tree: vscode.TreeView<RunRow>): void {
    this.tree = tree;
    this.disposables.push(
      tree,
      tree.onDidChangeVisibility(() => {
        if (tree.visible && this.deps.currentApi() !== this.loadedFrom) void this.reload();
        this.schedule();
      }),
    );
  }

  // --- TreeDataProvider ------------------------------------------------------------

  getTreeItem(row: RunRow): vscode.TreeItem {
    const p = presentRun(row, Date.now());
    const hasChildren = (this.children.get(row.runId)?.length ?? 0) > 0;
    const item = new vscode.TreeItem(
      p.label,
      hasChildren ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None,
    );
    item.id = row.runId;
    item.description = p.description;
    item.tooltip = new vscode.MarkdownString(p.tooltip);
    item.iconPath = new vscode.ThemeIcon(p.icon, iconColor(row));
    item.contextValue = p.contextValue;
    return item;
  }

  getChildren(row?: RunRow): RunRow[] {
    if (row) return this.children.get(row.runId) ?? [];
    // The first look (or one after a server restart) asks co/list.
    if (this.loadedFrom === undefined || this.deps.currentApi() !== this.loadedFrom) {
      void this.reload(this.loadedFrom === undefined);
    }
    const groups = this.model.groups();
    this.children = new Map(groups.map((g) => [g.run.runId, g.children]));
    return groups.map((g) => g.run);
  }

  getParent(row: RunRow): RunRow | undefined {
    for (const [head, kids] of this.children) if (kids.includes(row)) return this.model.get(head);
    return undefined;
  }

  // --- loading ---------------------------------------------------------------------

  /** Rebuild from co/list; `start` starts the server if it is not running. */
  reload(start = false): Promise<void> {
    if (this.loading) return this.loading;
    this.loading = (async () => {
      const api = start ? await this.deps.getApi() : this.deps.currentApi();
      if (!api) return;
      const requestedAt = Date.now();
      const { runs } = await api.list({ limit: 100 });
      this.model.loadList(runs as ListRow[], requestedAt, Date.now());
      this.loadedFrom = api;
      this.listedAt = Date.now();
      if (this.tree) this.tree.message = undefined;
      this.changed.fire();
      this.deps.onTick();
      this.schedule();
      void this.fetchDetails();
    })()
      .catch((err) => {
        if (this.tree) this.tree.message = `Could not list runs: ${describeError(err)}`;
      })
      .finally(() => {
        this.loading = undefined;
      });
    return this.loading;
  }

  /** Diff stats and durations of finished runs, from co/status (a few at a time). */
  private async fetchDetails(): Promise<void> {
    const api = this.deps.currentApi();
    if (!api || this.fetching) return;
    this.fetching = true;
    try {
      let budget = DETAILS_PER_LOAD;
      while (budget > 0) {
        const batch = this.model.needingDetails(Math.min(4, budget));
        if (batch.length === 0) break;
        budget -= batch.length;
        await Promise.all(
          batch.map(async (row) => {
            try {
              this.model.noteDetails(await api.status(row.runId));
            } catch {
              // Gone or unreadable: shown without stats.
            }
            row.detailsFor = row.state;
            this.changed.fire(row);
          }),
        );
      }
    } finally {
      this.fetching = false;
    }
  }

  // --- the clock -------------------------------------------------------------------

  /** Ticks every second while a run works or the view is visible; stops otherwise. */
  private schedule(): void {
    const needed = this.model.live().length > 0 || this.tree?.visible === true;
    if (needed && !this.timer) this.timer = setInterval(() => this.tick(), 1000);
    else if (!needed && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private tick(): void {
    const now = Date.now();
    const live = this.model.live();
    for (const row of live) this.changed.fire(row);
    this.deps.onTick();
    const api = this.deps.currentApi();
    const restarted = api !== undefined && api !== this.loadedFrom && this.tree?.visible === true;
    const quiet = live.some((r) => now - r.seenMs > QUIET_MS) && now - this.listedAt > QUIET_MS;
    if (restarted || (api && quiet)) void this.reload();
    this.schedule();
  }

  /** The status bar's live part for a run: "12s · agent: working 2/3" ("" once finished). */
  statusText(runId: string): string {
    return liveStatusText(this.model.get(runId), Date.now());
  }

  // --- Open Manifest ---------------------------------------------------------------

  async openManifest(arg?: unknown): Promise<void> {
    const runId = await this.deps.runIdFrom(arg, "Open the manifest of which run?");
    if (!runId) return;
    const record = await (await this.deps.getApi()).status(runId);
    for (const path of manifestCandidates(record.workspace, record.taskId, record.runId, this.deps.runsRoot())) {
      const uri = vscode.Uri.file(path);
      try {
        await vscode.workspace.fs.stat(uri);
      } catch {
        continue;
      }
      await vscode.window.showTextDocument(uri, { preview: true });
      return;
    }
    // The runs root is somewhere the client cannot tell: the same record, from co/status.
    const doc = await vscode.workspace.openTextDocument({ language: "json", content: JSON.stringify(record, null, 2) });
    await vscode.window.showTextDocument(doc, { preview: true });
  }

  dispose(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const d of this.disposables.splice(0)) d.dispose();
  }
}

function iconColor(row: RunRow): vscode.ThemeColor | undefined {
  switch (row.state) {
    case "succeeded":
    case "applied":
    case "partially_applied":
      return new vscode.ThemeColor("testing.iconPassed");
    case "failed":
    case "timed_out":
      return new vscode.ThemeColor("testing.iconFailed");
    default:
      return undefined;
  }
}

/** Creates the view and its commands; the extension calls this once in `activate`. */
export function registerRunsView(context: vscode.ExtensionContext, deps: RunsViewDeps): RunsView {
  const view = new RunsView(deps);
  view.attach(vscode.window.createTreeView(RUNS_VIEW_ID, { treeDataProvider: view, showCollapseAll: false }));
  const guard =
    (fn: (...args: unknown[]) => Promise<void>) =>
    async (...args: unknown[]): Promise<void> => {
      try {
        await fn(...args);
      } catch (err) {
        void vscode.window.showErrorMessage(`co-sidecar: ${describeError(err)}`);
      }
    };
  context.subscriptions.push(
    view,
    vscode.commands.registerCommand("co-sidecar.refreshRuns", guard(() => view.reload(true))),
    vscode.commands.registerCommand("co-sidecar.openManifest", guard((arg) => view.openManifest(arg))),
  );
  return view;
}
