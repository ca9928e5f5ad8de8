"""The adapters read Codex Cloud as the official client does: the response bodies openai/codex
publishes for its own client (tests/fixtures/upstream, README there: repository, path and
commit of each) and the rules its Rust code applies to them. Pure parts; the stdio runs are
in test_cloud_truth.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from co_sidecar.cloud import environments as envs
from co_sidecar.cloud.client import map_status
from co_sidecar.cloud.http import (
    created_task_id,
    messages_of_turn,
    snapshot_from_details,
    worklog_summary,
)
from co_sidecar.protocol import RunState

UPSTREAM = Path(__file__).parent / "fixtures" / "upstream"


def upstream(name: str) -> Any:
    return json.loads((UPSTREAM / name).read_text())


def test_task_details_with_diff() -> None:
    """codex-rs/backend-client/tests/fixtures/task_details_with_diff.json: the diff comes from
    current_diff_task_turn and the assistant says exactly "Assistant response"."""
    snap = snapshot_from_details(upstream("task_details_with_diff.json"))
    assert snap.id == "task_123"
    assert snap.diff is not None and snap.diff.startswith(b"diff --git a/src/main.rs")
    [attempt] = snap.attempts
    assert attempt.attempt == 1 and attempt.diff == snap.diff
    assert attempt.messages == ["Assistant response"]
    assert attempt.error is None and attempt.worklog is None
    # Neither task_status_display nor a turn_status: the official client shows PENDING; the
    # run keeps polling and says the status is unreadable (the executor counts these).
    assert snap.state == RunState.RUNNING and snap.status_known is False


def test_task_details_with_error() -> None:
    """codex-rs/backend-client/tests/fixtures/task_details_with_error.json: the diff is the `pr`
    item's output_diff and the error reads `APPLY_FAILED: Patch could not be applied`."""
    snap = snapshot_from_details(upstream("task_details_with_error.json"))
    assert snap.diff is not None and b"lib.rs" in snap.diff
    [attempt] = snap.attempts
    assert attempt.error == "APPLY_FAILED: Patch could not be applied"
    # The error object alone does not decide the state: no display, no turn status → unknown.
    assert snap.state == RunState.RUNNING and snap.status_known is False


def with_display(body: dict[str, Any], turn_status: str | None = None, state: str | None = None) -> dict[str, Any]:
    display: dict[str, Any] = {}
    if turn_status is not None:
        display["latest_turn_status_display"] = {"turn_status": turn_status}
    if state is not None:
        display["state"] = state
    return {**body, "task_status_display": display}


def test_status_comes_from_the_display_and_a_turn_error_does_not_override_it() -> None:
    body = upstream("task_details_with_error.json")
    done = snapshot_from_details(with_display(body, "completed"))
    assert done.state == RunState.SUCCEEDED and done.status == "completed" and done.status_known
    assert done.attempts[0].state == RunState.SUCCEEDED  # the turn has no turn_status: the display's
    assert done.attempts[0].error == "APPLY_FAILED: Patch could not be applied"  # shown as text
    # latest_turn_status_display.turn_status first, then state.
    assert snapshot_from_details(with_display(body, None, "ready")).state == RunState.SUCCEEDED
    assert snapshot_from_details(with_display(body, "in_progress", "ready")).state == RunState.RUNNING
    assert snapshot_from_details(with_display(body, "failed")).state == RunState.FAILED
    # The display is nested in `task` too (the list items' place for it).
    nested = {**body, "task": {**body["task"], "task_status_display": {"state": "error"}}}
    assert snapshot_from_details(nested).state == RunState.FAILED


def test_map_status_as_the_official_client() -> None:
    # turn statuses, then display states; unknown values are pending.
    assert [map_status(s) for s in ("failed", "completed", "in_progress", "pending")] == [
        RunState.FAILED, RunState.SUCCEEDED, RunState.RUNNING, RunState.RUNNING,
    ]  # fmt: skip
    assert [map_status(s) for s in ("pending", "ready", "applied", "error", "weird")] == [
        RunState.RUNNING, RunState.SUCCEEDED, RunState.SUCCEEDED, RunState.FAILED, RunState.RUNNING,
    ]  # fmt: skip
    # The one deliberate difference (docs/cloud.md): cancelled is its own state, not an error.
    assert map_status("cancelled") == RunState.CANCELLED


def turn(tid: str, placement: int | None, created: float | None, diff: bool, status: str = "completed") -> dict[str, Any]:
    items = [{"type": "output_diff", "diff": f"diff --git a/{tid} b/{tid}\n"}] if diff else []
    out: dict[str, Any] = {"id": tid, "turn_status": status, "output_items": items}
    if placement is not None:
        out["attempt_placement"] = placement
    if created is not None:
        out["created_at"] = created
    return out


