"""Pydantic models of every co/* request, result and notification.

Wire names are camelCase; Python names are snake_case. Params are validated
here so that a bad field becomes JSON-RPC -32602 naming that field.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from pydantic.alias_generators import to_camel

from .registry import REQUESTS


class Wire(BaseModel):
    """Base for wire models: camelCase aliases, populate by either name."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class Params(Wire):
    """Base of every co/* request's params: strict JSON types at the boundary. A string is
    never a bool or a number (`accept: "yes"` is refused, only `true` accepts), a number is
    never a string, and an integer field takes no float. `handlers.parse_params` validates
    the wire JSON in pydantic's JSON mode, where enum and literal fields take their values."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True)


class RunState(StrEnum):
    QUEUED = "queued"
    ROUTING = "routing"
    LAUNCHING = "launching"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    APPLIED = "applied"
    REJECTED = "rejected"
    # Part of the diff applied (a selection, or the clean files with onConflict: skip); the
    # rest can be applied later (never twice) or rejected.
    PARTIALLY_APPLIED = "partially_applied"


# States after which the executor is done (the run may still be applied or rejected).
FINISHED_STATES = frozenset(
    {
        RunState.SUCCEEDED,
        RunState.FAILED,
        RunState.CANCELLED,
        RunState.TIMED_OUT,
        RunState.APPLIED,
        RunState.REJECTED,
        RunState.PARTIALLY_APPLIED,
    }
)

# States a run can be followed up from (co/followUp): it has a result to build on.
FOLLOWABLE_STATES = frozenset({RunState.SUCCEEDED, RunState.APPLIED, RunState.PARTIALLY_APPLIED})

RequestedMode = Literal["auto", "local", "cloud"]
Mode = Literal["local", "cloud"]
FileStatus = Literal["added", "modified", "deleted", "renamed", "binary"]
ApplyStrategy = Literal["client", "git"]
OnConflict = Literal["refuse", "skip", "markers"]
# What one apply did, for the run (ApplyResult.outcome and the manifest's apply.outcome).
ApplyOutcomeKind = Literal["applied", "partial", "conflicts", "refused", "declined", "failed", "dry_run"]
# What happens (dry run) or happened to one file of the selection.
FileApplyOutcome = Literal["clean", "merged", "conflict", "skipped", "already_applied"]


class CloudParams(Params):
    env_id: str | None = Field(default=None, description="an environment id or label (case-insensitive); none: detected")
    branch: str | None = None
    attempts: int = Field(default=1, ge=1, le=4)
    start_from_local_changes: bool | None = Field(
        default=None,
        description="start the task from your uncommitted changes and unpushed commits "
        "(default: cloud.startFromLocalChanges)",
    )


EnvSource = Literal["configured", "label", "detected_by_repo", "only_one", "pinned", "most_used"]


class CloudEnv(Wire):
    """The Codex Cloud environment a cloud run uses, and why it was chosen."""

    id: str
    label: str | None = None
    source: EnvSource = Field(
        description="configured (an id), label, detected_by_repo, only_one, pinned or most_used"
    )
    reason: str = ""


class LaunchParams(Params):
    prompt: str = Field(min_length=1)
    mode: RequestedMode = "auto"
    task_id: str = Field(default="adhoc", min_length=1, max_length=128)
    metadata: dict[str, Any] = Field(default_factory=dict)
    cloud: CloudParams = Field(default_factory=CloudParams)
    workspace_folder: str | None = None
    work_done_token: str | int | None = None

    @field_validator("task_id")
    @classmethod
    def _safe_task_id(cls, value: str) -> str:
        # The task id names a directory under runs.root: keep it a single plain segment.
        if value in {".", ".."} or any(c in value for c in "/\\\0") or value.startswith("."):
            raise ValueError("must be a plain name: no '/', '\\', NUL or leading '.'")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if "\0" in value:
            raise ValueError("must not contain NUL")
        return value


RouteParams = LaunchParams


class RunIdParams(Params):
    run_id: str = Field(min_length=1)


DEFAULT_LIST_LIMIT = 100


class ListParams(Params):
    state: RunState | None = None
    task_id: str | None = None
    root_run_id: str | None = Field(default=None, description="only this run and its follow-ups")
    # A page, newest first: a picker never wants thousands of rows; `total` says how many matched.
    limit: int | None = Field(default=None, ge=1, le=10_000, description=f"default {DEFAULT_LIST_LIMIT}")


_FILES_DOC = "only these files of the patch (new paths); none: every file not applied yet"
_HUNKS_DOC = "path -> 1-based hunk numbers (co/diff `hunks`): only these hunks of that file"
DiffView = Literal["step", "cumulative"]


class DiffParams(Params):
    run_id: str = Field(min_length=1)
    attempt: int | None = Field(default=None, ge=1, le=4)
    files: list[str] | None = Field(default=None, description=_FILES_DOC)
    hunks: dict[str, list[int]] | None = Field(default=None, description=_HUNKS_DOC)
    view: DiffView | None = Field(
        default=None,
        description="a follow-up's diff: `step` (what this follow-up changed) or `cumulative` "
        "(what applying it does: its parent's result and the step; the default)",
    )


class FollowUpParams(Params):
    run_id: str = Field(min_length=1, description="the run to continue (succeeded or applied)")
    prompt: str = Field(min_length=1)
    work_done_token: str | int | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, value: str) -> str:
        return LaunchParams._prompt_has_text(value)


class ApplyParams(Params):
    run_id: str = Field(min_length=1)
    accept: bool = False
    attempt: int | None = Field(default=None, ge=1, le=4)
    strategy: ApplyStrategy = "client"
    force: bool = False
    allow_external_symlinks: StrictBool = Field(
        default=False,
        description="allow, for this apply only, symlinks the patch creates that point outside the workspace",
    )
    restore: StrictBool = Field(
        default=False,
        description="put back the files an interrupted apply may have changed (from their pre-images); "
        "needs no accept",
    )
    dry_run: StrictBool = Field(default=False, description="say per file what would happen; write nothing, record nothing")
    on_conflict: OnConflict = Field(
        default="refuse",
        description="refuse: apply nothing if any file conflicts; skip: apply the clean files, leave the rest; "
        "markers: write git's conflict markers (strategy git only)",
    )
    files: list[str] | None = Field(default=None, description=_FILES_DOC)
    hunks: dict[str, list[int]] | None = Field(default=None, description=_HUNKS_DOC)


class PruneParams(Params):
    older_than_days: float | None = Field(default=None, ge=0, description="remove finished runs not updated for this many days")
    keep: int | None = Field(default=None, ge=0, description="keep this many newest finished runs; remove the rest")
    dry_run: bool = Field(default=False, description="say what would be removed; remove nothing")
    workspace_folder: str | None = None


class Issue(Wire):
    """One preflight problem: a stable code and a sentence for people."""

    code: str
    message: str
    fix: str | None = None


class Fallback(Wire):
    reason: str
    issues: list[Issue] = Field(default_factory=list)
    at: str | None = None


class RouteResult(Wire):
    mode: Mode
    requested_mode: RequestedMode
    reason: str
    issues: list[Issue] = Field(default_factory=list)
    fallback: Fallback | None = None
    denied: bool = False
    # Cloud: the environment and branch the task would use, and what deserves a look but
    # does not stop it (e.g. cloud_branch_unpushed).
    cloud_env: CloudEnv | None = None
    cloud_branch: str | None = None
    warnings: list[Issue] = Field(default_factory=list)


class LaunchResult(Wire):
    run_id: str
    task_id: str
    mode: Mode
    state: RunState
    reason: str
    fallback: Fallback | None = None
    cloud_env: CloudEnv | None = None
    # Problems that did not stop the run: settings an untrusted workspace's file may not set
    # (ignored, with how to trust it), unknown keys with the nearest valid one, cloud warnings.
    warnings: list[Issue] = Field(default_factory=list)


class FileStat(Wire):
    path: str
    old_path: str | None = None
    status: FileStatus
    additions: int = 0
    deletions: int = 0


class Conflict(Wire):
    path: str
    reason: str


class DiffBudget(Wire):
    """The diff's size against the configured budget (diff.maxFiles, diff.maxLines, diff.maxPatchBytes)."""

    files: int
    lines: int
    bytes: int
    max_files: int
    max_lines: int
    max_bytes: int


