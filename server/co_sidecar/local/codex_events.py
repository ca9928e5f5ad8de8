"""`codex exec --json` events → agent steps: a short human message and a structured event per
line, and a running summary for the manifest. Pure: no I/O, no server.

The stream (codex 0.169, docs/codex.md): thread.started {thread_id}, turn.started,
item.started / item.updated / item.completed {item: {id, type, ...}}, turn.completed {usage},
turn.failed {error: {message}}, and a top-level error {message}. Unknown event and item types
become steps named after their type; they are never an error.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..manifest import CodexRunInfo, TokenUsage
from ..protocol import AgentEvent, AgentFileChange

MAX_MESSAGE_CHARS = 500
MAX_WARNINGS = 20
SHELLS = frozenset({"bash", "sh", "zsh", "dash"})


@dataclass(frozen=True)
class Step:
    """What one event line became: a one-line message, the event, and any command output
    (new since the item's last update) to show before it as agent output."""

    message: str
    event: AgentEvent
    output: list[str] = field(default_factory=list)


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def shown_command(command: str) -> str:
    """The command as the user would type it: codex wraps each in `/bin/bash -lc '<cmd>'`."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return command
    if len(argv) == 3 and os.path.basename(argv[0]) in SHELLS and argv[1] in ("-lc", "-c"):
        return argv[2]
    return command


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_message(value: Any) -> str:
    if isinstance(value, dict):
        return _str(value.get("message")) or json.dumps(value)[:MAX_MESSAGE_CHARS]
    return _str(value) or "unknown error"


class CodexEventReader:
    """Reads one run's event stream; `info` accumulates what the manifest records."""

    def __init__(self, workdir: str, cli_version: str | None = None):
        self.workdir = workdir.rstrip(os.sep) + os.sep
        self.info = CodexRunInfo(cli_version=cli_version)
        # Set by turn.failed or a top-level error: the run fails with Codex's own message.
        self.failure: str | None = None
        self._output_seen: dict[str, int] = {}  # command item id -> chars of output shown
        self._changed: set[str] = set()

    def feed(self, line: str) -> Step | None:
        """The step for one stdout line; None when it is not a codex event (pass it through)."""
        text = line.strip()
        if not text.startswith("{"):
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return None
        kind: str = data["type"]
        if kind.startswith("item.") and isinstance(data.get("item"), dict):
            return self._item(kind, data["item"])
        return self._top(kind, data)

    # -- top-level events ---------------------------------------------------------
    def _top(self, kind: str, data: dict[str, Any]) -> Step:
        event = AgentEvent(kind=kind, type=kind)
        if kind == "thread.started":
            self.info.thread_id = _str(data.get("thread_id"))
            return Step(f"codex session {self.info.thread_id or '?'}", event)
        if kind == "turn.started":
            return Step("codex is working", event)
        if kind == "turn.completed":
            raw = data.get("usage")
            usage: dict[str, Any] = raw if isinstance(raw, dict) else {}
            total = self.info.usage
            for name in TokenUsage.model_fields:
                setattr(total, name, getattr(total, name) + (_int(usage.get(name)) or 0))
            return Step(
                f"turn completed: {_int(usage.get('input_tokens')) or 0} tokens in, "
                f"{_int(usage.get('output_tokens')) or 0} out",
                event,
            )
        if kind in ("turn.failed", "error"):
            message = _error_message(data.get("error") if kind == "turn.failed" else data)
            # turn.failed is the verdict; a top-level error before it says the same or less.
            if kind == "turn.failed" or self.failure is None:
                self.failure = message
            event.text = message
            event.status = "failed"
            return Step(f"{'turn failed' if kind == 'turn.failed' else 'error'}: {one_line(message)}", event)
        event.text = one_line(json.dumps(data), MAX_MESSAGE_CHARS)
        return Step(f"{kind}: {event.text}", event)

    # -- items ----------------------------------------------------------------------
    def _item(self, phase: str, item: dict[str, Any]) -> Step:
        item_type = _str(item.get("type")) or "item"
        item_id = _str(item.get("id"))
        status = _str(item.get("status"))
        completed = phase == "item.completed"
        event = AgentEvent(kind=item_type, type=phase, item_id=item_id, status=status)
        if item_type == "command_execution":
            return self._command(event, item, completed)
        if item_type == "file_change":
            return self._file_change(event, item, completed)
        if item_type == "agent_message":
            event.text = _str(item.get("text")) or ""
            if completed:
                self.info.final_message = event.text
            return Step(one_line(event.text) or "(empty message)", event)
        if item_type == "reasoning":
            event.text = _str(item.get("text")) or ""
            return Step(f"thinking: {one_line(event.text.replace('**', ''))}", event)
        if item_type == "error":
            event.text = _str(item.get("message")) or ""
            if completed and len(self.info.warnings) < MAX_WARNINGS:
                self.info.warnings.append(event.text)
            return Step(f"warning: {one_line(event.text)}", event)
        if item_type == "mcp_tool_call":
            name = ".".join(s for s in (_str(item.get("server")), _str(item.get("tool"))) if s)
            return Step(f"tool {name or '?'}: {status or phase.removeprefix('item.')}", event)
        if item_type == "web_search":
            event.text = _str(item.get("query")) or ""
            return Step(f"search: {one_line(event.text)}", event)
        if item_type == "todo_list":
            todos = [t for t in item.get("items") or [] if isinstance(t, dict)]
            done = sum(1 for t in todos if t.get("completed"))
            event.text = "\n".join(
                f"[{'x' if t.get('completed') else ' '}] {_str(t.get('text')) or ''}" for t in todos
            )
            return Step(f"plan: {done}/{len(todos)} done", event)
        event.text = one_line(json.dumps(item), MAX_MESSAGE_CHARS)
        return Step(f"{item_type} {status or phase.removeprefix('item.')}", event)

    def _command(self, event: AgentEvent, item: dict[str, Any], completed: bool) -> Step:
        command = shown_command(_str(item.get("command")) or "")
        event.command = command
        event.exit_code = _int(item.get("exit_code"))
        output = _str(item.get("aggregated_output")) or ""
        key = event.item_id or command
        seen = self._output_seen.get(key, 0)
        fresh = output[seen:]
        if not completed:
            # Only whole lines while it runs: the rest comes with the next update.
            fresh = fresh[: fresh.rfind("\n") + 1]
        self._output_seen[key] = seen + len(fresh)
        lines = fresh.splitlines()
        if not completed:
            return Step(f"$ {one_line(command)}", event, lines)
        self.info.commands_run += 1
        if event.exit_code is not None:
            message = f"exit {event.exit_code}"
        else:
            message = f"command {event.status or 'ended'}"
        return Step(f"{message}: {one_line(command, 80)}", event, lines)

    def _file_change(self, event: AgentEvent, item: dict[str, Any], completed: bool) -> Step:
        changes = [c for c in item.get("changes") or [] if isinstance(c, dict)]
        event.files = [
            AgentFileChange(path=self._relative(_str(c.get("path")) or "?"), kind=_str(c.get("kind")) or "?")
            for c in changes
        ]
        paths = [f.path for f in event.files]
        names = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        noun = "file" if len(paths) == 1 else "files"
        if not completed:
            return Step(f"editing {names}", event)
        if event.status == "failed":
            return Step(f"edit failed: {names}", event)
        self._changed.update(paths)
        self.info.files_changed = len(self._changed)
        return Step(f"edited {len(paths)} {noun}: {names}", event)

    def _relative(self, path: str) -> str:
        return path[len(self.workdir) :] if path.startswith(self.workdir) else path
