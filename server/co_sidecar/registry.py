"""The protocol registry: every co/* request and notification, in one table.

Each entry pairs a method with its params and result models (by name, in protocol.py, or
RunManifest in manifest.py), a one-line doc and an example. The server registers its methods
from it, handlers get their params parsed by it, and docgen writes docs/protocol.md, the VS Code
client's TypeScript types and the Neovim plugin's lists from it. To add a method: an entry here,
a handler method of the same name on `handlers.Handlers`, and a test.

Import-light on purpose (no pydantic): server.py reads the method names before `initialize`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Request:
    """A client → server request `co/<name>` (also `workspace/executeCommand` `co.<name>`)."""

    method: str
    doc: str
    params: str
    result: str
    example: dict[str, Any]
    answer: dict[str, Any] | None

    @property
    def name(self) -> str:
        """The handler's name: `co/launch` → `launch`."""
        return self.method.removeprefix("co/")

    def params_model(self) -> Any:
        return model(self.params)

    def result_model(self) -> Any:
        return model(self.result)


@dataclass(frozen=True)
class Notification:
    """A server → client notification."""

    method: str
    doc: str
    params: str
    examples: tuple[dict[str, Any], ...]

    def params_model(self) -> Any:
        return model(self.params)


def model(name: str) -> Any:
    """A wire model by name: protocol.py's, or the manifest for `co/status`."""
    module = importlib.import_module(".manifest" if name == "RunManifest" else ".protocol", __package__)
    return getattr(module, name)


RUN_ID = "20261124T101500123456-a1b2c3"
_EDIT_EXAMPLE = {
    "documentChanges": [
        {
            "textDocument": {"uri": "file:///work/app/README.md", "version": None},
            "edits": [
                {
                    "range": {"start": {"line": 3, "character": 0}, "end": {"line": 3, "character": 0}},
                    "newText": "Run `make test` before pushing.\n",
                    "annotationId": "co-sidecar",
                }
            ],
        },
        {"kind": "create", "uri": "file:///work/app/NOTES.md", "options": {"overwrite": False, "ignoreIfExists": False}, "annotationId": "co-sidecar"},
    ],
    "changeAnnotations": {"co-sidecar": {"label": "co-sidecar: document testing", "needsConfirmation": True}},
}

