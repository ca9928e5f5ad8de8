"""One run as it is persisted: its manifest, where it lives, and the checked way it changes.

Every change of state goes through `set_state` (checked against lifecycle.EDGES) or `finish`
(the one terminal transition), is written atomically and then announced by the run's notifier.
A `RunRecord` is the `execution.RunContext` its executor sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import diffs, redact
from .budget import budget_of, too_large
from .config import Config
from .driver import RunDriver, os_cause
from .errors import PatchRefused
from .execution import Outcome, Stream
from .git_apply import parse_checked
from .lifecycle import IllegalTransition, check_transition
from .manifest import (
    DiffEvidence,
    ManifestStore,
    RunManifest,
    Transition,
    atomic_write_bytes,
    utc_now,
)
from .notifier import RunNotifier, UpdateSink
from .protocol import RunState, RunSummary

log = logging.getLogger(__name__)

# A terminal manifest that could not be written is retried this often, this many times.
SAVE_RETRY_S = 1.0
SAVE_RETRIES = 120


@dataclass
class RunRecord:
    """One run: its manifest and store; `driver` holds its live parts while executing,
    `notifier` sends its updates."""

    manifest: RunManifest
    workspace: Path
    store: ManifestStore
    config: Config
    sink: UpdateSink
    driver: RunDriver = field(default_factory=RunDriver)
    applying: bool = False  # an apply, restore or reject of this run is in progress here
    # (mtime_ns, size) of the manifest file when last read from disk (see RunManager.refresh).
    disk_stamp: tuple[int, int] | None = None
    unsaved: bool = False  # the last write of the manifest failed (see finish)
    # Called with each stored patch's evidence (the canary times the diff phase with it).
    on_patch: Callable[[DiffEvidence], None] | None = None
    notifier: RunNotifier = field(init=False)
    _summary: tuple[tuple[int, str, RunState], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.notifier = RunNotifier(lambda: self.manifest, self.sink)

    def summary(self) -> dict[str, Any]:
        """This run's `co/list` row. Cached: every change to the fields it shows goes through
        `save`, which moves `updatedAt`, so (manifest, updatedAt, state) says when it is stale."""
        m = self.manifest
        key = (id(m), m.updated_at, m.state)
        if self._summary is None or self._summary[0] != key:
            row = RunSummary(
                run_id=m.run_id,
                task_id=m.task_id,
                state=m.state,
                mode=m.selected_mode,
                requested_mode=m.requested_mode,
                prompt=m.prompt,
                created_at=m.created_at,
                updated_at=m.updated_at,
                failure_reason=m.failure_reason,
                cloud_task_url=m.cloud.task_url if m.cloud else None,
            )
            self._summary = (key, row.wire())
        return self._summary[1]

    # -- RunContext ---------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def task_id(self) -> str:
        return self.manifest.task_id

    @property
    def prompt(self) -> str:
        return self.manifest.prompt

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir(self.task_id, self.run_id)

    @property
    def cancel_event(self) -> asyncio.Event:
        return self.driver.cancel_event

    def set_state(self, state: RunState, message: str = "") -> None:
        check_transition(self.run_id, RunState(self.manifest.state), state)
        self.manifest.state = state
        self.manifest.transitions.append(Transition(state=state, at=utc_now(), message=message))
        self.save(message or state.value)

    def save(self, message: str = "") -> None:
        redact.redact_model(self.manifest)  # in memory too: co/status answers from it
        self.store.save(self.manifest)
        if message:
            self.emit(message)

    def emit(self, message: str) -> None:
        self.notifier.emit(message)

    def output(self, stream: Stream, line: str) -> None:
        self.notifier.output(stream, line)

    def step(self, message: str, event: dict[str, Any]) -> None:
        self.notifier.step(message, event)

    def record_patch(self, patch: bytes, attempt: int | None = None) -> DiffEvidence:
        name = "patch.diff" if attempt is None else f"attempt-{attempt}.diff"
        path = self.run_dir / name
        atomic_write_bytes(path, patch)
        evidence = DiffEvidence(
            patch_path=str(path.relative_to(self.store.root)),
            sha256=hashlib.sha256(patch).hexdigest(),
            bytes=len(patch),
        )
        hard_limit = self.config.diff.hard_max_patch_bytes
        if len(patch) > hard_limit:
            evidence.problem = too_large(len(patch), hard_limit)
        else:
            try:
                changes = parse_checked(patch)
                evidence.files = diffs.file_stats(changes)
                evidence.additions, evidence.deletions = diffs.totals(changes)
            except PatchRefused as exc:
                evidence.problem = exc.message
        evidence.over_budget = budget_of(evidence, self.config).over_limit
        # The run's headline diff: the only one, or the first attempt that produced one.
        if attempt is None or self.manifest.diff is None:
            self.manifest.diff = evidence
        if self.on_patch is not None:
            self.on_patch(evidence)
        return evidence

    # -- the end ------------------------------------------------------------
    def finish(self, outcome: Outcome) -> None:
        """The terminal transition. It always happens in memory and reaches the client; if the
        manifest cannot be written now (no file descriptor, disk full), writing is retried."""
        self.notifier.flush()
        try:
            check_transition(self.run_id, RunState(self.manifest.state), outcome.state)
        except IllegalTransition as exc:  # a bug, logged; the run still ends (it must)
            log.error("%s", exc.message)
        self.manifest.failure_reason = None if outcome.state == RunState.SUCCEEDED else outcome.message
        self.manifest.error_code = outcome.error_code
        self.manifest.state = outcome.state
        self.manifest.transitions.append(Transition(state=outcome.state, at=utc_now(), message=outcome.message))
        self.emit_after_save(outcome.message or outcome.state.value)

    def emit_after_save(self, message: str) -> None:
        if self.try_save():
            self.driver.release()  # after the final write: whoever takes the lock next sees the end state
        else:
            self._retry_save(SAVE_RETRIES)
        self.emit(message)

    def try_save(self) -> bool:
        redact.redact_model(self.manifest)
        try:
            self.store.save(self.manifest)
        except OSError as exc:
            log.error("cannot write the manifest of run %s (will retry): %s", self.run_id, os_cause(exc))
            self.unsaved = True
            return False
        self.unsaved = False
        return True

    def _retry_save(self, left: int) -> None:
        def again() -> None:
            if not self.unsaved:
                return
            if self.try_save():
                self.driver.release()
            elif left > 1:
                self._retry_save(left - 1)

        with contextlib.suppress(RuntimeError):  # no loop: shutdown() tries once more
            asyncio.get_running_loop().call_later(SAVE_RETRY_S, again)
