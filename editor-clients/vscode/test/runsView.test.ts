/**
 * The runs view's model on its own: grouping by root run, newest first, the elapsed clock
 * computed from the run's start, live updates, details from co/status, and the text the
 * view and the status bar show.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { RunManifest, RunUpdate } from "../src/core/protocol";
import { RunTracker } from "../src/core/runs";
import {
  ListRow,
  LiveUpdate,
  RunsModel,
  elapsedOf,
  formatDuration,
  liveStatusText,
  manifestCandidates,
  presentRun,
} from "../src/core/runsView";

const T0 = Date.parse("2026-12-02T10:00:00Z");

/** Run ids start with their creation time, like the server's. */
const id = (n: number) => `20261202T1000${String(n).padStart(2, "0")}000000-r${n}aaaa`;

const row = (n: number, extra: Partial<ListRow> = {}): ListRow => ({
  runId: id(n),
  taskId: "adhoc",
  state: "succeeded",
  mode: "local",
  requestedMode: "local",
  prompt: `prompt ${n}`,
  createdAt: new Date(T0 + n * 1000).toISOString(),
  updatedAt: new Date(T0 + n * 1000 + 500).toISOString(),
  failureReason: null,
  cloudTaskUrl: null,
  ...extra,
});

const update = (n: number, state: RunUpdate["state"], extra: Partial<RunUpdate> = {}): RunUpdate => ({
  runId: id(n),
  taskId: "adhoc",
  state,
  mode: "local",
  message: `now ${state}`,
  attempt: null,
  pollCount: 0,
  elapsedMs: 0,
  cloudTaskId: null,
  cloudTaskUrl: null,
  stream: null,
  errorCode: null,
  event: null,
  answers: null,
  diffStats: null,
  parentRunId: null,
  rootRunId: null,
  ...extra,
});

const ids = (rows: { runId: string }[]) => rows.map((r) => r.runId.split("-")[1]);

describe("formatDuration", () => {
  it("reads as a clock that ticks by whole seconds", () => {
    assert.equal(formatDuration(0), "0s");
    assert.equal(formatDuration(999), "0s");
    assert.equal(formatDuration(7_900), "7s");
    assert.equal(formatDuration(59_999), "59s");
    assert.equal(formatDuration(60_000), "1m 00s");
    assert.equal(formatDuration(65_000), "1m 05s");
    assert.equal(formatDuration(3_723_000), "1h 02m");
    assert.equal(formatDuration(-5), "0s");
  });
});

describe("RunsModel: ordering and grouping", () => {
  it("lists runs newest first, each its own root without lineage", () => {
    const m = new RunsModel();
    m.loadList([row(1), row(3), row(2)], T0, T0);
    assert.deepEqual(ids(m.all()), ["r3aaaa", "r2aaaa", "r1aaaa"]);
    const groups = m.groups();
    assert.deepEqual(ids(groups.map((g) => g.run)), ["r3aaaa", "r2aaaa", "r1aaaa"]);
    assert.ok(groups.every((g) => g.children.length === 0));
  });

  it("groups follow-ups under their root, the group placed by its newest run", () => {
    const m = new RunsModel();
    m.loadList(
      [
        row(5, { parentRunId: id(4), rootRunId: id(1) }),
        row(4, { parentRunId: id(1), rootRunId: id(1) }),
        row(3),
        row(2),
        row(1),
      ],
      T0,
      T0,
    );
    const groups = m.groups();
    assert.deepEqual(ids(groups.map((g) => g.run)), ["r1aaaa", "r3aaaa", "r2aaaa"]);
    assert.deepEqual(ids(groups[0].children), ["r5aaaa", "r4aaaa"], "follow-ups newest first");
    assert.equal(groups[1].children.length, 0);
  });

  it("finds the root through parents when rootRunId is missing, and survives a pruned root or a cycle", () => {
    const m = new RunsModel();
    m.loadList(
      [
        row(9, { parentRunId: id(8) }),
        row(8, { parentRunId: id(7) }),
        row(7),
        // The root (run 1) was pruned: its follow-ups stay together, the oldest heads them.
        row(3, { rootRunId: id(1) }),
        row(2, { rootRunId: id(1) }),
        // Bad data: a parent cycle ends instead of looping.
        row(12, { parentRunId: id(11) }),
        row(11, { parentRunId: id(12) }),
      ],
      T0,
      T0,
    );
    const groups = m.groups();
    const byHead = new Map(groups.map((g) => [g.run.runId.split("-")[1], ids(g.children)]));
    assert.deepEqual(byHead.get("r7aaaa"), ["r9aaaa", "r8aaaa"]);
    assert.deepEqual(byHead.get("r2aaaa"), ["r3aaaa"]);
    assert.equal(groups.length, 4);
  });

  it("places a live follow-up (lineage from its updates) under its root", () => {
    const m = new RunsModel();
    m.loadList([row(1)], T0, T0);
    const change = m.applyUpdate(update(2, "running", { parentRunId: id(1), rootRunId: id(1) }), T0 + 100);
    assert.equal(change.added, true);
    const [group] = m.groups();
    assert.deepEqual(ids([group.run]), ["r1aaaa"]);
    assert.deepEqual(ids(group.children), ["r2aaaa"]);
  });
});

