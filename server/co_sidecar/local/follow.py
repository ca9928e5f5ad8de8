"""A local follow-up's scratch and agent: start from the parent's result, resume Codex's thread.

The scratch is acquired as for any run (base commit = the user's workspace), then the parent's
cumulative patch is applied to it and committed as a second base. The agent's captured patch
(against that second base) is the step; the same capture against the first base is the
cumulative change (see followup.py).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from ..errors import RunErrorCode, WorkspaceError
from .agent import PROMPT_PLACEHOLDER, AgentPlan, is_codex
from .pool import SEALED, Lease, _prepare_agent_repo, _run, capture_patch, seal_snapshot, sealed_env
from .scratch import BASE_COMMIT, Scratch, _text

FOLLOW_UP_MESSAGE = "co-sidecar follow-up base: the parent run's result"
# Codex thread ids are UUIDs; anything else (one starting with "-" above all) is not passed on.
_THREAD_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")


def resume_template(plan: AgentPlan, thread_id: str | None) -> list[str] | None:
    """`codex exec [options] resume <thread_id> -- {prompt}`: the plan's codex exec argv with the
    thread to resume; None when the agent is not `codex exec` with a JSON stream, the template
    has no {prompt}, or the id is not a plain token. Verified with codex-cli 0.169.0
    (`codex exec resume [OPTIONS] [SESSION_ID] [PROMPT]`; the exec options before `resume`
    still apply: tests/test_follow_up_codex.py)."""
    t = plan.template
    if (
        thread_id is None
        or not _THREAD_ID.fullmatch(thread_id)
        or plan.output != "codex-json"
        or len(t) < 2
        or not is_codex(t[0])
        or t[1] != "exec"
        or PROMPT_PLACEHOLDER not in t
    ):
        return None
    at = t.index(PROMPT_PLACEHOLDER)
    if at > 0 and t[at - 1] == "--":
        at -= 1
    return [*t[:at], "resume", thread_id, *t[at:]]


def resumed_plan(plan: AgentPlan, thread_id: str | None) -> tuple[AgentPlan, str | None]:
    """The plan to run and the thread it resumes (None: a fresh agent)."""
    template = resume_template(plan, thread_id)
    if template is None:
        return plan, None
    return dataclasses.replace(plan, template=template), thread_id


def start_from(lease: Lease, patch: bytes) -> str:
    """Apply the parent's cumulative `patch` in the leased scratch and commit it as the second
    base; the lease's scratch moves to it. Returns the first base (the user's workspace), the
    base of the cumulative diff. Blocking."""
    scratch = lease.scratch
    first = scratch.base
    if not patch:
        return first
    run = lease.git
    argv: list[str] = ["apply", "--index", "--binary", "--whitespace=nowarn"]
    if scratch.prefix:
        argv.append(f"--directory={scratch.prefix.rstrip('/')}")
    try:
        run([*argv, "-"], input=patch)
    except WorkspaceError as exc:
        raise WorkspaceError(
            "the parent run's result does not apply to the workspace as it is now (files it changed "
            f"were changed since): {exc.message}",
            category=RunErrorCode.LOCAL_WORKSPACE,
        ) from exc
    tree = _text(run(["write-tree"]))
    env = sealed_env(lease.slot.gitdir, lease.slot.work)
    env.update(
        GIT_AUTHOR_NAME="co-sidecar", GIT_AUTHOR_EMAIL="co-sidecar@localhost",
        GIT_COMMITTER_NAME="co-sidecar", GIT_COMMITTER_EMAIL="co-sidecar@localhost",
    )  # fmt: skip
    second = _text(
        _run([*SEALED, *BASE_COMMIT, "commit-tree", tree, "-p", first, "-m", FOLLOW_UP_MESSAGE], lease.slot.work, env)
    )
    (lease.slot.gitdir / "HEAD").write_text(second + "\n")
    # The slot is reset to (and the next run switches from) the second base.
    lease.slot.write_meta(base=second)
    _prepare_agent_repo(lease.slot, second, lease.repo)
    lease.scratch = dataclasses.replace(scratch, base=second, sealed=seal_snapshot(lease.slot.gitdir))
    return first


def capture_cumulative(scratch: Scratch, first_base: str) -> bytes:
    """The scratch's change against the first base: the parent's change and the step. Blocking."""
    return capture_patch(dataclasses.replace(scratch, base=first_base))


__all__: Sequence[str] = ("capture_cumulative", "resume_template", "resumed_plan", "start_from")
