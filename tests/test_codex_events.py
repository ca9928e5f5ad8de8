"""The `codex exec --json` reader on its own: lines in, steps and a summary out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from co_sidecar.local.codex_events import CodexEventReader, shown_command


def line(**event: Any) -> str:
    return json.dumps(event)


def cmd(status: str, output: str, exit_code: int | None = None) -> str:
    phase = "item.completed" if status != "in_progress" else "item.updated"
    item = {
        "id": "c1",
        "type": "command_execution",
        "command": "/bin/bash -lc 'pytest -q'",
        "aggregated_output": output,
        "exit_code": exit_code,
        "status": status,
    }
    return line(type=phase, item=item)


def test_command_output_is_shown_once_in_whole_lines() -> None:
    reader = CodexEventReader("/work")
    first = reader.feed(cmd("in_progress", "collected 3\n.."))
    assert first is not None and (first.message, first.output) == ("$ pytest -q", ["collected 3"])
    second = reader.feed(cmd("in_progress", "collected 3\n..F\n"))
    assert second is not None and second.output == ["..F"]
    done = reader.feed(cmd("failed", "collected 3\n..F\n1 failed\n", exit_code=1))
    assert done is not None
    assert (done.message, done.output) == ("exit 1: pytest -q", ["1 failed"])
    assert done.event.exit_code == 1 and done.event.status == "failed"
    assert reader.info.commands_run == 1
    assert reader.failure is None  # a failing command is the agent's business, not a failed run


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("/bin/bash -lc 'git status --short'", "git status --short"),
        ("bash -c \"echo 'hi there'\"", "echo 'hi there'"),
        ("python -m pytest", "python -m pytest"),
        ("/bin/bash -lc 'unterminated", "/bin/bash -lc 'unterminated"),
    ],
)
def test_shown_command_unwraps_the_shell(raw: str, shown: str) -> None:
    assert shown_command(raw) == shown


def test_other_items_and_summary() -> None:
    reader = CodexEventReader("/work/")
    steps = [
        reader.feed(line(type="item.completed", item={"id": "r", "type": "reasoning", "text": "**Planning** the fix"})),
        reader.feed(line(type="item.updated", item={"id": "t", "type": "todo_list", "items": [{"text": "a", "completed": True}, {"text": "b", "completed": False}]})),
        reader.feed(line(type="item.completed", item={"id": "m", "type": "mcp_tool_call", "server": "docs", "tool": "search", "status": "completed"})),
        reader.feed(line(type="item.completed", item={"id": "w", "type": "web_search", "query": "unidiff"})),
        reader.feed(line(type="item.started", item={"id": "f", "type": "file_change", "changes": [{"path": "/work/a.py", "kind": "update"}], "status": "in_progress"})),
        reader.feed(line(type="item.completed", item={"id": "f", "type": "file_change", "changes": [{"path": "/work/a.py", "kind": "update"}, {"path": "/elsewhere/b.py", "kind": "add"}], "status": "completed"})),
        reader.feed(line(type="item.completed", item={"id": "g", "type": "file_change", "changes": [{"path": "/work/a.py", "kind": "update"}], "status": "completed"})),
        reader.feed(line(type="item.completed", item={"id": "x", "type": "agent_message", "text": "first"})),
        reader.feed(line(type="item.completed", item={"id": "y", "type": "agent_message", "text": "All done.\nTwo lines."})),
        reader.feed(line(type="turn.completed", usage={"input_tokens": 10, "output_tokens": 2})),
        reader.feed(line(type="turn.completed", usage={"input_tokens": 5, "output_tokens": "x"})),
    ]
    assert [s.message for s in steps if s] == [
        "thinking: Planning the fix",
        "plan: 1/2 done",
        "tool docs.search: completed",
        "search: unidiff",
        "editing a.py",
        "edited 2 files: a.py, /elsewhere/b.py",
        "edited 1 file: a.py",
        "first",
        "All done. Two lines.",
        "turn completed: 10 tokens in, 2 out",
        "turn completed: 5 tokens in, 0 out",
    ]
    assert steps[1] is not None and steps[1].event.text == "[x] a\n[ ] b"
    assert reader.info.files_changed == 2  # distinct paths
    assert reader.info.final_message == "All done.\nTwo lines."
    assert (reader.info.usage.input_tokens, reader.info.usage.output_tokens) == (15, 2)


@pytest.mark.parametrize(
    "raw",
    ["plain text", "{not json", "[1, 2]", '{"no": "type"}', '{"type": 3}', ""],
)
def test_lines_that_are_not_events_pass_through(raw: str) -> None:
    assert CodexEventReader("/w").feed(raw) is None


def test_odd_but_typed_events_never_raise() -> None:
    reader = CodexEventReader("/w")
    odd = [
        line(type="item.completed", item={"type": "command_execution"}),
        line(type="item.completed", item={}),
        line(type="item.completed", item="not a dict"),
        line(type="turn.failed", error="just a string"),
        line(type="turn.failed"),
        line(type="error"),
        line(type="item.completed", item={"type": "file_change", "changes": "nope"}),
        line(type="item.completed", item={"type": "todo_list", "items": None}),
    ]
    messages = [step.message for raw in odd if (step := reader.feed(raw))]
    assert len(messages) == len(odd)
    assert reader.failure == "unknown error"


def test_turn_failed_is_the_verdict_over_a_top_level_error() -> None:
    reader = CodexEventReader("/w")
    reader.feed(line(type="error", message="Reconnecting... 1/5"))
    assert reader.failure == "Reconnecting... 1/5"
    step = reader.feed(line(type="turn.failed", error={"message": "unexpected status 500"}))
    assert step is not None and step.message == "turn failed: unexpected status 500"
    assert reader.failure == "unexpected status 500"
    reader.feed(line(type="error", message="later noise"))
    assert reader.failure == "unexpected status 500"
