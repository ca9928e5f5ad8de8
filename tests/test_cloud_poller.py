"""Poller arithmetic and loop, with an injected clock/sleep/random (no real waiting)."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

import pytest

from co_sidecar.cloud.client import (
    CloudAuthError,
    CloudProtocolError,
    CloudRateLimited,
    CloudUnavailable,
    map_status,
)
from co_sidecar.cloud.poller import (
    Poller,
    PollPolicy,
    backoff_delay,
    event_sleep,
    parse_retry_after,
    retry_delay,
)
from co_sidecar.protocol import RunState

POLICY = PollPolicy(
    interval=1.0, max_interval=10.0, backoff=2.0, jitter=0.1, max_retries=3, timeout=100.0
)


def test_backoff_grows_then_caps():
    delays = [backoff_delay(POLICY, n, rand=0.5) for n in range(8)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert delays[4:] == [10.0] * 4
    assert backoff_delay(POLICY, 10_000, rand=0.5) == 10.0  # no overflow


def test_jitter_bounds():
    for n in range(6):
        base = backoff_delay(POLICY, n, rand=0.5)
        low, high = backoff_delay(POLICY, n, rand=0.0), backoff_delay(POLICY, n, rand=0.999999)
        assert low == pytest.approx(base * 0.9)
        assert high <= min(base * 1.1, POLICY.max_interval) + 1e-9
        assert high <= POLICY.max_interval


def test_retry_after_both_forms():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_retry_delay_prefers_retry_after():
    err = CloudRateLimited("slow down", http_status=429, retry_after=7.0)
    assert retry_delay(POLICY, err, failures=3) == 7.0
    assert retry_delay(POLICY, CloudUnavailable("x"), failures=3, rand=0.5) == 4.0


def test_status_mapping():
    for raw in ("pending", "in_progress", "in-progress", "queued"):
        assert map_status(raw) == RunState.RUNNING
    for raw in ("ready", "completed", "READY"):
        assert map_status(raw) == RunState.SUCCEEDED
    for raw in ("error", "failed"):
        assert map_status(raw) == RunState.FAILED
    assert map_status("cancelled") == RunState.CANCELLED


class FakeTime:
    """A clock that only advances when the poller sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float, cancel: asyncio.Event) -> None:
        self.sleeps.append(delay)
        self.now += delay


def make(policy: PollPolicy = POLICY) -> tuple[Poller, FakeTime, asyncio.Event]:
    fake, cancel = FakeTime(), asyncio.Event()
    return (
        Poller(policy, cancel, clock=fake.clock, sleep=fake.sleep, rand=lambda: 0.5),
        fake,
        cancel,
    )


async def test_poll_until_done_with_growing_interval():
    poller, fake, _ = make()
    values = iter(["pending", "pending", "pending", "completed"])

    async def fetch() -> str:
        return next(values)

    seen: list[str] = []
    result = await poller.poll(fetch, lambda v: v == "completed", on_poll=seen.append)
    assert result.kind == "done" and result.value == "completed"
    assert result.polls == 4 and seen[-1] == "completed"
    assert fake.sleeps == [1.0, 2.0, 4.0, 8.0]  # first delay, then backoff per poll


async def test_transient_errors_retried_then_fail_with_last_error():
    poller, fake, _ = make()
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        raise CloudUnavailable(f"boom {calls}", http_status=503)

    retries: list[float] = []
    result = await poller.poll(
        fetch, lambda v: True, on_retry=lambda e, d: retries.append(d), first_delay=False
    )
    assert result.kind == "failed"
    assert calls == POLICY.max_retries + 1
    assert result.error is not None and result.error.message == f"boom {calls}"
    assert retries == [1.0, 2.0, 4.0]


async def test_retry_counter_resets_after_success():
    poller, _, _ = make()
    script = [
        CloudUnavailable("a"),
        CloudUnavailable("b"),
        "pending",
        CloudUnavailable("c"),
        "done",
    ]

    async def fetch() -> str:
        item = script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    result = await poller.poll(fetch, lambda v: v == "done", first_delay=False)
    assert result.kind == "done" and result.retries == 3


@pytest.mark.parametrize(
    "error", [CloudAuthError("401", http_status=401), CloudProtocolError("bad json")]
)
async def test_permanent_errors_fail_fast(error):
    poller, fake, _ = make()
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        raise error

    result = await poller.poll(fetch, lambda v: True, first_delay=False)
    assert result.kind == "failed" and calls == 1 and result.error is error
    assert fake.sleeps == []