describe("RunsModel: live updates and the clock", () => {
  it("counts elapsed time from the run's start every second, with no update in between, and stops when it finishes", () => {
    const m = new RunsModel();
    // Arrives 2.5 s into the run: the start is 2.5 s before its arrival.
    m.applyUpdate(update(1, "running", { elapsedMs: 2_500, message: "running the agent" }), T0 + 10_000);
    const r = m.get(id(1))!;
    assert.equal(elapsedOf(r, T0 + 10_000), 2_500);
    assert.equal(elapsedOf(r, T0 + 18_000), 10_500, "a silent agent: the clock still moves");
    assert.match(presentRun(r, T0 + 18_000).description, /^running · local · 10s · running the agent$/);
    assert.equal(liveStatusText(r, T0 + 75_000), "1m 07s · running the agent");
    // Output lines are the latest step; a finished update fixes the duration.
    m.applyUpdate(update(1, "running", { stream: "stdout", message: "working 1/3\nworking 2/3\n", elapsedMs: 3_000 }), T0 + 19_000);
    assert.equal(r.step, "working 2/3");
    const done = m.applyUpdate(update(1, "succeeded", { elapsedMs: 12_000, message: "agent exited 0" }), T0 + 19_500);
    assert.equal(done.finished, true);
    assert.equal(elapsedOf(r, T0 + 60_000), 12_000, "frozen at the run's duration");
    assert.equal(liveStatusText(r, T0 + 60_000), "", "the status bar stops ticking");
    // A late update neither moves the run back nor counts as finishing again.
    const late = m.applyUpdate(update(1, "running", { message: "late" }), T0 + 20_000);
    assert.equal(r.state, "succeeded");
    assert.equal(late.finished, false);
    assert.equal(r.step, "agent exited 0");
  });

  it("starts the clock at createdAt for a run loaded from co/list, until an update tells the server's own count", () => {
    const m = new RunsModel();
    m.loadList([row(1, { state: "running" })], T0, T0 + 5_000);
    const r = m.get(id(1))!;
    assert.equal(elapsedOf(r, T0 + 6_000), 5_000); // created at T0 + 1 s
    // The server says 8 s at T0 + 7 s: its clock differs by 2 s; its count wins from now on.
    m.applyUpdate(update(1, "running", { elapsedMs: 8_000 }), T0 + 7_000);
    assert.equal(elapsedOf(r, T0 + 9_000), 10_000);
    assert.equal(r.prompt, "prompt 1", "the list's prompt stays");
    // Never less than the server reported.
    m.applyUpdate(update(1, "running", { elapsedMs: 30_000 }), T0 + 9_000);
    assert.equal(elapsedOf(r, T0 + 9_000), 30_000);
  });

  it("shows diff stats from updates that carry them", () => {
    const m = new RunsModel();
    m.applyUpdate(update(1, "running", { elapsedMs: 1_000 }), T0);
    m.applyUpdate(update(1, "running", { elapsedMs: 2_000, diffStats: { files: 2, additions: 12, deletions: 3 } }), T0 + 1_000);
    m.applyUpdate(update(1, "running", { diffStats: { files: -1, additions: 0, deletions: 0 } }), T0 + 1_500);
    assert.match(presentRun(m.get(id(1))!, T0 + 2_000).description, /\+12 -3 in 2 files/);
  });

  it("a rebuild keeps runs that started after the list was asked for, and drops the others it no longer lists", () => {
    const m = new RunsModel();
    m.loadList([row(1), row(2)], T0, T0);
    m.applyUpdate(update(3, "running", { elapsedMs: 10 }), T0 + 2_000);
    m.loadList([row(2)], T0 + 1_000, T0 + 3_000); // run 1 pruned; run 3 newer than the request
    assert.deepEqual(ids(m.all()), ["r3aaaa", "r2aaaa"]);
  });

  it("follows the tracker: a launch names the run, a cancel result finishes it", () => {
    const m = new RunsModel();
    const t = new RunTracker();
    const changes: string[] = [];
    t.onDidChange((run, u) => {
      const c = u ? m.applyUpdate(u, T0 + 1_000) : m.noteTracked(run, T0 + 2_000);
      changes.push(`${c.row.state}${c.added ? "+" : ""}${c.finished ? "!" : ""}`);
    });
    t.handleUpdate(update(1, "queued", { elapsedMs: 0 }));
    t.noteLaunched({ runId: id(1), taskId: "adhoc", mode: "local", state: "queued", reason: "", fallback: null, cloudEnv: null, warnings: [] }, "fix the tests");
    t.noteState(id(1), "cancelled");
    assert.deepEqual(changes, ["queued+", "queued", "cancelled!"]);
    const r = m.get(id(1))!;
    assert.equal(r.prompt, "fix the tests");
    assert.equal(r.durationMs, 1_000, "from the start the update gave");
  });
});

