"""The benchmark harness keeps working: `python -m benchmarks --quick` writes every section.

No timings are asserted here (the machine is shared); only that the run completes and the
report is whole. Also covers the emulator's synthetic `task:instant` mode the harness uses.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from co_sidecar.testing.emulator import Emulator, parse_faults
from conftest import ROOT, make_repo

SECTIONS = (
    "## Machine",
    "## Targets",
    "## 1. Start-up",
    "## 2. Latency",
    "## 3. Polling at scale",
    "## 4. Diff → WorkspaceEdit",
    "## 5. Notification throughput",
    "## 6. co/status during a big co/diff",
    "## 7. Scratch copies",
    "## Before and after",
)


# A whole benchmark run (about a minute alone, up to 4 beside other test workers on a busy
# machine): the timeouts are hang guards, not speed goals.
@pytest.mark.timeout(600)
def test_quick_mode_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    raw = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(out), "--json", str(raw)],
        cwd=ROOT,
        check=True,
        timeout=540,
    )
    text = out.read_text()
    for section in SECTIONS:
        assert section in text, section
    results = json.loads(raw.read_text())
    assert results["quick"] is True
    assert results["polling"]["all_succeeded"], results["polling"]
    assert results["notify"]["succeeded"] == results["notify"]["runs"]
    assert results["latency"]["rows"]["co/status"]["p50_ms"] > 0
    assert all(row["edits"] > 0 for row in results["diff"]["rows"])
    assert results["stall"]["during_count"] > 0 and results["stall"]["diff_files"] == results["stall"]["files"]
    (scratch,) = results["scratch"]["rows"]  # launch → agent started, exit → diff ready, disk
    assert scratch["warm"]["launch_s"] > 0 and scratch["warm"]["exit_s"] > 0
    assert scratch["warm"]["disk_mb"] > 0 and scratch["concurrent"]["wall_s"] > 0
    assert "CPU" in text and "Python" in text


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_emulator_instant_tasks_complete_after_n_polls(tmp_path: Path) -> None:
    assert parse_faults("task:instant=3")[0].kind == "instant"
    repo = make_repo(tmp_path / "repo")
    with Emulator(repo, faults="task:instant=3", agent=["false"]) as emulator:
        body = json.dumps(
            {
                "new_task": {"environment_id": "env"},
                "input_items": [
                    {"type": "message", "content": [{"content_type": "text", "text": "hi"}]}
                ],
            }
        ).encode()
        request = urllib.request.Request(
            f"{emulator.base_url}/wham/tasks", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            task_id = json.loads(response.read())["task"]["id"]
        statuses = []
        for _ in range(3):
            details = _get(f"{emulator.base_url}/wham/tasks/{task_id}")
            turn = details["current_assistant_turn"]
            assert isinstance(turn, dict)
            statuses.append(turn["turn_status"])
        assert statuses == ["in_progress", "in_progress", "completed"]
        diff = details["current_diff_task_turn"]
        assert isinstance(diff, dict)
        assert diff["output_items"][0]["diff"].startswith("diff --git a/EMULATED-")
        # No agent ran: the `false` agent would have failed the attempt.
        assert not any(r["path"].endswith("/cancel") for r in emulator.requests)