async def test_retry_after_honoured_in_loop():
    poller, fake, _ = make()
    script: list[object] = [CloudRateLimited("429", http_status=429, retry_after=2.5), "done"]

    async def fetch() -> str:
        item = script.pop(0)
        if isinstance(item, Exception):
            raise item
        return str(item)

    result = await poller.poll(fetch, lambda v: v == "done", first_delay=False)
    assert result.kind == "done" and fake.sleeps == [2.5]


async def test_overall_timeout():
    poller, fake, _ = make(PollPolicy(interval=5, max_interval=5, backoff=1, jitter=0, timeout=12))

    async def fetch() -> str:
        return "pending"

    result = await poller.poll(fetch, lambda v: False)
    assert result.kind == "timed_out"
    assert fake.now <= 12 + 1e-9


async def test_timeout_interrupts_a_hanging_call():
    policy = PollPolicy(interval=0.01, max_interval=0.01, timeout=0.2)
    poller = Poller(policy, asyncio.Event())

    async def fetch() -> str:
        await asyncio.sleep(30)
        return "never"

    started = time.monotonic()
    result = await poller.poll(fetch, lambda v: True)
    assert result.kind == "timed_out" and time.monotonic() - started < 2


async def test_cancel_stops_sleep_and_call_at_once():
    policy = PollPolicy(interval=30, max_interval=30, timeout=600)
    cancel = asyncio.Event()
    poller = Poller(policy, cancel)

    async def fetch() -> str:
        return "pending"

    asyncio.get_running_loop().call_later(0.05, cancel.set)
    started = time.monotonic()
    result = await poller.poll(fetch, lambda v: False)
    assert result.kind == "cancelled" and time.monotonic() - started < 1

    cancel2 = asyncio.Event()
    poller2 = Poller(policy, cancel2)

    async def hang() -> str:
        await asyncio.sleep(30)
        return "never"

    asyncio.get_running_loop().call_later(0.05, cancel2.set)
    started = time.monotonic()
    result = await poller2.call(hang)
    assert result.kind == "cancelled" and time.monotonic() - started < 1


async def test_event_sleep_returns_early():
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, cancel.set)
    started = time.monotonic()
    await event_sleep(10, cancel)
    assert time.monotonic() - started < 1


async def test_cancel_interrupts_a_hanging_fetch_inside_poll():
    """The fetch runs in the polling task itself; cancel still cuts it short, and the
    abandoned fetch sees a CancelledError (its `finally` runs: e.g. a hub waiter withdrawn)."""
    policy = PollPolicy(interval=0.01, max_interval=0.01, jitter=0, timeout=600)
    cancel = asyncio.Event()
    poller = Poller(policy, cancel)
    cleaned: list[bool] = []
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            return "pending"
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append(True)
        return "never"

    asyncio.get_running_loop().call_later(0.2, cancel.set)
    started = time.monotonic()
    result = await poller.poll(fetch, lambda v: False)
    assert result.kind == "cancelled" and time.monotonic() - started < 2
    assert cleaned == [True] and result.polls == 2
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the interruption was taken back


async def test_outside_cancellation_of_the_polling_task_propagates():
    policy = PollPolicy(interval=0.01, max_interval=0.01, jitter=0, timeout=600)
    poller = Poller(policy, asyncio.Event())

    async def hang() -> str:
        await asyncio.sleep(30)
        return "never"

    task = asyncio.ensure_future(poller.poll(hang, lambda v: True))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_fetch_error_passes_through_the_guard():
    policy = PollPolicy(interval=0.01, max_interval=0.01, jitter=0, max_retries=0, timeout=600)
    poller = Poller(policy, asyncio.Event())

    async def broken() -> str:
        raise CloudAuthError("no")

    result = await poller.poll(broken, lambda v: True)
    assert result.kind == "failed" and isinstance(result.error, CloudAuthError)


async def test_one_cancel_watcher_per_poll_not_per_fetch():
    """Polling creates no task per poll: the count of live tasks stays flat while it runs."""
    policy = PollPolicy(interval=0.001, max_interval=0.001, jitter=0, timeout=600)
    poller = Poller(policy, asyncio.Event())
    seen: list[int] = []

    async def fetch() -> int:
        seen.append(len(asyncio.all_tasks()))
        return len(seen)

    result = await poller.poll(fetch, lambda v: v >= 20)
    assert result.kind == "done" and result.polls == 20
    assert max(seen) == min(seen)
