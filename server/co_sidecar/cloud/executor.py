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

from ..errors import IssueCode, RunErrorCode
from ..execution import Outcome, RunContext
from ..manifest import CloudAttempt, CloudError, CloudInfo, StartingDiffInfo, utc_now
from ..protocol import Issue, RunState
from .auth import load_credentials
from .client import (
    AttemptInfo,
    CloudClient,
    CloudClientError,
    CloudNotFound,
    TaskSnapshot,
    is_terminal,
)
from .factory import make_client
from .hub import HubFollower, PollHub
from .poller import Poller, PollPolicy, PollResult, Sleep, event_sleep
from .preflight import workspace_branch
from .starting_diff import StartingDiff, StartingDiffError, make_starting_diff


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
# Polls in a row with no readable status before the run says so (runUpdates, manifest).
UNREADABLE_AFTER = 3


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
            return self._fail(ctx, RunErrorCode.CLOUD_PREFLIGHT, "no Codex Cloud environment id (cloud.envId)")
        info.env_id = env_id
        info.branch = info.branch or cloud.branch
        info.attempts = info.attempts or 1
        if not info.branch:
            # Always name a branch, as the official client does: the workspace's current
            # branch, else its default branch, else main (the CLI would otherwise read the
            # branch of its private working directory).
            info.branch = await asyncio.to_thread(workspace_branch, ctx.workspace)
        starting: str | None = None
        if info.start_from_local_changes:
            try:
                made = await asyncio.to_thread(self._starting_diff, ctx, info.branch)
            except StartingDiffError as exc:
                return self._fail(ctx, RunErrorCode.CLOUD_PREFLIGHT, exc.message)
            starting = self._record_starting_diff(ctx, made, info.branch)
        client = self._client or make_client(cloud, self._environ, _private_cwd(ctx))
        info.adapter = client.adapter
        poller = self._poller(ctx)
        started = time.monotonic()
        ctx.manifest.executor.kind = "cloud"
        ctx.manifest.executor.started_at = utc_now()
        extra: dict[str, Any] = {"starting_diff": starting} if starting else {}
        try:
            created = await poller.call(
                lambda: client.create_task(
                    ctx.prompt, env_id, info.branch, info.attempts or 1, cloud.qa_mode, **extra
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
                ctx, RunErrorCode.CLOUD_PREFLIGHT, "cannot resume: the manifest has no cloud task id"
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
    def _starting_diff(self, ctx: RunContext, branch: str) -> StartingDiff | None:
        """The user's local changes against origin/<branch> (startFromLocalChanges); blocking."""
        cloud = ctx.config.cloud
        creds = load_credentials(self._environ)
        return make_starting_diff(
            ctx.workspace,
            branch,
            cloud.starting_diff_max_bytes,
            runs_root=ctx.run_dir.parent.parent,
            secrets=[creds.token if creds else None],
            for_env=cloud.adapter == "cli",
        )

    def _record_starting_diff(self, ctx: RunContext, made: StartingDiff | None, branch: str) -> str | None:
        """Record it in the manifest by sha256 and stats (never the text); its text to send."""
        info = self._info(ctx)
        if made is None:
            ctx.save(f"startFromLocalChanges: no local changes on {branch} to start from")
            return None
        info.starting_diff = StartingDiffInfo(
            sha256=made.sha256,
            bytes=made.bytes,
            files=made.files,
            additions=made.additions,
            deletions=made.deletions,
            base=made.base,
            unpushed_commits=made.unpushed_commits,
        )
        commits = f" and {made.unpushed_commits} unpushed commit(s)" if made.unpushed_commits else ""
        ctx.save(
            f"starting from your local changes{commits}: {made.files} file(s), "
            f"+{made.additions}/-{made.deletions} against {made.base}"
        )
        return made.text

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
        ctx: RunContext, code: RunErrorCode, message: str, http_status: int | None = None
    ) -> None:
        info = ctx.manifest.cloud
        if info is not None:
            info.last_error = CloudError(
                code=code, message=message, at=utc_now(), http_status=http_status
            )

    def _fail(
        self, ctx: RunContext, code: RunErrorCode, message: str, http_status: int | None = None
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
            self._record_error(ctx, RunErrorCode.CLOUD_TIMEOUT, message)
            return Outcome(RunState.TIMED_OUT, message, RunErrorCode.CLOUD_TIMEOUT)
        err = result.error
        assert err is not None
        return self._fail(ctx, err.category, f"{doing} failed: {err.message}", err.http_status)

    def _on_poll(self, ctx: RunContext, snap: TaskSnapshot) -> None:
        info = self._info(ctx)
        before = (info.status, info.task_url, info.attempt_status, info.status_unreadable_polls)
        info.poll_count += 1
        info.status = snap.status
        info.last_polled_at = utc_now()
        if snap.url and not info.task_url:
            info.task_url = snap.url
        info.attempt_status = [_attempt_record(a) for a in snap.attempts]
        message = f"cloud task {snap.status or 'pending'} (poll {info.poll_count})"
        if snap.status_known:
            info.status_unreadable_polls = 0
        else:
            info.status_unreadable_polls += 1
            if info.status_unreadable_polls >= UNREADABLE_AFTER:
                # Say so instead of polling silently to the timeout.
                message = (
                    f"cloud task status unreadable for {info.status_unreadable_polls} polls: the "
                    "service's answer has neither task_status_display nor a turn_status; still "
                    f"polling until cloud.poll.timeoutSeconds (poll {info.poll_count})"
                )
                if not any(w.code == IssueCode.CLOUD_STATUS_UNREADABLE for w in info.warnings):
                    info.warnings.append(
                        Issue(
                            code=IssueCode.CLOUD_STATUS_UNREADABLE,
                            message="the task's status could not be read from any field for "
                            f"{UNREADABLE_AFTER} polls in a row",
                            fix="open the task URL to see its state; cancel the run if it is done",
                        )
                    )
        # An unchanged poll is only a heartbeat: notify, but write the manifest (an fsync'd
        # atomic write, most of a poll's cost) only on a change or every PERSIST_EVERY_S.
        now = time.monotonic()
        unchanged = before == (
            info.status, info.task_url, info.attempt_status, info.status_unreadable_polls
        )
        if unchanged and now - self._persisted.get(ctx.run_id, 0.0) < PERSIST_EVERY_S:
            ctx.emit(message)
            return
        self._persisted[ctx.run_id] = now
        ctx.save(message)

    @staticmethod
    def _hub(ctx: RunContext, client: CloudClient) -> PollHub | None:
        """The adapter's shared list poller, when `cloud.poll.shared` and the adapter has one."""
        return client.poll_hub() if ctx.config.cloud.poll.shared else None

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
        """Record every attempt (diff, messages, worklog); the outcome is the task's state."""
        info = self._info(ctx)
        attempts = list(snap.attempts) or [
            AttemptInfo(1, snap.turn_id, snap.status, snap.state, snap.diff)
        ]
        if not snap.diffs_included and snap.state == RunState.SUCCEEDED:
            fetched = await self._fetch_diffs(ctx, client, poller, snap)
            if isinstance(fetched, Outcome):
                return fetched
            attempts = fetched
        records: list[CloudAttempt] = []
        with_diff = 0
        for attempt in attempts:
            evidence = ctx.record_patch(attempt.diff, attempt=attempt.attempt) if attempt.diff else None
            with_diff += evidence is not None
            record = _attempt_record(attempt)
            record.diff = evidence
            records.append(record)
        info.attempt_status = records
        info.status = snap.status
        info.completed_at = utc_now()
        if snap.state == RunState.SUCCEEDED:
            if with_diff:
                message = f"cloud task succeeded: {with_diff} of {len(attempts)} attempt(s) produced a diff"
            else:
                answer = next((m for a in attempts for m in (a.messages or []) if m.strip()), None)
                message = (
                    f"cloud task answered without changes: {_one_line(answer)}"
                    if answer
                    else "cloud task succeeded with no changes"
                )
            return Outcome(RunState.SUCCEEDED, message)
        if snap.state == RunState.CANCELLED:
            return Outcome(RunState.CANCELLED, "the cloud task was cancelled remotely")
        reason = (
            next((a.error for a in attempts if a.error), None)
            or snap.error_message
            or f"status {snap.status}"
        )
        return self._fail(ctx, RunErrorCode.CLOUD_TASK_FAILED, f"cloud task failed: {reason}")

    async def _fetch_diffs(
        self, ctx: RunContext, client: CloudClient, poller: Poller, snap: TaskSnapshot
    ) -> list[AttemptInfo] | Outcome:
        """Adapters without per-attempt data (the CLI): `codex cloud diff --attempt n` for
        n = 1, 2, ... until one is not available. It numbers only the attempts that carry a
        diff, so these are the same numbers the HTTP adapter gives them."""
        task_id = snap.id
        out: list[AttemptInfo] = []
        for number in range(1, (self._info(ctx).attempts or 1) + 1):

            async def fetch_diff(n: int = number) -> bytes | None:
                return await client.get_diff(task_id, n)

            fetched = await poller.call(fetch_diff)
            if fetched.kind == "failed" and isinstance(fetched.error, CloudNotFound):
                break
            if fetched.kind != "done":
                return self._finish_early(ctx, fetched, f"fetching the diff of attempt {number}")
            if not fetched.value:
                break
            out.append(AttemptInfo(number, None, snap.status, RunState.SUCCEEDED, fetched.value))
        first = snap.attempts[0] if snap.attempts else None
        if out and first is not None:
            out[0].messages, out[0].worklog = first.messages, first.worklog
        return out or [
            AttemptInfo(
                1,
                snap.turn_id,
                snap.status,
                snap.state,
                None,
                messages=first.messages if first else None,
                worklog=first.worklog if first else None,
            )
        ]


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _attempt_record(attempt: AttemptInfo) -> CloudAttempt:
    return CloudAttempt(
        attempt=attempt.attempt,
        turn_id=attempt.turn_id,
        status=attempt.status,
        error=attempt.error,
        placement=attempt.placement,
        messages=attempt.messages,
        worklog=attempt.worklog,
    )
