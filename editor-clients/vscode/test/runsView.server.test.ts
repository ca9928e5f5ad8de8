/**
 * The runs view's model against the REAL server over stdio: fed live by the tracker
 * (co/runUpdate), then rebuilt from co/list as after a reload, with diff stats and the
 * duration from co/status, and the manifest where the view's Open Manifest looks for it.
 */

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";

import { RunsModel, elapsedOf, manifestCandidates, presentRun } from "../src/core/runsView";
import { Session, Workspace, makeWorkspace, serverCommand, settingsFor, startSession } from "./harness";

const serverExe = serverCommand()[0];
const haveServer = serverExe.includes(path.sep) ? existsSync(serverExe) : true;

describe("the runs view's model with the real server", { skip: haveServer ? false : `no server at ${serverExe}` }, () => {
  let ws: Workspace;
  let session: Session;

  before(async () => {
    ws = makeWorkspace();
    session = await startSession(ws, settingsFor(ws));
  });

  after(async () => {
    await session?.close();
    ws?.cleanup();
  });

  it("follows a run live to its end, then rebuilds the same run from co/list and co/status", async () => {
    const live = new RunsModel();
    const finished: string[] = [];
    const steps: string[] = [];
    session.tracker.onDidChange((run, update) => {
      const change = update ? live.applyUpdate(update, Date.now()) : live.noteTracked(run, Date.now());
      if (change.finished) finished.push(change.row.state);
      if (change.row.step && steps.at(-1) !== change.row.step) steps.push(change.row.step);
    });
    const prompt = "greet there for the runs view";
    const launched = await session.api.launch({ prompt, mode: "local" });
    session.tracker.noteLaunched(launched, prompt);
    await session.tracker.waitForFinish(launched.runId, { timeoutMs: 30_000 });

    const row = live.get(launched.runId)!;
    assert.equal(row.state, "succeeded");
    assert.deepEqual(finished, ["succeeded"], "finished exactly once");
    assert.ok(steps.includes("agent: done"), `the agent's lines are its steps: ${steps.join(" | ")}`);
    assert.ok(row.startMs !== undefined && row.durationMs !== undefined && row.durationMs > 0);

    // A reload: a new model from co/list (prompt, createdAt) and co/status (diff, duration).
    const rebuilt = new RunsModel();
    const requestedAt = Date.now();
    const { runs } = await session.api.list({});
    rebuilt.loadList(runs, requestedAt, Date.now());
    const [again] = rebuilt.needingDetails(10);
    assert.equal(again.runId, launched.runId);
    const record = await session.api.status(again.runId);
    rebuilt.noteDetails(record);
    const diff = await session.api.diff(again.runId);
    const additions = diff.files.reduce((n, f) => n + f.additions, 0);
    const deletions = diff.files.reduce((n, f) => n + f.deletions, 0);
    const shown = presentRun(again, Date.now());
    assert.equal(shown.label, prompt);
    assert.match(shown.description, new RegExp(`^succeeded · local · \\d+s · \\+${additions} -${deletions} in ${diff.files.length} files$`));
    assert.ok(elapsedOf(again, Date.now())! <= row.durationMs! + 1000, "the run's duration, not its age");

    // Open Manifest finds the manifest where the server wrote it.
    const [file] = manifestCandidates(record.workspace, record.taskId, record.runId, undefined);
    assert.ok(existsSync(file), file);
    assert.equal(JSON.parse(readFileSync(file, "utf8")).runId, launched.runId);
  });

  it("a follow-up shows under the run it follows up, live and after a reload; its diff is the chain's", async () => {
    const live = new RunsModel();
    session.tracker.onDidChange((run, update) => (update ? live.applyUpdate(update, Date.now()) : live.noteTracked(run, Date.now())));
    const prompt = "greet there before the follow-up";
    const launched = await session.api.launch({ prompt, mode: "local" });
    session.tracker.noteLaunched(launched, prompt);
    await session.tracker.waitForFinish(launched.runId, { timeoutMs: 30_000 });
    const next = "then a follow-up";
    const followed = await session.api.followUp({ runId: launched.runId, prompt: next });
    session.tracker.noteLaunched(followed, next);
    await session.tracker.waitForFinish(followed.runId, { timeoutMs: 30_000 });

    const grouped = (model: RunsModel) => model.groups().find((g) => g.run.runId === launched.runId);
    assert.deepEqual(grouped(live)?.children.map((r) => r.runId), [followed.runId], "live: under its parent");
    const rebuilt = new RunsModel();
    const requestedAt = Date.now();
    rebuilt.loadList((await session.api.list({})).runs, requestedAt, Date.now());
    const group = grouped(rebuilt)!;
    assert.deepEqual(group.children.map((r) => r.runId), [followed.runId], "after a reload: under its parent");
    assert.equal(group.children[0].parentRunId, launched.runId);
    assert.ok(group.children[0].diff, "the list row carries its diff stats");
    assert.match(presentRun(group.children[0], Date.now()).tooltip, new RegExp(`follows up \`${launched.runId}\``));

    const step = await session.api.followUpDiff(followed.runId, "step");
    const cumulative = await session.api.diff(followed.runId);
    assert.equal(cumulative.view, "cumulative");
    assert.equal(step.view, "step");
    assert.ok(cumulative.patch.length > step.patch.length, "the chain's change holds the step and more");
  });
});
