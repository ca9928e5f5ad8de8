"""CLI adapter: the `codex cloud` subcommands as argv subprocesses (never a shell).

- `codex cloud exec --env ENV [--branch B] [--attempts N] PROMPT` prints the task URL;
- `codex cloud status ID` prints `[READY] title`, a meta line and a diff summary,
  and exits 1 whenever the task is not READY (that is not an error);
- `codex cloud diff ID [--attempt N]` prints the unified diff of an attempt;
- `codex cloud list --json` prints `{"tasks": [...], "cursor": ...}`.
Failures are classified from stderr into the cloud error categories.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping

from ..config import CloudConfig
from ..protocol import RunState
from .client import (
    AttemptInfo,
    CloudAuthError,
    CloudClientError,
    CloudNotFound,
    CloudPreflightError,
    CloudProtocolError,
    CloudRateLimited,
    CloudUnavailable,
    TaskListItem,
    TaskRef,
    TaskSnapshot,
    map_status,
    validate_attempts,
)

_URL = re.compile(r"https?://[^\s\"'<>]+")
_TASK_ID = re.compile(r"\b(task_[A-Za-z0-9_-]+)\b")
_STATUS_LINE = re.compile(r"^\s*\[(?P<label>[A-Za-z_-]+)\]\s*(?P<title>.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def task_id_from_url(url: str) -> str | None:
    """The last path segment of a task URL, without query or fragment (as the CLI parses ids)."""
    path = url.split("#", 1)[0].split("?", 1)[0].rstrip("/")
    segment = path.rsplit("/", 1)[-1].strip()
    return segment or None


def parse_exec_output(stdout: str) -> TaskRef:
    """Find the task URL (preferably a `/tasks/<id>` one) or a bare `task_...` id in exec output."""
    text = strip_ansi(stdout)
    urls = [u.rstrip(".,;)") for u in _URL.findall(text)]
    for url in reversed(urls):
        if "/tasks/" in url:
            task_id = task_id_from_url(url)
            if task_id:
                return TaskRef(task_id, url)
    ids = _TASK_ID.findall(text)
    if ids:
        return TaskRef(ids[-1], None)
    if urls:
        task_id = task_id_from_url(urls[-1])
        if task_id:
            return TaskRef(task_id, urls[-1])
    raise CloudProtocolError("`codex cloud exec` printed no task URL or id")


_BACKTRACE = re.compile(r"^\s*stack backtrace:", re.IGNORECASE | re.MULTILINE)
# reqwest's words for a request that never reached the server: no connection, no name.
_NO_CONNECTION = re.compile(
    r"client error \(connect\)|dns error|failed to lookup address|connection refused|"
    r"tcp connect error|network (?:is )?unreachable|no route to host|name or service not known",
    re.IGNORECASE,
)
_TRANSPORT = re.compile(
    r"error sending request|client error \(|dns error|failed to lookup address|"
    r"connection (?:refused|reset|closed|aborted)|timed out|timeout|network (?:is )?unreachable|"
    r"no route to host|invalid peer certificate|certificate",
    re.IGNORECASE,
)
# `codex cloud exec` resolves the environment (GET .../environments) before it creates.
_ENVIRONMENTS_URL = re.compile(
    r"error sending request for url \([^)]*/environments\)", re.IGNORECASE
)


def error_text(stderr: str) -> str:
    """What a failed CLI call printed about its failure, without the noise the real CLI adds
    (seen with codex 0.169, tests/test_codex_cli.py): `WARNING:` lines (e.g. "could not create
    PATH aliases" when CODEX_HOME is under /tmp) and the "Stack backtrace:" of `<unknown>`
    frames anyhow prints after the error when RUST_BACKTRACE is set (a panic's lowercase
    "stack backtrace:" alike)."""
    text = _BACKTRACE.split(strip_ansi(stderr), 1)[0]
    lines = [line.rstrip() for line in text.splitlines()]
    return "\n".join(line for line in lines if not line.lstrip().startswith("WARNING:")).strip()


def error_summary(text: str) -> str:
    """One line for an error message: the last `Error: ...` line (with its innermost
    "Caused by" entry, anyhow's format), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.lower().startswith("error")]
    if not errors:
        return lines[-1] if lines else ""
    summary = lines[errors[-1]]
    causes = lines[errors[-1] + 1 :]
    if causes and causes[0].lower() == "caused by:" and len(causes) > 1:
        summary += f" (caused by: {re.sub(r'^[0-9]+: ', '', causes[-1])})"
    return summary


def classify_stderr(stderr: str, returncode: int | None, what: str) -> CloudClientError:
    """Turn a failed CLI call into a typed error, from what it printed.

    The texts of the real CLI (codex 0.169): signed out, `codex cloud exec|status|list` print
    "Not signed in. Please run 'codex login' ..." (`cloud_auth`); with no network,
    "Error: error sending request for url (https://.../wham/environments)" and its causes
    (client error (Connect), dns error, ...) (`cloud_unavailable`, transient; `connect` in
    the error's data when the request provably never reached the service, so even a create
    may be retried); an unknown `--env`, "Error: environment 'x' not found; run `codex
    cloud` to list available environments" (`cloud_preflight`, with that text)."""
    text = error_text(stderr)
    low = text.lower()
    tail = error_summary(text)[:300] if text else f"exit status {returncode}"
    message = f"{what}: {tail}"
    if (
        "not signed in" in low
        or "not logged in" in low
        or "codex login" in low
        or re.search(r"\b(401|403)\b|unauthori[sz]ed|forbidden", low)
    ):
        return CloudAuthError(message)
    if _TRANSPORT.search(text) and not re.search(r"failed: [1-5]\d\d\b", low):
        # A transport failure (no HTTP status answered): before the environment and 404
        # checks, since its URL may name /environments and its causes say "not found".
        connect = bool(_NO_CONNECTION.search(text) or _ENVIRONMENTS_URL.search(text))
        return CloudUnavailable(message, data={"connect": True} if connect else None)
    if "environment" in low and (
        "not found" in low or "ambiguous" in low or "no cloud environments" in low
    ):
        return CloudPreflightError(message)
    if "attempts must be" in low or "unexpected argument" in low or "unrecognized" in low:
        return CloudPreflightError(message)
    if returncode == 127:  # the shell's "command not found" (e.g. a launcher without node)
        return CloudPreflightError(message)
    if re.search(r"\b429\b|rate limit|too many requests", low):
        return CloudRateLimited(message, http_status=429)
    if re.search(r"\b404\b|not found", low):
        return CloudNotFound(message)
    if re.search(r"\b5\d\d\b|timed out|timeout|connection|network|unavailable|dns", low):
        return CloudUnavailable(message)
    if "decode error" in low or "no task id" in low:
        return CloudProtocolError(message)
    return CloudUnavailable(message) if returncode is None else CloudProtocolError(message)


class CliCloudClient:
    """`CloudClient` over `codex cloud ...`; `command` is the configured `cloud.codexCommand`.

    Every call runs in `cwd`, which must be private: the real CLI appends an `error.log`
    (with the account id) to its working directory, and takes its default branch from the
    repository there (the executor passes the run's own directory and an explicit branch).
    Without `cwd`, a temporary directory is made on first use and removed by `aclose`."""

    adapter = "cli"

    def __init__(
        self,
        command: list[str],
        *,
        timeout: float = 60.0,
        environ: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ):
        self.command = list(command) or ["codex"]
        self.timeout = timeout
        self.environ = dict(os.environ if environ is None else environ)
        self.cwd = cwd
        self._own_cwd: str | None = None

    def _workdir(self) -> str:
        if self.cwd is not None:
            return self.cwd
        if self._own_cwd is None:
            self._own_cwd = tempfile.mkdtemp(prefix="co-sidecar-codex-cloud-")
        return self._own_cwd

    @classmethod
    def from_config(
        cls, cloud: CloudConfig, environ: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> CliCloudClient:
        # exec/diff shell out to the backend and may take a while: allow twice the request budget.
        return cls(
            cloud.codex_command,
            timeout=2 * cloud.poll.request_timeout_seconds,
            environ=environ,
            cwd=cwd,
        )

    async def _run(
        self, args: list[str], what: str, extra_env: Mapping[str, str] | None = None
    ) -> tuple[int, str, str]:
        argv = [*self.command, "cloud", *args]
        environ = {**self.environ, **extra_env} if extra_env else self.environ
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=environ,
                cwd=self._workdir(),
            )
        except FileNotFoundError:
            raise CloudPreflightError(f"{what}: `{self.command[0]}` not found on PATH") from None
        except PermissionError:
            raise CloudPreflightError(f"{what}: `{self.command[0]}` is not executable") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=self.timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise CloudUnavailable(f"{what}: timed out after {self.timeout:g}s") from None
        assert proc.returncode is not None
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

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
        args = ["exec", "--env", env_id]
        if branch:
            args += ["--branch", branch]
        if attempts > 1:
            args += ["--attempts", str(attempts)]
        # qa_mode has no CLI flag; `--` keeps a prompt starting with '-' a positional.
        args += ["--", prompt]
        # The official client's way to start from local changes: it sends this as the
        # task's `pre_apply_patch`. Set (or emptied) explicitly so an inherited one never leaks in.
        code, out, err = await self._run(
            args, "codex cloud exec", {"CODEX_STARTING_DIFF": starting_diff or ""}
        )
        if code != 0:
            raise classify_stderr(err or out, code, "codex cloud exec")
        return parse_exec_output(out)

    async def get_task(self, task_id: str) -> TaskSnapshot:
        code, out, err = await self._run(["status", task_id], "codex cloud status")
        label = None
        for line in strip_ansi(out).splitlines():
            match = _STATUS_LINE.match(line)
            if match:
                label = match["label"].lower()
                break
        # status exits 1 for any task that is not READY (PENDING, APPLIED, ERROR): only a
        # missing status line is an error. APPLIED (applied elsewhere) is finished and succeeded.
        if label is None:
            if code != 0:
                raise classify_stderr(err or out, code, "codex cloud status")
            raise CloudProtocolError("`codex cloud status` printed no [STATUS] line")
        state = map_status(label)
        attempt = AttemptInfo(attempt=1, status=label, state=state)
        if state == RunState.FAILED:
            # The line is `[ERROR] <task title>`: the title is the prompt, not a reason, and
            # the CLI prints no reason anywhere (status, diff and list alike).
            attempt.error_message = (
                f"the task ended in {label.upper()}; `codex cloud status` gives no reason "
                "(open the task URL)"
            )
        return TaskSnapshot(
            id=task_id,
            status=label,
            state=state,
            attempts=[attempt],
            error_message=attempt.error_message,
        )

    async def get_diff(self, task_id: str, attempt: int = 1) -> bytes | None:
        args = ["diff", task_id] + (["--attempt", str(attempt)] if attempt != 1 else [])
        code, out, err = await self._run(args, "codex cloud diff")
        if code != 0:
            low = err.lower()
            if "no diff available" in low:
                return None
            if "not available" in low and "attempt" in low:
                raise CloudNotFound(f"codex cloud diff: attempt {attempt} not available")
            raise classify_stderr(err or out, code, "codex cloud diff")
        return out.encode("utf-8") if out.strip() else None

    async def list_tasks(self, limit: int = 20) -> list[TaskListItem]:
        limit = max(1, min(limit, 20))  # the CLI accepts 1..20
        code, out, err = await self._run(
            ["list", "--json", "--limit", str(limit)], "codex cloud list"
        )
        if code != 0:
            raise classify_stderr(err or out, code, "codex cloud list")
        try:
            data = json.loads(out)
        except ValueError:
            raise CloudProtocolError("`codex cloud list --json` printed invalid JSON") from None
        tasks = data.get("tasks") if isinstance(data, dict) else None
        if not isinstance(tasks, list):
            raise CloudProtocolError("`codex cloud list --json` has no 'tasks' list")
        items = []
        for task in tasks:
            if isinstance(task, dict) and isinstance(task.get("id"), str):
                status = task.get("status") if isinstance(task.get("status"), str) else None
                items.append(
                    TaskListItem(
                        id=task["id"],
                        title=task.get("title") if isinstance(task.get("title"), str) else None,
                        status=status,
                        state=map_status(status),
                        url=task.get("url") if isinstance(task.get("url"), str) else None,
                    )
                )
        return items

    async def cancel(self, task_id: str) -> bool:
        """The CLI has no cancel subcommand: nothing to do remotely."""
        return False

    def poll_hub(self) -> None:
        """No shared list poller: `codex cloud list` pages are too coarse; each run polls its task."""
        return None

    async def aclose(self) -> None:
        if self._own_cwd is not None:
            shutil.rmtree(self._own_cwd, ignore_errors=True)
            self._own_cwd = None
