"""The run state machine: every allowed transition, once.

`RunRecord.set_state` and `RunRecord.finish` check every transition against this table, so a new
state or path is added in one place, and docs/protocol.md draws its state diagram from it.
"""

from __future__ import annotations

from .errors import CoError, RunErrorCode
from .protocol import RunState

S = RunState

# (from, to, why). `None` as `from` is the start: a run is born routing.
EDGES: tuple[tuple[RunState | None, RunState, str], ...] = (
    (None, S.ROUTING, "co/launch"),
    (S.ROUTING, S.LAUNCHING, "mode chosen"),
    (S.ROUTING, S.FAILED, "cloud preflight failed, fallback deny; or the run could not start"),
    (S.LAUNCHING, S.QUEUED, "no free local slot"),
    (S.QUEUED, S.LAUNCHING, "slot free"),
    (S.QUEUED, S.CANCELLED, "co/cancel, shutdown"),
    (S.QUEUED, S.FAILED, "server died (interrupted)"),
    (S.LAUNCHING, S.RUNNING, "agent started / cloud task created"),
    (S.LAUNCHING, S.FAILED, "cannot start"),
    (S.LAUNCHING, S.CANCELLED, "co/cancel, shutdown"),
    (S.LAUNCHING, S.TIMED_OUT, "deadline passed before the task started"),
    (S.RUNNING, S.RUNNING, "cloud task resumed after a restart"),
    (S.RUNNING, S.SUCCEEDED, "exit 0 / task ready (diff recorded)"),
    (S.RUNNING, S.FAILED, "agent error / task error / retries exhausted / server died"),
    (S.RUNNING, S.TIMED_OUT, "local.timeoutSeconds / cloud.poll.timeoutSeconds"),
    (S.RUNNING, S.CANCELLED, "co/cancel, $/progress cancel, shutdown"),
    (S.SUCCEEDED, S.APPLIED, "co/apply accept=true"),
    (S.SUCCEEDED, S.REJECTED, "co/reject"),
    (S.SUCCEEDED, S.PARTIALLY_APPLIED, "co/apply of a selection, or onConflict skip"),
    (S.PARTIALLY_APPLIED, S.PARTIALLY_APPLIED, "co/apply of more of it"),
    (S.PARTIALLY_APPLIED, S.APPLIED, "co/apply of the rest"),
    (S.PARTIALLY_APPLIED, S.REJECTED, "co/reject of the rest"),
)

TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    state: frozenset(to for frm, to, _ in EDGES if frm == state) for state in RunState
}
# States no transition leaves.
TERMINAL_STATES = frozenset(state for state, targets in TRANSITIONS.items() if not targets)


class IllegalTransition(CoError):
    """A bug: code asked for a transition the state machine does not have."""

    def __init__(self, run_id: str, old: RunState, new: RunState):
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old])) or "none"
        super().__init__(
            f"run {run_id}: no transition {old.value} → {new.value} (allowed from {old.value}: {allowed})",
            category=RunErrorCode.INTERNAL,
        )


def check_transition(run_id: str, old: RunState, new: RunState) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(run_id, old, new)


def state_diagram() -> str:
    """The Mermaid state diagram docs/protocol.md shows."""
    lines = ["```mermaid", "stateDiagram-v2"]
    for frm, to, why in EDGES:
        lines.append(f"    {'[*]' if frm is None else frm.value} --> {to.value}: {why}")
    lines += [f"    {state.value} --> [*]" for state in RunState if state in TERMINAL_STATES]
    lines.append("```")
    return "\n".join(lines)
