"""Crash recovery with several runs in flight, 50 concurrent runs, queueing, two servers on one workspace."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from co_sidecar.config import Config
from co_sidecar.execution import Outcome
from co_sidecar.manifest import (
    CloudInfo,
    ManifestStore,
    RunManifest,
    Transition,
    load_manifest,
    utc_now,
)
from co_sidecar.protocol import RunState
from co_sidecar.runs import RunManager
from co_sidecar.testing.emulator import Emulator
from conftest import DEMO_AGENT, SessionFactory, agent_command
from test_cloud_e2e import cloud_options

FAST_AGENT_ENV = {"DEMO_AGENT_DELAY": "0"}


@pytest.fixture
def emulator(repo: Path) -> Iterator[Emulator]:
    with Emulator(repo, hang_seconds=3).start() as emu:
        yield emu


def manifests(repo: Path) -> dict[str, RunManifest]:
    """Every manifest under .runs, each parsed and validated (raises if one is broken)."""
    return {m.run_id: m for m in (load_manifest(p) for p in sorted((repo / ".runs").glob("*/*/manifest.json")))}


def assert_patch_intact(repo: Path, m: RunManifest) -> None:
    assert m.diff is not None, m.run_id
    patch = (repo / ".runs" / m.diff.patch_path).read_bytes()
    assert hashlib.sha256(patch).hexdigest() == m.diff.sha256 and len(patch) == m.diff.bytes
    assert "NOTES.md" in {f.path for f in m.diff.files}


async def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_kill_9_with_local_and_cloud_runs_in_flight(
    repo: Path, tmp_path: Path, start_server: SessionFactory
) -> None:
    with Emulator(repo, faults="task:slow=2.5", hang_seconds=3).start() as emu:
        first = await start_server(repo, cloud_options(emu), env={"DEMO_AGENT_SLEEP": "60"})
        local = [(await first.request("co/launch", {"prompt": f"local {i}", "mode": "local"}))["runId"] for i in range(2)]
        cloud = [(await first.request("co/launch", {"prompt": f"cloud {i}", "mode": "cloud"}))["runId"] for i in range(2)]
        for run_id in local + cloud:
            await first.wait_state(run_id, {"running"})
        await wait_for(lambda: all(manifests(repo)[r].cloud.task_id for r in cloud))  # type: ignore[union-attr]
        await wait_for(lambda: all(manifests(repo)[r].executor.pid for r in local))
        before = manifests(repo)
        scratches = [Path(before[r].executor.scratch_path or "") for r in local]
        assert all(s.is_dir() for s in scratches)

        os.kill(first.client._server.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)
        after_kill = manifests(repo)  # every manifest intact and valid after kill -9
        assert {r: m.state for r, m in after_kill.items()} == {r: RunState.RUNNING for r in local + cloud}
        for run_id in local:  # they die with the server (tests/test_processes.py); make sure
            with contextlib.suppress(ProcessLookupError):
                os.killpg(before[run_id].executor.pid or 0, signal.SIGKILL)

        second = await start_server(repo, cloud_options(emu))
        listed = {r["runId"]: r["state"] for r in (await second.request("co/list", {}))["runs"]}
        assert {listed[r] for r in local} == {"failed"}
        for run_id in cloud:
            assert await second.wait_state(run_id) == "succeeded"
        final = manifests(repo)
        for run_id in local:
            assert final[run_id].error_code == "interrupted" and final[run_id].failure_reason
        for run_id in cloud:
            assert final[run_id].cloud and final[run_id].cloud.task_id == before[run_id].cloud.task_id  # type: ignore[union-attr]
            assert_patch_intact(repo, final[run_id])
        creates = [r for r in emu.requests if r["method"] == "POST" and r["path"].endswith("/tasks")]
        assert len(creates) == 2  # resumed from the recorded task ids, never re-created
        await wait_for(lambda: not any(s.exists() for s in scratches))  # swept at start


async def test_fifty_concurrent_runs_local_and_cloud(
    repo: Path, emulator: Emulator, start_server: SessionFactory
) -> None:
    # The emulator answers from this test's process while it runs 25 tasks: on a loaded machine
    # (parallel test workers) a poll can take over the usual 2 s without anything being wrong.
    poll = {"intervalSeconds": 0.05, "maxIntervalSeconds": 0.2, "requestTimeoutSeconds": 15, "maxRetries": 3}
    options = cloud_options(emulator, poll=poll)
    options["local"]["maxConcurrent"] = 8
    s = await start_server(repo, options, env=FAST_AGENT_ENV)
    launches = [
        s.request("co/launch", {"prompt": f"job {i}", "mode": "local" if i % 2 else "cloud", "taskId": f"T{i % 5}"})
        for i in range(50)
    ]
    launched = await asyncio.gather(*launches)
    ids = [r["runId"] for r in launched]
    assert len(set(ids)) == 50
    states = await asyncio.gather(*(s.wait_state(r, timeout=90) for r in ids))
    if states != ["succeeded"] * 50:  # say why, not only which
        listed = {r["runId"]: r for r in (await s.request("co/list", {"limit": 100}))["runs"]}
        failed = {r: (listed[r]["state"], listed[r]["failureReason"]) for r in ids if listed[r]["state"] != "succeeded"}
        pytest.fail(f"runs that did not succeed: {failed}")
    found = {}
    for task in range(5):
        found.update({p.parent.name: load_manifest(p) for p in (repo / ".runs" / f"T{task}").glob("*/manifest.json")})
    assert sorted(found) == sorted(ids)
    for result in launched:
        m = found[result["runId"]]
        assert m.state == RunState.SUCCEEDED and m.selected_mode == result["mode"]
        assert [t.state for t in m.transitions][-1] == RunState.SUCCEEDED
        assert_patch_intact(repo, m)
        if m.selected_mode == "cloud":
            assert m.cloud and m.cloud.task_id and m.cloud.attempt_status[0].diff
        else:
            assert m.executor.exit_code == 0 and m.executor.scratch_path is None
    creates = [r for r in emulator.requests if r["method"] == "POST" and r["path"].endswith("/tasks")]
    assert len(creates) == 25


async def test_local_max_concurrent_queues_and_drains(repo: Path, start_server: SessionFactory) -> None:
    options = {"local": {"agentCommand": agent_command(), "envAllow": ["DEMO_AGENT_*"], "maxConcurrent": 2}}
    s = await start_server(repo, options, env={"DEMO_AGENT_SLEEP": "0.6"})
    ids = [(await s.request("co/launch", {"prompt": f"q{i}"}))["runId"] for i in range(5)]
    assert [await s.wait_state(r) for r in ids] == ["succeeded"] * 5
    queued = [r for r in ids if "queued" in [u["state"] for u in s.updates_for(r)]]
    assert len(queued) == 3, queued  # two slots: the other three waited
    spans = []
    for run_id in ids:
        m = load_manifest(repo / ".runs" / "adhoc" / run_id / "manifest.json")
        states = [t.state.value for t in m.transitions]
        if run_id in queued:
            assert states == ["routing", "launching", "queued", "launching", "running", "succeeded"]
        else:
            assert states == ["routing", "launching", "running", "succeeded"]
        spans.append((m.executor.started_at, m.executor.finished_at))
    spans.sort()
    for i, (start, _) in enumerate(spans):  # never more than two agents at once
        overlapping = [1 for s0, e0 in spans if s0 is not None and e0 is not None and s0 <= start < e0]  # type: ignore[operator]
        assert len(overlapping) <= 2, (i, spans)
    # A queued run can be cancelled while it waits.
    ids = [(await s.request("co/launch", {"prompt": f"c{i}"}))["runId"] for i in range(3)]
    await s.wait_state(ids[2], {"queued"})
    assert (await s.request("co/cancel", {"runId": ids[2]}))["state"] == "cancelled"
    assert [await s.wait_state(r) for r in ids[:2]] == ["succeeded"] * 2


# The demo agent, held until the test creates the file argv[1]: runs stay "running" for as long
# as the test needs, however loaded the machine is (a fixed sleep raced a slow server start).
HELD_DEMO_AGENT = """
import pathlib, runpy, sys, time
release = pathlib.Path(sys.argv.pop(1))
deadline = time.monotonic() + 90
while not release.exists() and time.monotonic() < deadline:
    time.sleep(0.02)
