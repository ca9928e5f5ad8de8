"""The contract between the run lifecycle (runs.py) and an executor (local or cloud).

An executor gets a `RunContext`, does its work, reports through the context
(state changes, output lines, manifest fields, patches) and returns an
`Outcome`. The lifecycle owns the terminal transition and the notifications.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from .config import Config
from .errors import Category
from .manifest import DiffEvidence, RunManifest
from .protocol import RunState

Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class Outcome:
    """How the executor finished: a terminal run state, a sentence, and an error code on failure."""

    state: RunState
    message: str = ""
    # A RunErrorCode (or the category of the CoError that ended the run): never a loose string.
    error_code: Category | None = None


class RunContext(Protocol):
    workspace: Path
    config: Config
    manifest: RunManifest

    @property
    def cancel_event(self) -> asyncio.Event:
        """Set when the run is cancelled (co/cancel, shutdown): stop the agent or the task."""

    @property
    def run_id(self) -> str: ...

    @property
    def task_id(self) -> str: ...

    @property
    def prompt(self) -> str: ...

    @property
    def run_dir(self) -> Path: ...

    def set_state(self, state: RunState, message: str = "") -> None:
        """Record a non-terminal transition (e.g. running), persist, notify."""

    def save(self, message: str = "") -> None:
        """Persist after mutating `manifest` fields; notify a runUpdate when `message` is given."""

    def emit(self, message: str) -> None:
        """A runUpdate without persisting (a heartbeat: nothing in the manifest changed)."""

    def output(self, stream: Stream, line: str) -> None:
        """One line of agent output: kept in the tail, forwarded as a rate-limited runUpdate."""

    def step(self, message: str, event: dict[str, Any]) -> None:
        """One agent step (an `AgentEvent` wire dict): a runUpdate after any pending output."""

    def record_patch(self, patch: bytes, attempt: int | None = None) -> DiffEvidence:
        """Store a patch beside the manifest; returns its evidence (path, sha256, stats)."""


class Executor(Protocol):
    async def execute(self, ctx: RunContext) -> Outcome: ...


@runtime_checkable
class ResumableExecutor(Executor, Protocol):
    """An executor that can take over a run a stopped server left executing (cloud: the task
    id is in the manifest). Runs of any other executor are failed as interrupted at start."""

    async def resume(self, ctx: RunContext) -> Outcome: ...
