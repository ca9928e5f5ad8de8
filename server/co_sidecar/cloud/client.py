"""The `CloudClient` interface the executor talks to, its data shapes and its typed errors.

Two adapters implement it: `cloud.http.HttpCloudClient` (the task API the
official `codex cloud` client uses) and `cloud.cli_adapter.CliCloudClient`
(`codex cloud ...` subprocesses). Errors carry a stable category code (the
same string in manifests, runUpdates and JSON-RPC error data) and whether a
retry may help.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import CLOUD_ERROR, CoError, RunErrorCode
from ..protocol import RunState

if TYPE_CHECKING:  # hub.py builds on this module; only the annotation points back
    from .hub import PollHub

class CloudClientError(CoError):
    """A cloud call failed. `category` is one of the cloud run error codes."""

    code = CLOUD_ERROR
    category = RunErrorCode.CLOUD_UNAVAILABLE
    transient = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        data: dict[str, Any] | None = None,
    ):
        super().__init__(message, data=data)
        self.http_status = http_status
        self.retry_after = retry_after


class CloudAuthError(CloudClientError):
    category = RunErrorCode.CLOUD_AUTH


class CloudNotFound(CloudClientError):
    category = RunErrorCode.CLOUD_NOT_FOUND


class CloudRateLimited(CloudClientError):
    category = RunErrorCode.CLOUD_RATE_LIMITED
    transient = True


class CloudUnavailable(CloudClientError):
    category = RunErrorCode.CLOUD_UNAVAILABLE
    transient = True


class CloudProtocolError(CloudClientError):
    category = RunErrorCode.CLOUD_PROTOCOL


class CloudPreflightError(CloudClientError):
    category = RunErrorCode.CLOUD_PREFLIGHT


def error_for_status(
    status: int, message: str, retry_after: float | None = None
) -> CloudClientError:
    """Map an HTTP status to the typed error (the CLI adapter reuses it for statuses in stderr)."""
    if status in (401, 403):
        return CloudAuthError(message, http_status=status)
    if status == 404:
        return CloudNotFound(message, http_status=status)
    if status == 429:
        return CloudRateLimited(message, http_status=status, retry_after=retry_after)
    if status >= 500 or status == 408:
        return CloudUnavailable(message, http_status=status, retry_after=retry_after)
    return CloudProtocolError(message, http_status=status)


# Raw statuses, mapped to run states as the official client's `map_status` maps them
# (cloud-tasks-client/src/http.rs): a turn status (failed, completed, in_progress, pending,
# cancelled) or a display state (pending, ready, applied, error); anything else is pending.
# One deliberate difference: `cancelled` is its own run state here, not an error.
_STATUS_MAP: dict[str, RunState] = {
    "pending": RunState.RUNNING,
    "in_progress": RunState.RUNNING,
    "in-progress": RunState.RUNNING,
    "queued": RunState.RUNNING,
    "running": RunState.RUNNING,
    "ready": RunState.SUCCEEDED,
    "completed": RunState.SUCCEEDED,
    "applied": RunState.SUCCEEDED,  # applied elsewhere: finished, and it succeeded
    "error": RunState.FAILED,
    "failed": RunState.FAILED,
    "cancelled": RunState.CANCELLED,
    "canceled": RunState.CANCELLED,
}


def map_status(raw: str | None) -> RunState:
    """pending/in-progress/queued → running; ready/completed/applied → succeeded;
    error/failed → failed; cancelled → cancelled."""
    if not raw:
        return RunState.RUNNING
    # Unknown statuses are treated as still running, as the official client does.
    return _STATUS_MAP.get(raw.strip().lower(), RunState.RUNNING)


def error_summary(code: str | None, message: str | None) -> str | None:
    """A turn error as the official client shows it: `CODE: message`, or whichever is set."""
    code, message = (code or "").strip(), (message or "").strip()
    if code and message:
        return f"{code}: {message}"
    return code or message or None


def is_terminal(state: RunState) -> bool:
    return state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


@dataclass(frozen=True)
class TaskRef:
    id: str
    url: str | None = None


@dataclass
class AttemptInfo:
    """One attempt (assistant turn) of a task. `attempt` is the number `codex cloud diff
    --attempt N` gives it: the attempts carrying a diff are 1..K in the official order
    (placement, creation time, id); the others follow, K+1.. in the same order."""

    attempt: int
    turn_id: str | None = None
    status: str | None = None
    state: RunState = RunState.RUNNING
    diff: bytes | None = None
    error_code: str | None = None
    error_message: str | None = None
    placement: int | None = None
    # The assistant's messages (output items, then assistant worklog entries) and a one-line
    # summary of the worklog; None when the adapter cannot read them (the CLI).
    messages: list[str] | None = None
    worklog: str | None = None

    @property
    def error(self) -> str | None:
        return error_summary(self.error_code, self.error_message)


@dataclass
class TaskSnapshot:
    id: str
    status: str | None
    state: RunState
    turn_id: str | None = None
    attempts: list[AttemptInfo] = field(default_factory=list)
    diff: bytes | None = None
    error_code: str | None = None
    error_message: str | None = None
    url: str | None = None
    # Attempts the task reported in total (best-of-N), when known.
    attempt_total: int | None = None
    # False when no field of the answer said what state the task is in (no
    # task_status_display, no turn_status): the state above is then only a guess (running).
    status_known: bool = True
    # True when every attempt's diff is already in `attempts` (HTTP): no `get_diff` calls.
    diffs_included: bool = False

    @property
    def all_attempts_done(self) -> bool:
        return all(is_terminal(a.state) for a in self.attempts)


@dataclass
class TaskListItem:
    id: str
    title: str | None = None
    status: str | None = None
    state: RunState = RunState.RUNNING
    url: str | None = None


class CloudClient(Protocol):
    """What the executor needs from an adapter (HTTP or CLI)."""

    adapter: str

    async def create_task(
        self,
        prompt: str,
        env_id: str,
        branch: str | None,
        attempts: int,
        qa_mode: bool,
        *,
        starting_diff: str | None = None,
    ) -> TaskRef: ...

    async def get_task(self, task_id: str) -> TaskSnapshot: ...

    async def get_diff(self, task_id: str, attempt: int = 1) -> bytes | None: ...

    async def list_tasks(self, limit: int = 20) -> list[TaskListItem]: ...

    async def cancel(self, task_id: str) -> bool: ...

    async def aclose(self) -> None: ...

    def poll_hub(self) -> PollHub | None:
        """The shared list poller for this account (one task-list call per round for every
        live run), or None when the adapter has none: each run then polls its own task."""


def validate_attempts(attempts: int) -> int:
    if not 1 <= attempts <= 4:
        raise CloudPreflightError(f"attempts must be between 1 and 4, got {attempts}")
    return attempts


def redact(text: str, secrets: list[str | None]) -> str:
    """Remove secret values from text that may end up in a message, manifest or log."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text
