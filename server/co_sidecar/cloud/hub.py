"""Shared polling: one task-list call per round for every live cloud run of one account.

Per-task polling costs one `GET {tasks}/{id}` per run per interval. The task
list (`GET {tasks}/list?limit=N&task_filter=current`, `cursor` paging, what the
official client's `list_tasks` calls) reports every task's latest status in one
response, so a `PollHub` lists once per round and hands each waiting run its
task's list item. A run still does its own details call (`GET {tasks}/{id}`:
attempts, errors, diffs) whenever its task looks terminal, is missing from the
list, or the list call failed: the details call stays the source of truth for
the outcome; the list only saves the calls that would have said "still running".

Rounds: a round starts when the earliest waiter is due. It serves every waiter
due within half the smallest registered interval, so runs with close due times
fall into the same round (their polls move at most half an interval earlier)
and stay there. A 429 (or a transient error with Retry-After) on the list
postpones the hub's next round for everybody instead of turning into one details
call per run; after `max_postpones` such rounds in a row the waiters fall back to
their own calls (and their own retry limits). Other list failures fall back
for that round; a permanent one (e.g. 404: no list endpoint) disables the list
for `disable_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from .client import (
    CloudClientError,
    CloudProtocolError,
    TaskListItem,
    TaskSnapshot,
    is_terminal,
)

log = logging.getLogger(__name__)

# The official CLI asks for at most 20 tasks a page; a larger page is tried first and
# dropped to this size if the server refuses it (400/422).
PAGE_LIMIT = 100
SAFE_PAGE_LIMIT = 20
MAX_PAGES = 12


class ListSource(Protocol):
    async def list_page(
        self, limit: int, cursor: str | None, wanted: set[str] | None = None
    ) -> tuple[list[TaskListItem], str | None]: ...


@dataclass
class Unlisted:
    """What a round says about a task that the list did not settle: do a details call."""

    reason: str  # "missing" | "list_failed" | "list_disabled"
    error: CloudClientError | None = None


Observation = TaskListItem | Unlisted


@dataclass(eq=False)
class _Waiter:
    task_id: str
    due: float
    delay: float
    future: asyncio.Future[tuple[Observation, float]] = field(repr=False)


@dataclass
class HubStats:
    rounds: int = 0
    list_calls: int = 0
    served: int = 0
    listed: int = 0  # observations answered from the list
    fallbacks: int = 0  # observations that sent the run to its own details call
    postponed: int = 0


class PollHub:
    """One list poll per round, shared by every run waiting on it (one event loop)."""

    def __init__(
        self,
        source: ListSource,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_postpones: int = 5,
        disable_seconds: float = 300.0,
        page_limit: int = PAGE_LIMIT,
    ):
        self.source = source
        self.clock = clock
        self.max_postpones = max_postpones
        self.disable_seconds = disable_seconds
        self.page_limit = page_limit
        self.stats = HubStats()
        self._waiters: list[_Waiter] = []
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._not_before = 0.0
        self._postpones = 0
        self._disabled_until = 0.0
        self.last_round = 0.0  # when the latest round started

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def observe(self, task_id: str, delay: float, since: float | None = None) -> Observation:
        """`observe_timed` without the round's start."""
        return (await self.observe_timed(task_id, delay, since))[0]

    async def observe_timed(
        self, task_id: str, delay: float, since: float | None = None
    ) -> tuple[Observation, float]:
        """Wait `delay` seconds (or until a round within half an interval) for `task_id`'s status.

        `since`: when the delay started, if not now; a run answered by a round passes that
        round's start (returned with the observation), so its rounds stay in phase with the others' instead of
        drifting by the time the round took to deliver. Cancelling the awaiting task
        withdraws this waiter and nobody else.
        """
        loop = asyncio.get_running_loop()
        delay = max(delay, 0.0)
        start = self.clock() if since is None else since
        waiter = _Waiter(task_id, start + delay, delay, loop.create_future())
        self._waiters.append(waiter)
        self._wake.set()
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run(), name="co-sidecar poll hub")
        try:
            return await waiter.future
        finally:
            if not waiter.future.done():
                waiter.future.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    # -- the round loop --------------------------------------------------------------
    async def _run(self) -> None:
        while self._waiters:
            now = self.clock()
            start = max(min(w.due for w in self._waiters), self._not_before)
            if start > now:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), start - now)
                continue  # re-plan: a waiter may have come or gone meanwhile
            slack = 0.5 * min(w.delay for w in self._waiters)
            batch: list[_Waiter] = []
            keep: list[_Waiter] = []
            for w in self._waiters:  # one pass: a round of N waiters is O(N), not O(N²)
                if not w.future.done():
                    (batch if w.due <= now + slack else keep).append(w)
            self._waiters = keep
            if batch:
                await self._round(batch)

    async def _round(self, batch: list[_Waiter]) -> None:
        self.stats.rounds += 1
        self.last_round = self.clock()
        wanted = {w.task_id for w in batch}
        if self.clock() < self._disabled_until:
            self._deliver(batch, {}, Unlisted("list_disabled"))
            return
        try:
            found = await self._list(wanted)
        except CloudClientError as exc:
            if (exc.http_status == 429 or (exc.transient and exc.retry_after is not None)) and (
                self._postpones < self.max_postpones
            ):
                # Rate limited: everybody waits, nobody turns it into a call of their own.
                self._postpones += 1
                self.stats.postponed += 1
                wait = exc.retry_after if exc.retry_after is not None else 2.0**self._postpones
                self._not_before = self.clock() + wait
                log.info("task list: %s; next shared poll in %.1fs", exc.category, wait)
                self._waiters.extend(w for w in batch if not w.future.done())
                return
            self._postpones = 0
            if not exc.transient:
                self._disabled_until = self.clock() + self.disable_seconds
                log.warning(
                    "task list failed (%s); polling each task on its own for %.0fs",
                    exc.message, self.disable_seconds,
                )  # fmt: skip
            self._deliver(batch, {}, Unlisted("list_failed", exc))
            return
        self._postpones = 0
        self._deliver(batch, found, Unlisted("missing"))

    def _deliver(
        self, batch: list[_Waiter], found: dict[str, TaskListItem], otherwise: Unlisted
    ) -> None:
        started = self.last_round
        for waiter in batch:
            if waiter.future.done():
                continue
            item = found.get(waiter.task_id)
            self.stats.served += 1
            if item is None:
                self.stats.fallbacks += 1
                waiter.future.set_result((otherwise, started))
            else:
                self.stats.listed += 1
                waiter.future.set_result((item, started))

    async def _list(self, wanted: set[str]) -> dict[str, TaskListItem]:
        """Page through the current tasks until every wanted id is seen (or the pages run out)."""
        found: dict[str, TaskListItem] = {}
        cursor: str | None = None
        pages = 0
        max_pages = min(MAX_PAGES, math.ceil(len(wanted) / SAFE_PAGE_LIMIT) + 2)
        while pages < max_pages:
            try:
                items, cursor = await self._page(cursor, wanted)
            except CloudProtocolError as exc:
                if exc.http_status in (400, 422) and self.page_limit > SAFE_PAGE_LIMIT:
                    self.page_limit = SAFE_PAGE_LIMIT  # refused the page size: ask like the CLI
                    continue
                raise
            pages += 1
            for item in items:
                if item.id in wanted:
                    found[item.id] = item
            if not cursor or len(found) == len(wanted):
                break
        return found

    def _page(
        self, cursor: str | None, wanted: set[str]
    ) -> Awaitable[tuple[list[TaskListItem], str | None]]:
        self.stats.list_calls += 1
        return self.source.list_page(self.page_limit, cursor, wanted)


