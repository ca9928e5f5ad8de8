"""The diff of a local run while its agent works: co/diff answers it (marked partial), and
runUpdates carry its stats whenever the agent's files change.

A running run's scratch is registered here. Reading its diff is the capture the run ends
with (`git add -A` + `git diff --cached` on the slot's own index, stat data fresh, so it costs a
status), done in a worker thread, one at a time per run (a lock: the final capture waits for a
live one). When to look: after each Codex file change or command (its events say so), or, for
agents that say nothing, every LIVE_INTERVAL_S, backing off to 10x what a check costs so a
large repository is not rescanned continuously.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..diffs import OpenDocument, build_workspace_edit, check_paths, file_stats, totals
from ..errors import InvalidState, PatchRefused
from ..git_apply import parse_checked
from ..manifest import DiffEvidence
from ..protocol import DiffBudget, DiffResult
from .pool import SEALED, _run, add_all, capture_patch, reseal, sealed_env
from .scratch import PatchTooLarge, Scratch

if TYPE_CHECKING:
    from ..execution import RunContext

LIVE_INTERVAL_S = 2.0
# A burst of edits (one apply_patch touching five files) is looked at once.
DEBOUNCE_S = 0.3


@dataclass
class _Live:
    scratch: Scratch
    lock: threading.Lock = field(default_factory=threading.Lock)


_LIVE: dict[str, _Live] = {}


def register(run_id: str, scratch: Scratch) -> None:
    _LIVE[run_id] = _Live(scratch)


def unregister(run_id: str) -> None:
    _LIVE.pop(run_id, None)


def capture(run_id: str, scratch: Scratch, limit: int | None = None) -> bytes:
    """The run's patch now (blocking), never at the same time as another look at it; over
    `limit` bytes, PatchTooLarge (see pool.capture_patch)."""
    live = _LIVE.get(run_id)
    if live is None:
        return capture_patch(scratch, limit)
    with live.lock:
        return capture_patch(scratch, limit)


def current(run_id: str, limit: int | None = None) -> bytes | None:
    """The running run's diff so far; None when it has no scratch (yet, or any more). Over
    `limit` bytes, PatchTooLarge: it is never read whole."""
    live = _LIVE.get(run_id)
    if live is None:
        return None
    with live.lock:
        return capture_patch(live.scratch, limit)


def stats(run_id: str) -> dict[str, int] | None:
    """`DiffStats` of the scratch now, from `git diff --numstat` (no patch text is made)."""
    live = _LIVE.get(run_id)
    if live is None or live.scratch.gitdir is None:
        return None
    scratch = live.scratch
    assert scratch.gitdir is not None
    reseal(scratch.gitdir, scratch.sealed)
    env = sealed_env(scratch.gitdir, scratch.path)

    def run(args: Any, input: bytes | None = None) -> bytes:
        return _run([*SEALED, *scratch.git_config, *args], scratch.path, env, input)

    with live.lock:
        spec = add_all(run, scratch.path, scratch.excludes)
        raw = run(["diff", "--cached", "--numstat", "-z", "--no-renames", scratch.base, *spec])
    files = additions = deletions = 0
    for entry in raw.split(b"\0"):
        parts = entry.split(b"\t", 2)
        if len(parts) != 3:
            continue
        files += 1
        if parts[0] != b"-":  # binary: "-\t-"
            additions += int(parts[0])
            deletions += int(parts[1])
    return {"files": files, "additions": additions, "deletions": deletions}


class Watcher:
    """Reports the scratch's diff stats to the run when they change. `poke()` asks for a look
    (a Codex file change); with `interval` it also looks on its own (agents that say nothing)."""

    def __init__(self, ctx: RunContext, interval: float | None):
        self.ctx = ctx
        self.interval = interval
        self._wake = asyncio.Event()
        self._last: dict[str, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def poke(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _loop(self) -> None:
        wait = self.interval
        while True:
            if wait is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            await asyncio.sleep(DEBOUNCE_S)
            self._wake.clear()
            started = time.monotonic()
            try:
                now = await asyncio.to_thread(stats, self.ctx.run_id)
            except Exception:  # a look that fails (the scratch going away) is no failure of the run
                now = None
            if self.interval is not None:
                wait = max(self.interval, 10 * (time.monotonic() - started))
            if now is not None and now != self._last and (self._last is not None or now["files"]):
                self._last = now
                self.ctx.report_diff_stats(now)


def partial_diff(
    record: Any,
    open_documents: Mapping[str, OpenDocument],
    label: str,
    config: Any,
    budget_for: Callable[[DiffEvidence], DiffBudget],
) -> DiffResult:
    """co/diff of a running local run: the scratch's diff so far, marked partial (empty before
    the agent's scratch exists). Blocking."""
    if record.driver.task is None:
        raise InvalidState(
            f"run {record.run_id} is {record.manifest.state.value} in another server; its diff so far is "
            "shown there, and here once it ends",
            data={"state": record.manifest.state.value},
        )
    limit = config.diff.hard_max_patch_bytes
    try:
        patch = current(record.run_id, limit) or b""
    except PatchTooLarge as exc:
        raise PatchRefused(f"the diff so far is over the hard limit diff.hardMaxPatchBytes={limit}") from exc
    changes = parse_checked(patch) if patch else []
    external = check_paths(changes, record.workspace, record.store.root) if changes else []
    edit, conflicts = build_workspace_edit(changes, record.workspace, open_documents, label=label)
    flagged = {c.path for c in external}
    additions, deletions = totals(changes)
    stats_ = file_stats(changes)
    evidence = DiffEvidence(patch_path="", sha256="", bytes=len(patch), files=stats_, additions=additions, deletions=deletions)
    budget = budget_for(evidence)
    return DiffResult(
        run_id=record.run_id,
        partial=True,
        patch=patch.decode("utf-8", errors="replace"),
        files=stats_,
        edit=edit,
        conflicts=[*external, *(c for c in conflicts if c.path not in flagged)],
        over_budget=budget.files > budget.max_files or budget.lines > budget.max_lines or budget.bytes > budget.max_bytes,
        budget=budget,
    )

