"""Codex Cloud environments: listed and chosen as `codex cloud` chooses them.

Mapped from openai/codex `cloud-tasks/src/env_detect.rs` and `cloud-tasks/src/lib.rs`:

- the lists: `GET {base}/wham/environments/by-repo/github/{owner}/{repo}` for the
  workspace's GitHub origin, then `GET {base}/wham/environments` (`/api/codex/...` for a
  non-ChatGPT base); each row `{id, label?, is_pinned?, task_count?}`;
- a requested value (`cloud.envId`, `envId` on co/launch) is an id, else a label
  (case-insensitive); several rows with that label and different ids is ambiguous;
- nothing requested: from the by-repo rows, else from the full list, the only one, else the
  pinned one, else the one with the most tasks.

The lists are cached for `CACHE_S` per (base URL, account, repository), so routing many runs
costs one lookup, and a run never lists environments while it polls (the executor uses the
id chosen at launch). Blocking I/O (httpx's sync client): call it off the event loop.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AnyIssueCode, IssueCode, RunErrorCode
from ..gitcmd import git_output
from .auth import Credentials
from .client import redact

CACHE_S = 60.0
# Lookups that failed are remembered for a shorter time: the next launch tries again soon.
FAILED_CACHE_S = 10.0

# Why an environment was chosen (`source`), as launch results, manifests, co/route and doctor say.
CONFIGURED = "configured"  # the requested value is an environment id (or passed to the CLI)
LABEL = "label"  # the requested value is a label
DETECTED_BY_REPO = "detected_by_repo"  # chosen among the workspace repository's environments
ONLY_ONE = "only_one"
PINNED = "pinned"
MOST_USED = "most_used"


@dataclass(frozen=True)
class EnvRow:
    id: str
    label: str | None = None
    is_pinned: bool = False
    task_count: int = 0


@dataclass(frozen=True)
class EnvChoice:
    id: str
    label: str | None
    source: str
    reason: str


class EnvironmentProblem(Exception):
    """The environment cannot be chosen. `code` is the preflight issue code."""

    def __init__(self, code: AnyIssueCode, message: str, fix: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fix = fix


def parse_owner_repo(url: str) -> tuple[str, str] | None:
    """GitHub owner and repository of a remote URL (ssh, scp-like, https, git), else None."""
    text = url.strip().removeprefix("ssh://")
    rest: str | None = None
    marker = text.find("@github.com:")
    if marker >= 0:
        rest = text[marker + len("@github.com:") :]
    elif "@github.com/" in text:  # ssh://git@github.com/owner/repo
        rest = text.split("@github.com/", 1)[1]
    else:
        for prefix in ("https://github.com/", "http://github.com/", "git://github.com/", "github.com/"):
            if text.startswith(prefix):
                rest = text[len(prefix) :]
                break
    if rest is None:
        return None
    rest = rest.strip("/").removesuffix(".git")
    owner, _, repo = rest.partition("/")
    repo = repo.strip("/")
    return (owner, repo) if owner and repo else None


def origin_repo(workspace: Path | None) -> tuple[str, str] | None:
    """The GitHub (owner, repo) of the workspace's `origin` remote, when it has one."""
    if workspace is None:
        return None
    url = git_output(["remote", "get-url", "origin"], workspace)
    return parse_owner_repo(url) if url else None


def environments_root(base_url: str) -> str:
    from .http import normalize_base_url

    base = normalize_base_url(base_url)
    return f"{base}/wham/environments" if "/backend-api" in base else f"{base}/api/codex/environments"


def parse_rows(data: Any) -> list[EnvRow]:
    """An environments body (a JSON list) as rows; rows without an id are skipped."""
    if not isinstance(data, list):
        raise ValueError("the environments response is not a JSON list")
    rows = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            continue
        label = item.get("label")
        count = item.get("task_count")
        rows.append(
            EnvRow(
                id=item["id"],
                label=label if isinstance(label, str) else None,
                is_pinned=item.get("is_pinned") is True,
                task_count=count if isinstance(count, int) and not isinstance(count, bool) else 0,
            )
        )
    return rows


