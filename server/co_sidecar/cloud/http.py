"""HTTP adapter: the Codex Cloud task API, as the official `codex cloud` client calls it.

Paths: `{base}/wham/tasks...` when the base URL is a ChatGPT backend base
(contains `/backend-api`), else `{base}/api/codex/tasks...`. One pooled
`httpx.AsyncClient` per base URL, shared by all runs, closed by `aclose_all()`.
The bearer token only ever lives in request headers: error messages carry the
method, path, status and a redacted body excerpt.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import Mapping
from typing import Any

import httpx

from .. import __version__
from ..config import CloudConfig
from ..protocol import RunState
from .auth import Credentials, is_loopback, load_credentials
from .client import (
    AttemptInfo,
    CloudAuthError,
    CloudClientError,
    CloudNotFound,
    CloudProtocolError,
    CloudUnavailable,
    TaskListItem,
    TaskRef,
    TaskSnapshot,
    error_for_status,
    is_terminal,
    map_status,
    redact,
    validate_attempts,
)
from .hub import PollHub
from .poller import parse_retry_after

USER_AGENT = f"co-sidecar/{__version__}"

# httpcore runs `import sniffio` each time it takes a lock (several times per request). When
# sniffio is not installed every one of those is a failed import that scans sys.path: about
# a third of a poll's CPU. Record its absence once, so those imports fail at once.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]


def normalize_base_url(base: str) -> str:
    """Trim trailing '/', add '/backend-api' to ChatGPT hosts (as the official client does)."""
    base = base.rstrip("/")
    if (
        base.startswith(("https://chatgpt.com", "https://chat.openai.com"))
        and "/backend-api" not in base
    ):
        base += "/backend-api"
    return base


def tasks_root(base: str) -> str:
    """`{base}/wham/tasks` for a ChatGPT backend base, else `{base}/api/codex/tasks`."""
    base = normalize_base_url(base)
    return f"{base}/wham/tasks" if "/backend-api" in base else f"{base}/api/codex/tasks"


def task_url(base: str, task_id: str) -> str:
    """The browser URL of a task, built like the official client's `task_url`."""
    base = normalize_base_url(base)
    for suffix in ("/backend-api", "/api/codex"):
        if base.endswith(suffix):
            return f"{base[: -len(suffix)]}/codex/tasks/{task_id}"
    if base.endswith("/codex"):
        return f"{base}/tasks/{task_id}"
    return f"{base}/codex/tasks/{task_id}"


# One pooled client per base URL. httpx clients are bound to the event loop that
# first used them, so a client from another (e.g. closed test) loop is replaced.
_POOL: dict[str, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}


def pooled_client(base: str) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    key = normalize_base_url(base)
    cached = _POOL.get(key)
    if cached is not None and cached[0] is loop and not cached[1].is_closed:
        return cached[1]
    client = httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        follow_redirects=False,
    )
    _POOL[key] = (loop, client)
    return client


# One shared list poller per (base URL, token, account), bound to its event loop like the pool.
_HUBS: dict[tuple[str, str | None, str | None], tuple[asyncio.AbstractEventLoop, PollHub]] = {}


async def aclose_all() -> None:
    """Close every pooled client of the running loop (call on server shutdown)."""
    loop = asyncio.get_running_loop()
    for key, (owner, client) in list(_POOL.items()):
        if owner is loop:
            await client.aclose()
        del _POOL[key]
    for hub_key, (owner, _hub) in list(_HUBS.items()):
        if owner is loop:
            del _HUBS[hub_key]


def _text_of(content: Any) -> list[str]:
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("content_type") == "text":
                text = part.get("text")
                if isinstance(text, str) and text:
                    out.append(text)
    return out