runpy.run_path(sys.argv[1], run_name="__main__")
"""


async def test_two_servers_on_one_workspace_leave_each_others_runs_alone(
    repo: Path, tmp_path: Path, start_server: SessionFactory
) -> None:
    script, release = tmp_path / "held_agent.py", tmp_path / "release"
    script.write_text(HELD_DEMO_AGENT)
    held = [sys.executable, str(script), str(release), str(DEMO_AGENT), "{prompt}"]
    try:
        with Emulator(repo, agent=held, hang_seconds=3).start() as emulator:
            await _two_servers(repo, emulator, start_server, held, release)
    finally:
        release.touch()


async def _two_servers(
    repo: Path, emulator: Emulator, start_server: SessionFactory, agent: list[str], release: Path
) -> None:
    options = cloud_options(emulator)
    options["local"]["agentCommand"] = agent
    a = await start_server(repo, options)
    a_ids = [(await a.request("co/launch", {"prompt": f"a{i}", "mode": mode}))["runId"] for i, mode in enumerate(["local", "local", "cloud"])]
    for run_id in a_ids:
        await a.wait_state(run_id, {"running"})
    b = await start_server(repo, options)  # loads a's live runs at start
    listed = {r["runId"]: r["state"] for r in (await b.request("co/list", {}))["runs"]}
    assert all(listed[r] == "running" for r in a_ids), listed  # not taken for orphans (gated)
    b_ids = [(await b.request("co/launch", {"prompt": f"b{i}", "mode": mode}))["runId"] for i, mode in enumerate(["local", "cloud"])]
    for run_id in b_ids:
        await b.wait_state(run_id, {"running"})
    release.touch()  # all five agents finish while both servers run
    assert [await a.wait_state(r) for r in a_ids] == ["succeeded"] * 3
    assert [await b.wait_state(r) for r in b_ids] == ["succeeded"] * 2
    final = manifests(repo)
    assert sorted(final) == sorted(a_ids + b_ids)
    a_pid, b_pid = (s.client._server.pid for s in (a, b))  # type: ignore[attr-defined]
    for run_id, m in final.items():
        assert m.state == RunState.SUCCEEDED and m.error_code is None
        assert m.owner_pid == (a_pid if run_id in a_ids else b_pid)
        assert not any("interrupted" in t.message or "resuming" in t.message for t in m.transitions)
        assert_patch_intact(repo, m)
    assert not [u for u in b.updates if u["runId"] in a_ids]  # b never drove a's runs


# -- the owner lock, in process ------------------------------------------------------------


class _Resume:
    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()

    async def execute(self, ctx: Any) -> Outcome:
        raise AssertionError("not used")

    async def resume(self, ctx: Any) -> Outcome:
        self.started += 1
        await self.release.wait()
        return Outcome(RunState.SUCCEEDED, "done")


def orphan_cloud_manifest(workspace: Path) -> RunManifest:
    now = utc_now()
    m = RunManifest(
        run_id="20250101T000000000000-abcdef", task_id="adhoc", prompt="p", workspace=str(workspace),
        requested_mode="cloud", selected_mode="cloud", routing_reason="r", state=RunState.RUNNING,
        created_at=now, updated_at=now, owner_pid=999_999_999, cloud=CloudInfo(task_id="task_x"),
        transitions=[Transition(state=RunState.RUNNING, at=now)],
    )
    ManifestStore(workspace / ".runs").save(m)
    return m


def manager(executor: Any) -> RunManager:
    return RunManager(lambda u: None, lambda ws: Config(), lambda mode: executor)


async def test_two_servers_starting_together_resume_an_orphan_once(tmp_path: Path) -> None:
    orphan_cloud_manifest(tmp_path)
    executor = _Resume()
    one, two = manager(executor), manager(executor)
    one.recover(one.ensure_loaded(tmp_path))
    two.recover(two.ensure_loaded(tmp_path))  # the lock is held by `one`: not an orphan here
    await asyncio.sleep(0.05)
    assert executor.started == 1
    executor.release.set()
    record = next(iter(one.runs.values()))
    assert record.driver.task is not None
    await record.driver.task
    # Whoever loads it next sees the final state, and nothing to recover.
    three = manager(executor)
    assert three.ensure_loaded(tmp_path) == []
    assert next(iter(three.runs.values())).manifest.state == RunState.SUCCEEDED


async def test_a_stale_read_is_refreshed_before_recovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = orphan_cloud_manifest(tmp_path)
    done = stale.model_copy(deep=True)
    done.state = RunState.SUCCEEDED
    ManifestStore(tmp_path / ".runs").save(done)  # its owner finished after our directory scan
    monkeypatch.setattr(ManifestStore, "load_all", lambda self: ([stale], []))
    m = manager(_Resume())
    assert m.ensure_loaded(tmp_path) == []
    assert m.runs[stale.run_id].manifest.state == RunState.SUCCEEDED
    assert json.loads((tmp_path / ".runs" / "adhoc" / stale.run_id / "manifest.json").read_text())["state"] == "succeeded"
