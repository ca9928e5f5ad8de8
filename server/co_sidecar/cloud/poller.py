"""Polling arithmetic (pure functions) and the async poll/retry loop.

Delays: `interval * backoff**n` capped at `max_interval`, then jittered by
±`jitter` (fraction) and capped again. A `Retry-After` from the server (seconds
or HTTP-date) replaces the computed delay. Transient errors are retried up to
`max_retries` consecutive times; permanent ones end the loop at once. The
overall timeout and the cancel event are checked around every await, and a
sleep wakes up immediately on cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Literal, TypeVar

from ..config import PollConfig
from .client import CloudClientError

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float, asyncio.Event], Awaitable[None]]


@dataclass(frozen=True)
class PollPolicy:
    interval: float = 2.0
    max_interval: float = 30.0
    backoff: float = 1.6
    jitter: float = 0.1
    max_retries: int = 5
    timeout: float = 3600.0

    @classmethod
    def from_config(cls, poll: PollConfig) -> PollPolicy:
        return cls(
            interval=poll.interval_seconds,
            max_interval=poll.max_interval_seconds,
            backoff=poll.backoff,
            jitter=poll.jitter,
            max_retries=poll.max_retries,
            timeout=poll.timeout_seconds,
        )


def backoff_delay(policy: PollPolicy, step: int, rand: float = 0.5) -> float:
    """Delay before try `step` (0-based): exponential, capped, jittered; `rand` in [0, 1)."""
    cap = max(policy.max_interval, 0.0)
    # Guard the exponent so huge step counts don't overflow.
    base = min(cap, policy.interval * policy.backoff ** min(step, 64))
    jittered = base * (1.0 + policy.jitter * (2.0 * rand - 1.0))
    return max(0.0, min(cap, jittered))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def retry_delay(
    policy: PollPolicy, error: CloudClientError, failures: int, rand: float = 0.5
) -> float:
    """Delay before retrying after the `failures`-th consecutive transient error (1-based)."""
    if error.retry_after is not None:
        return error.retry_after
    return backoff_delay(policy, max(failures - 1, 0), rand)


async def event_sleep(delay: float, cancel: asyncio.Event) -> None:
    """Sleep `delay` seconds, or less if `cancel` is set meanwhile."""
    if delay <= 0 or cancel.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cancel.wait(), timeout=delay)


Kind = Literal["done", "failed", "timed_out", "cancelled"]


@dataclass
class PollResult(Generic[T]):
    kind: Kind
    value: T | None = None
    error: CloudClientError | None = None
    polls: int = 0
    retries: int = 0


class Poller:
    """Runs `fetch` until `done(value)`, a permanent error, too many retries, timeout or cancel."""

    def __init__(
        self,
        policy: PollPolicy,
        cancel: asyncio.Event,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = event_sleep,
        rand: Callable[[], float] = random.random,
        started_at: float | None = None,
    ):
        self.policy = policy
        self.cancel = cancel
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.deadline = (clock() if started_at is None else started_at) + policy.timeout
        self.polls = 0
        self.retries = 0
        self._watcher: asyncio.Future[Any] | None = None

    def with_sleep(self, sleep: Sleep) -> Poller:
        """The same policy, cancel event, clock and deadline, waiting with `sleep` instead."""
        twin = Poller(self.policy, self.cancel, clock=self.clock, sleep=sleep, rand=self.rand)
        twin.deadline = self.deadline
        return twin

    def remaining(self) -> float:
        return self.deadline - self.clock()

    async def _guarded(self, fetch: Callable[[], Awaitable[T]]) -> T | Kind:
        """Await `fetch()` but give up at once on cancel or when the overall deadline passes.

        The fetch runs in the caller's task (no task of its own per call): a timer for the
        deadline and the poll's cancel watcher (`_watching`) interrupt it with `Task.cancel`,
        and that cancellation is taken back (`uncancel`) here, as `asyncio.timeout` does;
        a cancellation of the caller from outside still propagates.
        """
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        interrupted = False

        def interrupt(_: object = None) -> None:
            nonlocal interrupted
            if not interrupted:
                interrupted = True
                task.cancel()

        with self._watching() as watcher:
            if watcher.done():
                return "cancelled"
            cancelling = task.cancelling()
            timer = loop.call_later(max(self.remaining(), 0.0), interrupt)
            watcher.add_done_callback(interrupt)
            try:
                value = await fetch()
            except BaseException:
                if not interrupted:
                    raise  # the fetch's own error, or a cancellation from outside
                if task.uncancel() > cancelling:
                    raise  # cancelled from outside as well
                # The abandoned call's outcome no longer matters.
                return "cancelled" if self.cancel.is_set() else "timed_out"
            finally:
                timer.cancel()
                watcher.remove_done_callback(interrupt)
            if interrupted and task.uncancel() <= cancelling:
                # Interrupted just as the fetch returned: cancel or the deadline wins, as before.
                return "cancelled" if self.cancel.is_set() else "timed_out"
            return value

    @contextlib.contextmanager
    def _watching(self) -> Iterator[asyncio.Future[Any]]:
        """The cancel watcher of the current `poll`/`call` (one task for all its fetches)."""
        if self._watcher is not None:
            yield self._watcher
            return
        self._watcher = asyncio.ensure_future(self.cancel.wait())
        try:
            yield self._watcher
        finally:
            self._watcher.cancel()
            self._watcher = None

    async def call(
        self,
        fetch: Callable[[], Awaitable[T]],
        *,
        retryable: Callable[[CloudClientError], bool] | None = None,
        on_retry: Callable[[CloudClientError, float], None] | None = None,
    ) -> PollResult[T]:
        """One logical call with bounded retries of transient errors (used for create and diffs)."""
        failures = 0
        while True:
            if self.cancel.is_set():
                return PollResult("cancelled", polls=self.polls, retries=self.retries)
            if self.remaining() <= 0:
                return PollResult("timed_out", polls=self.polls, retries=self.retries)
            try:
                got = await self._guarded(fetch)
            except CloudClientError as exc:
                ok = exc.transient and (retryable is None or retryable(exc))
                failures += 1
                if not ok or failures > self.policy.max_retries:
                    return PollResult("failed", error=exc, polls=self.polls, retries=self.retries)
                delay = min(
                    retry_delay(self.policy, exc, failures, self.rand()), max(self.remaining(), 0.0)
                )
                self.retries += 1
                if on_retry is not None:
                    on_retry(exc, delay)
                await self.sleep(delay, self.cancel)
                continue
            if got == "cancelled" or got == "timed_out":
                return PollResult(got, polls=self.polls, retries=self.retries)
            return PollResult("done", value=got, polls=self.polls, retries=self.retries)  # type: ignore[arg-type]

    async def poll(
        self,
        fetch: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        *,
        on_poll: Callable[[T], None] | None = None,
        on_retry: Callable[[CloudClientError, float], None] | None = None,
        first_delay: bool = True,
    ) -> PollResult[T]:
        """Poll until `done(value)`; the interval grows by `backoff` per poll up to the cap."""
        with self._watching():
            return await self._poll(fetch, done, on_poll, on_retry, first_delay)

    async def _poll(
        self,
        fetch: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        on_poll: Callable[[T], None] | None,
        on_retry: Callable[[CloudClientError, float], None] | None,
        first_delay: bool,
    ) -> PollResult[T]:
        step = 0
        if first_delay:
            await self.sleep(
                min(backoff_delay(self.policy, 0, self.rand()), max(self.remaining(), 0)),
                self.cancel,
            )
        while True:
            result = await self.call(fetch, on_retry=on_retry)
            if result.kind != "done":
                return result
            self.polls += 1
            value = result.value
            assert value is not None
            if on_poll is not None:
                on_poll(value)
            if done(value):
                return PollResult("done", value=value, polls=self.polls, retries=self.retries)
            step += 1
            delay = min(backoff_delay(self.policy, step, self.rand()), max(self.remaining(), 0.0))
            await self.sleep(delay, self.cancel)
