"""A loopback emulator of the Codex Cloud task API (like LocalStack for AWS).

It serves the same paths and JSON shapes as the real service, under both path
styles (`/backend-api/wham/tasks...` and `/api/codex/tasks...`), and runs each
task attempt by running an agent command in a scratch clone of `--repo` at its
HEAD, so the diff it returns applies to that workspace. Faults can be injected
per endpoint deterministically (see `parse_faults` and docs/cloud.md).

Standard library only: `ThreadingHTTPServer` in a background thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ENDPOINTS = {"create", "poll", "diff", "list", "cancel", "task", "*"}
HTTP_KINDS = {
    "429", "500", "502", "503", "401", "403", "404", "malformed", "hang", "drop", "delay",
    "bare_id",  # create: answer `{"task": {}, "id": ID}` (the official client takes ID)
}  # fmt: skip
# Task kinds: timing and outcome (slow, fail, instant), and shapes of the answers about it:
# nostatus (turns without `turn_status`: only task_status_display tells), unreadable (neither).
TASK_KINDS = {"slow", "fail", "instant", "nostatus", "unreadable"}


@dataclass
class Fault:
    """One rule of a fault SPEC: `endpoint:kind[=value][:key=value...]`."""

    endpoint: str
    kind: str
    value: str | None = None
    times: int | None = None  # None: every matching request
    after: int = 0  # let this many matching requests through first
    retry_after: str | None = None
    attempt: int | None = None
    seen: int = 0
    fired: int = 0

    def take(self) -> bool:
        """Count one matching request; True when this rule fires for it."""
        self.seen += 1
        if self.seen <= self.after:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True


def parse_faults(spec: str | None) -> list[Fault]:
    """Parse `create:429:retry_after=1:times=2,poll:503,diff:malformed,task:slow=5,...`."""
    faults: list[Fault] = []
    for raw in (spec or "").split(","):
        raw = raw.strip()
        if not raw:
            continue
        parts = raw.split(":")
        if len(parts) < 2:
            raise ValueError(f"fault {raw!r}: expected endpoint:kind")
        endpoint = parts[0].strip().lower()
        kind, _, value = parts[1].strip().lower().partition("=")
        if endpoint not in ENDPOINTS:
            raise ValueError(
                f"fault {raw!r}: unknown endpoint {endpoint!r} (one of {sorted(ENDPOINTS)})"
            )
        allowed = TASK_KINDS if endpoint == "task" else HTTP_KINDS
        if kind not in allowed:
            raise ValueError(
                f"fault {raw!r}: unknown kind {kind!r} for {endpoint} (one of {sorted(allowed)})"
            )
        fault = Fault(endpoint, kind, value or None)
        for option in parts[2:]:
            key, _, val = option.partition("=")
            key = key.strip().lower()
            if key == "times":
                fault.times = int(val)
            elif key == "after":
                fault.after = int(val)
            elif key == "retry_after":
                fault.retry_after = val
            elif key == "attempt":
                fault.attempt = int(val)
            else:
                raise ValueError(f"fault {raw!r}: unknown option {key!r}")
        faults.append(fault)
    return faults


@dataclass
class Turn:
    id: str
    placement: int
    created_at: float
    status: str = "pending"
    diff: str | None = None
    message: str | None = None
    error: dict[str, str] | None = None
    updated_at: float = 0.0
    # task:instant: completes on this many more polls (details, or a list page showing it)
    polls_left: int | None = None
    # (author role, text) entries of the turn's worklog: the agent's stderr lines, as "tool".
    worklog: list[tuple[str, str]] = field(default_factory=list)
    show_status: bool = True  # task:nostatus / task:unreadable serve no turn_status

    def wire(self, sibling_ids: list[str]) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        if self.message:
            items.append(
                {"type": "message", "content": [{"content_type": "text", "text": self.message}]}
            )
        if self.diff:
            items.append({"type": "output_diff", "diff": self.diff})
        turn: dict[str, Any] = {
            "id": self.id,
            "role": "assistant",
            "turn_status": self.status,
            "attempt_placement": self.placement,
            "created_at": self.created_at,
            "updated_at": self.updated_at or self.created_at,
            "sibling_turn_ids": sibling_ids,
            "output_items": items,
        }
        if not self.show_status:
            del turn["turn_status"]
        if self.worklog:
            turn["worklog"] = {
                "messages": [
                    {"author": {"role": role}, "content": {"parts": [text]}}
                    for role, text in self.worklog
                ]
            }
        if self.error:
            turn["error"] = self.error
        return turn


@dataclass
class Task:
    id: str
    title: str
    prompt: str
    env_id: str
    branch: str | None
    qa_mode: bool
    created_at: float
    head: str | None
    turns: list[Turn] = field(default_factory=list)
    # The `pre_apply_patch` input item: attempts start from the branch with this applied.
    starting_diff: str | None = None
    show_display: bool = True  # task:unreadable serves no task_status_display
    cancelled: threading.Event = field(default_factory=threading.Event)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return all(t.status in ("completed", "failed", "cancelled") for t in self.turns)

    def latest_status(self) -> str:
        statuses = [t.status for t in self.turns]
        if self.cancelled.is_set():
            return "cancelled"
        for wanted in ("in_progress", "pending"):
            if wanted in statuses:
                return "in_progress"
        return "completed" if "completed" in statuses else statuses[0]

    def status_display(self) -> dict[str, Any] | None:
        if not self.show_display:
            return None
        added = removed = files = 0
        diff = self.turns[0].diff or ""
        for line in diff.splitlines():
            if line.startswith("diff --git "):
                files += 1
            elif line.startswith("+") and not line.startswith("+++"):
                added += 1
            elif line.startswith("-") and not line.startswith("---"):
                removed += 1
        return {
            "environment_label": self.env_id,
            "latest_turn_status_display": {
                "turn_status": self.latest_status(),
                "sibling_turn_ids": [t.id for t in self.turns[1:]],
                "diff_stats": {
                    "files_modified": files,
                    "lines_added": added,
                    "lines_removed": removed,
                },
                "updated_at": max(t.updated_at or t.created_at for t in self.turns),
            },
        }


BUILTIN_AGENT = (
    "import os, sys\n"
    "prompt = os.environ.get('CO_SIDECAR_PROMPT', ' '.join(sys.argv[1:]))\n"
    "n = os.environ.get('CO_SIDECAR_ATTEMPT', '1')\n"
    "with open('CLOUD_EMULATOR_NOTES.md', 'a', encoding='utf-8') as f:\n"
    "    f.write('# attempt ' + n + '\\n\\n' + prompt + '\\n')\n"
    "print('wrote CLOUD_EMULATOR_NOTES.md')\n"
)


PROMPT_PLACEHOLDER = "{prompt}"


def agent_argv(agent: list[str], prompt: str) -> list[str]:
    """Like the local executor: each "{prompt}" element becomes the prompt, else it is appended."""
    if PROMPT_PLACEHOLDER in agent:
        return [prompt if arg == PROMPT_PLACEHOLDER else arg for arg in agent]
    return [*agent, prompt]


def default_agent_argv() -> list[str]:
    """$CO_EMULATOR_AGENT, else examples/demo_agent.py with this python, else a built-in agent."""
    env = os.environ.get("CO_EMULATOR_AGENT", "").strip()
    if env:
        return json.loads(env) if env.startswith("[") else shlex.split(env)
    demo = Path(__file__).resolve().parents[3] / "examples" / "demo_agent.py"
    if demo.is_file():
        return [sys.executable, str(demo), PROMPT_PLACEHOLDER]
    return [sys.executable, "-c", BUILTIN_AGENT]


def _git(args: list[str], cwd: Path, timeout: float = 60) -> str:
    proc = subprocess.run(  # noqa: S603 - fixed git argv, no shell
        ["git", *args], cwd=cwd, capture_output=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"git {' '.join(args[:2])} failed: {proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout.decode("utf-8", errors="replace")


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up (hang/delay faults, timeouts) is expected here: no traceback."""

    # socketserver's default backlog is 5: dozens of runs creating tasks at once would see
    # dropped SYNs and connect timeouts that no real service behind a load balancer gives.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class Emulator:
    """The task service. `start()` binds (port 0 = any free port) and serves in a thread."""

    def __init__(
        self,
        repo: Path | str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: str | list[Fault] | None = None,
        agent: list[str] | None = None,
        token: str | None = None,
        task_timeout: float = 600.0,
        hang_seconds: float = 30.0,
        environments: list[str] | list[dict[str, Any]] | None = None,
    ):
        self.repo = Path(repo).resolve() if repo is not None else Path.cwd()
        self.host = host
        self.port = port
        self.faults = parse_faults(faults) if isinstance(faults, str | None) else list(faults)
        self.agent = agent or default_agent_argv()
        self.token = token
        self.task_timeout = task_timeout
        self.hang_seconds = hang_seconds
        # What `GET .../environments` lists (the real `codex cloud exec --env` resolves its env
        # there): rows `{id, label, is_pinned, task_count, repos: ["owner/repo"]}` (a bare
        # string is an id that is also its label); `repos` says which
        # `.../environments/by-repo/github/{owner}/{repo}` lists it. None: an open emulator
        # that takes any environment id and has no list (404).
        self.environments = (
            None if environments is None else [_env_row(e) for e in environments]
        )
        self.tasks: dict[str, Task] = {}
        self.requests: list[dict[str, Any]] = []  # (method, path, headers) seen, for tests
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------
    @property
    def origin(self) -> str:
        assert self._server is not None, "emulator not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """ChatGPT-backend style base (paths under /wham/tasks)."""
        return f"{self.origin}/backend-api"

    @property
    def codex_api_base_url(self) -> str:
        """Codex API style base (paths under /api/codex/tasks)."""
        return self.origin

    def start(self) -> Emulator:
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = _QuietServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="co-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            tasks = list(self.tasks.values())
        for task in tasks:
            self._kill(task)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for worker in self._workers:
            worker.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------
    def fault_for(self, endpoint: str, finished: bool = False) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.endpoint == "task":
                    continue
                match = fault.endpoint in (endpoint, "*") or (fault.endpoint == "diff" and finished)
                if match and fault.take():
                    return fault
        return None

    def task_fault(self, kind: str, attempt: int) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.endpoint == "task" and fault.kind == kind:
                    if fault.attempt is not None and fault.attempt != attempt:
                        continue
                    if fault.take():
                        return fault
        return None

    # -- tasks ---------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> Task:
        new_task = body.get("new_task")
        items = body.get("input_items")
        if not isinstance(new_task, dict) or not isinstance(new_task.get("environment_id"), str):
            raise ValueError("new_task.environment_id is required")
        prompt = "\n\n".join(
            part["text"]
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict) and item.get("type") == "message"
            for part in item.get("content", [])
            if isinstance(part, dict)
            and part.get("content_type") == "text"
            and isinstance(part.get("text"), str)
        )
        if not prompt.strip():
            raise ValueError("input_items must hold a user message with text")
        starting = None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("type") == "pre_apply_patch":
                payload = item.get("output_diff")
                diff = payload.get("diff") if isinstance(payload, dict) else None
                if not isinstance(diff, str) or not diff:
                    raise ValueError("pre_apply_patch needs output_diff.diff")
                starting = diff
        env_id = new_task["environment_id"]
        if self.environments is not None and env_id not in {e["id"] for e in self.environments}:
            raise ValueError(f"environment {env_id!r} not found")
        metadata = body.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        n = metadata.get("best_of_n", 1)
        if not isinstance(n, int) or not 1 <= n <= 4:
            raise ValueError("metadata.best_of_n must be 1..4")
        branch = new_task.get("branch") if isinstance(new_task.get("branch"), str) else None
        head = self._branch_head(branch)
        now = time.time()
        task = Task(
            id="task_e_" + secrets.token_hex(12),
            title=prompt.strip().splitlines()[0][:80],
            prompt=prompt,
            env_id=new_task["environment_id"],
            branch=branch,
            qa_mode=bool(new_task.get("run_environment_in_qa_mode")),
            created_at=now,
            head=head,
            starting_diff=starting,
        )
        task.turns = [Turn("turn_" + secrets.token_hex(8), i, now + i * 1e-3) for i in range(n)]
        if self.task_fault("unreadable", 1) is not None:
            task.show_display = False
            for turn in task.turns:
                turn.show_status = False
        elif self.task_fault("nostatus", 1) is not None:
            for turn in task.turns:
                turn.show_status = False
        with self.lock:
            self.tasks[task.id] = task
        for turn in task.turns:
            instant = self.task_fault("instant", turn.placement + 1)
            if instant is not None:  # synthetic: no clone, no agent (benchmarks)
                turn.status = "in_progress"
                turn.polls_left = max(1, int(instant.value or 1))
                continue
            worker = threading.Thread(target=self._run_attempt, args=(task, turn), daemon=True)
            self._workers.append(worker)
            worker.start()
        return task

    def _branch_head(self, branch: str | None) -> str | None:
        """The commit a task starts from, as the service sees the repository: the branch as
        pushed (origin/<branch>, when `--repo` is a clone), else the local branch, else HEAD."""
        refs = [f"refs/remotes/origin/{branch}", f"refs/heads/{branch}"] if branch else []
        for ref in [*refs, "HEAD"]:
            try:
                return _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], self.repo).strip()
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                continue
        return None

    def _kill(self, task: Task) -> None:
        task.cancelled.set()
        for proc in list(task.processes):
            if proc.poll() is None:
                proc.kill()

    def cancel(self, task: Task) -> None:
        self._kill(task)
        for turn in task.turns:
            if turn.status in ("pending", "in_progress"):
                turn.status = "cancelled"
                turn.updated_at = time.time()

    def tick(self, task: Task) -> None:
        """One poll of `task` (its details, or a list page showing it): `task:instant` turns count down."""
        with self.lock:
            for turn in task.turns:
                if turn.polls_left is None or turn.status != "in_progress":
                    continue
                turn.polls_left -= 1
                if turn.polls_left <= 0:
                    name = f"EMULATED-{task.id}-{turn.placement + 1}.md"
                    diff = (
                        f"diff --git a/{name} b/{name}\nnew file mode 100644\n"
                        f"--- /dev/null\n+++ b/{name}\n@@ -0,0 +1 @@\n+{task.prompt[:60]!r}\n"
                    )
                    self._finish(turn, "completed", diff=diff, message="synthetic attempt")

    def _finish(self, turn: Turn, status: str, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(turn, key, value)
        turn.updated_at = time.time()
        turn.status = status

    def _run_attempt(self, task: Task, turn: Turn) -> None:
        attempt = turn.placement + 1
        turn.status = "in_progress"
        started = time.monotonic()
        slow = self.task_fault("slow", attempt)
        fail = self.task_fault("fail", attempt)
        scratch = Path(tempfile.mkdtemp(prefix="co-emulator-"))
        try:
            if task.head is None:
                raise RuntimeError(f"{self.repo} is not a git repository with a HEAD commit")
            work = scratch / "repo"
            # A shared clone at the recorded HEAD: the user's repo is never written to.
            _git(
                ["clone", "--quiet", "--shared", "--no-checkout", str(self.repo), str(work)],
                scratch,
            )
            _git(["checkout", "--quiet", "--detach", task.head], work)
            if task.starting_diff:
                # Start from the user's local changes, committed so the attempt's diff is
                # made against them (and so applies to the user's working tree).
                patch = scratch / "starting.diff"
                patch.write_text(task.starting_diff, encoding="utf-8")
                try:
                    _git(["apply", "--binary", "--whitespace=nowarn", str(patch)], work)
                except RuntimeError as exc:
                    self._finish(
                        turn, "failed", error={"code": "PRE_APPLY_PATCH_FAILED", "message": str(exc)[:500]}
                    )
                    return
                _git(["add", "-A"], work)
                _git(
                    ["-c", "user.name=emulator", "-c", "user.email=emulator@localhost",
                     "-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify",
                     "--allow-empty", "-m", "starting diff"],
                    work,
                )  # fmt: skip
            env = {
                **{k: v for k, v in os.environ.items() if k != "CODEX_CLOUD_TOKEN"},
                "CO_PROMPT": task.prompt,
                "CO_SIDECAR_PROMPT": task.prompt,
                "CO_SIDECAR_ATTEMPT": str(attempt),
                "CO_SIDECAR_CLOUD_TASK_ID": task.id,
            }
            proc = subprocess.Popen(  # noqa: S603 - agent argv from config, no shell
                agent_argv(self.agent, task.prompt),
                cwd=work,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            task.processes.append(proc)
            try:
                out, err = proc.communicate(task.prompt.encode(), timeout=self.task_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                raise RuntimeError(f"agent timed out after {self.task_timeout:g}s") from None
            if task.cancelled.is_set():
                return
            if proc.returncode != 0:
                tail = err.decode(errors="replace").strip()[-500:]
                self._finish(
                    turn,
                    "failed",
                    error={
                        "code": "AGENT_FAILED",
                        "message": f"agent exited {proc.returncode}: {tail}",
                    },
                )
                return
            _git(["add", "-A"], work)
            diff = _git(["diff", "--cached", "--binary", "HEAD"], work)
            if slow is not None:
                remaining = float(slow.value or 5) - (time.monotonic() - started)
                if remaining > 0 and (self.stopping.wait(remaining) or task.cancelled.is_set()):
                    return
            if fail is not None:
                self._finish(
                    turn,
                    "failed",
                    error={
                        "code": (fail.value or "TASK_FAILED").upper(),
                        "message": "injected task failure",
                    },
                )
                return
            self._finish(
                turn,
                "completed",
                diff=diff or None,
                message=out.decode(errors="replace").strip()[-2000:],
                worklog=[
                    ("tool", line)
                    for line in err.decode(errors="replace").splitlines()[-50:]
                    if line.strip()
                ],
            )
        except (
            Exception
        ) as exc:  # any failure of the attempt becomes a turn error, like the service
            if not task.cancelled.is_set():
                self._finish(
                    turn, "failed", error={"code": "EMULATOR_ERROR", "message": str(exc)[:500]}
                )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- JSON shapes ---------------------------------------------------------------
    def details(self, task: Task) -> dict[str, Any]:
        current, siblings = task.turns[0], task.turns[1:]
        body: dict[str, Any] = {
            "task": {
                "id": task.id,
                "title": task.title,
                "archived": False,
                "environment_id": task.env_id,
                "created_at": task.created_at,
                "updated_at": max(t.updated_at or t.created_at for t in task.turns),
                "external_pull_requests": [],
            },
            "current_user_turn": {
                "id": "turn_user_" + task.id[-8:],
                "role": "user",
                "input_items": [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"content_type": "text", "text": task.prompt}],
                    }
                ],
            },
            "current_assistant_turn": current.wire([t.id for t in siblings]),
        }
        display = task.status_display()
        if display is not None:
            body["task_status_display"] = display
        if current.diff:
            body["current_diff_task_turn"] = {
                "id": current.id,
                "output_items": [{"type": "output_diff", "diff": current.diff}],
            }
        return body

    def siblings(self, task: Task, turn_id: str) -> dict[str, Any] | None:
        ids = [t.id for t in task.turns]
        if turn_id not in ids:
            return None
        return {
            "sibling_turns": [
                t.wire([i for i in ids if i != t.id]) for t in task.turns if t.id != turn_id
            ]
        }

    def list_body(self, limit: int, cursor: str | None = None) -> dict[str, Any]:
        """Newest first, `limit` a page; `cursor` (an offset here) names the next page."""
        start = int(cursor) if cursor and cursor.isdigit() else 0
        limit = max(1, limit)
        with self.lock:
            ordered = sorted(self.tasks.values(), key=lambda t: t.created_at, reverse=True)
        tasks = ordered[start : start + limit]
        following = str(start + limit) if start + limit < len(ordered) else None
        for task in tasks:  # a listed synthetic task counts this as one of its polls too
            self.tick(task)
        items = []
        for t in tasks:
            item = {
                "id": t.id,
                "title": t.title,
                "updated_at": max(x.updated_at or x.created_at for x in t.turns),
                "task_status_display": t.status_display(),
                "pull_requests": [],
                "archived": False,
                "has_unread_turn": False,
            }
            if item["task_status_display"] is None:
                del item["task_status_display"]
            items.append(item)
        return {"items": items, "cursor": following}

    def environments_body(self, owner_repo: str | None) -> list[dict[str, Any]] | None:
        """`GET .../environments` (all) or `.../by-repo/github/{owner}/{repo}`; None: no list."""
        if self.environments is None:
            return None
        rows = [
            e for e in self.environments
            if owner_repo is None or owner_repo.lower() in (r.lower() for r in e["repos"])
        ]  # fmt: skip
        return [{k: v for k, v in e.items() if k != "repos"} for e in rows]


def _env_row(env: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(env, str):
        return {"id": env, "label": env, "is_pinned": False, "task_count": 0, "repos": []}
    row = {"label": None, "is_pinned": False, "task_count": 0, "repos": [], **env}
    if not isinstance(row.get("id"), str) or not row["id"]:
        raise ValueError(f"environment {env!r} needs an id")
    return row


_ROUTE = re.compile(r"^(?:/backend-api/wham|/wham|/api/codex)/tasks(?P<rest>/.*)?$")
_ENVIRONMENTS = re.compile(
    r"^(?:/backend-api/wham|/wham|/api/codex)/environments"
    r"(?:/by-repo/github/(?P<owner>[^/]+)/(?P<repo>[^/]+))?/?$"
)


class _Handler(BaseHTTPRequestHandler):
    emulator: Emulator
    protocol_version = "HTTP/1.1"
    server_version = "co-sidecar-emulator"

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        if os.environ.get("CO_EMULATOR_LOG"):
            super().log_message(format, *args)

    # -- helpers -------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        ctype: str = "application/json",
    ) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"detail": message}, headers)

    def _apply_fault(self, fault: Fault) -> bool:
        """Act out a fault; True when the request has been answered (or dropped)."""
        kind = fault.kind
        if kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if kind == "hang":
            self.emulator.stopping.wait(float(fault.value or self.emulator.hang_seconds))
            self.close_connection = True
            return True
        if kind == "delay":  # answer normally, but only after S seconds
            self.emulator.stopping.wait(float(fault.value or 1))
            return False
        if kind == "malformed":
            self._send(200, b'{"task": {"id": "tru')
            return True
        if kind == "bare_id":  # a shape, not a failure: the route answers in it
            return False
        status = int(kind)
        headers: dict[str, str] = {}
        if status in (429, 503):
            value = (
                fault.retry_after
                if fault.retry_after is not None
                else ("1" if status == 429 else None)
            )
            if value == "date":  # the HTTP-date form, one second ahead
                value = formatdate(time.time() + 1, usegmt=True)
            if value is not None:
                headers["Retry-After"] = value
        self._error(status, f"injected {status}", headers)
        return True

    def _authorized(self) -> bool:
        token = self.emulator.token
        if token is None:
            return True
        return self.headers.get("Authorization") == f"Bearer {token}"

    def _record(self) -> None:
        with self.emulator.lock:
            self.emulator.requests.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers.items())}
            )

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"{}")

    # -- routes --------------------------------------------------------------------
    def _authorized_or_401(self) -> bool:
        if self._authorized():
            return True
        self._error(401, "invalid bearer token")
        return False

    def _task_route(self, path: str) -> list[str] | None:
        """The path segments after `.../tasks`, or None once a 404/401 has been sent."""
        match = _ROUTE.match(path)
        if not match:
            self._error(404, f"no route for {path}")
            return None
        if not self._authorized_or_401():
            return None
        return match["rest"].strip("/").split("/") if match["rest"] else []

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._record()
        url = urlsplit(self.path)
        page = re.match(r"^/codex/tasks/(?P<id>[\w-]+)$", url.path)
        if page:  # the browser task URL: a tiny page so links resolve
            task = self.emulator.tasks.get(page["id"])
            if task is None:
                self._error(404, "task not found")
                return
            html = f"<html><body><h1>{task.title}</h1><p>{task.latest_status()}</p></body></html>"
            self._send(200, html.encode(), ctype="text/html")
            return
        envs_route = _ENVIRONMENTS.match(url.path)
        if envs_route:
            if self._authorized_or_401():
                slug = f"{envs_route['owner']}/{envs_route['repo']}" if envs_route["owner"] else None
                rows = self.emulator.environments_body(slug)
                if rows is None:
                    self._error(404, "this emulator lists no environments (start it with --env)")
                else:
                    self._send(200, rows)
            return
        rest = self._task_route(url.path)
        if rest is None:
            return
        if rest == ["list"]:
            fault = self.emulator.fault_for("list")
            if fault and self._apply_fault(fault):
                return
            query = parse_qs(url.query)
            limit = int(query.get("limit", ["20"])[0])
            self._send(200, self.emulator.list_body(limit, query.get("cursor", [None])[0]))
            return
        if len(rest) not in (1, 4) or (
            len(rest) == 4 and (rest[1], rest[3]) != ("turns", "sibling_turns")
        ):
            self._error(404, f"no route for {url.path}")
            return
        task = self.emulator.tasks.get(rest[0])
        if task is None:
            fault = self.emulator.fault_for("poll")
            if fault and self._apply_fault(fault):
                return
            self._error(404, "task not found")
            return
        endpoint = "poll" if len(rest) == 1 else "diff"
        fault = self.emulator.fault_for(endpoint, finished=task.finished)
        if fault and self._apply_fault(fault):
            return
        if len(rest) == 1:
            self.emulator.tick(task)
            self._send(200, self.emulator.details(task))
            return
        body = self.emulator.siblings(task, rest[2])
        if body is None:
            self._error(404, "turn not found")
            return
        self._send(200, body)

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self._record()
        url = urlsplit(self.path)
        rest = self._task_route(url.path)
        if rest is None:
            return
        try:
            body = self._body()
        except ValueError:
            self._error(400, "body is not JSON")
            return
        if not rest:
            fault = self.emulator.fault_for("create")
            if fault and self._apply_fault(fault):
                return
            bare = fault is not None and fault.kind == "bare_id"
            try:
                task = self.emulator.create(body if isinstance(body, dict) else {})
            except ValueError as exc:
                self._error(400, str(exc))
                return
            self._send(200, {"task": {}, "id": task.id} if bare else {"task": {"id": task.id, "title": task.title}})
            return
        if len(rest) == 2 and rest[1] == "cancel":
            fault = self.emulator.fault_for("cancel")
            if fault and self._apply_fault(fault):
                return
            target = self.emulator.tasks.get(rest[0])
            if target is None:
                self._error(404, "task not found")
                return
            self.emulator.cancel(target)
            self._send(200, {"task": {"id": target.id}, "status": "cancelled"})
            return
        self._error(404, f"no route for {url.path}")


def _env_arg(text: str) -> dict[str, Any]:
    """`ID[=LABEL][@OWNER/REPO]` of `--env`."""
    spec, _, repo = text.partition("@")
    env_id, _, label = spec.partition("=")
    return {"id": env_id, "label": label or env_id, "repos": [repo] if repo else []}


def main(argv: list[str] | None = None) -> int:
    """`co-sidecar emulator [--host H] [--port N] [--repo PATH] [--faults SPEC] [--agent CMD]`."""
    parser = argparse.ArgumentParser(
        prog="co-sidecar emulator", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--repo", default=".", help="git repository the tasks run against (at its HEAD)"
    )
    parser.add_argument(
        "--faults", default=os.environ.get("CO_EMULATOR_FAULTS", ""), help="fault SPEC"
    )
    parser.add_argument(
        "--agent", default=None, help="agent command (shell-like string or JSON list)"
    )
    parser.add_argument("--token", default=None, help="require this bearer token")
    parser.add_argument(
        "--env",
        action="append",
        default=None,
        metavar="ID[=LABEL][@OWNER/REPO]",
        help="an environment to list (repeatable); without any, every environment id is taken",
    )
    parser.add_argument("--task-timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    try:
        faults = parse_faults(args.faults)
    except ValueError as exc:
        print(f"co-sidecar emulator: {exc}", file=sys.stderr)
        return 2
    agent = None
    if args.agent:
        agent = (
            json.loads(args.agent)
            if args.agent.strip().startswith("[")
            else shlex.split(args.agent)
        )
    emulator = Emulator(
        args.repo,
        host=args.host,
        port=args.port,
        faults=faults,
        agent=agent,
        token=args.token,
        task_timeout=args.task_timeout,
        environments=[_env_arg(e) for e in args.env] if args.env else None,
    )
    try:
        emulator.start()
    except OSError as exc:
        print(
            f"co-sidecar emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    print(f"co-sidecar emulator serving {emulator.repo} at {emulator.base_url}", flush=True)
    print(f"  point the sidecar at it: CO_CLOUD_BASE_URL={emulator.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
