"""`co-sidecar run` at the edges: its server dies (it says so and exits non-zero, never hangs),
and Ctrl-C (one line, the run is cancelled, no traceback, no survivor)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "co_sidecar"]
SLEEPER = "import time, sys\nprint('working', flush=True)\ntime.sleep(120)\n"


def children(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(name))
    return found


def start_run(repo: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    agent = json.dumps([sys.executable, str(script), "{prompt}"])
    client = subprocess.Popen(  # noqa: S603
        [*CLI, "run", "wait a while", "--workspace", str(repo), "--agent", agent, "--mode", "local"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # like a terminal's foreground job: Ctrl-C goes to its group
    )
    runs = repo / ".runs" / "adhoc"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        manifests = list(runs.glob("*/manifest.json")) if runs.is_dir() else []
        if manifests and json.loads(manifests[0].read_text())["state"] == "running":
            return client, manifests[0]
        time.sleep(0.05)
    client.kill()
    raise AssertionError(f"the run never started: {client.communicate()}")


def test_server_killed_mid_run_the_client_says_so_and_exits_non_zero(repo: Path, tmp_path: Path) -> None:
    client, _ = start_run(repo, tmp_path)
    [server] = children(client.pid)
    os.kill(server, signal.SIGKILL)
    out, err = client.communicate(timeout=60)  # never hangs
    assert client.returncode == 1
    assert "the server exited unexpectedly (exit code -9)" in out
    assert "Traceback" not in out + err


def test_ctrl_c_prints_one_line_and_cancels_the_run(repo: Path, tmp_path: Path) -> None:
    client, manifest = start_run(repo, tmp_path)
    os.killpg(client.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    out, err = client.communicate(timeout=60)
    assert client.returncode == 130
    assert "Traceback" not in out + err and err.strip() == ""
    interrupted = [line for line in out.splitlines() if "interrupted" in line]
    assert len(interrupted) == 1 and interrupted[0].endswith(": cancelled"), out
    record = json.loads(manifest.read_text())
    assert record["state"] == "cancelled"
    pid = record["executor"]["pid"]
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
