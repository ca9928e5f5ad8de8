"""Waiting for work unless the run is cancelled or out of time, with nothing left running.

The run lifecycle waits this way in two places (a free local slot; the agent's exit). Each wait
owns the tasks it starts: when it returns, whichever side lost has been cancelled and awaited,
so no watcher outlives the wait (structured, as a task group would be).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable
from typing import Any


class Ended(enum.Enum):
    DONE = "done"  # the work finished (its result or exception is the awaited task's)
    CANCELLED = "cancelled"  # the event was set first
    TIMED_OUT = "timed_out"  # neither within the timeout


async def wait_unless(work: Awaitable[Any], cancel: asyncio.Event, timeout: float | None = None) -> Ended:
    """Wait for `work` until `cancel` is set or `timeout` seconds pass. When it returns DONE,
    `work` completed (an exception from it is raised here); otherwise `work` was cancelled."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({task, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in (watcher, task):
            if not waiting.done():
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting
    if task.done() and not task.cancelled():
        task.result()  # raise what the work raised
        return Ended.DONE
    return Ended.CANCELLED if cancel.is_set() else Ended.TIMED_OUT
