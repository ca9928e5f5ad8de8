"""Follow-ups and the live diff, through a real server over stdio on real git repositories.

The agent is a small script: it appends the prompt to notes.txt (so each run of a chain adds a
line, and a follow-up that did not start from its parent's result would lose the first one),
with "also" in the prompt it writes extra.txt too, and with "wait" in the prompt it waits for a go-file before exiting (the live diff tests).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from conftest import Session, SessionFactory, git

AGENT = """\
import os, pathlib, sys, time
prompt = sys.argv[1]
notes = pathlib.Path("notes.txt")
notes.write_text((notes.read_text() if notes.exists() else "") + prompt + "\\n")
if "also" in prompt:
    pathlib.Path("extra.txt").write_text(prompt + "\\n")
if "wait" in prompt:
    print("wrote notes.txt; waiting", flush=True)
    go = os.environ["FOLLOW_GO"]
    while not os.path.exists(go):
        time.sleep(0.05)
    pathlib.Path("later.txt").write_text("after the go\\n")
"""


@pytest.fixture
def options(tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    return {"local": {"agentCommand": [sys.executable, str(script), "{prompt}"], "envAllow": ["FOLLOW_*"]}}


def manifest(repo: Path, run_id: str) -> dict[str, Any]:
    return json.loads((repo / ".runs" / "adhoc" / run_id / "manifest.json").read_text())


async def follow(s: Session, run_id: str, prompt: str) -> str:
    started = await s.request("co/followUp", {"runId": run_id, "prompt": prompt})
    assert started["mode"] == "local"
    assert await s.wait_state(started["runId"]) == "succeeded", manifest(s.workspace, started["runId"])["failureReason"]
    return str(started["runId"])


async def test_follow_up_starts_from_the_parent_and_applies_the_chain_once(
    repo: Path, start_server: SessionFactory, options: dict[str, Any]
) -> None:
    s = await start_server(repo, options=options)
    first, state = await s.run_to_end("first line", mode="local")
    assert state == "succeeded"
    second = await follow(s, first, "second line")
    third = await follow(s, second, "third line")

    # Linked in the manifests, the list and the updates.
    m2, m3 = manifest(repo, second), manifest(repo, third)
    assert (m2["parentRunId"], m2["rootRunId"]) == (first, first)
    assert (m3["parentRunId"], m3["rootRunId"]) == (second, first)
    rows = {r["runId"]: r for r in (await s.request("co/list", {"rootRunId": first}))["runs"]}
    assert set(rows) == {first, second, third}
    assert rows[first]["parentRunId"] is None and rows[third]["parentRunId"] == second
    assert rows[third]["diffStats"] == {"files": 1, "additions": 1, "deletions": 0}
    last = s.updates_for(third)[-1]
    assert (last["parentRunId"], last["rootRunId"], last["diffStats"]["additions"]) == (second, first, 1)

    # The step is what the follow-up changed; the cumulative diff (the default) is the chain.
    step = await s.request("co/diff", {"runId": third, "view": "step"})
    assert step["view"] == "step" and step["partial"] is False
    assert "+third line" in step["patch"] and "+second line" not in step["patch"]
    assert " first line\n second line\n+third line" in step["patch"]
    cumulative = await s.request("co/diff", {"runId": third})
    assert cumulative["view"] == "cumulative"
    assert "+first line\n+second line\n+third line" in cumulative["patch"]
    assert [(f["path"], f["status"], f["additions"]) for f in cumulative["files"]] == [("notes.txt", "added", 3)]

    # Applying the follow-up applies the whole chain, once.
    applied = await s.request("co/apply", {"runId": third, "accept": True, "strategy": "git"})
    assert applied["applied"] is True, applied
    assert (repo / "notes.txt").read_text() == "first line\nsecond line\nthird line\n"
    assert manifest(repo, third)["followUp"]["appliedView"] == "cumulative"

    # Its parents' changes are in the workspace: applying them again is refused, saying why.
    for parent in (second, first):
        with pytest.raises(JsonRpcException) as refused:
            await s.request("co/apply", {"runId": parent, "accept": True, "strategy": "git"})
        assert f"already applied as part of its follow-up {third}" in refused.value.message
    assert (repo / "notes.txt").read_text() == "first line\nsecond line\nthird line\n"
    assert manifest(repo, first)["state"] == "succeeded"


async def test_a_follow_up_of_an_applied_parent_applies_its_step(
    repo: Path, start_server: SessionFactory, options: dict[str, Any]
) -> None:
    s = await start_server(repo, options=options)
    first, _ = await s.run_to_end("first line", mode="local")
    second = await follow(s, first, "second line")
    # The parent applied after the follow-up started: the follow-up now applies only its step.
    assert (await s.request("co/apply", {"runId": first, "accept": True, "strategy": "git"}))["applied"]
    assert (repo / "notes.txt").read_text() == "first line\n"
    assert (await s.request("co/apply", {"runId": second, "accept": True, "strategy": "git"}))["applied"]
    assert (repo / "notes.txt").read_text() == "first line\nsecond line\n"
    assert manifest(repo, second)["followUp"]["appliedView"] == "step"

    # A follow-up of an applied run starts from the workspace (which has the change) and carries
    # only its own change.
    third = await follow(s, second, "third line")
    m3 = manifest(repo, third)
    assert m3["followUp"]["includesParent"] is False and m3["followUp"]["startingPatch"] is None
    cumulative = await s.request("co/diff", {"runId": third})
    assert "+third line" in cumulative["patch"] and "+second line" not in cumulative["patch"]
    assert (await s.request("co/apply", {"runId": third, "accept": True, "strategy": "git"}))["applied"]
    assert (repo / "notes.txt").read_text() == "first line\nsecond line\nthird line\n"


async def test_a_child_whose_grandparent_alone_was_applied_is_refused(
    repo: Path, start_server: SessionFactory, options: dict[str, Any]
) -> None:
    s = await start_server(repo, options=options)
    first, _ = await s.run_to_end("first line", mode="local")
    second = await follow(s, first, "second line")
    third = await follow(s, second, "third line")
    assert (await s.request("co/apply", {"runId": first, "accept": True, "strategy": "git"}))["applied"]
    with pytest.raises(JsonRpcException) as refused:
        await s.request("co/apply", {"runId": third, "accept": True, "strategy": "git"})
    assert f"apply {second} first" in refused.value.message
    assert (repo / "notes.txt").read_text() == "first line\n"


async def test_follow_up_refusals_are_clear_and_leave_the_server_running(
    repo: Path, start_server: SessionFactory, options: dict[str, Any], tmp_path: Path
) -> None:
    s = await start_server(repo, options=options, env={"FOLLOW_GO": str(tmp_path / "go")})
    with pytest.raises(JsonRpcException) as missing:
        await s.request("co/followUp", {"runId": "nope", "prompt": "x"})
    assert missing.value.code == -32001
    with pytest.raises(JsonRpcException) as blank:
        await s.request("co/followUp", {"runId": "nope", "prompt": "  "})
    assert blank.value.code == -32602
    running = (await s.request("co/launch", {"prompt": "wait here", "mode": "local"}))["runId"]
    await s.wait_state(running, {"running"})
    with pytest.raises(JsonRpcException) as busy:
        await s.request("co/followUp", {"runId": running, "prompt": "more"})
    assert "only a succeeded, applied or partially applied run can be followed up" in busy.value.message
    (tmp_path / "go").write_text("")
    assert await s.wait_state(running) == "succeeded"
    # A parent whose result no longer applies to the workspace: the follow-up fails, saying why.
    (repo / "notes.txt").write_text("someone else's notes\n")
    started = await s.request("co/followUp", {"runId": running, "prompt": "more"})
    assert await s.wait_state(started["runId"]) == "failed"
    reason = manifest(repo, started["runId"])["failureReason"]
    assert "does not apply to the workspace as it is now" in reason
    assert (repo / "notes.txt").read_text() == "someone else's notes\n"


async def test_live_diff_while_the_agent_runs(
    repo: Path, start_server: SessionFactory, options: dict[str, Any], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    s = await start_server(repo, options=options, env={"FOLLOW_GO": str(go)})
    run_id = (await s.request("co/launch", {"prompt": "wait for it", "mode": "local"}))["runId"]

    async def stats_seen() -> dict[str, Any]:
        while True:
            live = [u for u in s.updates_for(run_id) if u["state"] == "running" and u.get("diffStats")]
            if live:
                return live[0]
            await asyncio.sleep(0.05)

    update = await asyncio.wait_for(stats_seen(), 30)
    assert update["diffStats"] == {"files": 1, "additions": 1, "deletions": 0}
    assert update["message"] == "diff so far: +1 -0 in 1 file"
    [row] = (await s.request("co/list", {"state": "running"}))["runs"]
    assert row["diffStats"] == {"files": 1, "additions": 1, "deletions": 0}  # the list has it live too
    partial = await s.request("co/diff", {"runId": run_id})
    assert partial["partial"] is True
    assert [f["path"] for f in partial["files"]] == ["notes.txt"] and "+wait for it" in partial["patch"]
    with pytest.raises(JsonRpcException):  # nothing to apply until it ends
        await s.request("co/apply", {"runId": run_id, "accept": True, "strategy": "git"})
    go.write_text("")
    assert await s.wait_state(run_id) == "succeeded"
    final = await s.request("co/diff", {"runId": run_id})
    assert final["partial"] is False and sorted(f["path"] for f in final["files"]) == ["later.txt", "notes.txt"]
    assert s.updates_for(run_id)[-1]["diffStats"] == {"files": 2, "additions": 2, "deletions": 0}
    assert git(repo, "status", "--porcelain") == ""


async def test_cloud_follow_up_starts_a_task_from_the_parents_diff(
    repo: Path, start_server: SessionFactory, options: dict[str, Any], tmp_path: Path
) -> None:
    from co_sidecar.cloud import environments
    from co_sidecar.testing.emulator import Emulator

    environments.clear_cache()
    agent = options["local"]["agentCommand"]
    with Emulator(repo, agent=agent).start() as emu:
        cloud = {
            "baseUrl": emu.base_url, "envId": "env-demo", "fallback": "deny",
            "poll": {"intervalSeconds": 0.05, "maxIntervalSeconds": 0.2, "requestTimeoutSeconds": 5, "jitter": 0},
        }  # fmt: skip
        s = await start_server(repo, options={**options, "cloud": cloud})
        first, state = await s.run_to_end("first line", mode="cloud")
        assert state == "succeeded"
        started = await s.request("co/followUp", {"runId": first, "prompt": "second line"})
        assert started["mode"] == "cloud"
        assert await s.wait_state(started["runId"]) == "succeeded"
        parent_task, child_task = sorted(emu.tasks.values(), key=lambda t: t.created_at)
    second = started["runId"]
    m1, m2 = manifest(repo, first), manifest(repo, second)
    parent_patch = (repo / ".runs" / m1["diff"]["patchPath"]).read_text()
    # The new task started from the parent's diff (the task API has no follow-up turn).
    assert parent_task.starting_diff is None
    assert child_task.starting_diff == parent_patch and "+first line" in parent_patch
    assert m2["cloud"]["startingDiff"]["sha256"] == m2["followUp"]["startingPatch"]["sha256"]
    assert (m2["parentRunId"], m2["rootRunId"]) == (first, first)
    step = await s.request("co/diff", {"runId": second, "view": "step"})
    assert "+second line" in step["patch"] and "+first line" not in step["patch"]
    cumulative = await s.request("co/diff", {"runId": second})
    assert "+first line\n+second line" in cumulative["patch"]
    assert (await s.request("co/apply", {"runId": second, "accept": True, "strategy": "git"}))["applied"]
    assert (repo / "notes.txt").read_text() == "first line\nsecond line\n"


async def test_a_poke_reports_the_scratchs_diff_stats_once_per_change(repo: Path) -> None:
    """What a Codex file_change event does (CodexSteps pokes the watcher): the stats of the
    scratch are read and reported when they changed, and not again when they did not."""
    from co_sidecar.local import live_diff
    from co_sidecar.local.pool import acquire

    lease = acquire(repo, "run-live")
    reported: list[dict[str, int]] = []

    class Ctx:
        run_id = "run-live"

        def report_diff_stats(self, stats: dict[str, int]) -> None:
            reported.append(stats)

    live_diff.register("run-live", lease.scratch)
    watcher = live_diff.Watcher(Ctx(), None)  # type: ignore[arg-type]
    watcher.start()
    try:
        (lease.scratch.cwd / "app.py").write_text("def main():\n    return 2\n")
        watcher.poke()
        await asyncio.wait_for(_until(lambda: bool(reported)), 10)
        assert reported == [{"files": 1, "additions": 1, "deletions": 1}]
        watcher.poke()  # nothing changed since: nothing reported
        (lease.scratch.cwd / "NEW.md").write_text("a\nb\n")
        watcher.poke()
        await asyncio.wait_for(_until(lambda: len(reported) == 2), 10)
        assert reported[-1] == {"files": 2, "additions": 3, "deletions": 1}
    finally:
        await watcher.stop()
        live_diff.unregister("run-live")
        lease.release()
    assert git(repo, "status", "--porcelain") == ""


async def _until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0.02)


async def test_an_apply_that_writes_nothing_records_no_view(
    repo: Path, start_server: SessionFactory, options: dict[str, Any]
) -> None:
    s = await start_server(repo, options=options)
    first, _ = await s.run_to_end("first line", mode="local")
    second = await follow(s, first, "second line")
    (repo / "notes.txt").write_text("the user's own notes\n")  # the chain's new file conflicts
    refused = await s.request("co/apply", {"runId": second, "accept": True, "strategy": "git"})
    assert refused["applied"] is False and refused["conflictPaths"] == ["notes.txt"], refused
    m = manifest(repo, second)
    assert m["state"] == "succeeded" and m["apply"]["outcome"] == "conflicts"
    assert m["followUp"]["appliedView"] is None  # nothing of the chain is in the workspace


async def test_a_partly_applied_run_is_followed_up_from_what_the_user_took(
    repo: Path, start_server: SessionFactory, options: dict[str, Any]
) -> None:
    s = await start_server(repo, options=options)
    first, _ = await s.run_to_end("first line also", mode="local")
    took = await s.request("co/apply", {"runId": first, "accept": True, "strategy": "git", "files": ["notes.txt"]})
    assert took["outcome"] == "partial" and took["remaining"] == ["extra.txt"], took
    second = await follow(s, first, "second line")
    m2 = manifest(repo, second)
    assert m2["parentRunId"] == first and m2["followUp"]["includesParent"] is False
    # Its change builds on the notes the user took; the extra file the user left is not carried.
    cumulative = await s.request("co/diff", {"runId": second})
    assert [f["path"] for f in cumulative["files"]] == ["notes.txt"]
    assert " first line also\n+second line" in cumulative["patch"]
    assert (await s.request("co/apply", {"runId": second, "accept": True, "strategy": "git"}))["outcome"] == "applied"
    assert (repo / "notes.txt").read_text() == "first line also\nsecond line\n" and not (repo / "extra.txt").exists()
    # The part left is still the parent's to apply (or reject).
    rest = await s.request("co/apply", {"runId": first, "accept": True, "strategy": "git"})
    assert rest["outcome"] == "applied" and (repo / "extra.txt").read_text() == "first line also\n"
    assert manifest(repo, first)["state"] == "applied"
