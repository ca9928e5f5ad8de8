"""Crash recovery: kill -9 the server mid-run, restart, and nothing is lost or left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

from conftest import SessionFactory


async def test_local_run_killed_with_the_server_is_marked_interrupted_and_swept(
    repo: Path, tmp_path: Path, start_server: SessionFactory
):
    first = await start_server(repo, env={"DEMO_AGENT_SLEEP": "60"})
    launched = await first.request("co/launch", {"prompt": "long"})
    run_id = launched["runId"]
    await first.wait_state(run_id, {"running"})
    manifest_path = repo / ".runs" / "adhoc" / run_id / "manifest.json"
    before = json.loads(manifest_path.read_text())
    scratch = Path(before["executor"]["scratchPath"])
    assert scratch.is_dir()
    agent_pid = before["executor"]["pid"]

    os.kill(first.client._server.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    await asyncio.sleep(0.2)
    assert json.loads(manifest_path.read_text())["state"] == "running"  # intact after kill -9
    with contextlib.suppress(ProcessLookupError):  # it dies with the server (tests/test_processes.py)
        os.killpg(agent_pid, signal.SIGKILL)

    second = await start_server(repo)
    runs = (await second.request("co/list", {}))["runs"]
    assert [(r["runId"], r["state"]) for r in runs] == [(run_id, "failed")]
    after = json.loads(manifest_path.read_text())
    assert after["errorCode"] == "interrupted" and "interrupted" in after["failureReason"]
    for _ in range(50):
        if not scratch.exists():
            break
        await asyncio.sleep(0.1)
    assert not scratch.exists()
