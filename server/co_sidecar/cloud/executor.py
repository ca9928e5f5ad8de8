"""`CloudExecutor`: create a Codex Cloud task, poll it to a terminal state, record every attempt's diff.

Routing and preflight happened before `execute`; this module only launches,
follows and collects. Everything it learns goes into `ctx.manifest.cloud`
and is persisted with `ctx.save(message)` (which the lifecycle turns into a
`co/runUpdate`). `resume` follows a task created before a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..config import CloudConfig
from ..execution import Outcome, RunContext
from ..manifest import CloudAttempt, CloudError, CloudInfo, utc_now
from ..protocol import RunState
from .client import (
    CLOUD_PREFLIGHT,
    CLOUD_TASK_FAILED,
    CLOUD_TIMEOUT,
    AttemptInfo,
    CloudClient,
    CloudClientError,
    CloudNotFound,
    TaskSnapshot,
    is_terminal,
)
from .hub import HubFollower, PollHub
from .poller import Poller, PollPolicy, PollResult, Sleep, event_sleep
from .preflight import cloud_preflight, cloud_reachability, workspace_branch

__all__ = ["CloudExecutor", "cloud_preflight", "cloud_reachability", "make_client"]


def make_client(
    cloud: CloudConfig, environ: Mapping[str, str] | None = None, cwd: str | None = None
) -> CloudClient:
    """The adapter chosen by `cloud.adapter` (imported lazily: httpx only when needed)."""
    if cloud.adapter == "cli":
        from .cli_adapter import CliCloudClient

        return CliCloudClient.from_config(cloud, environ, cwd)
    from .http import HttpCloudClient

    return HttpCloudClient.from_config(cloud, environ)


def _private_cwd(ctx: RunContext) -> str | None:
    """Where the CLI adapter runs `codex cloud`: `<run dir>/cli`, never the user's workspace
    (the real CLI appends an error.log to its working directory). The runs root ignores
    itself in git, so nothing shows in `git status`. Only the CLI adapter needs it."""
    if ctx.config.cloud.adapter != "cli":
        return None
    private = ctx.run_dir / "cli"
    private.mkdir(parents=True, exist_ok=True)
    return str(private)


# Unchanged polls write the manifest at most this often (each still sends a runUpdate).
PERSIST_EVERY_S = 30.0


def _safe_to_recreate(error: CloudClientError) -> bool:
    """Create is not idempotent: retry only when the server provably did not create the task."""
    return error.http_status in (429, 503) or bool(error.data.get("connect"))


def _elapsed_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


class CloudExecutor:
    """Implements `execution.Executor` for cloud mode. `client`/`sleep`/`clock` are for tests."""

    def __init__(
        self,
        client: CloudClient | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Sleep = event_sleep,
        clock: object = None,
        cancel_grace: float = 5.0,
    ):
        self._client = client
        self._environ = environ
        self._sleep = sleep
        self._clock = clock
        self._cancel_grace = cancel_grace
        self._persisted: dict[str, float] = {}  # run id → when a poll last wrote the manifest

    # -- entry points ------------------------------------------------------------------
    async def execute(self, ctx: RunContext) -> Outcome:
        cloud = ctx.config.cloud
        info = self._info(ctx)
        env_id = info.env_id or cloud.env_id
        if not env_id:
            return self._fail(ctx, CLOUD_PREFLIGHT, "no Codex Cloud environment id (cloud.envId)")
        info.env_id = env_id
        info.branch = info.branch or cloud.branch
        info.attempts = info.attempts or 1
        if cloud.adapter == "cli" and not info.branch:
            # The CLI's own default is the branch of its working directory, which is private
            # (below): name the workspace's branch, resolved as the CLI would there.
            info.branch = await asyncio.to_thread(workspace_branch, ctx.workspace)
        client = self._client or make_client(cloud, self._environ, _private_cwd(ctx))
        info.adapter = client.adapter
        poller = self._poller(ctx)
        started = time.monotonic()
        ctx.manifest.executor.kind = "cloud"
        ctx.manifest.executor.started_at = utc_now()
        try:
            created = await poller.call(
                lambda: client.create_task(
                    ctx.prompt, env_id, info.branch, info.attempts or 1, cloud.qa_mode
                ),
                retryable=_safe_to_recreate,
                on_retry=lambda err, delay: self._on_retry(ctx, err, delay, "create"),
            )
            if created.kind != "done" or created.value is None:
                return self._finish_early(ctx, created, "creating the cloud task")
            ref = created.value
            info.task_id, info.task_url, info.created_at = ref.id, ref.url, utc_now()
            where = f": {ref.url}" if ref.url else f" ({ref.id})"
            ctx.set_state(RunState.RUNNING, f"cloud task created{where}")
            return await self._follow(ctx, client, poller)
        finally:
            self._close_executor_info(ctx, started)
            if self._client is None:
                await client.aclose()

    async def resume(self, ctx: RunContext) -> Outcome:
        """Follow a task whose id is already in the manifest (restart recovery): no new task."""
        info = self._info(ctx)
        if not info.task_id:
            return self._fail(
                ctx, CLOUD_PREFLIGHT, "cannot resume: the manifest has no cloud task id"
            )
        client = self._client or make_client(ctx.config.cloud, self._environ, _private_cwd(ctx))
        info.adapter = info.adapter or client.adapter
        started = time.monotonic()
        try:
            ctx.save(f"resuming cloud task {info.task_id}")
            return await self._follow(ctx, client, self._poller(ctx), first_delay=False)
        finally:
            self._close_executor_info(ctx, started)
            if self._client is None:
                await client.aclose()

    # -- helpers -----------------------------------------------------------------------
    @staticmethod
    def _info(ctx: RunContext) -> CloudInfo:
        if ctx.manifest.cloud is None:
            ctx.manifest.cloud = CloudInfo()
        return ctx.manifest.cloud

    def _poller(self, ctx: RunContext) -> Poller:
        policy = PollPolicy.from_config(ctx.config.cloud.poll)
        if callable(self._clock):
            return Poller(policy, ctx.cancel_event, sleep=self._sleep, clock=self._clock)
        return Poller(policy, ctx.cancel_event, sleep=self._sleep)

    @staticmethod
    def _close_executor_info(ctx: RunContext, started: float) -> None:
        ctx.manifest.executor.finished_at = utc_now()
        ctx.manifest.executor.duration_ms = _elapsed_ms(started)

    @staticmethod
    def _record_error(
        ctx: RunContext, code: str, message: str, http_status: int | None = None
    ) -> None:
        info = ctx.manifest.cloud
        if info is not None:
            info.last_error = CloudError(
                code=code, message=message, at=utc_now(), http_status=http_status
            )

    def _fail(
        self, ctx: RunContext, code: str, message: str, http_status: int | None = None
    ) -> Outcome:
        self._record_error(ctx, code, message, http_status)
        return Outcome(RunState.FAILED, message, code)

    def _on_retry(self, ctx: RunContext, err: CloudClientError, delay: float, phase: str) -> None:
        info = self._info(ctx)
        info.retries += 1
        self._record_error(ctx, err.category, err.message, err.http_status)
        ctx.save(
            f"{phase}: {err.category}, retrying in {delay:.1f}s ({info.retries} retries so far)"
        )

    def _finish_early(self, ctx: RunContext, result: PollResult[Any], doing: str) -> Outcome:
        if result.kind == "cancelled":
            return Outcome(RunState.CANCELLED, f"cancelled while {doing}")
        if result.kind == "timed_out":
            message = f"timed out after {ctx.config.cloud.poll.timeout_seconds:g}s while {doing}"
            self._record_error(ctx, CLOUD_TIMEOUT, message)
            return Outcome(RunState.TIMED_OUT, message, CLOUD_TIMEOUT)
        err = result.error
        assert err is not None
        return self._fail(ctx, err.category, f"{doing} failed: {err.message}", err.http_status)

    def _on_poll(self, ctx: RunContext, snap: TaskSnapshot) -> None:
        info = self._info(ctx)
        before = (info.status, info.task_url, info.attempt_status)
        info.poll_count += 1
        info.status = snap.status
        info.last_polled_at = utc_now()
        if snap.url and not info.task_url:
            info.task_url = snap.url
        info.attempt_status = [
            CloudAttempt(
                attempt=a.attempt, turn_id=a.turn_id, status=a.status, error=_attempt_error(a)
            )
            for a in snap.attempts
        ]
        message = f"cloud task {snap.status or 'pending'} (poll {info.poll_count})"
        # An unchanged poll is only a heartbeat: notify, but write the manifest (an fsync'd
        # atomic write, most of a poll's cost) only on a change or every PERSIST_EVERY_S.
        now = time.monotonic()
        emit = getattr(ctx, "emit", None)
        unchanged = before == (info.status, info.task_url, info.attempt_status)
        if (
            unchanged
            and emit is not None
            and now - self._persisted.get(ctx.run_id, 0.0) < PERSIST_EVERY_S
        ):
            emit(message)
            return
        self._persisted[ctx.run_id] = now
        ctx.save(message)

    @staticmethod
    def _hub(ctx: RunContext, client: CloudClient) -> PollHub | None:
        """The adapter's shared list poller, when `cloud.poll.shared` and the adapter has one."""
        if not ctx.config.cloud.poll.shared:
            return None
        make = getattr(client, "poll_hub", None)
        hub = make() if callable(make) else None
        return hub if isinstance(hub, PollHub) else None

    async def _remote_cancel(self, client: CloudClient, task_id: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.cancel(task_id), timeout=self._cancel_grace)

    async def _follow(
        self, ctx: RunContext, client: CloudClient, poller: Poller, first_delay: bool = True
    ) -> Outcome:
        info = self._info(ctx)
        task_id = info.task_id
        assert task_id is not None

        def done(snap: TaskSnapshot) -> bool:
            return is_terminal(snap.state) and snap.all_attempts_done

        def details() -> Awaitable[TaskSnapshot]:
            return client.get_task(task_id)

        fetch: Callable[[], Awaitable[TaskSnapshot]] = details
        following = poller
        hub = self._hub(ctx, client)
        if hub is not None:  # shared: one list call per round for all runs, details when it matters
            follower = HubFollower(hub, task_id, details)
            following, fetch = poller.with_sleep(follower.sleep), follower.fetch
        try:
            result = await following.poll(
                fetch,
                done,
                on_poll=lambda snap: self._on_poll(ctx, snap),
                on_retry=lambda err, delay: self._on_retry(ctx, err, delay, "poll"),
                first_delay=first_delay,
            )
        finally:
            self._persisted.pop(ctx.run_id, None)
        if result.kind == "cancelled":
            await self._remote_cancel(client, task_id)
            info.status = "cancelled"
            return Outcome(
                RunState.CANCELLED, f"cancelled; asked Codex Cloud to stop task {task_id}"
            )
        if result.kind != "done" or result.value is None:
            return self._finish_early(ctx, result, "polling the cloud task")
        return await self._collect(ctx, client, poller, result.value)

    async def _collect(
        self, ctx: RunContext, client: CloudClient, poller: Poller, snap: TaskSnapshot
    ) -> Outcome:
        """Fetch and record every attempt's diff; decide the outcome."""
        info = self._info(ctx)
        task_id = snap.id
        attempts = list(snap.attempts) or [
            AttemptInfo(1, snap.turn_id, snap.status, snap.state, snap.diff)
        ]
        # Adapters without per-attempt status (the CLI) report one: fill in the rest by number.
        for n in range(len(attempts) + 1, (info.attempts or 1) + 1):
            attempts.append(AttemptInfo(n, None, snap.status, snap.state))
        records: list[CloudAttempt] = []
        with_diff = 0
        for attempt in attempts:
            diff = attempt.diff
            status = attempt.status
            if diff is None and attempt.state == RunState.SUCCEEDED:
                number = attempt.attempt

                async def fetch_diff(n: int = number) -> bytes | None:
                    return await client.get_diff(task_id, n)

                fetched = await poller.call(fetch_diff)
                if fetched.kind == "failed" and isinstance(fetched.error, CloudNotFound):
                    status = "missing"
                elif fetched.kind != "done":
                    return self._finish_early(
                        ctx, fetched, f"fetching the diff of attempt {number}"
                    )
                else:
                    diff = fetched.value
            evidence = ctx.record_patch(diff, attempt=attempt.attempt) if diff else None
            with_diff += evidence is not None
            records.append(
                CloudAttempt(
                    attempt=attempt.attempt,
                    turn_id=attempt.turn_id,
                    status=status,
                    diff=evidence,
                    error=_attempt_error(attempt),
                )
            )
        info.attempt_status = records
        info.status = snap.status
        info.completed_at = utc_now()
        succeeded = [a for a in attempts if a.state == RunState.SUCCEEDED]
        if succeeded:
            if with_diff:
                message = f"cloud task succeeded: {with_diff} of {len(attempts)} attempt(s) produced a diff"
            else:
                message = "cloud task succeeded with no changes"
            return Outcome(RunState.SUCCEEDED, message)
        if snap.state == RunState.CANCELLED:
            return Outcome(RunState.CANCELLED, "the cloud task was cancelled remotely")
        reason = _attempt_error(attempts[0]) or snap.error_message or f"status {snap.status}"
        return self._fail(ctx, CLOUD_TASK_FAILED, f"cloud task failed: {reason}")


def _attempt_error(attempt: AttemptInfo) -> str | None:
    if attempt.error_code and attempt.error_message:
        return f"{attempt.error_code}: {attempt.error_message}"
    return attempt.error_message or attempt.error_code