class HunkStat(Wire):
    """One hunk of a file of the patch: what a selection names (`hunks: {path: [number]}`)."""

    path: str
    number: int = Field(description="1-based, in the file's order in the patch")
    header: str = Field(description="its @@ line as in the patch")
    additions: int = 0
    deletions: int = 0
    applied: bool = Field(default=False, description="applied by an earlier co/apply of this run")
class DiffStats(Wire):
    """A diff's size: files changed, lines added and deleted."""

    files: int
    additions: int
    deletions: int


class DiffResult(Wire):
    run_id: str
    attempt: int | None = None
    view: DiffView | None = Field(default=None, description="a follow-up's: which diff this is")
    partial: bool = Field(default=False, description="the run is still going: the scratch's diff so far")
    patch: str
    files: list[FileStat]
    edit: dict[str, Any]
    conflicts: list[Conflict] = Field(default_factory=list)
    over_budget: bool = False
    budget: DiffBudget
    hunks: list[HunkStat] = Field(default_factory=list, description="every hunk of the run's patch")
    applied_paths: list[str] = Field(default_factory=list, description="files applied (in part) by earlier co/apply calls")


class HunkOutcome(Wire):
    number: int
    line: int = Field(description="the line it starts at in the run's base")
    outcome: Literal["clean", "conflict", "already_applied"]
    reason: str | None = None