def diff_of_turn(turn: Any) -> str | None:
    """`output_items[type=output_diff].diff`, or a `pr` item's `output_diff.diff`."""
    if not isinstance(turn, dict):
        return None
    items = turn.get("output_items")
    if not isinstance(items, list):
        return None
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "output_diff":
            diff = item.get("diff")
        elif item.get("type") == "pr":
            inner = item.get("output_diff")
            diff = inner.get("diff") if isinstance(inner, dict) else None
        else:
            continue
        if isinstance(diff, str) and diff:
            return diff
    return None


def error_of_turn(turn: Any) -> tuple[str | None, str | None]:
    if not isinstance(turn, dict):
        return None, None
    err = turn.get("error")
    if not isinstance(err, dict):
        return None, None
    code, message = err.get("code"), err.get("message")
    code = code if isinstance(code, str) and code else None
    message = message if isinstance(message, str) and message else None
    return code, message


def _turn_status(turn: Any) -> str | None:
    if isinstance(turn, dict) and isinstance(turn.get("turn_status"), str):
        return str(turn["turn_status"])
    return None


def _display_status(body: dict[str, Any]) -> str | None:
    task = body.get("task")
    nested = task.get("task_status_display") if isinstance(task, dict) else None
    display = body.get("task_status_display") or nested
    if not isinstance(display, dict):
        return None
    latest = display.get("latest_turn_status_display")
    if isinstance(latest, dict) and isinstance(latest.get("turn_status"), str):
        return str(latest["turn_status"])
    state = display.get("state")
    return state if isinstance(state, str) else None


def _attempt_from_turn(turn: dict[str, Any]) -> AttemptInfo:
    raw = _turn_status(turn)
    diff = diff_of_turn(turn)
    code, message = error_of_turn(turn)
    state = map_status(raw)
    if code or message:
        state = RunState.FAILED
    return AttemptInfo(
        attempt=0,
        turn_id=turn.get("id") if isinstance(turn.get("id"), str) else None,
        status=raw,
        state=state,
        diff=diff.encode("utf-8") if diff is not None else None,
        error_code=code,
        error_message=message,
    )


def _placement_key(turn: dict[str, Any]) -> tuple[int, float, str]:
    # Order attempts like the official CLI: placement, then creation time, then id.
    placement = turn.get("attempt_placement")
    created = turn.get("created_at")
    return (
        placement if isinstance(placement, int) else 1 << 30,
        float(created) if isinstance(created, int | float) else float("inf"),
        str(turn.get("id") or ""),
    )


def snapshot_from_details(
    body: Any, siblings: list[dict[str, Any]] | None = None, base: str | None = None
) -> TaskSnapshot:
    """Map a task-details body (+ optional sibling turns) to a `TaskSnapshot`."""
    if not isinstance(body, dict) or not isinstance(body.get("task"), dict):
        raise CloudProtocolError("task details response has no 'task' object")
    task_id = body["task"].get("id")
    if not isinstance(task_id, str) or not task_id:
        raise CloudProtocolError("task details response has no task id")
    current = body.get("current_assistant_turn")
    current = current if isinstance(current, dict) else {}
    raw = _turn_status(current) or _display_status(body)
    state = map_status(raw)
    code, message = error_of_turn(current)
    if code or message:
        state = RunState.FAILED
    diff = diff_of_turn(body.get("current_diff_task_turn")) or diff_of_turn(current)

    turns: list[dict[str, Any]] = []
    if current:
        turns.append(current)
    for sib in siblings or []:
        if isinstance(sib, dict) and sib.get("id") != current.get("id"):
            turns.append(sib)
    turns.sort(key=_placement_key)
    attempts = []
    for n, turn in enumerate(turns, start=1):
        info = _attempt_from_turn(turn)
        info.attempt = n
        if turn is current and info.diff is None and diff is not None:
            info.diff = diff.encode("utf-8")
        attempts.append(info)
    sibling_ids = current.get("sibling_turn_ids")
    total = 1 + len(sibling_ids) if isinstance(sibling_ids, list) else len(attempts) or None
    return TaskSnapshot(
        id=task_id,
        status=raw,
        state=state,
        turn_id=current.get("id") if isinstance(current.get("id"), str) else None,
        attempts=attempts,
        diff=diff.encode("utf-8") if diff is not None else None,
        error_code=code,
        error_message=message,
        url=task_url(base, task_id) if base else None,
        attempt_total=total,
    )


