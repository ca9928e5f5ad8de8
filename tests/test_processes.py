"""No process outlives its run: real server processes, a hostile agent that double-forks, calls
setsid and keeps writing; co/cancel, timeout, SIGTERM and kill -9 of the server. Survivors are
looked for by walking /proc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from co_sidecar.local.processes import launcher_available
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from boundary_faults import HOSTILE_AGENT, pid_alive, run_processes  # noqa: E402
from rpc import RpcProcess  # noqa: E402

pytestmark = pytest.mark.skipif(not launcher_available(), reason="needs Linux /proc and prctl")

HOSTILE = HOSTILE_AGENT
FINISHED = {"succeeded", "failed", "cancelled", "timed_out"}


def wait_until(check, what: str, within: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.05)


class Hostile:
    def __init__(self, tmp_path: Path):
        self.dir = tmp_path / "hostile"
        self.dir.mkdir()
        self.script = tmp_path / "hostile_agent.py"
        self.script.write_text(HOSTILE)

    def options(self, **local: object) -> dict[str, object]:
        return {"local": {"agentCommand": [sys.executable, str(self.script), "{prompt}"], "envAllow": ["HOSTILE_*"], **local}}

    def pids(self) -> list[int]:
        return [int((self.dir / n).read_text()) for n in ("agent.pid", "daemon.pid") if (self.dir / n).exists()]

    def wait_started(self) -> None:
        wait_until(lambda: (self.dir / "daemon.pid").exists() and (self.dir / "leak.log").exists(), "agent never started")

    def assert_all_gone(self, run_id: str) -> None:
        for pid in self.pids():
            wait_until(lambda pid=pid: not pid_alive(pid), f"process {pid} survived")
        wait_until(lambda: not run_processes(run_id), f"survivors: {run_processes(run_id)}")
        size = (self.dir / "leak.log").stat().st_size
        time.sleep(0.2)  # the daemon wrote every 20 ms while alive
        assert (self.dir / "leak.log").stat().st_size == size


@pytest.fixture
def hostile(tmp_path: Path) -> Hostile:
    return Hostile(tmp_path)


def start(repo: Path, hostile: Hostile, env: dict[str, str] | None = None, **local: object) -> RpcProcess:
    proc = RpcProcess(env={"HOSTILE_DIR": str(hostile.dir), **(env or {})}, cwd=repo)
    proc.initialize(repo, hostile.options(**local))
    return proc


@pytest.fixture
def servers() -> Iterator[list[RpcProcess]]:
    started: list[RpcProcess] = []
    yield started
    for proc in started:
        if proc.alive():
            proc.kill()


def manifest(repo: Path, run_id: str) -> dict[str, object]:
    return json.loads((repo / ".runs" / "adhoc" / run_id / "manifest.json").read_text())


def launch_running(server: RpcProcess, hostile: Hostile) -> str:
    run_id = server.request("co/launch", {"prompt": "misbehave", "mode": "local"})["runId"]
    server.wait_state(run_id, {"running"})
    hostile.wait_started()
    assert run_processes(run_id), "the agent's processes carry CO_RUN_ID"
    return str(run_id)


def test_cancel_ends_a_double_forked_setsid_daemon(repo: Path, hostile: Hostile, servers: list[RpcProcess]) -> None:
    server = start(repo, hostile)
    servers.append(server)
    run_id = launch_running(server, hostile)
    assert server.request("co/cancel", {"runId": run_id})["state"] == "cancelled"
    hostile.assert_all_gone(run_id)
    assert manifest(repo, run_id)["state"] == "cancelled"


def test_timeout_ends_every_descendant(repo: Path, hostile: Hostile, servers: list[RpcProcess]) -> None:
    server = start(repo, hostile, timeoutSeconds=1)
    servers.append(server)
    run_id = launch_running(server, hostile)
    assert server.wait_state(run_id, FINISHED) == "timed_out"
    hostile.assert_all_gone(run_id)


def test_agent_exit_ends_its_daemon(repo: Path, hostile: Hostile, servers: list[RpcProcess]) -> None:
    server = start(repo, hostile, env={"HOSTILE_EXIT": "1"})
    servers.append(server)
    run_id = server.request("co/launch", {"prompt": "leave a daemon", "mode": "local"})["runId"]
    assert server.wait_state(run_id, FINISHED) == "succeeded"
    hostile.assert_all_gone(run_id)


def assert_slot_released(work: Path) -> None:
    """A pooled scratch is kept on purpose (local/pool.py): after the server is gone it must be
    gone too, or free for the next run (its lock not held, not marked as running this run)."""
    import fcntl
    import json as _json

    slot = work.parent
    if not slot.exists():
        return
    meta = slot / "meta.json"
    if meta.is_file():
        assert _json.loads(meta.read_text()).get("state") != "running"
    with open(slot / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a process still holds it


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_sigterm_of_the_server_is_a_clean_shutdown(
    repo: Path, hostile: Hostile, servers: list[RpcProcess], sig: signal.Signals
) -> None:
    server = start(repo, hostile)
    servers.append(server)
    run_id = launch_running(server, hostile)
    scratch = Path(str(manifest(repo, run_id)["executor"]["scratchPath"]))  # type: ignore[index]
    assert scratch.is_dir()
    os.kill(server.pid, sig)
    assert server.proc.wait(30) == 0
    hostile.assert_all_gone(run_id)
    record = manifest(repo, run_id)
    assert record["state"] == "cancelled"  # terminal, written before the server exited
    assert record["executor"]["scratchPath"] is None  # type: ignore[index]
    assert_slot_released(scratch)
    updates = [u["state"] for u in server.updates(run_id)]
    assert updates[-1] == "cancelled"  # the editor heard it too


def test_kill_9_of_the_server_takes_the_agent_and_its_daemon_along(
    repo: Path, hostile: Hostile, servers: list[RpcProcess]
) -> None:
    server = start(repo, hostile)
    servers.append(server)
    run_id = launch_running(server, hostile)
    server.kill()  # SIGKILL
    hostile.assert_all_gone(run_id)
    again = start(repo, hostile)
    servers.append(again)
    status = again.request("co/status", {"runId": run_id})
    assert status["state"] == "failed" and status["errorCode"] == "interrupted"


def test_end_of_input_without_shutdown_ends_runs(repo: Path, hostile: Hostile, servers: list[RpcProcess]) -> None:
    server = start(repo, hostile)
    servers.append(server)
    run_id = launch_running(server, hostile)
    assert server.proc.stdin is not None
    server.proc.stdin.close()  # the editor went away without shutdown/exit
    server.proc.wait(30)
    hostile.assert_all_gone(run_id)
    assert manifest(repo, run_id)["state"] == "cancelled"


def test_launcher_is_a_subreaper_with_a_parent_death_signal(tmp_path: Path) -> None:
    """The launcher on its own: its parent is killed with SIGKILL; the grandchild it was given
    dies too (pdeathsig → SIGTERM → every descendant ended)."""
    pidfile = tmp_path / "grandchild.pid"
    code = (
        "import os, time, subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(300)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", (
            "import asyncio, sys\n"
            "from co_sidecar.local import processes\n"
            "async def main():\n"
            f"    a = await processes.spawn([sys.executable, '-c', {code!r}], cwd='.', env=dict(__import__('os').environ), stdin=-3, grace=0.5)\n"
            "    print(a.pid, flush=True)\n"
            "    await asyncio.sleep(300)\n"
            "asyncio.run(main())\n"
        )],
        stdout=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert parent.stdout is not None
    agent = int(parent.stdout.readline())
    # Written by the agent after it starts the grandchild: wait for the whole pid, not the file.
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip().isdigit(), "grandchild never started")
    grandchild = int(pidfile.read_text())
    parent.kill()
    parent.wait()
    for pid in (agent, grandchild):
        wait_until(lambda pid=pid: not pid_alive(pid), f"process {pid} survived its server")