_LAUNCH = {"prompt": "document testing", "mode": "auto", "taskId": "T-42", "metadata": {"parallel": False}, "cloud": {"envId": "env_123", "attempts": 1}}
REQUESTS: tuple[Request, ...] = (
    Request(
        method="co/route",
        doc="Dry run of the mode policy and preflight: which mode a launch would get and why. Starts nothing.",
        params="RouteParams", result="RouteResult",
        example=_LAUNCH,
        answer={"mode": "local", "requestedMode": "auto", "reason": "configured default mode 'local'", "issues": [], "fallback": None, "denied": False},
    ),
    Request(
        method="co/launch",
        doc="Route and start a run. Answers at once; the run goes on in the background and reports through co/runUpdate and $/progress (on `workDoneToken` if given, else on a token the server creates when the client supports window.workDoneProgress).",
        params="LaunchParams", result="LaunchResult",
        example=_LAUNCH,
        answer={"runId": RUN_ID, "taskId": "T-42", "mode": "local", "state": "launching", "reason": "configured default mode 'local'", "fallback": None},
    ),
    Request(
        method="co/followUp",
        doc="Continue a succeeded, applied or partially applied run: a new run, in the parent's mode, task and cloud environment, that starts from the parent's result and is linked to it (`parentRunId`, `rootRunId` in its manifest, co/list rows and runUpdates). Local: its scratch is the workspace plus the parent's cumulative change (committed as a second base, so its diff is the step); a Codex agent resumes the parent's thread (`codex exec resume <threadId>`), any other agent starts fresh. Cloud: a new task whose starting diff is the parent's cumulative change (the task API has no follow-up turn). co/diff shows the cumulative change by default (`view: \"step\"` for the step) and co/apply applies it once; a run whose change was applied with a follow-up is refused, and a follow-up whose parent was applied applies its step alone. A partially applied parent is followed up from the workspace as it is: the parts the user took are in it, the parts left stay the parent's (apply or reject them later) and are not carried.",
        params="FollowUpParams", result="LaunchResult",
        example={"runId": RUN_ID, "prompt": "now also update the tests"},
        answer={"runId": "20261124T102000654321-d4e5f6", "taskId": "T-42", "mode": "local", "state": "launching", "reason": "explicit mode 'local'", "fallback": None},
    ),
    Request(
        method="co/status",
        doc="One run's full record: its manifest (see docs/manifest.schema.json).",
        params="RunIdParams", result="RunManifest",
        example={"runId": RUN_ID}, answer=None,
    ),
    Request(
        method="co/list",
        doc="Runs of the workspace folders, newest first, optionally filtered: a page of at most `limit` rows (default 100) and the `total` that matched.",
        params="ListParams", result="ListResult",
        example={"state": "succeeded", "limit": 20},
        answer={"runs": [{"runId": RUN_ID, "taskId": "T-42", "state": "succeeded", "mode": "local", "requestedMode": "auto", "prompt": "document testing", "createdAt": "2026-11-24T10:15:00.123Z", "updatedAt": "2026-11-24T10:15:09.456Z", "failureReason": None, "cloudTaskUrl": None}], "total": 1},
    ),
    Request(
        method="co/cancel",
        doc="Cancel a queued or running run: kills the local agent's process group, or stops polling and asks the cloud to cancel (best effort). Waits up to 10 s for the run to stop.",
        params="RunIdParams", result="RunStateResult",
        example={"runId": RUN_ID}, answer={"runId": RUN_ID, "state": "cancelled"},
    ),
    Request(
        method="co/diff",
        doc="The run's patch, per-file stats, a WorkspaceEdit preview (every change annotated with needsConfirmation), conflicts where the workspace no longer matches the diff's base, and the diff budget. Edits for documents open in the client are computed from the client's text and carry its version. The files listed are the ones `git apply` would touch: the patch's headers are read as git reads them (renames in every spelling, copies, modes, symlinks, gitlinks) and `git apply --numstat` must agree; a header line git reads differently, a path that resolves (through symlinks on disk or ones the patch creates) outside the workspace, into `.git` or under the runs root, or a name NTFS/HFS would read as `.git`, refuses the patch (-32005). A symlink the patch creates pointing outside the workspace is listed in `conflicts`. `hunks` lists every hunk of the patch (path, 1-based number, its @@ line, whether an earlier co/apply applied it). With a selection (`files`, `hunks: {path: [number]}`), or once the run is `partially_applied`, `patch`, `files` and `edit` are of the parts asked for that are not applied yet. Built off the event loop: other requests are answered meanwhile. While a local run is still going, the answer is its scratch's diff so far, `partial: true` (nothing to apply yet). For a follow-up, `view` picks the cumulative change (the default: what co/apply applies) or the step (what the follow-up changed).",
        params="DiffParams", result="DiffResult",
        example={"runId": RUN_ID},
        answer={"runId": RUN_ID, "attempt": None, "patch": "diff --git a/README.md b/README.md\n...", "files": [{"path": "README.md", "oldPath": None, "status": "modified", "additions": 1, "deletions": 0}, {"path": "NOTES.md", "oldPath": None, "status": "added", "additions": 0, "deletions": 0}], "edit": _EDIT_EXAMPLE, "conflicts": [], "overBudget": False, "budget": {"files": 2, "lines": 1, "bytes": 412, "maxFiles": 500, "maxLines": 50000, "maxBytes": 50000000}},
    ),
    Request(
        method="co/apply",
        doc="Explicit acceptance. `accept` must be true. Strategy `client` sends workspace/applyEdit to the client and records its answer; `git` runs `git apply` (a --check first, then a 3-way merge when the base moved) in the workspace. The same checks as co/diff refuse unsafe patches; symlinks pointing outside the workspace need `allowExternalSymlinks: true` for this apply. A run is applied at most once, even by two servers on one workspace: apply, restore and reject hold the run's `apply.lock` and re-read its manifest first; a run being applied refuses them (-32003). Before the first file is touched, each file's pre-image is kept in the run directory and an `applying` intent is written to the manifest: if the apply fails, every file it touched is put back (`restored` lists them). If the server dies mid-apply, the next start sends a co/runUpdate naming the files that differ from their pre-images; `{runId, restore: true}` (no `accept` needed) puts them back, and until then co/apply and co/reject are refused (category `apply_interrupted`). Over-budget diffs need `force` (the budget is judged on what this apply takes). `dryRun: true` (no accept needed) writes and records nothing and answers per file (`files`) what would happen: `clean`, `merged` (git: a 3-way merge without conflicts), `conflict` (with each hunk and why: the lines were edited, the file was deleted, or moved and where), `skipped` (binary or a mode change for the client strategy, an edit the client's `workspaceEdit` capabilities cannot take, a path refused, over budget) or `already_applied`; `workspace` says how the workspace moved since the run began (HEAD, files edited, deleted, moved). A conflict never writes markers unless asked: `onConflict` `refuse` (default) applies nothing, `skip` applies the other files and leaves the rest, `markers` (strategy git only) writes git's conflict markers. A selection (`files`, `hunks: {path: [number]}`, numbers from co/diff) applies only those parts; what was applied is recorded (`appliedParts` in the manifest) and the run becomes `partially_applied` until the rest is applied (a later co/apply without a selection takes exactly the rest; a part is never applied twice) or rejected (co/reject). `outcome` (also the manifest's `apply.outcome`): `applied` (all asked, cleanly), `partial` (parts of the run left: `skippedPaths`, `remaining`), `conflicts` (refused for conflicts, or markers written), `refused`, `declined` (the client answered applyEdit with applied: false or an error; its words are in `failureReason`), `failed` (files restored). The client strategy sends only what the client advertises: no `documentChanges` (and no `resourceOperations`) gives a `changes` map, no `changeAnnotationSupport` drops the annotations, and a file to create, rename or delete without that `resourceOperations` kind is skipped, naming the capability. A client that applied only part of the edit (VS Code's refactor preview with items unticked) answers workspace/applyEdit `{applied: false, failureReason: 'co-sidecar: applied only: [...]'}`, the list naming each file it applied by URI (all of it) or as `{uri, edits: [indices of its text edits]}` (some of its hunks: a file's text edits are its hunks, in order): exactly those files and hunks are recorded as applied, and the rest is still offered.",
        params="ApplyParams", result="ApplyResult",
        example={"runId": RUN_ID, "accept": True, "strategy": "client"},
        answer={"applied": True, "strategy": "client", "paths": ["README.md", "NOTES.md"], "failureReason": None, "conflicts": []},
    ),
    Request(
        method="co/reject",
        doc="Record that the user declined a succeeded run's diff, or the rest of a partially_applied one (what was applied stays).",
        params="RunIdParams", result="RunStateResult",
        example={"runId": RUN_ID}, answer={"runId": RUN_ID, "state": "rejected"},
    ),
    Request(
        method="co/prune",
        doc="Remove finished runs (their manifests, patches and event logs) older than `olderThanDays` or beyond the `keep` newest, in one workspace folder. A run still executing, or held by another server (applying, driving), is never removed. `dryRun` lists what would go.",
        params="PruneParams", result="PruneResult",
        example={"olderThanDays": 30, "keep": 20, "dryRun": True},
        answer={"dryRun": True, "removed": [{"runId": RUN_ID, "taskId": "T-42", "state": "rejected", "mode": "local", "requestedMode": "auto", "prompt": "document testing", "createdAt": "2026-10-24T10:15:00.123Z", "updatedAt": "2026-10-24T10:15:09.456Z", "failureReason": None, "cloudTaskUrl": None}], "kept": 20, "skipped": [], "bytesFreed": 18234},
    ),
    Request(
        method="co/doctor",
        doc="Preflight report for both modes: every check, the fix for each failure, the fallback policy in force.",
        params="DoctorParams", result="DoctorResult",
        example={},
        answer={"checks": [{"name": "git", "ok": True, "message": "git found", "fix": None, "code": None}, {"name": "cloud", "ok": False, "message": "no Codex Cloud environment id (detected from the repository's origin once signed in)", "fix": "run `codex login` (it is then detected), or set cloud.envId (an id or a label; or CODEX_CLOUD_ENV_ID), or pass cloud.envId in co/launch", "code": "cloud_env_missing"}], "fallbackPolicy": "allow", "defaultMode": "local", "local": {"ok": True, "issues": []}, "cloud": {"ok": False, "issues": [{"code": "cloud_env_missing", "message": "no Codex Cloud environment id (detected from the repository's origin once signed in)", "fix": "run `codex login` (it is then detected), or set cloud.envId (an id or a label; or CODEX_CLOUD_ENV_ID), or pass envId in co/launch"}]}},
    ),
    Request(
        method="co/canary",
        doc="One minimal task through the whole cloud path: preflight, create, poll, diff, and `git apply --check` in a scratch worktree (never the user's tree). Each phase with its duration and outcome; `ok` is false when any failed. `emulator: true` runs it against an in-process loopback emulator. Same report as `co-sidecar canary --format json`.",
        params="CanaryParams", result="CanaryResult",
        example={"emulator": True},
        answer={"ok": True, "adapter": "http", "baseUrl": "http://127.0.0.1:40975/backend-api", "taskId": "task_e_f0173000", "taskUrl": "http://127.0.0.1:40975/codex/tasks/task_e_f0173000", "phases": [{"name": "preflight", "ok": True, "durationMs": 0, "detail": ""}, {"name": "create", "ok": True, "durationMs": 180, "detail": "http://127.0.0.1:40975/codex/tasks/task_e_f0173000"}, {"name": "poll", "ok": True, "durationMs": 2044, "detail": "1 polls, 0 retries; cloud task succeeded: 1 of 1 attempt(s) produced a diff"}, {"name": "diff", "ok": True, "durationMs": 4, "detail": "2 files, 525 bytes, sha256 1ec9945e3d5b"}, {"name": "apply_check", "ok": True, "durationMs": 91, "detail": "git apply --check passed in a scratch worktree"}]},
    ),
)