def pick(rows: list[EnvRow]) -> tuple[EnvRow, str] | None:
    """`pick_environment_row` without a label: the only one, the pinned one, the most used
    (Rust's `max_by_key` keeps the last of equal counts, so ties go to the later row)."""
    if not rows:
        return None
    if len(rows) == 1:
        return rows[0], ONLY_ONE
    pinned = next((r for r in rows if r.is_pinned), None)
    if pinned is not None:
        return pinned, PINNED
    best = rows[0]
    for row in rows[1:]:
        if row.task_count >= best.task_count:
            best = row
    return best, MOST_USED


def merged(by_repo: list[EnvRow], everything: list[EnvRow]) -> list[EnvRow]:
    """By-repo rows, then the rest of the full list, one row per id (labels and pins merged)."""
    out: dict[str, EnvRow] = {}
    for row in [*by_repo, *everything]:
        seen = out.get(row.id)
        if seen is None:
            out[row.id] = row
        else:
            out[row.id] = EnvRow(
                row.id, seen.label or row.label, seen.is_pinned or row.is_pinned, max(seen.task_count, row.task_count)
            )
    return list(out.values())


def describe(rows: list[EnvRow]) -> str:
    names = [f"{r.label} ({r.id})" if r.label else r.id for r in rows]
    return ", ".join(names) if names else "none"


def choose(
    requested: str | None,
    by_repo: list[EnvRow],
    everything: list[EnvRow],
    repo: tuple[str, str] | None = None,
) -> EnvChoice:
    """The environment for a task, or `EnvironmentProblem` (pure: the lists are given)."""
    rows = merged(by_repo, everything)
    wanted = (requested or "").strip()
    if wanted:
        if not rows:
            raise EnvironmentProblem(
                IssueCode.CLOUD_ENV_UNKNOWN,
                f"environment {wanted!r} not found: no cloud environments are available to this account",
                "create an environment for the repository in Codex Cloud, then set cloud.envId",
            )
        for row in rows:
            if row.id == wanted:
                return EnvChoice(row.id, row.label, CONFIGURED, f"environment id {row.id!r} as configured")
        matches = [r for r in rows if r.label is not None and r.label.lower() == wanted.lower()]
        if matches and all(r.id == matches[0].id for r in matches):
            row = matches[0]
            return EnvChoice(row.id, row.label, LABEL, f"label {wanted!r} names environment {row.id}")
        if matches:
            raise EnvironmentProblem(
                IssueCode.CLOUD_ENV_AMBIGUOUS,
                f"environment label {wanted!r} is ambiguous: {describe(matches)}",
                "set cloud.envId to one of those ids",
            )
        raise EnvironmentProblem(
            IssueCode.CLOUD_ENV_UNKNOWN,
            f"environment {wanted!r} not found; available: {describe(rows)}",
            "set cloud.envId (or envId on co/launch) to one of those ids or labels",
        )
    slug = f"{repo[0]}/{repo[1]}" if repo else None
    found = pick(by_repo)
    if found is not None:
        row, why = found
        detail = {ONLY_ONE: "its only environment", PINNED: "its pinned environment", MOST_USED: "its most used environment"}[why]
        return EnvChoice(row.id, row.label, DETECTED_BY_REPO, f"detected by repository {slug}: {detail}")
    found = pick(everything)
    if found is not None:
        row, why = found
        detail = {
            ONLY_ONE: "the only environment",
            PINNED: "the pinned environment",
            MOST_USED: "the environment with the most tasks",
        }[why]
        where = f"none is linked to {slug}; " if slug else ""
        return EnvChoice(row.id, row.label, why, f"{where}{detail} of the account")
    raise EnvironmentProblem(
        IssueCode.CLOUD_ENV_MISSING,
        "no Codex Cloud environment id, and the account has no environments to choose from",
        "create an environment in Codex Cloud, then set cloud.envId",
    )


