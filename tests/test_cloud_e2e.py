"""Cloud mode end to end: editor-side JSON-RPC over stdio → real server → HTTP adapter → loopback emulator."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from co_sidecar.manifest import load_manifest
from co_sidecar.testing.emulator import Emulator
from conftest import SessionFactory, agent_command, git


@pytest.fixture
def emulator(repo: Path) -> Iterator[Emulator]:
    with Emulator(repo, hang_seconds=3).start() as emu:
        yield emu


def cloud_options(emu: Emulator, **cloud: Any) -> dict[str, Any]:
    return {
        "local": {"agentCommand": agent_command(), "envAllow": ["DEMO_AGENT_*"]},
        "cloud": {
            "envId": "env-demo",
            "baseUrl": emu.base_url,
            "poll": {"intervalSeconds": 0.05, "maxIntervalSeconds": 0.2, "requestTimeoutSeconds": 2, "maxRetries": 3},
            **cloud,
        },
    }


def manifest_of(repo: Path, run_id: str) -> dict[str, Any]:
    return json.loads((repo / ".runs" / "adhoc" / run_id / "manifest.json").read_text())


async def test_cloud_run_launch_poll_diff_apply(repo: Path, emulator: Emulator, start_server: SessionFactory):
    s = await start_server(repo, cloud_options(emulator))
    launched = await s.request("co/launch", {"prompt": "cloud work", "mode": "cloud"})
    assert launched["mode"] == "cloud" and launched["fallback"] is None
    run_id = launched["runId"]
    assert await s.wait_state(run_id) == "succeeded"

    updates = s.updates_for(run_id)
    with_url = [u for u in updates if u.get("cloudTaskUrl")]
    assert with_url and with_url[0]["cloudTaskId"] and emulator.origin in with_url[0]["cloudTaskUrl"]
    assert max(u["pollCount"] for u in updates) >= 1

    m = manifest_of(repo, run_id)
    cloud = m["cloud"]
    assert cloud["taskId"] == with_url[0]["cloudTaskId"] and cloud["envId"] == "env-demo"
    assert cloud["pollCount"] >= 1 and cloud["attemptStatus"][0]["diff"]["sha256"]
    assert m["diff"]["sha256"] == cloud["attemptStatus"][0]["diff"]["sha256"]

    diff = await s.request("co/diff", {"runId": run_id})
    assert "NOTES.md" in {f["path"] for f in diff["files"]} and diff["conflicts"] == []
    result = await s.request("co/apply", {"runId": run_id, "accept": True})
    assert result["applied"] is True and len(s.apply_requests) == 1
    assert manifest_of(repo, run_id)["state"] == "applied"
    assert git(repo, "status", "--porcelain") == ""  # the client applied it, not the server


async def test_best_of_two_records_each_attempt_and_applies_the_chosen_one(
    repo: Path, emulator: Emulator, start_server: SessionFactory
):
    s = await start_server(repo, cloud_options(emulator))
    launched = await s.request("co/launch", {"prompt": "two ways", "mode": "cloud", "cloud": {"attempts": 2}})
    run_id = launched["runId"]
    assert await s.wait_state(run_id) == "succeeded"
    attempts = manifest_of(repo, run_id)["cloud"]["attemptStatus"]
    assert [a["attempt"] for a in attempts] == [1, 2] and all(a["diff"] for a in attempts)
    second = await s.request("co/diff", {"runId": run_id, "attempt": 2})
    assert second["attempt"] == 2 and second["files"]
    with pytest.raises(JsonRpcException):
        await s.request("co/diff", {"runId": run_id, "attempt": 3})
    result = await s.request("co/apply", {"runId": run_id, "accept": True, "attempt": 2, "strategy": "git"})
    assert result["applied"] is True and (repo / "NOTES.md").is_file()
    assert manifest_of(repo, run_id)["apply"]["attempt"] == 2


async def test_transient_poll_faults_are_retried(repo: Path, start_server: SessionFactory):
    with Emulator(repo, faults="poll:503:times=2", hang_seconds=3).start() as emu:
        s = await start_server(repo, cloud_options(emu))
        run_id, state = await s.run_to_end("flaky", mode="cloud")
        assert state == "succeeded"
        cloud = manifest_of(repo, run_id)["cloud"]
        assert cloud["retries"] >= 2


async def test_auth_failure_fails_with_its_code_and_keeps_the_manifest(repo: Path, start_server: SessionFactory):
    with Emulator(repo, faults="create:401", hang_seconds=3).start() as emu:
        s = await start_server(repo, cloud_options(emu))
        run_id, state = await s.run_to_end("denied", mode="cloud")
        assert state == "failed"
        m = load_manifest(repo / ".runs" / "adhoc" / run_id / "manifest.json")
        assert m.error_code == "cloud_auth" and m.cloud is not None and m.cloud.last_error is not None
        assert [u for u in s.updates_for(run_id) if u["state"] == "failed"][0]["errorCode"] == "cloud_auth"
        # The server is still up and serves other runs.
        assert (await s.request("co/list", {}))["runs"][0]["runId"] == run_id


async def test_cancel_stops_polling(repo: Path, start_server: SessionFactory):
    with Emulator(repo, faults="task:slow=30", hang_seconds=3).start() as emu:
        s = await start_server(repo, cloud_options(emu))
        launched = await s.request("co/launch", {"prompt": "slow", "mode": "cloud"})
        await s.wait_state(launched["runId"], {"running"})
        result = await s.request("co/cancel", {"runId": launched["runId"]})
        assert result["state"] == "cancelled"


async def test_server_killed_mid_poll_resumes_the_task_after_restart(repo: Path, start_server: SessionFactory):
    with Emulator(repo, faults="task:slow=2", hang_seconds=3).start() as emu:
        first = await start_server(repo, cloud_options(emu))
        launched = await first.request("co/launch", {"prompt": "survive", "mode": "cloud"})
        run_id = launched["runId"]
        await first.wait_state(run_id, {"running"})
        while not manifest_of(repo, run_id)["cloud"].get("taskId"):
            await asyncio.sleep(0.05)
        server_pid = first.client._server.pid  # type: ignore[attr-defined]
        os.kill(server_pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        m = manifest_of(repo, run_id)  # intact and parseable after kill -9
        assert m["state"] == "running" and m["cloud"]["taskId"]

        second = await start_server(repo, cloud_options(emu))
        await second.request("co/list", {})
        assert await second.wait_state(run_id) == "succeeded"
        after = manifest_of(repo, run_id)
        assert after["cloud"]["taskId"] == m["cloud"]["taskId"]
        assert len([r for r in emu.requests if r["method"] == "POST" and r["path"].endswith("/tasks")]) == 1


def test_emulator_cli_starts_and_serves(repo: Path) -> None:
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "co_sidecar", "emulator", "--port", "0", "--repo", str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "127.0.0.1" in first, first
    finally:
        proc.terminate()
        proc.wait(10)


async def test_doctor_checks_reachability_with_a_cheap_list_call(repo: Path, start_server: SessionFactory):
    emu = Emulator(repo, hang_seconds=3).start()
    s = await start_server(repo, cloud_options(emu))
    ready = await s.request("co/doctor", {})
    assert ready["cloud"]["ok"] is True, ready
    assert any("/tasks/list" in r["path"] for r in emu.requests)
    emu.stop()
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings = cloud_options(emu)
    settings["cloud"]["baseUrl"] = f"http://127.0.0.1:{closed}/backend-api"
    s.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))
    down = await s.request("co/doctor", {})
    assert down["cloud"]["ok"] is False
    assert down["cloud"]["issues"][0]["code"] == "cloud_unavailable"
