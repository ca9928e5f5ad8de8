"""Shared helpers for the cloud tests (no tests here): a git repo, a fast agent, the emulator, a RunContext."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from co_sidecar.config import Config
from co_sidecar.execution import Stream
from co_sidecar.manifest import DiffEvidence, RunManifest, utc_now
from co_sidecar.protocol import RunState
from co_sidecar.testing.emulator import Emulator

TOKEN = "tok-SECRET-never-print-9f8e7d"

AGENT = """\
import os, pathlib, sys, time
n = os.environ.get("CO_SIDECAR_ATTEMPT", "1")
if os.environ.get("FAKE_AGENT_SLEEP"):
    time.sleep(float(os.environ["FAKE_AGENT_SLEEP"]))
pathlib.Path("attempt.txt").write_text("attempt " + n + ": " + sys.argv[-1] + "\\n")
print("agent done", n)
"""


def git(args: list[str], cwd: Path) -> str:
    return subprocess.run(  # noqa: S603 - fixed git argv
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(["init", "-q", "-b", "main"], repo)
    (repo / "README.md").write_text("hello\n")
    git(["add", "."], repo)
    git(["commit", "-qm", "init"], repo)
    return repo


def agent_argv(root: Path) -> list[str]:
    script = root / "fake_agent.py"
    script.write_text(AGENT)
    return [sys.executable, str(script)]


def start_emulator(root: Path, faults: str | None = None, **kwargs: Any) -> Emulator:
    repo = root / "repo" if (root / "repo").exists() else make_repo(root)
    return Emulator(repo, faults=faults, agent=agent_argv(root), hang_seconds=5, **kwargs).start()


def cloud_config(base_url: str, **poll: Any) -> Config:
    settings = {
        "intervalSeconds": 0.03,
        "maxIntervalSeconds": 0.15,
        "backoff": 1.5,
        "jitter": 0.1,
        "maxRetries": 3,
        "timeoutSeconds": 20,
        "requestTimeoutSeconds": 1.0,
        **poll,
    }
    return Config.model_validate(
        {"mode": "cloud", "cloud": {"baseUrl": base_url, "envId": "env_test", "poll": settings}}
    )


class FakeContext:
    """A `RunContext` that records what the executor reports."""

    def __init__(self, root: Path, config: Config, prompt: str = "write the attempt file"):
        self.run_id = "run1"
        self.task_id = "task1"
        self.prompt = prompt
        self.workspace = root / "repo"
        self.run_dir = root / "run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        now = utc_now()
        self.manifest = RunManifest(
            run_id=self.run_id,
            task_id=self.task_id,
            prompt=prompt,
            workspace=str(self.workspace),
            requested_mode="cloud",
            selected_mode="cloud",
            routing_reason="test",
            state=RunState.LAUNCHING,
            created_at=now,
            updated_at=now,
        )
        self.cancel_event = asyncio.Event()
        self.states: list[tuple[RunState, str]] = []
        self.messages: list[str] = []
        self.patches: dict[int | None, bytes] = {}
        self.saved: list[dict[str, Any]] = []

    def set_state(self, state: RunState, message: str = "") -> None:
        self.manifest.state = state
        self.states.append((state, message))
        self.save(message)

    def save(self, message: str = "") -> None:
        # Round-trip like the real store so a non-serialisable field would fail here.
        self.saved.append(json.loads(json.dumps(self.manifest.wire())))
        if message:
            self.messages.append(message)

    def emit(self, message: str) -> None:  # a heartbeat: notified, not persisted
        self.messages.append(message)

    def output(self, stream: Stream, line: str) -> None:
        self.messages.append(f"{stream}: {line}")

    def record_patch(self, patch: bytes, attempt: int | None = None) -> DiffEvidence:
        self.patches[attempt] = patch
        path = self.run_dir / f"attempt-{attempt}.patch"
        path.write_bytes(patch)
        return DiffEvidence(
            patch_path=str(path), sha256=hashlib.sha256(patch).hexdigest(), bytes=len(patch)
        )
