"""The pure parts of follow-ups: the Codex resume argv, and what co/apply may apply across a
chain (followup.py), over manifests in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from co_sidecar import followup
from co_sidecar.errors import ApplyRefused
from co_sidecar.local.agent import AgentPlan
from co_sidecar.local.follow import resume_template
from co_sidecar.manifest import DiffEvidence, FollowUpInfo, RunManifest
from co_sidecar.protocol import RunState

CODEX = ["codex", "exec", "--json", "--sandbox", "workspace-write", "-C", "{workdir}", "--", "{prompt}"]
THREAD = "0199a213-81c0-7800-8aa1-bbab2a035a53"


def test_resume_goes_before_the_prompt_separator() -> None:
    plan = AgentPlan(CODEX, "codex-json", "codex-cli 0.169.0")
    assert resume_template(plan, THREAD) == [*CODEX[:-2], "resume", THREAD, "--", "{prompt}"]
    bare = AgentPlan(["codex", "exec", "--json", "{prompt}"], "codex-json")
    assert resume_template(bare, THREAD) == ["codex", "exec", "--json", "resume", THREAD, "{prompt}"]


@pytest.mark.parametrize(
    ("plan", "thread"),
    [
        (AgentPlan(CODEX, "codex-json"), None),  # the parent has no thread
        (AgentPlan(CODEX, "codex-json"), "--last"),  # an option, not an id
        (AgentPlan(CODEX, "codex-json"), "a b"),
        (AgentPlan(CODEX, "text"), THREAD),  # codex without a JSON stream
        (AgentPlan(["my-agent", "{prompt}"], "text"), THREAD),
        (AgentPlan(["codex", "exec", "--json"], "codex-json"), THREAD),  # no {prompt}
    ],
)
def test_no_resume_when_it_would_not_be_the_parents_thread(plan: AgentPlan, thread: str | None) -> None:
    assert resume_template(plan, thread) is None


@dataclass
class Rec:
    """Stands in for a RunRecord: the fields followup.py reads."""

    manifest: RunManifest
    workspace: Path = Path("/w")
    store: object = None
    calls: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.manifest.run_id


def evidence(name: str) -> DiffEvidence:
    return DiffEvidence(patch_path=name, sha256="0" * 64, bytes=1)


def run(run_id: str, state: RunState, parent: str | None = None, includes: bool = True, root: str = "a") -> Rec:
    m = RunManifest(
        run_id=run_id, task_id="t", prompt="p", workspace="/w", requested_mode="local", selected_mode="local",
        routing_reason="", state=state, created_at="", updated_at="", diff=evidence(f"{run_id}-step"),
    )  # fmt: skip
    if parent is not None:
        m.parent_run_id, m.root_run_id = parent, root
        m.follow_up = FollowUpInfo(includes_parent=includes, cumulative=evidence(f"{run_id}-cumulative"))
    return Rec(m)


def chain_of(*recs: Rec) -> dict[str, Rec]:
    return {r.run_id: r for r in recs}


def to_apply(rec: Rec, runs: dict[str, Rec]) -> str:
    evidence, view = followup.evidence_to_apply(rec, rec.manifest.diff, None, runs)  # type: ignore[arg-type]
    if rec.manifest.follow_up is None:
        assert view is None
    else:
        assert view == ("step" if evidence.patch_path.endswith("-step") else "cumulative")
    return evidence.patch_path


def test_a_follow_up_applies_its_cumulative_change_unless_its_parent_is_in() -> None:
    a, b = run("a", RunState.SUCCEEDED), run("b", RunState.SUCCEEDED, "a")
    assert to_apply(b, chain_of(a, b)) == "b-cumulative"
    a.manifest.state = RunState.APPLIED
    assert to_apply(b, chain_of(a, b)) == "b-step"
    assert b.manifest.follow_up is not None and b.manifest.follow_up.applied_view is None  # recorded only by an apply


def test_a_parent_carried_by_a_sibling_makes_the_next_sibling_apply_its_step() -> None:
    a = run("a", RunState.SUCCEEDED)
    b1 = run("b1", RunState.APPLIED, "a")
    b1.manifest.follow_up.applied_view = "cumulative"  # type: ignore[union-attr]
    b2 = run("b2", RunState.SUCCEEDED, "a")
    runs = chain_of(a, b1, b2)
    assert to_apply(b2, runs) == "b2-step"
    with pytest.raises(ApplyRefused, match="already applied as part of its follow-up b1"):
        to_apply(a, runs)


def test_a_step_applied_alone_carries_only_itself() -> None:
    a, b, c = run("a", RunState.SUCCEEDED), run("b", RunState.APPLIED, "a"), run("c", RunState.SUCCEEDED, "b")
    b.manifest.follow_up.applied_view = "step"  # type: ignore[union-attr]
    runs = chain_of(a, b, c)
    assert to_apply(a, runs) == "a-step"  # a's change is not in the workspace: b brought only its step
    assert to_apply(c, runs) == "c-step"


def test_an_applied_grandparent_with_an_unapplied_parent_is_refused() -> None:
    a, b, c = run("a", RunState.APPLIED), run("b", RunState.SUCCEEDED, "a"), run("c", RunState.SUCCEEDED, "b")
    with pytest.raises(ApplyRefused, match="apply b first"):
        to_apply(c, chain_of(a, b, c))


def test_a_follow_up_that_started_after_its_parent_was_applied_is_its_own_change() -> None:
    a, b = run("a", RunState.APPLIED), run("b", RunState.SUCCEEDED, "a", includes=False)
    assert to_apply(b, chain_of(a, b)) == "b-cumulative"
    assert [r.run_id for r in followup.chain(b, chain_of(a, b))] == ["b"]  # type: ignore[arg-type]