@dataclass
class _Listing:
    at: float
    by_repo: list[EnvRow]
    everything: list[EnvRow]
    error: str | None


_CACHE: dict[tuple[str, str | None, str | None, str | None], _Listing] = {}
_LOCK = threading.Lock()


def _headers(credentials: Credentials | None) -> dict[str, str]:
    from .http import USER_AGENT

    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if credentials is not None:
        headers["Authorization"] = f"Bearer {credentials.token}"
        if credentials.account_id:
            headers["ChatGPT-Account-Id"] = credentials.account_id
    return headers


def _get(url: str, credentials: Credentials | None, timeout: float) -> list[EnvRow]:
    import httpx  # deferred: only a launch that must choose an environment pays for it

    path = url.split("://", 1)[-1].split("/", 1)[-1]
    try:
        response = httpx.get(url, headers=_headers(credentials), timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise EnvironmentProblem(RunErrorCode.CLOUD_UNAVAILABLE, f"GET /{path}: {type(exc).__name__}") from None
    if response.status_code >= 400:
        body = redact(response.text[:200].strip(), [credentials.token if credentials else None])
        raise EnvironmentProblem(
            RunErrorCode.CLOUD_UNAVAILABLE, f"GET /{path} failed: HTTP {response.status_code}" + (f": {body}" if body else "")
        )
    try:
        return parse_rows(response.json())
    except ValueError as exc:
        raise EnvironmentProblem(RunErrorCode.CLOUD_PROTOCOL, f"GET /{path}: {exc}") from None


def list_environments(
    base_url: str,
    credentials: Credentials | None,
    repo: tuple[str, str] | None,
    timeout: float = 10.0,
    clock: Any = time.monotonic,
) -> tuple[list[EnvRow], list[EnvRow], str | None]:
    """(by-repo rows, all rows, error) — cached. A failed by-repo lookup is skipped, as the
    official client does; a failed full list is the error, unless by-repo rows were found."""
    key = (
        base_url.rstrip("/"),
        credentials.token if credentials else None,
        credentials.account_id if credentials else None,
        f"{repo[0]}/{repo[1]}" if repo else None,
    )
    now = clock()
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and now - hit.at < (FAILED_CACHE_S if hit.error else CACHE_S):
            return hit.by_repo, hit.everything, hit.error
    root = environments_root(base_url)
    by_repo: list[EnvRow] = []
    if repo is not None:
        try:
            by_repo = _get(f"{root}/by-repo/github/{repo[0]}/{repo[1]}", credentials, timeout)
        except EnvironmentProblem:
            by_repo = []
    everything: list[EnvRow] = []
    error: str | None = None
    try:
        everything = _get(root, credentials, timeout)
    except EnvironmentProblem as exc:
        if not by_repo:
            error = exc.message
    with _LOCK:
        _CACHE[key] = _Listing(clock(), by_repo, everything, error)
    return by_repo, everything, error


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def resolve(
    requested: str | None,
    base_url: str,
    credentials: Credentials | None,
    workspace: Path | None,
    timeout: float = 10.0,
) -> EnvChoice:
    """List (cached) and choose. When the lists cannot be read, a requested value is used as
    given (the create call will say if it is wrong); nothing requested is a problem."""
    repo = origin_repo(workspace)
    by_repo, everything, error = list_environments(base_url, credentials, repo, timeout)
    if error is not None:
        wanted = (requested or "").strip()
        if wanted:
            return EnvChoice(wanted, None, CONFIGURED, f"{wanted!r} as configured (not verified: {error})")
        raise EnvironmentProblem(
            IssueCode.CLOUD_ENV_MISSING,
            f"no Codex Cloud environment id, and none could be detected ({error})",
            "set cloud.envId (an id or a label; or CODEX_CLOUD_ENV_ID), or pass cloud.envId in co/launch",
        )
    return choose(requested, by_repo, everything, repo)
