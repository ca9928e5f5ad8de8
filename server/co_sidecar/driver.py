"""Who drives a run: its task, its cancel signal, and the owner lock that tells other servers
on the same workspace that the run is alive.

`drive` is the one coroutine every run executes in (launch, resume after a restart): it waits
for a local slot, calls the executor, and turns whatever happens (an outcome, a CoError, a bug,
a cancel, server shutdown) into exactly one terminal transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CoError, RunErrorCode
from .execution import Outcome
from .protocol import FINISHED_STATES, RunState
from .waits import Ended, wait_unless

if TYPE_CHECKING:
    from .run_record import RunRecord

log = logging.getLogger(__name__)

OWNER_LOCK = "owner.lock"
CANCEL_WAIT_S = 10.0


def try_lock(path: Path) -> int | None:
    """An exclusive flock on `path` (created if needed): the fd while held, None if another
    open file (in any process) holds it. The kernel drops it when its holder dies, even by
    kill -9, so a held lock means the run's driver is alive, whatever its pid says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@dataclass
class RunDriver:
    """The live parts of a run this server drives. A run loaded from disk has a driver too,
    idle: no task, no lock (unless this server takes it over)."""

    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # The flock on <run dir>/owner.lock held while this server drives the run (see `try_lock`).
    owner_lock: int | None = None

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()

    def claim(self, run_dir: Path) -> bool:
        """Take the run's owner lock; False when another live server drives it."""
        if self.owner_lock is None:
            self.owner_lock = try_lock(run_dir / OWNER_LOCK)
        return self.owner_lock is not None

    def release(self) -> None:
        if self.owner_lock is not None:
            os.close(self.owner_lock)
            self.owner_lock = None

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        self.task = asyncio.create_task(coro)

    async def cancel(self, wait: float = CANCEL_WAIT_S) -> None:
        """Ask the executor to stop (it ends its agent or cloud task) and wait for the run to
        record its end, at most `wait` seconds."""
        self.cancel_event.set()
        if self.task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), wait)


class CancelledWhileQueued(Exception):
    pass


async def drive(
    record: RunRecord,
    execute: Callable[[Any], Awaitable[Outcome]],
    local_slots: dict[Path, asyncio.Semaphore],
) -> None:
    """Run `execute(record)` to one terminal transition (see the module's doc)."""
    try:
        if record.manifest.selected_mode == "local":
            async with local_slot(record, local_slots):
                outcome = await execute(record)
        else:
            outcome = await execute(record)
    except CancelledWhileQueued:
        outcome = Outcome(RunState.CANCELLED, "cancelled while queued", RunErrorCode.CANCELLED)
    except CoError as exc:
        outcome = Outcome(RunState.FAILED, exc.message, exc.category)
    except asyncio.CancelledError:
        record.finish(Outcome(RunState.CANCELLED, "cancelled: the server is shutting down", RunErrorCode.CANCELLED))
        raise
    except Exception as exc:  # an executor bug must fail the run, never the server
        if not isinstance(exc, OSError):
            log.exception("run %s crashed", record.run_id)
        outcome = failure_of(exc)
    if record.cancel_event.is_set() and outcome.state not in FINISHED_STATES:
        outcome = Outcome(RunState.CANCELLED, "cancelled", RunErrorCode.CANCELLED)
    record.finish(outcome)


@contextlib.asynccontextmanager
async def local_slot(record: RunRecord, local_slots: dict[Path, asyncio.Semaphore]) -> AsyncIterator[None]:
    """One of the workspace's `local.maxConcurrent` slots; the run shows `queued` while it
    waits and ends `cancelled` if it is cancelled before one is free."""
    slots = local_slots.setdefault(record.workspace, asyncio.Semaphore(record.config.local.max_concurrent))
    if slots.locked():
        record.set_state(RunState.QUEUED, "waiting for a free local slot")
    if await wait_unless(slots.acquire(), record.cancel_event) is not Ended.DONE:
        raise CancelledWhileQueued()
    try:
        if record.cancel_event.is_set():
            raise CancelledWhileQueued()
        if record.manifest.state == RunState.QUEUED:
            record.set_state(RunState.LAUNCHING, "local slot free; launching")
        yield
    finally:
        slots.release()


def os_cause(exc: OSError) -> str:
    """An OSError as the real cause: its text and errno name ("Too many open files (EMFILE)")."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    where = f": {exc.filename}" if exc.filename else ""
    return f"{text} ({name}){where}" if name else f"{text}{where}"


def failure_of(exc: Exception) -> Outcome:
    if isinstance(exc, CoError):
        return Outcome(RunState.FAILED, exc.message, exc.category)
    if isinstance(exc, OSError):
        return Outcome(RunState.FAILED, f"system error: {os_cause(exc)}", RunErrorCode.SYSTEM_ERROR)
    return Outcome(RunState.FAILED, f"internal error: {type(exc).__name__}: {exc}", RunErrorCode.INTERNAL)
