"""Follow-ups: a run that continues another run's result (co/followUp).

A follow-up starts where its parent ended: its scratch (or its cloud task's starting diff) is
the workspace plus the parent's cumulative change. It records two diffs:

- the step (`manifest.diff`, a cloud run's attempt diffs): what this follow-up changed;
- the cumulative change (`followUp.cumulative`): the parent's cumulative change plus the step,
  against the workspace the follow-up started from. co/diff shows it by default and co/apply
  applies it, so applying a follow-up applies the whole chain once.

Applying across a chain (docs/protocol.md, co/followUp):

- a run whose change was applied as part of a follow-up's cumulative change is refused;
- a follow-up whose parent was applied (or whose parent's change is in the workspace through
  another applied follow-up) applies its step alone, since the rest is there already;
- a follow-up whose parent is not applied but an earlier ancestor is, is refused: apply the
  parent first (it applies its own step), then this one.

A partly applied parent (`partially_applied`) is followed up from the workspace as it is: the
parts the user took are in it, the parts left are not carried (they stay the parent's, to apply
or reject later), so the follow-up builds on what the user accepted.

Pure decisions over manifests; the run manager calls in here (no import of runs.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ApplyRefused, InvalidState, PatchRefused
from .manifest import AppliedView, DiffEvidence, FollowUpInfo, RunManifest
from .protocol import (
    FOLLOWABLE_STATES,
    CloudParams,
    DiffView,
    FollowUpParams,
    LaunchParams,
    RunState,
)

if TYPE_CHECKING:
    from .runs import RunRecord

# Beside the follow-up's manifest: the parent's cumulative change it started from.
STARTING_PATCH = "parent.diff"
CUMULATIVE_PATCH = "cumulative.diff"


def root_of(m: RunManifest) -> str:
    return m.root_run_id or m.run_id


def cumulative_evidence(m: RunManifest) -> DiffEvidence | None:
    """What applying this run does: a follow-up's cumulative change, else its own diff."""
    if m.follow_up is not None:
        return m.follow_up.cumulative
    if m.cloud and m.cloud.attempt_status:
        with_diff = [a.diff for a in m.cloud.attempt_status if a.diff is not None]
        return with_diff[0] if with_diff else None
    return m.diff


def diff_stats(m: RunManifest) -> dict[str, int] | None:
    """`DiffStats` (wire) of the run's own change: a follow-up's step."""
    d = m.diff
    if d is None or d.problem:
        return None
    return {"files": len(d.files), "additions": d.additions, "deletions": d.deletions}


# -- the chain --------------------------------------------------------------------------


def chain(record: RunRecord, runs: Mapping[str, RunRecord]) -> list[RunRecord]:
    """The runs whose changes this run's cumulative diff carries: itself, then its parent,
    and so on while each includes its parent."""
    out = [record]
    current = record
    seen = {record.run_id}
    while (
        current.manifest.follow_up is not None
        and current.manifest.follow_up.includes_parent
        and current.manifest.parent_run_id is not None
    ):
        parent = runs.get(current.manifest.parent_run_id)
        if parent is None or parent.run_id in seen:
            break
        out.append(parent)
        seen.add(parent.run_id)
        current = parent
    return out


def applied_change(record: RunRecord, runs: Mapping[str, RunRecord]) -> list[RunRecord]:
    """The runs whose changes are in the workspace because `record` was applied."""
    if record.manifest.state != RunState.APPLIED:
        return []
    f = record.manifest.follow_up
    if f is not None and f.applied_view == "step":
        return [record]
    return chain(record, runs)


def applied_with(record: RunRecord, runs: Mapping[str, RunRecord]) -> RunRecord | None:
    """The applied run whose change includes `record`'s (itself when it was applied)."""
    if record.manifest.state == RunState.APPLIED:
        return record
    root = root_of(record.manifest)
    for other in runs.values():
        if other is record or root_of(other.manifest) != root:
            continue
        if any(r is record for r in applied_change(other, runs)):
            return other
    return None


# -- starting a follow-up ---------------------------------------------------------------


def check_followable(parent: RunRecord) -> None:
    state = RunState(parent.manifest.state)
    if state not in FOLLOWABLE_STATES:
        raise InvalidState(
            f"run {parent.run_id} is {state.value}; only a succeeded, applied or partially applied run can be followed up "
            "(a follow-up starts from its result)",
            data={"state": state.value},
        )


def starting_patch(parent: RunRecord, runs: Mapping[str, RunRecord]) -> bytes | None:
    """The parent's cumulative change, read and checked against its recorded sha256; None when
    the follow-up starts from the workspace as it is: the parent (or a follow-up carrying it) was
    applied, or the user took part of it (the parts taken are in the workspace).
    Blocking (reads the patch): call it off the event loop."""
    check_followable(parent)
    if applied_with(parent, runs) is not None or parent.manifest.state == RunState.PARTIALLY_APPLIED:
        return None
    evidence = cumulative_evidence(parent.manifest)
    if evidence is None:
        if parent.manifest.follow_up is not None:
            raise InvalidState(f"run {parent.run_id} has no cumulative diff recorded; it cannot be followed up")
        return b""  # it changed nothing: the follow-up starts from the workspace
    if evidence.problem:
        raise PatchRefused(f"run {parent.run_id}'s diff was refused, so nothing can start from it: {evidence.problem}")
    patch = (parent.store.root / evidence.patch_path).read_bytes()
    if hashlib.sha256(patch).hexdigest() != evidence.sha256:
        raise PatchRefused(f"patch file {evidence.patch_path} changed since it was recorded (sha256 mismatch)")
    return patch