def test_attempts_are_numbered_like_codex_cloud_diff() -> None:
    """Only attempts carrying a diff count, ordered by attempt_placement, then created_at,
    then id (cloud-tasks lib.rs `collect_attempt_diffs` / `cmp_attempt`)."""
    current = {**turn("t-cur", 0, None, diff=False, status="failed"), "sibling_turn_ids": ["t-b", "t-c", "t-d"]}
    body = with_display({"task": {"id": "task_1"}, "current_assistant_turn": current}, "completed")
    siblings = [
        turn("t-d", None, None, diff=True),
        turn("t-c", None, 5.0, diff=True),
        turn("t-b", 1, 9.0, diff=True),
    ]
    snap = snapshot_from_details(body, siblings)
    assert [(a.attempt, a.turn_id) for a in snap.attempts] == [
        (1, "t-b"),  # placement 1 (the failed current turn, placement 0, has no diff)
        (2, "t-c"),  # no placement, created_at set
        (3, "t-d"),  # neither
        (4, "t-cur"),  # no diff: after the numbered ones
    ]
    assert snap.attempts[3].state == RunState.FAILED and snap.attempt_total == 4


def test_messages_and_worklog_of_a_turn() -> None:
    t = {
        "output_items": [
            {"type": "message", "content": [{"content_type": "text", "text": "The answer is 42."}, "  "]},
            {"type": "output_diff", "diff": "x"},
        ],
        "worklog": {
            "messages": [
                {"author": {"role": "tool"}, "content": {"parts": ["ran pytest"]}},
                {"author": {"role": "assistant"}, "content": {"parts": [{"content_type": "text", "text": "Checked."}, "plain"]}},
                {"author": {"role": "tool"}, "content": {"parts": ["ran ruff"]}},
            ]
        },
    }
    assert messages_of_turn(t) == ["The answer is 42.", "Checked.", "plain"]
    assert worklog_summary(t) == "worklog: 3 entries (assistant 1, tool 2)"
    assert worklog_summary({"output_items": []}) is None


def test_create_response_id() -> None:
    assert created_task_id({"task": {"id": "A"}, "id": "B"}) == "A"
    assert created_task_id({"task": {}, "id": "X"}) == "X"
    assert created_task_id({"task": {"id": ""}}) is None


def rows(name: str) -> list[envs.EnvRow]:
    return envs.parse_rows(upstream(name))


def test_environment_choice_as_env_detect() -> None:
    """codex-rs/cloud-tasks/src/env_detect_tests.rs bodies."""
    by_repo = rows("environments_by_repo_pinned.json")
    chosen = envs.choose("repository", by_repo, [], ("openai", "codex"))
    assert (chosen.id, chosen.label, chosen.source) == ("env-repo", "Repository", envs.LABEL)
    detected = envs.choose(None, by_repo, [], ("openai", "codex"))
    assert (detected.id, detected.source) == ("env-repo", envs.DETECTED_BY_REPO)
    assert "openai/codex" in detected.reason
    fallback = envs.choose(None, [], rows("environments_global.json"), ("openai", "codex"))
    assert (fallback.id, fallback.label, fallback.source) == ("env-global", "Global", envs.ONLY_ONE)
    merged = envs.merged(rows("environments_by_repo.json"), rows("environments_global_merge.json"))
    assert [(r.id, r.label, r.is_pinned) for r in merged] == [
        ("env-repo", "Repository", True),
        ("env-global", "Global", False),
    ]
    assert envs.choose("env-global", rows("environments_by_repo.json"), rows("environments_global_merge.json")).source == envs.CONFIGURED


def test_environment_rules() -> None:
    a, b, c = envs.EnvRow("e-a", "Alpha", task_count=3), envs.EnvRow("e-b", "Beta", task_count=7), envs.EnvRow("e-c", None)
    assert envs.choose(None, [], [a, b, c]).source == envs.MOST_USED and envs.choose(None, [], [a, b, c]).id == "e-b"
    pinned = envs.EnvRow("e-p", "P", is_pinned=True)
    assert envs.choose(None, [], [a, pinned, b]).id == "e-p"
    # Equal counts: the later row, as Rust's max_by_key.
    assert envs.choose(None, [], [envs.EnvRow("x"), envs.EnvRow("y")]).id == "y"
    with pytest.raises(envs.EnvironmentProblem) as unknown:
        envs.choose("gamma", [], [a, b, c])
    assert unknown.value.code == "cloud_env_unknown"
    assert "Alpha (e-a)" in unknown.value.message and "Beta (e-b)" in unknown.value.message
    with pytest.raises(envs.EnvironmentProblem) as ambiguous:
        envs.choose("alpha", [], [a, envs.EnvRow("e-a2", "ALPHA")])
    assert ambiguous.value.code == "cloud_env_ambiguous"
    with pytest.raises(envs.EnvironmentProblem) as none:
        envs.choose(None, [], [])
    assert none.value.code == "cloud_env_missing"


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:openai/codex.git",
        "ssh://git@github.com/openai/codex.git",
        "https://github.com/openai/codex.git",
        "https://github.com/openai/codex",
        "git://github.com/openai/codex.git",
        "org-123@github.com:openai/codex.git",
    ],
)
def test_owner_repo_from_remote_urls(url: str) -> None:
    assert envs.parse_owner_repo(url) == ("openai", "codex")


def test_non_github_remote_is_not_a_repository() -> None:
    assert envs.parse_owner_repo("https://gitlab.com/openai/codex.git") is None
    assert envs.parse_owner_repo("/srv/git/codex.git") is None