class ApplyFile(Wire):
    """One file of a co/apply: what would happen (dry run) or happened to it."""

    path: str
    old_path: str | None = None
    status: FileStatus
    outcome: FileApplyOutcome
    reason: str | None = None
    hunks: list[HunkOutcome] = Field(default_factory=list)
    written: bool = Field(default=False, description="this apply changed it in the workspace")


class WorkspaceDrift(Wire):
    """How the workspace moved since the run's base."""

    head_moved: bool | None = Field(default=None, description="None: cannot tell (no git, no reflog)")
    base_head: str | None = None
    head: str | None = None
    commits_since: int | None = None
    edited: list[str] = Field(default_factory=list, description="files of the patch edited since the base")
    deleted: list[str] = Field(default_factory=list)
    moved: dict[str, str] = Field(default_factory=dict, description="old path -> where its base content is now")


class ApplyResult(Wire):
    applied: bool
    strategy: ApplyStrategy
    paths: list[str] = Field(default_factory=list)
    failure_reason: str | None = None
    conflicts: list[Conflict] = Field(default_factory=list)
    restored: list[str] = Field(default_factory=list, description="files put back (restore, or a failed apply)")
    outcome: ApplyOutcomeKind | None = Field(
        default=None,
        description="applied: all asked, cleanly; partial: some of the run is left (skippedPaths, remaining); "
        "conflicts: refused for conflicts, or applied with markers (onConflict markers); refused; "
        "declined (by the client); failed (restored); dry_run",
    )
    dry_run: bool = False
    files: list[ApplyFile] = Field(default_factory=list)
    skipped_paths: list[str] = Field(default_factory=list, description="asked, not applied (conflict, capability, ...)")
    conflict_paths: list[str] = Field(default_factory=list)
    remaining: list[str] = Field(default_factory=list, description="files of the run with hunks not applied yet")
    workspace: WorkspaceDrift | None = None
    over_budget: bool = False


class AgentFileChange(Wire):
    """A file an agent step reports changed (codex's file_change item); not a patch's file
    (that is `diffs.FileChange`, parsed from the patch itself)."""

    path: str  # relative to the workspace when it is inside it
    kind: str  # "add" | "update" | "delete" (codex's words)


class AgentEvent(Wire):
    """One step of a Codex agent (`codex exec --json`), as `co/runUpdate.event`.

    `kind` is the item type for item events (command_execution, file_change, agent_message,
    reasoning, mcp_tool_call, web_search, todo_list, error, or any newer type as codex names
    it) and the event type otherwise (thread.started, turn.started, turn.completed,
    turn.failed, error). `type` is codex's event type (item.started, item.updated, ...)."""

    kind: str = Field(description="item type (command_execution, file_change, ...) or event type")
    type: str = Field(description="codex's event type: item.started, item.completed, turn.failed, ...")
    item_id: str | None = Field(default=None, description="codex's item id: the same across an item's events")
    status: str | None = Field(default=None, description="in_progress, completed, failed, declined (codex's words)")
    command: str | None = Field(default=None, description="command_execution: the command, without codex's shell wrapper")
    exit_code: int | None = Field(default=None, description="command_execution: its exit code once completed")
    files: list[AgentFileChange] | None = Field(default=None, description="file_change: the paths and how each changed")
    text: str | None = Field(default=None, description="agent message, reasoning, warning, failure, plan or unknown event as text")


