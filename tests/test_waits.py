"""`waits.wait_unless`: the run lifecycle's one way to wait for work unless cancelled or out of
time; whichever side loses is cancelled and awaited, so no watcher task outlives the wait."""

from __future__ import annotations

import asyncio

import pytest

from co_sidecar.waits import Ended, wait_unless


def _others() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_work_that_finishes_first_is_done_and_leaves_no_watcher() -> None:
    cancel = asyncio.Event()
    assert await wait_unless(asyncio.sleep(0.01), cancel, timeout=5) is Ended.DONE
    assert _others() == set()


async def test_a_cancel_stops_the_work() -> None:
    cancel = asyncio.Event()
    stopped = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    asyncio.get_running_loop().call_later(0.01, cancel.set)
    assert await wait_unless(forever(), cancel) is Ended.CANCELLED
    assert stopped.is_set() and _others() == set()


async def test_the_timeout_stops_the_work() -> None:
    assert await wait_unless(asyncio.sleep(60), asyncio.Event(), timeout=0.01) is Ended.TIMED_OUT
    assert _others() == set()


async def test_what_the_work_raises_is_raised() -> None:
    async def broken() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await wait_unless(broken(), asyncio.Event(), timeout=5)
    assert _others() == set()


async def test_a_semaphore_taken_as_the_cancel_arrives_is_kept_not_lost() -> None:
    """DONE wins a tie: the caller then holds the slot and must release it (driver.local_slot)."""
    slots = asyncio.Semaphore(1)
    cancel = asyncio.Event()
    cancel.set()
    ended = await wait_unless(slots.acquire(), cancel)
    if ended is Ended.DONE:
        slots.release()
    assert not slots.locked()