describe("RunsModel: details from co/status", () => {
  const manifest = (n: number, extra: Partial<RunManifest> = {}): RunManifest =>
    ({
      runId: id(n),
      taskId: "adhoc",
      prompt: `prompt ${n}`,
      workspace: "/w",
      state: "succeeded",
      createdAt: new Date(T0).toISOString(),
      transitions: [
        { state: "queued", at: new Date(T0).toISOString(), message: "" },
        { state: "running", at: new Date(T0 + 100).toISOString(), message: "" },
        { state: "succeeded", at: new Date(T0 + 42_000).toISOString(), message: "" },
        { state: "applied", at: new Date(T0 + 99_000).toISOString(), message: "" },
      ],
      executor: { durationMs: 41_000 },
      diff: {
        files: [{ path: "a.py", oldPath: null, status: "modified", additions: 3, deletions: 1 }],
        additions: 3,
        deletions: 1,
      },
      ...extra,
    }) as unknown as RunManifest;

  it("takes diff stats and the run's duration (to its end, not to its apply) from the manifest", () => {
    const m = new RunsModel();
    m.loadList([row(1, { state: "applied" }), row(2, { state: "cancelled" }), row(3, { state: "running" })], T0, T0);
    assert.deepEqual(ids(m.needingDetails(10)), ["r1aaaa"], "only finished runs with something to show");
    m.noteDetails(manifest(1, { state: "applied" }));
    const r = m.get(id(1))!;
    assert.equal(elapsedOf(r, T0 + 500_000), 42_000);
    const p = presentRun(r, T0 + 500_000);
    assert.equal(p.description, "applied · local · 42s · +3 -1 in 1 file");
    assert.equal(p.label, "prompt 1");
    assert.equal(p.icon, "check-all");
    assert.equal(p.contextValue, "coRun:applied");
    assert.deepEqual(m.needingDetails(10), []);
  });

  it("says why a run failed, and gives state icons and context values the menus match", () => {
    const m = new RunsModel();
    m.loadList([row(1, { state: "failed", failureReason: "agent exited 2: boom" }), row(2, { state: "running" })], T0, T0);
    const failed = presentRun(m.get(id(1))!, T0);
    assert.equal(failed.description, "failed · local · agent exited 2: boom");
    assert.equal(failed.icon, "error");
    const running = presentRun(m.get(id(2))!, T0 + 3_000);
    assert.equal(running.icon, "sync~spin");
    assert.equal(running.contextValue, "coRun:running");
    assert.match(running.tooltip, /`20261202T100002000000-r2aaaa`/);
  });
});

describe("manifestCandidates", () => {
  it("looks under the configured runs root first, then .runs", () => {
    assert.deepEqual(manifestCandidates("/w", "T-1", "R", undefined), ["/w/.runs/T-1/R/manifest.json"]);
    assert.deepEqual(manifestCandidates("/w/", "T-1", "R", "out/runs"), [
      "/w/out/runs/T-1/R/manifest.json",
      "/w/.runs/T-1/R/manifest.json",
    ]);
    assert.deepEqual(manifestCandidates("/w", "T-1", "R", "/var/runs"), [
      "/var/runs/T-1/R/manifest.json",
      "/w/.runs/T-1/R/manifest.json",
    ]);
    assert.deepEqual(manifestCandidates("/w", "T-1", "R", ".runs"), ["/w/.runs/T-1/R/manifest.json"]);
  });
});
