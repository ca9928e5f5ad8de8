"""Elapsed time that never looks frozen: the client's clock between the server's updates."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from co_sidecar.run_clock import RunClock, format_elapsed


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_the_clock_moves_between_updates_and_never_rewinds() -> None:
    now = FakeTime()
    clock = RunClock(now=now)
    clock.update({"state": "running", "elapsedMs": 100, "message": "agent started"})
    now.t += 8
    assert clock.line() == "running 8s  agent started"  # 8 s later with no update: still moving
    clock.update({"state": "running", "elapsedMs": 50, "message": "late"})  # an older update
    assert clock.elapsed() >= 8.1 and clock.step == "late"
    clock.update({"state": "running", "elapsedMs": 9000, "stream": "stdout", "message": "out"})
    assert clock.step == "late" and round(clock.elapsed()) == 9  # output lines are not steps


def test_format_elapsed() -> None:
    assert [format_elapsed(s) for s in (0.4, 59, 61, 3599, 3600, 7322)] == ["0s", "59s", "1m01s", "59m59s", "1h00m", "2h02m"]


def test_co_sidecar_run_shows_the_clock_moving_while_the_agent_is_silent(repo: Path, tmp_path: Path) -> None:
    """In a terminal, `co-sidecar run`'s status line says 2s, 3s... while a silent agent works."""
    agent = tmp_path / "quiet.py"
    agent.write_text("import pathlib, time\ntime.sleep(4)\npathlib.Path('NOTES.md').write_text('x\\n')\n")
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "co_sidecar", "run", "quiet", "--mode", "local",
         "--agent", json.dumps([sys.executable, str(agent), "{prompt}"])],
        cwd=repo, stdin=child, stdout=child, stderr=child, env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(child)
    seen = b""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(main)
    text = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", seen).decode(errors="replace")
    assert proc.returncode == 0, text[-2000:]
    ticks = {int(m) for m in re.findall(r"running (\d+)s", text)}
    assert {2, 3} <= ticks, sorted(ticks)  # the agent printed nothing in those seconds
