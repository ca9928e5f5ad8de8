"""Errors the core raises, each with a stable JSON-RPC code and a string category.

The core never imports pygls: the server maps `CoError` to a JSON-RPC error
with `code`, `message` and `data = {"category": ...}`. docs/errors.md lists them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

INVALID_PARAMS = -32602

# Application codes, in the JSON-RPC range reserved for implementations.
RUN_NOT_FOUND = -32001
INVALID_STATE = -32007  # not -32002: LSP uses that for ServerNotInitialized
APPLY_REFUSED = -32003
PREFLIGHT_FAILED = -32004
PATCH_REFUSED = -32005
WORKSPACE_ERROR = -32006
CLOUD_ERROR = -32010


class _Documented(StrEnum):
    """A wire string with a one-line doc (docs/errors.md and the clients' lists are generated
    from these enums; the wire value is the member's value, unchanged)."""

    doc: str

    def __new__(cls, value: str, doc: str) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.doc = doc
        return member


class RunErrorCode(_Documented):
    """`errorCode` in manifests and co/runUpdate (and `data.category` of JSON-RPC errors)."""

    outcome: str

    def __new__(cls, value: str, outcome: str, doc: str) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.doc, member.outcome = doc, outcome
        return member

    CLOUD_AUTH = "cloud_auth", "failed fast", "401/403 from Codex Cloud, or the CLI is not signed in"
    CLOUD_NOT_FOUND = "cloud_not_found", "failed fast", "404: the task (or attempt) does not exist"
    CLOUD_RATE_LIMITED = "cloud_rate_limited", "retried, then failed", "429; Retry-After is honoured"
    CLOUD_UNAVAILABLE = "cloud_unavailable", "retried, then failed", "5xx, timeouts, connection resets"
    CLOUD_PROTOCOL = "cloud_protocol", "failed fast", "a response body that cannot be parsed"
    CLOUD_TIMEOUT = "cloud_timeout", "timed_out", "the task did not finish within cloud.poll.timeoutSeconds"
    CLOUD_TASK_FAILED = "cloud_task_failed", "failed", "the task finished with an error on its turn"
    CLOUD_PREFLIGHT = "cloud_preflight", "failed fast", "cloud preflight failed and the fallback policy is deny, or an unknown environment"
    LOCAL_AGENT_FAILED = "local_agent_failed", "failed", "the agent exited non-zero; the reason holds its stderr tail"
    LOCAL_TIMEOUT = "local_timeout", "timed_out", "the agent ran past local.timeoutSeconds; its process group was killed"
    LOCAL_AGENT_MISSING = "local_agent_missing", "failed fast", "no local.agentCommand and no codex on PATH, or argv[0] cannot start (ENOENT, EACCES, ENOEXEC)"
    LOCAL_PROMPT_TOO_LARGE = "local_prompt_too_large", "failed fast", "the prompt does not fit one argument (E2BIG, 128 KiB on Linux) and the agent takes it only as {prompt}: use {promptFile}"
    LOCAL_SPAWN_FAILED = "local_spawn_failed", "failed fast", "the system refused to start the agent (EMFILE, ENOMEM, EAGAIN...); the reason names the errno"
    SYSTEM_ERROR = "system_error", "failed", "the system refused a resource mid-run (file descriptors, disk, permissions); the reason names the errno"
    LOCAL_NOT_GIT_REPO = "local_not_git_repo", "failed fast", "the workspace is not inside a git repository"
    LOCAL_NO_COMMITS = "local_no_commits", "failed fast", "the repository has no commit to make a scratch worktree from"
    LOCAL_GIT_MISSING = "local_git_missing", "failed fast", "git is not on PATH"
    LOCAL_WORKSPACE = "local_workspace", "failed", "another git error while making or reading the scratch copy"
    LOCAL_PATCH_TOO_LARGE = "local_patch_too_large", "failed", "the agent's change is over diff.hardMaxPatchBytes as a patch: reading it stopped there, nothing captured"
    INTERRUPTED = "interrupted", "failed", "the server stopped while the run was in progress (found at the next start)"
    CANCELLED = "cancelled", "cancelled", "co/cancel, a $/progress cancel, or server shutdown"
    INTERNAL = "internal", "failed", "a bug in an executor; the server stays up"


class ErrorCategory(_Documented):
    """`error.data.category` of a JSON-RPC error that is not a run error code (those are
    `RunErrorCode`: cloud_*, local_not_git_repo, system_error, internal)."""

    INVALID_PARAMS = "invalid_params", "a param is missing, of the wrong JSON type, or not allowed"
    PROMPT_TOO_LARGE = "prompt_too_large", "a prompt over runs.maxPromptBytes"
    CONFIG = "config", "a configuration file, setting or environment variable is invalid (data.file or data.key)"
    RUN_NOT_FOUND = "run_not_found", "no run with that runId"
    INVALID_STATE = "invalid_state", "the run is not in a state that allows this"
    APPLY_REFUSED = "apply_refused", "no accept: true, or the run was already applied or rejected"
    OVER_BUDGET = "over_budget", "the patch is over the diff budget and force was not given"
    APPLY_INTERRUPTED = "apply_interrupted", "an apply was cut short (the server died): restore its files first (co/apply restore: true)"
    PREFLIGHT = "preflight", "the requested mode cannot run here"
    PATCH_REFUSED = "patch_refused", "the patch is unsafe or changed on disk"
    WORKSPACE = "workspace", "no workspace folder, or it is not usable"
    RUNS_ROOT = "runs_root", "the runs root cannot be written (nothing recorded)"


# What a CoError's category may be: a JSON-RPC category or a run error code.
Category = ErrorCategory | RunErrorCode


class IssueCode(_Documented):
    """`issues[].code` in co/route, a launch's fallback, co/doctor and run warnings. A cloud call
    that fails during preflight (listing environments, doctor's reachability call) gives its
    issue the call's `RunErrorCode` instead (cloud_unavailable, cloud_auth, cloud_protocol...)."""

    CLOUD_DISABLED = "cloud_disabled", "cloud.enabled = false (CO_CLOUD_ENABLED=0): every run routes local"
    CLOUD_ENV_MISSING = "cloud_env_missing", "no environment id (cloud.envId, CODEX_CLOUD_ENV_ID, metadata.cloudEnvId, or the request)"
    CLOUD_CREDENTIALS_MISSING = "cloud_credentials_missing", "no CODEX_CLOUD_TOKEN and no $CODEX_HOME/auth.json (not needed for a loopback emulator)"
    CLOUD_CLI_MISSING = "cloud_cli_missing", "cloud.adapter = cli but the codex CLI is not on PATH"
    CLOUD_AUTH = "cloud_auth", "cloud.adapter = cli and `codex login status` says not signed in (or an API key: codex cloud needs ChatGPT)"
    CLOUD_BRANCH_MISSING = "cloud_branch_missing", "the requested branch is not on origin"
    CLOUD_ENV_UNKNOWN = "cloud_env_unknown", "the requested environment is neither an id nor a label of the account's environments (the message lists them)"
    CLOUD_ENV_AMBIGUOUS = "cloud_env_ambiguous", "the requested label names several environments"
    CLOUD_BRANCH_UNPUSHED = "cloud_branch_unpushed", "a warning, not a failure: the branch has local commits origin lacks, which the cloud task will not see"
    CLOUD_STATUS_UNREADABLE = "cloud_status_unreadable", "a run warning: the cloud task's status could not be read from any field for several polls"
    CONFIG_WARNING = "config_warning", "a configuration key is unknown, misspelt, or ignored (e.g. an untrusted workspace's file)"
    LOCAL_AGENT_MISSING = "local_agent_missing", "no agent command can run"
    LOCAL_AGENT_SIGNED_OUT = "local_agent_signed_out", "co/doctor: the local agent is the Codex CLI, not signed in and no API key (CODEX_API_KEY) set"
    LOCAL_NOT_GIT_REPO = "local_not_git_repo", "the workspace is not a git repository"
    LOCAL_NO_COMMITS = "local_no_commits", "the repository has no commits"
    LOCAL_GIT_MISSING = "local_git_missing", "git is not on PATH"
    WORKSPACE_MISSING = "workspace_missing", "no workspace folder"


# What `issues[].code` may be: a preflight issue, or the run error code of a failed cloud call.
AnyIssueCode = IssueCode | RunErrorCode


def local_error_code(category: Category) -> RunErrorCode:
    """A CoError that stopped a local run before the agent started, as the run's error code:
    local_* codes as they are, any other category prefixed (workspace → local_workspace)."""
    value = category if category.startswith("local_") else f"local_{category}"
    return next((code for code in RunErrorCode if code.value == value), RunErrorCode.LOCAL_WORKSPACE)


class CoError(Exception):
    """An error a client should see as-is."""

    code: int = -32603
    category: Category = RunErrorCode.INTERNAL

    def __init__(self, message: str, *, category: Category | None = None, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if category is not None:
            self.category = category
        self.data = data or {}

    def payload(self) -> dict[str, Any]:
        return {"category": self.category, **self.data}


class InvalidParams(CoError):
    code = INVALID_PARAMS
    category = ErrorCategory.INVALID_PARAMS


class RunNotFound(CoError):
    code = RUN_NOT_FOUND
    category = ErrorCategory.RUN_NOT_FOUND

    def __init__(self, run_id: str):
        super().__init__(f"unknown runId: {run_id!r}", data={"runId": run_id})


class InvalidState(CoError):
    code = INVALID_STATE
    category = ErrorCategory.INVALID_STATE


class ApplyRefused(CoError):
    code = APPLY_REFUSED
    category = ErrorCategory.APPLY_REFUSED


class PreflightFailed(CoError):
    code = PREFLIGHT_FAILED
    category = ErrorCategory.PREFLIGHT


class PatchRefused(CoError):
    """A patch that would write outside the workspace or is otherwise unsafe."""

    code = PATCH_REFUSED
    category = ErrorCategory.PATCH_REFUSED


class WorkspaceError(CoError):
    code = WORKSPACE_ERROR
    category = ErrorCategory.WORKSPACE


# JSON-RPC error codes, as documented in docs/errors.md (generated from these tables).
RPC_CODES: list[tuple[int, str, str]] = [
    (-32700, "parse error", "the message body is not strict JSON (NaN, Infinity and numbers beyond a double or 4,300 digits included; answered with the request's id when it can still be read)"),
    (-32600, "invalid request", "not a JSON-RPC request object, larger than CO_MAX_MESSAGE_BYTES (64 MiB), or nested deeper than 64 levels"),
    (-32601, "method not found", "unknown method or command"),
    (-32002, "server not initialized", "a request before `initialize` (LSP's ServerNotInitialized)"),
    (INVALID_PARAMS, "invalid_params / prompt_too_large / config", "a param is missing or of the wrong JSON type (strict: no \"yes\" for true, no \"1\" for 1), or holds a lone surrogate; prompt_too_large: a prompt over runs.maxPromptBytes; the message names the field (data.field); config: a configuration file or setting is invalid (data.file or data.key)"),
    (-32603, "internal", "a server bug; the run it concerns is failed, the server stays up"),
    (RUN_NOT_FOUND, "run_not_found", "no run with that runId (data.runId)"),
    (INVALID_STATE, "invalid_state", "the run is not in a state that allows this (data.state)"),
    (APPLY_REFUSED, "apply_refused / over_budget / apply_interrupted", "no accept: true, already applied or rejected, being applied (here or by another server), over the diff budget without force, or an interrupted apply to restore first (co/apply restore: true)"),
    (PREFLIGHT_FAILED, "preflight", "the requested mode cannot run here (e.g. no agent command)"),
    (PATCH_REFUSED, "patch_refused", "the patch is unsafe (paths resolving outside the workspace, into .git/ or the runs root, NTFS/HFS aliases of .git, NUL, headers git reads differently, symlinks out without allowExternalSymlinks) or changed on disk"),
    (WORKSPACE_ERROR, "workspace / runs_root / system_error / local_not_git_repo", "no workspace folder or it is not usable; runs_root: the runs root cannot be written (nothing recorded); system_error: out of file descriptors or memory; local_not_git_repo: a local launch outside a git repository (nothing written)"),
    (CLOUD_ERROR, "cloud_*", "a Codex Cloud call failed; data.category is one of the cloud codes below"),
]