_UPDATE = {"runId": RUN_ID, "taskId": "T-42", "state": "running", "mode": "cloud", "message": "polling: in_progress", "attempt": None, "pollCount": 3, "elapsedMs": 8120, "cloudTaskId": "task_e_123", "cloudTaskUrl": "https://chatgpt.com/codex/tasks/task_e_123", "stream": None, "errorCode": None, "event": None}
_STEP = {**_UPDATE, "mode": "local", "message": "exit 0: pytest -q", "pollCount": 0, "elapsedMs": 5230, "cloudTaskId": None, "cloudTaskUrl": None, "event": {"kind": "command_execution", "type": "item.completed", "itemId": "item_3", "status": "completed", "command": "pytest -q", "exitCode": 0, "files": None, "text": None}}

NOTIFICATIONS: tuple[Notification, ...] = (
    Notification(
        method="co/runUpdate",
        doc="A run's state change, cloud poll, batched agent output or agent step. Every update carries the run's `diffStats` (null until known) and, for a follow-up, `parentRunId` and `rootRunId`. While a local agent works, an update \"diff so far: +A -D in N files\" comes whenever its diff changes: after each Codex file change or command, or, for other agents, when a check every 2 s (less often when a check is slow) finds it changed; a follow-up's live stats are its step.",
        params="RunUpdate",
        examples=(_UPDATE, _STEP),
    ),
)

REQUEST_BY_METHOD: dict[str, Request] = {r.method: r for r in REQUESTS}
