"""The run manifest: one versioned JSON file per run, written atomically at every change.

Layout: `<runs.root>/<taskId>/<runId>/manifest.json`, beside it the patch files.
Fields added later are nullable with defaults, so older manifests keep loading.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from .protocol import (
    ApplyStrategy,
    CloudEnv,
    Fallback,
    FileStat,
    Issue,
    Mode,
    RequestedMode,
    RunState,
)

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(iso: str) -> datetime:
    """A manifest timestamp (`utc_now`'s form, "Z" suffix) as an aware datetime."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


_last_id_us = 0


def new_run_id() -> str:
    """Sortable by creation time, strictly increasing within a process (newest-first listing is a
    reverse sort of ids); the random suffix keeps two processes apart."""
    global _last_id_us
    _last_id_us = max(time.time_ns() // 1000, _last_id_us + 1)
    seconds, micros = divmod(_last_id_us, 1_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-{secrets.token_hex(3)}"


class Model(BaseModel):
    # extra="allow": fields a newer version wrote survive a rewrite by this one.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Transition(Model):
    state: RunState
    at: str
    message: str = ""


class ExecutorInfo(Model):
    kind: Literal["local", "cloud"] = "local"
    argv: list[str] = Field(default_factory=list)
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    scratch_path: str | None = None
    pid: int | None = None


class TokenUsage(Model):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0


class CodexRunInfo(Model):
    """What a Codex agent (`codex exec --json`) reported during a local run."""

    cli_version: str | None = None  # `codex --version`, e.g. "codex-cli 0.169.0"
    thread_id: str | None = None
    final_message: str | None = None  # the last agent_message
    usage: TokenUsage = Field(default_factory=TokenUsage)  # summed over the run's turns
    commands_run: int = 0
    files_changed: int = 0  # distinct paths of completed file changes
    warnings: list[str] = Field(default_factory=list)  # error items (they don't fail the run)
    # The full event stream, relative to the runs root, bounded by local.maxOutputBytes.
    events_path: str | None = None
    events_truncated: bool = False


class DiffEvidence(Model):
    patch_path: str
    sha256: str
    bytes: int
    files: list[FileStat] = Field(default_factory=list)
    additions: int = 0
    deletions: int = 0
    over_budget: bool = False
    # Set when the patch cannot be parsed or is unsafe; co/diff and co/apply then refuse it.
    problem: str | None = None


class ApplyOutcome(Model):
    """The last co/apply or co/reject of the run (dry runs are not recorded)."""

    strategy: ApplyStrategy | None = None
    applied: bool = False
    rejected: bool = False
    attempt: int | None = None
    paths: list[str] = Field(default_factory=list)
    reason: str | None = None
    forced: bool = False
    at: str
    # applied | partial | conflicts | refused | declined | failed (protocol.ApplyResult.outcome)
    outcome: str | None = None
    on_conflict: str | None = None
    skipped_paths: list[str] = Field(default_factory=list)
    conflict_paths: list[str] = Field(default_factory=list)
    remaining: list[str] = Field(default_factory=list)  # files with hunks not applied yet
    hunks: dict[str, list[int]] = Field(default_factory=dict)  # what this apply wrote: path -> hunk numbers


class ApplyIntent(Model):
    """Written before an apply touches the first file, cleared when it ends. Found set by a
    later server (and nobody holding the run's apply lock), it means an apply was cut short:
    the pre-images in `<run dir>/apply-preimages` can restore the files it may have changed."""

    strategy: ApplyStrategy
    attempt: int | None = None
    paths: list[str] = Field(default_factory=list)
    pid: int
    started_at: str


class CloudAttempt(Model):
    attempt: int
    turn_id: str | None = None
    status: str | None = None
    diff: DiffEvidence | None = None
    error: str | None = None
    placement: int | None = None
    # The assistant's messages and a one-line worklog summary (None: the adapter cannot read them).
    messages: list[str] | None = None
    worklog: str | None = None


class StartingDiffInfo(Model):
    """The local changes a cloud task started from (startFromLocalChanges); never the text."""

    sha256: str
    bytes: int
    files: int = 0
    additions: int = 0
    deletions: int = 0
    base: str = ""  # origin/<branch>, or HEAD
    unpushed_commits: int = 0


class CloudError(Model):
    code: str
    message: str
    at: str
    http_status: int | None = None


class CloudInfo(Model):
    adapter: str | None = None
    task_id: str | None = None
    task_url: str | None = None
    env_id: str | None = None
    branch: str | None = None
    attempts: int | None = None
    status: str | None = None
    attempt_status: list[CloudAttempt] = Field(default_factory=list)
    poll_count: int = 0
    retries: int = 0
    last_error: CloudError | None = None
    created_at: str | None = None
    last_polled_at: str | None = None
    completed_at: str | None = None
    env: CloudEnv | None = None  # the environment chosen at launch, and why
    warnings: list[Issue] = Field(default_factory=list)
    start_from_local_changes: bool = False
    starting_diff: StartingDiffInfo | None = None
    # Consecutive polls whose answer said nothing about the task's state (reset when one does).
    status_unreadable_polls: int = 0

    def answers(self) -> list[dict[str, Any]]:
        """Each attempt's answer, as `co/runUpdate.answers` (wire JSON)."""
        return [
            {
                "attempt": a.attempt,
                "status": a.status,
                "messages": list(a.messages or []),
                "worklog": a.worklog,
                "hasDiff": a.diff is not None,
                "error": a.error,
            }
            for a in self.attempt_status
        ]


AppliedView = Literal["step", "cumulative"]


class FollowUpInfo(Model):
    """A follow-up run: where it started and what applying it does. Its `diff` (and a cloud
    run's attempt diffs) is the step: what this follow-up changed on top of its parent's
    result; `cumulative` is the parent's cumulative change plus the step, against the
    workspace the follow-up started from (docs/protocol.md, co/followUp)."""

    # False when the parent was already applied when the follow-up started: the workspace had
    # the parent's change, so the cumulative diff is the step alone.
    includes_parent: bool = True
    # The parent's cumulative change the follow-up started from (`parent.diff` in the run dir).
    starting_patch: DiffEvidence | None = None
    cumulative: DiffEvidence | None = None
    # Codex: the parent's thread this follow-up resumed (`codex exec resume <id>`); None when a
    # fresh agent ran.
    resumed_thread_id: str | None = None
    # Which diff co/apply applied: the cumulative change, or the step alone (the parent's change
    # was in the workspace already).
    applied_view: AppliedView | None = None


class RunManifest(Model):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    task_id: str
    prompt: str
    workspace: str
    requested_mode: RequestedMode
    selected_mode: Mode
    routing_reason: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    fallback: Fallback | None = None
    state: RunState
    failure_reason: str | None = None
    error_code: str | None = None
    created_at: str
    updated_at: str
    # The server process driving the run (informational: liveness is the flock on owner.lock
    # beside the manifest, which a live driver holds and the kernel drops when it dies).
    owner_pid: int | None = None
    # The workspace's HEAD when the run was created (None: no commit yet, not a repository, or a
    # manifest older than this field): the base the apply dry run measures "HEAD moved" against.
    workspace_head: str | None = None
    transitions: list[Transition] = Field(default_factory=list)
    executor: ExecutorInfo = Field(default_factory=ExecutorInfo)
    diff: DiffEvidence | None = None
    apply: ApplyOutcome | None = None
    # Every part of the diff applied so far: path -> its hunk numbers (1-based; [] for a file
    # without hunks: binary, rename or mode only). A part listed here is never applied again.
    applied_parts: dict[str, list[int]] = Field(default_factory=dict)
    applying: ApplyIntent | None = None
    cloud: CloudInfo | None = None
    codex: CodexRunInfo | None = None
    # A follow-up (co/followUp): the run it continues and the first run of the chain.
    parent_run_id: str | None = None
    root_run_id: str | None = None
    follow_up: FollowUpInfo | None = None

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via temp file + fsync + rename so a crash leaves the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ManifestStore:
    """Reads and writes manifests under one runs root."""

    def __init__(self, root: Path):
        self.root = root
        self._root_ready = False

    def _prepare_root(self) -> None:
        # A `*` .gitignore keeps run records out of `git status` and out of scratch copies.
        if not self._root_ready:
            self.root.mkdir(parents=True, exist_ok=True)
            ignore = self.root / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# co-sidecar run records\n*\n")
            self._root_ready = True

    def run_dir(self, task_id: str, run_id: str) -> Path:
        return self.root / task_id / run_id

    def path_for(self, manifest: RunManifest) -> Path:
        return self.run_dir(manifest.task_id, manifest.run_id) / MANIFEST_NAME

    def save(self, manifest: RunManifest) -> Path:
        manifest.updated_at = utc_now()
        self._prepare_root()
        path = self.path_for(manifest)
        atomic_write_bytes(path, (json.dumps(manifest.wire(), indent=2) + "\n").encode())
        return path

    def load_all(self) -> tuple[list[RunManifest], list[tuple[Path, str]]]:
        """Every manifest under the root, and the ones skipped with why (never deleted): any
        file there is input, and one bad file never hides the others."""
        manifests: list[RunManifest] = []
        broken: list[tuple[Path, str]] = []
        if not self.root.is_dir():
            return manifests, broken
        for path in sorted(self.root.glob(f"*/*/{MANIFEST_NAME}")):
            try:
                manifest = load_manifest(path)
            except (OSError, ValueError, ValidationError, RecursionError) as exc:
                broken.append((path, (str(exc).splitlines() or [type(exc).__name__])[0]))
                continue
            if (manifest.task_id, manifest.run_id) != (path.parent.parent.name, path.parent.name):
                # Saving it would write elsewhere (or over another run): not a run of this root.
                broken.append((path, f"names run {manifest.task_id}/{manifest.run_id}, not the directory it is in"))
                continue
            manifests.append(manifest)
        return manifests, broken


def skipped_manifests(root: Path) -> list[tuple[Path, str]]:
    """The manifest files under a runs root that are not loaded, each with the reason (for
    `doctor` and the log)."""
    return ManifestStore(root).load_all()[1]


def load_manifest(path: Path) -> RunManifest:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"not a run manifest: a JSON {type(data).__name__}, not an object")
    version = data.get("schemaVersion", 0)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(f"manifest schemaVersion {version!r} is newer than this server understands")
    return RunManifest.model_validate(data)


def manifest_json_schema() -> dict[str, Any]:
    schema = RunManifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "co-sidecar run manifest"
    return schema