def launch_params(parent: RunRecord, params: FollowUpParams) -> LaunchParams:
    """The follow-up runs where its parent ran: same mode, task, cloud environment and branch."""
    m = parent.manifest
    cloud = CloudParams()
    if m.cloud is not None:
        cloud = CloudParams(
            env_id=m.cloud.env_id,
            branch=m.cloud.branch,
            start_from_local_changes=m.cloud.start_from_local_changes,
        )
    return LaunchParams(
        prompt=params.prompt,
        mode=m.selected_mode,
        task_id=m.task_id,
        metadata={"followUpOf": m.run_id},
        cloud=cloud,
        workspace_folder=str(parent.workspace),
        work_done_token=params.work_done_token,
    )


def link(record: RunRecord, parent: RunRecord, starting: bytes | None) -> None:
    """Before the follow-up's first write: its lineage, its starting patch beside it, and (Codex)
    the parent's thread to resume."""
    from .manifest import atomic_write_bytes

    pm = parent.manifest
    m = record.manifest
    m.parent_run_id = pm.run_id
    m.root_run_id = root_of(pm)
    info = FollowUpInfo(includes_parent=starting is not None)
    if starting:
        path = record.run_dir / STARTING_PATCH
        atomic_write_bytes(path, starting)
        info.starting_patch = DiffEvidence(
            patch_path=str(path.relative_to(record.store.root)),
            sha256=hashlib.sha256(starting).hexdigest(),
            bytes=len(starting),
        )
    if pm.codex is not None and pm.codex.thread_id:
        info.resumed_thread_id = pm.codex.thread_id
    m.follow_up = info


def starting_patch_of(m: RunManifest, root: Path) -> bytes | None:
    """A follow-up's starting patch (its parent's cumulative change), checked; None when it
    starts from the workspace as it is. `root`: the runs root."""
    f = m.follow_up
    if f is None or f.starting_patch is None:
        return None
    evidence = f.starting_patch
    patch = (root / evidence.patch_path).read_bytes()
    if hashlib.sha256(patch).hexdigest() != evidence.sha256:
        raise PatchRefused(f"patch file {evidence.patch_path} changed since it was recorded (sha256 mismatch)")
    return patch


# -- co/diff and co/apply ---------------------------------------------------------------


def view_evidence(
    record: RunRecord, evidence: DiffEvidence, attempt: int | None, view: DiffView | None
) -> tuple[DiffEvidence, DiffView | None]:
    """The diff co/diff shows: for a follow-up the cumulative change unless `view` is step."""
    f = record.manifest.follow_up
    if f is None:
        return evidence, view
    if view == "step":
        return evidence, "step"
    if attempt is not None and attempt != headline_attempt(record.manifest):
        raise InvalidState(
            f"run {record.run_id}'s cumulative diff is recorded for its first attempt with a diff; "
            f'ask attempt {attempt} with view "step"'
        )
    if f.cumulative is None:
        raise InvalidState(
            f"run {record.run_id} has no cumulative diff (state {record.manifest.state.value}); "
            'view "step" shows what it changed',
            data={"state": record.manifest.state.value},
        )
    return f.cumulative, "cumulative"


def headline_attempt(m: RunManifest) -> int | None:
    if m.cloud and m.cloud.attempt_status:
        for a in m.cloud.attempt_status:
            if a.diff is not None:
                return a.attempt
    return None


def evidence_to_apply(
    record: RunRecord, evidence: DiffEvidence, attempt: int | None, runs: Mapping[str, RunRecord]
) -> tuple[DiffEvidence, AppliedView | None]:
    """What co/apply applies for `record` (see the module's doc) and which view it is (None for
    a run that is not a follow-up), or a refusal saying why. Nothing is recorded here: the view
    goes into the manifest only when an apply writes something."""
    carrier = applied_with(record, runs)
    if carrier is not None and carrier is not record:
        raise ApplyRefused(
            f"run {record.run_id}'s change was already applied as part of its follow-up {carrier.run_id} "
            "(applying a follow-up applies its parents' changes too); refusing to apply it twice"
        )
    f = record.manifest.follow_up
    if f is None:
        return evidence, None
    parent = runs.get(record.manifest.parent_run_id or "")
    if f.includes_parent and parent is not None:
        if applied_with(parent, runs) is not None:
            return evidence, "step"  # the parent's change is in the workspace already
        for ancestor in chain(parent, runs)[1:]:
            if applied_with(ancestor, runs) is not None:
                raise ApplyRefused(
                    f"run {ancestor.run_id} (an earlier run of this chain) was applied but run {parent.run_id}, "
                    f"the parent of {record.run_id}, was not: apply {parent.run_id} first (it applies its own "
                    "step), then this run"
                )
    cumulative, _ = view_evidence(record, evidence, attempt, "cumulative")
    return cumulative, "cumulative"