# A run following its task through the hub still re-reads its details at least this often.
REFRESH_DETAILS_S = 300.0


class HubFollower:
    """One run's side of shared polling, plugged into its `Poller`.

    `sleep` only records the delay the poller asked for; the wait itself happens in
    `fetch`, on the hub, inside the poller's guard (so cancel and the overall timeout
    cut it short exactly as they cut a sleep or a request). `fetch` answers from the
    list item while the task is listed as still running, and otherwise calls `details`
    (the run's own `GET {tasks}/{id}`): when the list shows it finished, cannot say
    (missing, no status), failed, or the details are older than `REFRESH_DETAILS_S`; and
    on the first poll when no sleep came before it (resume).
    """

    def __init__(
        self,
        hub: PollHub,
        task_id: str,
        details: Callable[[], Awaitable[TaskSnapshot]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.hub = hub
        self.task_id = task_id
        self.details = details
        self.clock = clock
        self.last: TaskSnapshot | None = None
        self.last_details_at = clock()
        self._delay: float | None = None
        self._since: float | None = None  # start of the round that last answered from the list
        self.listed = 0
        self.detailed = 0

    async def sleep(self, delay: float, cancel: asyncio.Event) -> None:
        self._delay = delay

    async def fetch(self) -> TaskSnapshot:
        delay, self._delay = self._delay, None
        since, self._since = self._since, None
        if delay is not None:
            seen, round_started = await self.hub.observe_timed(self.task_id, delay, since)
            if (
                isinstance(seen, TaskListItem)
                and seen.status
                and not is_terminal(seen.state)
                and self.clock() - self.last_details_at < REFRESH_DETAILS_S
            ):
                self.listed += 1
                self._since = round_started
                return self._from_list(seen)
        snap = await self.details()
        self.detailed += 1
        self.last, self.last_details_at = snap, self.clock()
        return snap

    def _from_list(self, item: TaskListItem) -> TaskSnapshot:
        """The list's status over what the last details call said (attempts keep theirs)."""
        prev = self.last
        return TaskSnapshot(
            id=self.task_id,
            status=item.status,
            state=item.state,
            turn_id=prev.turn_id if prev else None,
            attempts=list(prev.attempts) if prev else [],
            url=item.url or (prev.url if prev else None),
            attempt_total=prev.attempt_total if prev else None,
        )