class HttpCloudClient:
    """`CloudClient` over the task API. Cheap to construct: the connection pool is shared."""

    adapter = "http"

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None,
        request_timeout: float = 30.0,
        max_response_bytes: int | None = None,
    ):
        self.base_url = normalize_base_url(base_url)
        self.root = tasks_root(self.base_url)
        self._credentials = credentials
        self._timeout = httpx.Timeout(request_timeout)
        self._max_bytes = max_response_bytes

    @classmethod
    def from_config(
        cls, cloud: CloudConfig, environ: Mapping[str, str] | None = None
    ) -> HttpCloudClient:
        return cls(
            cloud.base_url, load_credentials(environ), cloud.poll.request_timeout_seconds, cloud.max_response_bytes
        )

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._credentials is not None:
            headers["Authorization"] = f"Bearer {self._credentials.token}"
            if self._credentials.account_id:
                headers["ChatGPT-Account-Id"] = self._credentials.account_id
        return headers

    def _clean(self, text: str) -> str:
        token = self._credentials.token if self._credentials else None
        return redact(text, [token])

    async def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        where = f"{method} {url.removeprefix(self.base_url) or '/'}"
        try:
            client = pooled_client(self.base_url)
            request = client.build_request(method, url, headers=self._headers(), timeout=self._timeout, **kwargs)
            response = await client.send(request, stream=True)
            try:
                body = await self._read_capped(response, where)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise CloudUnavailable(f"{where}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            # Connection refused/reset/dropped: the request may not have reached the server.
            err = CloudUnavailable(self._clean(f"{where}: {type(exc).__name__}: {exc}"))
            err.data["connect"] = isinstance(exc, httpx.ConnectError)
            raise err from None
        if response.status_code >= 400:
            excerpt = self._clean(body[:300].decode("utf-8", "replace").strip())
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise error_for_status(
                response.status_code,
                f"{where} failed: HTTP {response.status_code}"
                + (f": {excerpt}" if excerpt else ""),
                retry_after,
            )
        try:
            return json.loads(body)
        except ValueError:
            raise CloudProtocolError(
                f"{where}: response is not JSON (HTTP {response.status_code})",
                http_status=response.status_code,
            ) from None

    async def _read_capped(self, response: httpx.Response, where: str) -> bytes:
        """The body, refused once it passes cloud.maxResponseBytes (before it is all in memory)."""
        limit = self._max_bytes
        declared = response.headers.get("Content-Length", "")
        chunks: list[bytes] = []
        size = 0
        if limit is None or not (declared.isdigit() and int(declared) > limit):
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if limit is not None and size > limit:
                    break
                chunks.append(chunk)
            else:
                return b"".join(chunks)
        raise CloudProtocolError(
            f"{where}: the response is over cloud.maxResponseBytes={limit} bytes (a task diff that large "
            "is not fetched); raise the setting to fetch it",
            http_status=response.status_code,
        )

    async def create_task(
        self, prompt: str, env_id: str, branch: str | None, attempts: int = 1, qa_mode: bool = False
    ) -> TaskRef:
        validate_attempts(attempts)
        if self._credentials is None and not is_loopback(self.base_url):
            raise CloudAuthError(
                "no Codex Cloud credentials: set CODEX_CLOUD_TOKEN or run `codex login`"
            )
        new_task: dict[str, Any] = {"environment_id": env_id, "run_environment_in_qa_mode": qa_mode}
        if branch:
            new_task["branch"] = branch
        body: dict[str, Any] = {
            "new_task": new_task,
            "input_items": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"content_type": "text", "text": prompt}],
                }
            ],
        }
        if attempts > 1:
            body["metadata"] = {"best_of_n": attempts}
        data = await self._request("POST", self.root, json=body)
        task_id = None
        if isinstance(data, dict):
            task = data.get("task")
            task_id = task.get("id") if isinstance(task, dict) else data.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise CloudProtocolError("create task: response carries no task id")
        return TaskRef(task_id, task_url(self.base_url, task_id))

    async def _siblings(self, task_id: str, turn_id: str) -> list[dict[str, Any]]:
        data = await self._request("GET", f"{self.root}/{task_id}/turns/{turn_id}/sibling_turns")
        turns = data.get("sibling_turns") if isinstance(data, dict) else None
        if not isinstance(turns, list):
            raise CloudProtocolError("sibling_turns response has no 'sibling_turns' list")
        return [t for t in turns if isinstance(t, dict)]

    async def get_task(self, task_id: str) -> TaskSnapshot:
        body = await self._request("GET", f"{self.root}/{task_id}")
        snap = snapshot_from_details(body, base=self.base_url)
        current = body.get("current_assistant_turn") or {}
        sibling_ids = current.get("sibling_turn_ids") if isinstance(current, dict) else None
        # Best-of-N: the other attempts are sibling turns of the current assistant turn.
        if snap.turn_id and isinstance(sibling_ids, list) and sibling_ids:
            siblings = await self._siblings(task_id, snap.turn_id)
            snap = snapshot_from_details(body, siblings, base=self.base_url)
        return snap

    async def get_diff(self, task_id: str, attempt: int = 1) -> bytes | None:
        snap = await self.get_task(task_id)
        for info in snap.attempts:
            if info.attempt == attempt:
                return info.diff
        if attempt == 1:
            return snap.diff
        raise CloudNotFound(f"attempt {attempt} not available; the task has {len(snap.attempts)}")

    async def list_tasks(self, limit: int = 20) -> list[TaskListItem]:
        items, _ = await self.list_page(limit, None)
        return items

    async def list_page(
        self, limit: int, cursor: str | None = None, wanted: set[str] | None = None
    ) -> tuple[list[TaskListItem], str | None]:
        """One page of `GET {tasks}/list?limit=N&task_filter=current[&cursor=C]`, and the next
        cursor; with `wanted`, only those tasks' items are built (the poll hub's case)."""
        params: dict[str, Any] = {"limit": limit, "task_filter": "current"}
        if cursor:
            params["cursor"] = cursor
        data = await self._request("GET", f"{self.root}/list", params=params)
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise CloudProtocolError("task list response has no 'items' list")
        following = data.get("cursor")
        out = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            if wanted is not None and item["id"] not in wanted:
                continue
            raw = _display_status(item)
            out.append(
                TaskListItem(
                    id=item["id"],
                    title=item.get("title") if isinstance(item.get("title"), str) else None,
                    status=raw,
                    state=map_status(raw),
                    url=task_url(self.base_url, item["id"]),
                )
            )
        return out, following if isinstance(following, str) and following else None

    def poll_hub(self) -> PollHub:
        """The shared list poller of this base URL and account (one per event loop)."""
        loop = asyncio.get_running_loop()
        creds = self._credentials
        key = (self.base_url, creds.token if creds else None, creds.account_id if creds else None)
        cached = _HUBS.get(key)
        if cached is not None and cached[0] is loop:
            return cached[1]
        hub = PollHub(self)
        _HUBS[key] = (loop, hub)
        return hub

    async def cancel(self, task_id: str) -> bool:
        """Best effort: the official client has no cancel call; the emulator honours this one."""
        try:
            await self._request("POST", f"{self.root}/{task_id}/cancel", json={})
        except CloudClientError:
            return False
        return True

    async def aclose(self) -> None:
        """Nothing per client: the pooled connection is shared (see `aclose_all`)."""


__all__ = [
    "Credentials",
    "HttpCloudClient",
    "aclose_all",
    "diff_of_turn",
    "is_terminal",
    "load_credentials",
    "normalize_base_url",
    "snapshot_from_details",
    "task_url",
    "tasks_root",
]