class CloudAnswer(Wire):
    """What one attempt of a cloud task said (the assistant's messages and its worklog)."""

    attempt: int
    status: str | None = None
    messages: list[str] = Field(default_factory=list)
    worklog: str | None = None
    has_diff: bool = False
    error: str | None = None


class RunUpdate(Wire):
    """The `co/runUpdate` notification."""

    run_id: str
    task_id: str
    state: RunState
    mode: Mode | None = None
    message: str = ""
    attempt: int | None = None
    poll_count: int = 0
    elapsed_ms: int = 0
    cloud_task_id: str | None = None
    cloud_task_url: str | None = None
    stream: Literal["stdout", "stderr"] | None = None
    error_code: str | None = None
    # Set when the update reports one agent step (local.output = codex-json); `message` is
    # its one-line human form.
    event: AgentEvent | None = None
    # The terminal update of a cloud run: each attempt's answer (assistant messages, worklog).
    answers: list[CloudAnswer] | None = None
    # The run's diff so far (live while a local agent runs; the result once it ended), and its
    # lineage when it is a follow-up.
    diff_stats: DiffStats | None = None
    parent_run_id: str | None = None
    root_run_id: str | None = None


class RunSummary(Wire):
    """One row of `co/list`."""

    run_id: str
    task_id: str
    state: RunState
    mode: Mode
    requested_mode: RequestedMode
    prompt: str
    created_at: str
    updated_at: str
    failure_reason: str | None = None
    cloud_task_url: str | None = None
    parent_run_id: str | None = Field(default=None, description="a follow-up's parent run")
    root_run_id: str | None = Field(default=None, description="a follow-up's first run (the chain's root)")
    diff_stats: DiffStats | None = None


class ListResult(Wire):
    runs: list[RunSummary]
    total: int = 0


class PruneResult(Wire):
    """Result of `co/prune`: the runs removed (or that would be, with `dryRun`)."""

    dry_run: bool
    removed: list[RunSummary]
    kept: int = Field(description="finished runs left in the workspace")
    skipped: list[str] = Field(default_factory=list, description="runs chosen but left alone, with why")
    bytes_freed: int = 0


class RunStateResult(Wire):
    """Result of `co/cancel` and `co/reject`."""

    run_id: str
    state: RunState


class DoctorParams(Params):
    workspace_folder: str | None = None


class CanaryParams(Params):
    workspace_folder: str | None = None
    emulator: bool = False


class CanaryPhase(Wire):
    name: Literal["preflight", "create", "poll", "diff", "apply_check"]
    ok: bool
    duration_ms: int
    detail: str = ""


class CanaryResult(Wire):
    """`co/canary` and `co-sidecar canary --format json`: each phase of one minimal cloud task."""

    ok: bool = True
    adapter: str = ""
    base_url: str = ""
    task_id: str | None = None
    task_url: str | None = None
    phases: list[CanaryPhase] = Field(default_factory=list)


class DoctorCheck(Wire):
    name: str
    ok: bool
    message: str
    fix: str | None = None
    code: str | None = None


class ModeReadiness(Wire):
    ok: bool
    issues: list[Issue] = Field(default_factory=list)


class CodexCliInfo(Wire):
    """The Codex CLI doctor found (`codex` on PATH, or cloud.codexCommand)."""

    path: str | None = None
    version: str | None = None  # what `codex --version` printed, e.g. "codex-cli 0.169.0"
    signed_in: bool | None = None  # `codex login status`; None when it could not tell
    sign_in_detail: str = ""
    # Whether local runs use it: local.agentCommand unset and codex on PATH.
    local_default: bool = False
    exec_args: list[str] = Field(default_factory=list)  # the exec form for this version


class DoctorResult(Wire):
    checks: list[DoctorCheck]
    fallback_policy: Literal["allow", "deny"]
    default_mode: Mode
    local: ModeReadiness
    cloud: ModeReadiness
    codex: CodexCliInfo | None = None


# Each co/* request's params model, from the registry; the fuzzers (tests and
# scripts/reliability.py) draw their fields from here so they cannot drift from the models.
REQUEST_PARAMS: dict[str, type[Params]] = {r.method: globals()[r.params] for r in REQUESTS}


def param_names(model: type[BaseModel]) -> list[str]:
    """The wire (camelCase) names of a model's fields."""
    return [field.alias or to_camel(name) for name, field in model.model_fields.items()]
