"""The shared poll hub: one task-list call per round for many runs; per-task details when it matters."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from co_sidecar.cloud.client import (
    CloudNotFound,
    CloudProtocolError,
    CloudRateLimited,
    CloudUnavailable,
    TaskListItem,
    TaskSnapshot,
    map_status,
)
from co_sidecar.cloud.executor import CloudExecutor
from co_sidecar.cloud.hub import SAFE_PAGE_LIMIT, HubFollower, PollHub, Unlisted
from co_sidecar.manifest import CloudInfo
from co_sidecar.protocol import RunState
from test_cloud_support import TOKEN, FakeContext, cloud_config, start_emulator


def item(task_id: str, status: str | None = "in_progress") -> TaskListItem:
    return TaskListItem(id=task_id, status=status, state=map_status(status))


class FakeSource:
    """A task list in pages; `script` holds exceptions to raise on the next calls."""

    def __init__(self, items: list[TaskListItem], page: int | None = None):
        self.items = items
        self.page = page
        self.calls: list[tuple[int, str | None, float]] = []
        self.script: list[Exception] = []
        self.block: asyncio.Event | None = None

    async def list_page(
        self, limit: int, cursor: str | None, wanted: set[str] | None = None
    ) -> tuple[list[TaskListItem], str | None]:
        self.calls.append((limit, cursor, time.monotonic()))
        if self.block is not None:
            await self.block.wait()
        if self.script:
            raise self.script.pop(0)
        size = min(limit, self.page or limit)
        start = int(cursor or 0)
        following = str(start + size) if start + size < len(self.items) else None
        return self.items[start : start + size], following


async def test_one_list_call_serves_every_waiting_run():
    source = FakeSource([item("a"), item("b", "completed"), item("c", "pending")])
    hub = PollHub(source)
    got = await asyncio.gather(*(hub.observe(t, 0.05) for t in "abc"))
    assert [g.id for g in got if isinstance(g, TaskListItem)] == ["a", "b", "c"]
    assert [g.status for g in got if isinstance(g, TaskListItem)] == [
        "in_progress",
        "completed",
        "pending",
    ]
    assert len(source.calls) == 1 and hub.stats.rounds == 1 and hub.stats.listed == 3


async def test_close_due_times_share_a_round_and_far_ones_do_not():
    source = FakeSource([item("a"), item("b"), item("c")])
    hub = PollHub(source)
    # b is due 0.05 s after a: within half the smallest interval (0.2 s), so served with a.
    # c is due a full second later: its own round.
    got = await asyncio.gather(hub.observe("a", 0.2), hub.observe("b", 0.25), hub.observe("c", 1.0))
    assert all(isinstance(g, TaskListItem) for g in got)
    assert len(source.calls) == 2


async def test_a_task_missing_from_the_list_is_sent_to_its_details():
    hub = PollHub(FakeSource([item("a")]))
    a, gone = await asyncio.gather(hub.observe("a", 0.0), hub.observe("gone", 0.0))
    assert isinstance(a, TaskListItem)
    assert gone == Unlisted("missing")
    assert hub.stats.fallbacks == 1


async def test_cursor_pages_are_followed_until_every_wanted_task_is_seen():
    items = [item(f"t{n}") for n in range(45)]
    source = FakeSource(items, page=SAFE_PAGE_LIMIT)
    hub = PollHub(source)
    got = await asyncio.gather(hub.observe("t3", 0.0), hub.observe("t30", 0.0))
    assert all(isinstance(g, TaskListItem) for g in got)
    assert [c[1] for c in source.calls] == [None, "20"]  # t30 is on page 2; page 3 not asked


async def test_a_refused_page_size_drops_to_the_clis_page_size():
    source = FakeSource([item("a")])
    source.script = [CloudProtocolError("HTTP 400: limit too large", http_status=400)]
    hub = PollHub(source)
    assert isinstance(await hub.observe("a", 0.0), TaskListItem)
    assert [c[0] for c in source.calls] == [100, SAFE_PAGE_LIMIT]


async def test_a_failed_list_falls_back_to_per_task_details():
    source = FakeSource([item("a")])
    source.script = [CloudUnavailable("GET /list: ConnectError")]
    hub = PollHub(source)
    seen = await asyncio.gather(hub.observe("a", 0.0), hub.observe("b", 0.0))
    assert all(isinstance(s, Unlisted) and s.reason == "list_failed" for s in seen)
    # Transient: the next round lists again.
    assert isinstance(await hub.observe("a", 0.0), TaskListItem)
    assert len(source.calls) == 2


async def test_an_unsupported_list_is_not_asked_again_for_a_while():
    source = FakeSource([item("a")])
    source.script = [CloudNotFound("GET /list failed: HTTP 404", http_status=404)]
    hub = PollHub(source)
    first = await hub.observe("a", 0.0)
    assert isinstance(first, Unlisted) and first.reason == "list_failed"
    assert isinstance(first.error, CloudNotFound)
    assert await hub.observe("a", 0.0) == Unlisted("list_disabled")
    assert len(source.calls) == 1


async def test_retry_after_on_the_list_postpones_the_whole_hub():
    source = FakeSource([item("a"), item("b")])
    source.script = [CloudRateLimited("429", http_status=429, retry_after=0.3)]
    hub = PollHub(source)
    started = time.monotonic()
    got = await asyncio.gather(hub.observe("a", 0.0), hub.observe("b", 0.0))
    assert all(isinstance(g, TaskListItem) for g in got)  # nobody fell back to its own call
    assert len(source.calls) == 2 and hub.stats.postponed == 1
    assert source.calls[1][2] - started >= 0.29


async def test_endless_rate_limits_hand_the_runs_back_to_their_own_retry_limits():
    source = FakeSource([item("a")])
    source.script = [CloudRateLimited("429", http_status=429, retry_after=0.01) for _ in range(10)]
    hub = PollHub(source, max_postpones=2)
    seen = await hub.observe("a", 0.0)
    assert isinstance(seen, Unlisted) and seen.reason == "list_failed"
    assert isinstance(seen.error, CloudRateLimited)
    assert len(source.calls) == 3


async def test_cancelling_one_run_does_not_disturb_the_others():
    source = FakeSource([item("a"), item("b"), item("c")])
    source.block = asyncio.Event()
    hub = PollHub(source)
    early = asyncio.create_task(hub.observe("a", 0.0))
    in_flight = asyncio.create_task(hub.observe("b", 0.0))
    later = asyncio.create_task(hub.observe("c", 0.5))
    await asyncio.sleep(0.05)  # the round for a and b is in flight (the list call is blocked)
    in_flight.cancel()
    later.cancel()  # withdrawn before its round
    source.block.set()
    assert isinstance(await early, TaskListItem)
    for task in (in_flight, later):
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.6)
    assert len(source.calls) == 1 and hub.waiting == 0
    # The hub still works for new runs afterwards.
    assert isinstance(await hub.observe("c", 0.0), TaskListItem)


class Details:
    def __init__(self, status: str = "completed"):
        self.status = status
        self.calls = 0

    async def __call__(self) -> TaskSnapshot:
        self.calls += 1
        return TaskSnapshot(id="a", status=self.status, state=map_status(self.status))


async def test_follower_answers_from_the_list_while_running_and_asks_details_at_the_end():
    source = FakeSource([item("a", "in_progress")])
    details = Details()
    follower = HubFollower(PollHub(source), "a", details)
    await follower.sleep(0.0, asyncio.Event())
    snap = await follower.fetch()
    assert (snap.status, snap.state, details.calls) == ("in_progress", RunState.RUNNING, 0)
    source.items = [item("a", "completed")]
    await follower.sleep(0.0, asyncio.Event())
    snap = await follower.fetch()
    assert (snap.status, snap.state, details.calls) == ("completed", RunState.SUCCEEDED, 1)
    # No sleep before a fetch (resume's first poll): straight to details.
    await follower.fetch()
    assert details.calls == 2
    # A list item without a status says nothing: details.
    source.items = [item("a", None)]
    await follower.sleep(0.0, asyncio.Event())
    await follower.fetch()
    assert details.calls == 3


# -- end to end against the emulator ------------------------------------------------------


def env_for(tmp_path: Any) -> dict[str, str]:
    return {"CODEX_CLOUD_TOKEN": TOKEN, "CODEX_HOME": str(tmp_path / "codex-home")}


async def run_many(
    tmp_path: Any, runs: int, shared: bool, faults: str
) -> tuple[list[Any], list[dict[str, Any]]]:
    emu = start_emulator(tmp_path, faults)
    try:
        config = cloud_config(
            emu.base_url,
            intervalSeconds=0.05,
            maxIntervalSeconds=0.05,
            backoff=1.0,
            shared=shared,
        )
        contexts = []
        for n in range(runs):
            ctx = FakeContext(tmp_path / f"r{n}", config, prompt=f"task {n}")
            ctx.run_id = f"run{n}"
            ctx.manifest.cloud = CloudInfo()
            contexts.append(ctx)
        executor = CloudExecutor(environ=env_for(tmp_path))
        launched = []
        for ctx in contexts:
            # One create at a time (the test server's listen backlog is 5); the polls overlap.
            launched.append(asyncio.create_task(executor.execute(ctx)))
            while not ctx.states and not launched[-1].done():
                await asyncio.sleep(0.002)
        outcomes = await asyncio.wait_for(asyncio.gather(*launched), 60)
        assert all(o.state == RunState.SUCCEEDED for o in outcomes), outcomes
        return contexts, list(emu.requests)
    finally:
        emu.stop()


def details_gets(requests: list[dict[str, Any]]) -> int:
    return sum(
        1 for r in requests
        if r["method"] == "GET" and "/tasks/" in r["path"] and "/list" not in r["path"]
    )  # fmt: skip


async def test_many_runs_share_list_calls_end_to_end(tmp_path):
    runs, polls = 25, 8
    contexts, requests = await run_many(tmp_path, runs, True, f"task:instant={polls}")
    poll_counts = [ctx.manifest.cloud.poll_count for ctx in contexts]
    assert all(count >= 2 for count in poll_counts)
    lists = sum(1 for r in requests if "/tasks/list" in r["path"])
    gets = details_gets(requests)
    # Each run: one details call, when the list shows it completed (the diff comes with it);
    # every other poll was answered by a list call shared with the other runs.
    assert gets <= 2 * runs < sum(poll_counts)
    assert 1 <= lists < sum(poll_counts) / 2
    for ctx in contexts:
        info = ctx.manifest.cloud
        assert info.status == "completed" and info.attempt_status[0].diff is not None
        assert any("(poll 2)" in m for m in ctx.messages)  # pollCount advanced per round seen


async def test_per_task_polling_is_still_there_when_not_shared(tmp_path):
    runs, polls = 5, 4
    contexts, requests = await run_many(tmp_path, runs, False, f"task:instant={polls}")
    assert not any("/tasks/list" in r["path"] for r in requests)
    assert details_gets(requests) >= sum(ctx.manifest.cloud.poll_count for ctx in contexts)


async def test_a_failing_list_still_gets_every_run_done(tmp_path):
    runs, polls = 6, 4
    contexts, requests = await run_many(tmp_path, runs, True, f"task:instant={polls},list:503")
    assert any("/tasks/list" in r["path"] for r in requests)
    assert details_gets(requests) >= runs * polls  # fell back to one details call per poll
