"""Errors the core raises, each with a stable JSON-RPC code and a string category.

The core never imports pygls: the server maps `CoError` to a JSON-RPC error
with `code`, `message` and `data = {"category": ...}`. docs/errors.md lists them.
"""

from __future__ import annotations

from typing import Any

INVALID_PARAMS = -32602

# Application codes, in the JSON-RPC range reserved for implementations.
RUN_NOT_FOUND = -32001
INVALID_STATE = -32007  # not -32002: LSP uses that for ServerNotInitialized
APPLY_REFUSED = -32003
PREFLIGHT_FAILED = -32004
PATCH_REFUSED = -32005
WORKSPACE_ERROR = -32006
CLOUD_ERROR = -32010


class CoError(Exception):
    """An error a client should see as-is."""

    code: int = -32603
    category: str = "internal"

    def __init__(self, message: str, *, category: str | None = None, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if category is not None:
            self.category = category
        self.data = data or {}

    def payload(self) -> dict[str, Any]:
        return {"category": self.category, **self.data}


class InvalidParams(CoError):
    code = INVALID_PARAMS
    category = "invalid_params"


class RunNotFound(CoError):
    code = RUN_NOT_FOUND
    category = "run_not_found"

    def __init__(self, run_id: str):
        super().__init__(f"unknown runId: {run_id!r}", data={"runId": run_id})


class InvalidState(CoError):
    code = INVALID_STATE
    category = "invalid_state"


class ApplyRefused(CoError):
    code = APPLY_REFUSED
    category = "apply_refused"


class PreflightFailed(CoError):
    code = PREFLIGHT_FAILED
    category = "preflight"


class PatchRefused(CoError):
    """A patch that would write outside the workspace or is otherwise unsafe."""

    code = PATCH_REFUSED
    category = "patch_refused"


class WorkspaceError(CoError):
    code = WORKSPACE_ERROR
    category = "workspace"


# JSON-RPC error codes, as documented in docs/errors.md (generated from these tables).
RPC_CODES: list[tuple[int, str, str]] = [
    (-32700, "parse error", "the message body is not strict JSON (NaN, Infinity and numbers beyond a double or 4,300 digits included; answered with the request's id when it can still be read)"),
    (-32600, "invalid request", "not a JSON-RPC request object, larger than CO_MAX_MESSAGE_BYTES (64 MiB), or nested deeper than 64 levels"),
    (-32601, "method not found", "unknown method or command"),
    (-32002, "server not initialized", "a request before `initialize` (LSP's ServerNotInitialized)"),
    (INVALID_PARAMS, "invalid_params / prompt_too_large", "a param is missing or of the wrong JSON type (strict: no \"yes\" for true, no \"1\" for 1), or holds a lone surrogate; prompt_too_large: a prompt over runs.maxPromptBytes; the message names the field (data.field)"),
    (-32603, "internal", "a server bug; the run it concerns is failed, the server stays up"),
    (RUN_NOT_FOUND, "run_not_found", "no run with that runId (data.runId)"),
    (INVALID_STATE, "invalid_state", "the run is not in a state that allows this (data.state)"),
    (APPLY_REFUSED, "apply_refused / over_budget / apply_interrupted", "no accept: true, already applied or rejected, being applied (here or by another server), over the diff budget without force, or an interrupted apply to restore first (co/apply restore: true)"),
    (PREFLIGHT_FAILED, "preflight", "the requested mode cannot run here (e.g. no agent command)"),
    (PATCH_REFUSED, "patch_refused", "the patch is unsafe (paths resolving outside the workspace, into .git/ or the runs root, NTFS/HFS aliases of .git, NUL, headers git reads differently, symlinks out without allowExternalSymlinks) or changed on disk"),
    (WORKSPACE_ERROR, "workspace / runs_root / system_error / local_not_git_repo", "no workspace folder or it is not usable; runs_root: the runs root cannot be written (nothing recorded); system_error: out of file descriptors or memory; local_not_git_repo: a local launch outside a git repository (nothing written)"),
    (CLOUD_ERROR, "cloud_*", "a Codex Cloud call failed; data.category is one of the cloud codes below"),
]

# Run error codes: `errorCode` in manifests and co/runUpdate, `data.category` in JSON-RPC errors.
RUN_ERROR_CODES: list[tuple[str, str, str]] = [
    ("cloud_auth", "failed fast", "401/403 from Codex Cloud, or the CLI is not signed in"),
    ("cloud_not_found", "failed fast", "404: the task (or attempt) does not exist"),
    ("cloud_rate_limited", "retried, then failed", "429; Retry-After is honoured"),
    ("cloud_unavailable", "retried, then failed", "5xx, timeouts, connection resets"),
    ("cloud_protocol", "failed fast", "a response body that cannot be parsed"),
    ("cloud_timeout", "timed_out", "the task did not finish within cloud.poll.timeoutSeconds"),
    ("cloud_task_failed", "failed", "the task finished with an error on its turn"),
    ("cloud_preflight", "failed fast", "cloud preflight failed and the fallback policy is deny, or an unknown environment"),
    ("local_agent_failed", "failed", "the agent exited non-zero; the reason holds its stderr tail"),
    ("local_timeout", "timed_out", "the agent ran past local.timeoutSeconds; its process group was killed"),
    ("local_agent_missing", "failed fast", "no local.agentCommand and no codex on PATH, or argv[0] cannot start (ENOENT, EACCES, ENOEXEC)"),
    ("local_prompt_too_large", "failed fast", "the prompt does not fit one argument (E2BIG, 128 KiB on Linux) and the agent takes it only as {prompt}: use {promptFile}"),
    ("local_spawn_failed", "failed fast", "the system refused to start the agent (EMFILE, ENOMEM, EAGAIN...); the reason names the errno"),
    ("system_error", "failed", "the system refused a resource mid-run (file descriptors, disk, permissions); the reason names the errno"),
    ("local_not_git_repo", "failed fast", "the workspace is not inside a git repository"),
    ("local_no_commits", "failed fast", "the repository has no commit to make a scratch worktree from"),
    ("local_git_missing", "failed fast", "git is not on PATH"),
    ("local_workspace", "failed", "another git error while making or reading the scratch copy"),
    ("local_patch_too_large", "failed", "the agent's change is over diff.hardMaxPatchBytes as a patch: reading it stopped there, nothing captured"),
    ("interrupted", "failed", "the server stopped while the run was in progress (found at the next start)"),
    ("cancelled", "cancelled", "co/cancel, a $/progress cancel, or server shutdown"),
    ("internal", "failed", "a bug in an executor; the server stays up"),
]

# Preflight issue codes: `issues[].code` in co/route, co/launch fallback, co/doctor.
PREFLIGHT_CODES: list[tuple[str, str]] = [
    ("cloud_disabled", "cloud.enabled = false (CO_CLOUD_ENABLED=0): every run routes local"),
    ("cloud_env_missing", "no environment id (cloud.envId, CODEX_CLOUD_ENV_ID, metadata.cloudEnvId, or the request)"),
    ("cloud_credentials_missing", "no CODEX_CLOUD_TOKEN and no $CODEX_HOME/auth.json (not needed for a loopback emulator)"),
    ("cloud_cli_missing", "cloud.adapter = cli but the codex CLI is not on PATH"),
    ("cloud_auth", "cloud.adapter = cli and `codex login status` says not signed in (or an API key: codex cloud needs ChatGPT)"),
    ("cloud_branch_missing", "the requested branch is not on origin"),
    ("cloud_env_unknown", "the requested environment is neither an id nor a label of the account's environments (the message lists them)"),
    ("cloud_env_ambiguous", "the requested label names several environments"),
    ("cloud_branch_unpushed", "a warning, not a failure: the branch has local commits origin lacks, which the cloud task will not see"),
    ("local_agent_missing", "no agent command can run"),
    ("local_agent_signed_out", "co/doctor: the local agent is the Codex CLI, not signed in and no API key (CODEX_API_KEY) set"),
    ("local_not_git_repo", "the workspace is not a git repository"),
    ("local_no_commits", "the repository has no commits"),
    ("local_git_missing", "git is not on PATH"),
    ("workspace_missing", "no workspace folder"),
]
