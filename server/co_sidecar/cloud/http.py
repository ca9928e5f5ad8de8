"""HTTP adapter: the Codex Cloud task API, as the official `codex cloud` client calls it.

Paths: `{base}/wham/tasks...` when the base URL is a ChatGPT backend base
(contains `/backend-api`), else `{base}/api/codex/tasks...`. One pooled
`httpx.AsyncClient` per base URL, shared by all runs, closed by `aclose_all()` (a
shutdown hook, registered when the first pooled client opens).
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
from ..shutdown import on_shutdown
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
    on_shutdown(aclose_all)  # the pool is ours to close: the server's shutdown runs this
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


def _text_values(content: Any) -> list[str]:
    """Text of a content list: `{content_type: "text", text}` parts and bare strings, as
    the official client's `ContentFragment::text` reads them (blank ones dropped)."""
    out: list[str] = []
    if not isinstance(content, list):
        return out
    for part in content:
        if isinstance(part, str):
            if part.strip():
                out.append(part)
        elif isinstance(part, dict):
            kind, text = part.get("content_type"), part.get("text")
            if isinstance(kind, str) and kind.lower() == "text" and isinstance(text, str) and text:
                out.append(text)
    return out


def _worklog_messages(turn: dict[str, Any]) -> list[dict[str, Any]]:
    worklog = turn.get("worklog")
    messages = worklog.get("messages") if isinstance(worklog, dict) else None
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _role(message: dict[str, Any]) -> str:
    author = message.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    return role.lower() if isinstance(role, str) and role else "unknown"


def messages_of_turn(turn: Any) -> list[str]:
    """The assistant's words in a turn: its `message` output items, then the assistant's
    worklog entries (the official client's `Turn::message_texts`)."""
    if not isinstance(turn, dict):
        return []
    out: list[str] = []
    items = turn.get("output_items")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("type") == "message":
            out.extend(_text_values(item.get("content")))
    for message in _worklog_messages(turn):
        if _role(message) == "assistant":
            content = message.get("content")
            out.extend(_text_values(content.get("parts") if isinstance(content, dict) else None))
    return out


def worklog_summary(turn: Any) -> str | None:
    """One line about a turn's worklog: how many entries, by author role. None without one."""
    if not isinstance(turn, dict) or not isinstance(turn.get("worklog"), dict):
        return None
    roles: dict[str, int] = {}
    for message in _worklog_messages(turn):
        roles[_role(message)] = roles.get(_role(message), 0) + 1
    total = sum(roles.values())
    if not total:
        return "worklog: no entries"
    by_role = ", ".join(f"{role} {n}" for role, n in sorted(roles.items()))
    return f"worklog: {total} entr{'y' if total == 1 else 'ies'} ({by_role})"


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


def display_status(body: dict[str, Any]) -> str | None:
    """`task_status_display.latest_turn_status_display.turn_status`, else `.state` (the
    official client's `map_status` input), from the body or its `task` object."""
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


_display_status = display_status  # the poll hub's list items use the same rule


def _order_key(turn: dict[str, Any], current: bool) -> tuple[int, int, int, float, int, str]:
    """`codex cloud diff`'s order: placement (set ones first), then creation time (set ones
    first; the official client never reads the current turn's), then the current turn, then id."""
    raw_placement = turn.get("attempt_placement")
    raw_created = None if current else turn.get("created_at")
    placement = raw_placement if isinstance(raw_placement, int) and not isinstance(raw_placement, bool) else None
    created = (
        float(raw_created)
        if isinstance(raw_created, int | float) and not isinstance(raw_created, bool)
        else None
    )
    return (
        0 if placement is not None else 1,
        placement or 0,
        0 if created is not None else 1,
        created or 0.0,
        0 if current else 1,
        str(turn.get("id") or ""),
    )


