"""Bounds at their edges (just below, at, just above): hard patch limit, output kept per run,
poll retries, request timeout and the overall poll timeout."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from co_sidecar.cloud.executor import CloudExecutor
from co_sidecar.cloud.poller import Poller, PollPolicy
from co_sidecar.config import Config, build_config
from co_sidecar.errors import InvalidParams, PatchRefused
from co_sidecar.local import LocalExecutor
from co_sidecar.manifest import ManifestStore, RunManifest, utc_now
from co_sidecar.protocol import DiffParams, RunState
from co_sidecar.run_record import RunRecord
from co_sidecar.runs import RunManager
from conftest import make_repo
from test_cloud_support import TOKEN, FakeContext, cloud_config, start_emulator
from test_local_executor import make_ctx

PATCH = (
    b"diff --git a/new.txt b/new.txt\nnew file mode 100644\nindex 0000000..1111111\n"
    b"--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n"
)


def record_for(workspace: Path, config: Config) -> tuple[RunManager, RunRecord]:
    manager = RunManager(lambda u: None, lambda ws: config, lambda mode: LocalExecutor())
    now = utc_now()
    manifest = RunManifest(
        run_id="r1", task_id="t", prompt="p", workspace=str(workspace), requested_mode="local",
        selected_mode="local", routing_reason="r", state=RunState.SUCCEEDED, created_at=now, updated_at=now,
    )
    record = RunRecord(manifest, workspace, ManifestStore(workspace / ".runs"), config, lambda u: None)
    manager.runs["r1"] = record
    return manager, record


@pytest.mark.parametrize(("limit", "refused"), [(len(PATCH) - 1, True), (len(PATCH), False), (len(PATCH) + 1, False)])
def test_hard_max_patch_bytes_edge(tmp_path: Path, limit: int, refused: bool) -> None:
    config = Config.model_validate({"diff": {"hardMaxPatchBytes": limit, "maxPatchBytes": 1}})
    manager, record = record_for(tmp_path, config)
    evidence = record.record_patch(PATCH)
    assert (evidence.problem is not None) == refused
    if refused:
        assert "diff.hardMaxPatchBytes" in (evidence.problem or "")
        with pytest.raises(PatchRefused, match="hardMaxPatchBytes"):
            manager.diff(DiffParams(run_id="r1"), {})
    else:
        result = manager.diff(DiffParams(run_id="r1"), {})
        assert result.over_budget  # over the soft budget (maxPatchBytes=1): force needed, not refused
        assert [f.path for f in result.files] == ["new.txt"]


def test_hard_limit_lowered_after_the_run_still_refuses(tmp_path: Path) -> None:
    manager, record = record_for(tmp_path, Config())
    assert record.record_patch(PATCH).problem is None
    manager.config_for = lambda ws: Config.model_validate({"diff": {"hardMaxPatchBytes": len(PATCH) - 1}})
    with pytest.raises(PatchRefused, match="hardMaxPatchBytes"):
        manager.diff(DiffParams(run_id="r1"), {})


@pytest.mark.parametrize("size", [1023, 1024, 1025])
async def test_max_output_bytes_keeps_exactly_the_tail(tmp_path: Path, size: int) -> None:
    repo = make_repo(tmp_path / "repo")
    code = f"import sys; sys.stdout.write('a' + 'b' * {size - 2} + 'z'); sys.stdout.flush()"
    ctx = make_ctx(repo, tmp_path, [sys.executable, "-c", code], maxOutputBytes=1024)
    outcome = await LocalExecutor().execute(ctx)  # type: ignore[arg-type]
    assert outcome.state == RunState.SUCCEEDED
    tail = ctx.manifest.executor.stdout_tail
    assert len(tail) == min(size, 1024) and tail.endswith("z")
    assert tail.startswith("a") == (size <= 1024)  # the first byte is dropped only above the limit


def test_max_output_bytes_lower_bound_is_validated() -> None:
    with pytest.raises(InvalidParams, match="local.maxOutputBytes"):
        build_config({"local": {"maxOutputBytes": 1023}})
    assert build_config({"local": {"maxOutputBytes": 1024}}).local.max_output_bytes == 1024


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float, cancel: asyncio.Event) -> None:
        self.now += delay


@pytest.mark.parametrize(("timeout", "kind"), [(14.999, "timed_out"), (15.0, "timed_out"), (15.001, "done")])
async def test_poll_timeout_edge(timeout: float, kind: str) -> None:
    # Polls at t = 5, 10, 15; the task is done at the third. The deadline is exclusive:
    # a poll due exactly at the deadline is not made.
    fake = FakeTime()
    policy = PollPolicy(interval=5, max_interval=5, backoff=1, jitter=0, timeout=timeout)
    poller = Poller(policy, asyncio.Event(), clock=fake.clock, sleep=fake.sleep, rand=lambda: 0.5)
    calls = []

    async def fetch() -> float:
        calls.append(fake.now)
        return fake.now

    result = await poller.poll(fetch, lambda t: t >= 15)
    assert result.kind == kind, (calls, fake.now)
    assert fake.now <= max(timeout, 15)


async def run_cloud(tmp_path: Path, faults: str, **poll: Any) -> tuple[Any, FakeContext]:
    emu = start_emulator(tmp_path, faults=faults)
    try:
        ctx = FakeContext(tmp_path, cloud_config(emu.base_url, **poll))
        env = {"CODEX_CLOUD_TOKEN": TOKEN, "CODEX_HOME": str(tmp_path)}
        return await CloudExecutor(environ=env).execute(ctx), ctx
    finally:
        emu.stop()


@pytest.mark.parametrize(("times", "state"), [(2, RunState.SUCCEEDED), (3, RunState.SUCCEEDED), (4, RunState.FAILED)])
async def test_max_retries_edge(tmp_path: Path, times: int, state: RunState) -> None:
    outcome, ctx = await run_cloud(tmp_path, f"poll:503:times={times}", maxRetries=3)
    assert outcome.state == state
    assert ctx.manifest.cloud is not None and ctx.manifest.cloud.retries == min(times, 3)
    if state == RunState.FAILED:
        assert outcome.error_code == "cloud_unavailable"


@pytest.mark.parametrize(("request_timeout", "retries"), [(0.3, 1), (2.0, 0)])
async def test_request_timeout_edge(tmp_path: Path, request_timeout: float, retries: int) -> None:
    # The first poll is answered after 0.8 s: below the request timeout it is waited for,
    # above it the request is abandoned and retried.
    outcome, ctx = await run_cloud(
        tmp_path, "poll:delay=0.8:times=1", requestTimeoutSeconds=request_timeout, maxRetries=3
    )
    assert outcome.state == RunState.SUCCEEDED
    assert ctx.manifest.cloud is not None and ctx.manifest.cloud.retries == retries
    if retries:
        assert ctx.manifest.cloud.last_error is not None
        assert ctx.manifest.cloud.last_error.code == "cloud_unavailable"
