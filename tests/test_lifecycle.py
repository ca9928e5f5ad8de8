"""The run state machine: one table of transitions, enforced where state changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from co_sidecar.lifecycle import TERMINAL_STATES, TRANSITIONS, IllegalTransition, check_transition
from co_sidecar.protocol import FINISHED_STATES, RunState
from conftest import SessionFactory


def test_terminal_states_are_finished_and_leave_nowhere() -> None:
    # succeeded and partially_applied are finished runs that can still be applied or rejected.
    assert FINISHED_STATES - {RunState.SUCCEEDED, RunState.PARTIALLY_APPLIED} == TERMINAL_STATES
    for state in TERMINAL_STATES:
        with pytest.raises(IllegalTransition, match=f"no transition {state.value} → running"):
            check_transition("r1", state, RunState.RUNNING)


def test_a_succeeded_run_can_only_be_applied_in_whole_or_part_or_rejected() -> None:
    assert TRANSITIONS[RunState.SUCCEEDED] == {RunState.APPLIED, RunState.PARTIALLY_APPLIED, RunState.REJECTED}
    assert TRANSITIONS[RunState.PARTIALLY_APPLIED] == {RunState.APPLIED, RunState.PARTIALLY_APPLIED, RunState.REJECTED}
    with pytest.raises(IllegalTransition, match="allowed from succeeded: applied, partially_applied, rejected"):
        check_transition("r1", RunState.SUCCEEDED, RunState.FAILED)


def test_every_state_is_reachable_from_the_start() -> None:
    seen, todo = {RunState.ROUTING}, [RunState.ROUTING]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(RunState)


async def test_a_real_runs_recorded_transitions_follow_the_table(repo: Path, start_server: SessionFactory) -> None:
    session = await start_server(repo)
    run_id, state = await session.run_to_end()
    assert state == "succeeded"
    await session.request("co/apply", {"runId": run_id, "accept": True, "strategy": "git"})
    manifest = await session.request("co/status", {"runId": run_id})
    states = [RunState(t["state"]) for t in manifest["transitions"]]
    assert states[0] == RunState.ROUTING and states[-1] == RunState.APPLIED
    for old, new in zip(states, states[1:], strict=False):
        check_transition(run_id, old, new)