def snapshot_from_details(
    body: Any, siblings: list[dict[str, Any]] | None = None, base: str | None = None
) -> TaskSnapshot:
    """Map a task-details body (+ optional sibling turns) to a `TaskSnapshot`, as the official
    client reads it: the task's status from `task_status_display` (the current turn's
    `turn_status` only when there is no display), a turn error shown as `CODE: message`
    without overriding that status, and attempts numbered like `codex cloud diff --attempt N`."""
    if not isinstance(body, dict) or not isinstance(body.get("task"), dict):
        raise CloudProtocolError("task details response has no 'task' object")
    task_id = body["task"].get("id")
    if not isinstance(task_id, str) or not task_id:
        raise CloudProtocolError("task details response has no task id")
    current = body.get("current_assistant_turn")
    current = current if isinstance(current, dict) else {}
    raw = display_status(body) or _turn_status(current)
    state = map_status(raw)
    code, message = error_of_turn(current)
    diff = diff_of_turn(body.get("current_diff_task_turn")) or diff_of_turn(current)

    turns: list[tuple[dict[str, Any], bool]] = []
    if current or diff is not None:
        turns.append((current, True))
    seen = {current.get("id")} if current.get("id") else set()
    for sib in siblings or []:
        if isinstance(sib, dict) and (sib.get("id") is None or sib.get("id") not in seen):
            seen.add(sib.get("id"))
            turns.append((sib, False))
    turns.sort(key=lambda pair: _order_key(*pair))
    infos: list[AttemptInfo] = []
    for turn, is_current in turns:
        own = _turn_status(turn)
        turn_diff = diff if is_current else diff_of_turn(turn)
        err_code, err_message = error_of_turn(turn)
        placement = turn.get("attempt_placement")
        infos.append(
            AttemptInfo(
                attempt=0,
                turn_id=turn.get("id") if isinstance(turn.get("id"), str) else None,
                # A turn without its own status takes the task's (the display's).
                status=own if own is not None else raw,
                state=map_status(own) if own is not None else state,
                diff=turn_diff.encode("utf-8") if turn_diff is not None else None,
                error_code=err_code,
                error_message=err_message,
                placement=placement if isinstance(placement, int) else None,
                messages=messages_of_turn(turn),
                worklog=worklog_summary(turn),
            )
        )
    # Attempts carrying a diff are 1..K (what `codex cloud diff --attempt N` counts), the
    # others K+1.., each group in the official order.
    numbered = [a for a in infos if a.diff is not None] + [a for a in infos if a.diff is None]
    for n, info in enumerate(numbered, start=1):
        info.attempt = n
    sibling_ids = current.get("sibling_turn_ids")
    total = 1 + len(sibling_ids) if isinstance(sibling_ids, list) else len(numbered) or None
    return TaskSnapshot(
        id=task_id,
        status=raw,
        state=state,
        turn_id=current.get("id") if isinstance(current.get("id"), str) else None,
        attempts=numbered,
        diff=diff.encode("utf-8") if diff is not None else None,
        error_code=code,
        error_message=message,
        url=task_url(base, task_id) if base else None,
        attempt_total=total,
        status_known=raw is not None,
        diffs_included=True,
    )


def created_task_id(data: Any) -> str | None:
    """The id in a create response: `task.id`, else a top-level `id` (as the official client)."""
    if not isinstance(data, dict):
        return None
    task = data.get("task")
    for candidate in (task.get("id") if isinstance(task, dict) else None, data.get("id")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


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
        self,
        prompt: str,
        env_id: str,
        branch: str | None,
        attempts: int = 1,
        qa_mode: bool = False,
        *,
        starting_diff: str | None = None,
    ) -> TaskRef:
        validate_attempts(attempts)
        if self._credentials is None and not is_loopback(self.base_url):
            raise CloudAuthError(
                "no Codex Cloud credentials: set CODEX_CLOUD_TOKEN or run `codex login`"
            )
        new_task: dict[str, Any] = {"environment_id": env_id, "run_environment_in_qa_mode": qa_mode}
        if branch:
            new_task["branch"] = branch
        input_items: list[dict[str, Any]] = [
            {
                "type": "message",
                "role": "user",
                "content": [{"content_type": "text", "text": prompt}],
            }
        ]
        if starting_diff:
            # What the official client sends for CODEX_STARTING_DIFF: the task starts from it.
            input_items.append({"type": "pre_apply_patch", "output_diff": {"diff": starting_diff}})
        body: dict[str, Any] = {"new_task": new_task, "input_items": input_items}
        if attempts > 1:
            body["metadata"] = {"best_of_n": attempts}
        data = await self._request("POST", self.root, json=body)
        task_id = created_task_id(data)
        if task_id is None:
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
        on_shutdown(aclose_all)
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
