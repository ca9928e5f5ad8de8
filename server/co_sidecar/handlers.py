"""The core-facing half of the server: co/* methods, run manager, progress and apply.

Imported on the first co/* request or right after `initialized`, never before
`initialize` answers, so that the sidecar starts as fast as a bare pygls server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lsprotocol import types
from pydantic import BaseModel, ValidationError
from pygls.exceptions import JsonRpcException
from pygls.uris import to_fs_path

from .apply_plan import ClientEditCaps
from .config import Config, load_config
from .diffs import OpenDocument
from .driver import os_cause
from .errors import CoError, ErrorCategory, InvalidParams, IssueCode, RunErrorCode, WorkspaceError
from .execution import Executor, Outcome
from .jsonrpc import lsp_converter
from .manifest import RunManifest
from .protocol import (
    FINISHED_STATES,
    ApplyParams,
    ApplyResult,
    CanaryParams,
    CanaryResult,
    DiffParams,
    DoctorCheck,
    DoctorParams,
    DoctorResult,
    FollowUpParams,
    Issue,
    LaunchParams,
    LaunchResult,
    ListParams,
    Mode,
    PruneParams,
    PruneResult,
    RouteParams,
    RouteResult,
    RunIdParams,
    RunState,
    RunStateResult,
)
from .registry import Request
from .runs import EXECUTING_STATES, RunManager

if TYPE_CHECKING:
    from .server import CoSidecarServer

log = logging.getLogger(__name__)
P = TypeVar("P", bound=BaseModel)


def parse_params(model: type[P], raw: Any) -> P:
    """Validate params as the JSON they came as (strict: see `protocol.Params`); the error
    names the first bad field in camelCase."""
    if raw is None or raw == []:  # Lua clients (Neovim) encode an empty table as []
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidParams(f"params must be an object, got {type(raw).__name__}")
    try:
        return model.model_validate_json(json.dumps(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        raise InvalidParams(
            f"invalid params: {where}: {first['msg']}", data={"field": where}
        ) from exc


def config_issues(warnings: list[str]) -> list[Issue]:
    """Configuration warnings as launch warnings (`LaunchResult.warnings`)."""
    return [Issue(code=IssueCode.CONFIG_WARNING, message=w, fix=_fix_for(w)) for w in warnings]


def config_checks(warnings: list[str]) -> list[DoctorCheck]:
    """Configuration warnings as doctor checks (they do not make a mode unready)."""
    return [
        DoctorCheck(name="config", ok=False, message=w, code=IssueCode.CONFIG_WARNING, fix=_fix_for(w)) for w in warnings
    ]


def _fix_for(warning: str) -> str:
    if "not trusted" in warning:
        return "trust the workspace (trustedWorkspaces in your co-sidecar config.toml, or your editor's workspace trust)"
    return "correct the key's spelling"


class CloudNotConfigured:
    """Stands in when the cloud executor cannot be imported."""

    def __init__(self, why: str):
        self.why = why

    async def execute(self, ctx: Any) -> Outcome:
        return Outcome(
            RunState.FAILED, f"cloud executor not configured: {self.why}", RunErrorCode.CLOUD_PREFLIGHT
        )


class Handlers:
    """Everything behind the co/* methods for one server: run manager, config, progress, apply."""

    def __init__(self, ls: CoSidecarServer) -> None:
        self.ls = ls
        self.manager = RunManager(self.send_run_update, self.config_for, self.executor_for)
        self.progress_tokens: dict[types.ProgressToken, str] = {}
        self.run_tokens: dict[str, types.ProgressToken] = {}
        self._executors: dict[Mode, Executor] = {}
        self._background: set[asyncio.Future[None]] = set()

    # -- configuration & workspaces ----------------------------------------
    def config_for(self, workspace: Path | None, warnings: list[str] | None = None) -> Config:
        return load_config(workspace, os.environ, self.ls.init_options, self.ls.settings, warnings)

    def workspace_folders(self) -> list[Path]:
        try:
            workspace = self.ls.workspace
        except RuntimeError:
            return []
        folders = [Path(to_fs_path(f.uri) or f.uri) for f in workspace.folders.values()]
        if not folders and workspace.root_path:
            folders = [Path(workspace.root_path)]
        return folders

    def resolve_workspace(self, folder: str | None) -> Path:
        if folder:
            if not isinstance(folder, str) or "\0" in folder:
                raise InvalidParams(
                    "invalid params: workspaceFolder: must be a path or file: URI string",
                    data={"field": "workspaceFolder"},
                )
            path = (
                Path(to_fs_path(folder) or folder) if folder.startswith("file:") else Path(folder)
            )
            if not path.is_dir():
                raise InvalidParams(
                    f"invalid params: workspaceFolder: {folder!r} is not a directory",
                    data={"field": "workspaceFolder"},
                )
            return path.resolve()
        folders = self.workspace_folders()
        if not folders:
            raise WorkspaceError("no workspace folder: open a folder or pass workspaceFolder")
        return folders[0].resolve()

    def open_documents(self) -> dict[str, OpenDocument]:
        docs = self.ls.workspace.text_documents
        return {uri: OpenDocument(uri, doc.version or 0, doc.source) for uri, doc in docs.items()}

    def executor_for(self, mode: Mode) -> Executor:
        if mode not in self._executors:
            if mode == "local":
                from .local import LocalExecutor

                self._executors[mode] = LocalExecutor()
            else:
                try:
                    from .cloud.executor import CloudExecutor

                    self._executors[mode] = CloudExecutor()
                except ImportError as exc:
                    self._executors[mode] = CloudNotConfigured(str(exc))
        return self._executors[mode]

    # -- notifications -------------------------------------------------------
    def send_run_update(self, update: dict[str, Any]) -> None:
        """`update`: a `RunUpdate` as its wire dict (see `RunNotifier.emit`)."""
        # $/progress first: a client that reacts to the runUpdate has already seen the progress end.
        self.report_progress(update)
        self.ls.send_notification("co/runUpdate", update)

    def report_progress(self, update: dict[str, Any]) -> None:
        token = self.run_tokens.get(update["runId"])
        if token is None:
            return
        message, state = update["message"], RunState(update["state"])
        text = message.splitlines()[-1] if message else state.value
        if state in FINISHED_STATES:
            self.run_tokens.pop(update["runId"], None)
            self.progress_tokens.pop(token, None)
            self.ls.work_done_progress.end(
                token, types.WorkDoneProgressEnd(message=f"{state.value}: {text}")
            )
        else:
            # What `work_done_progress.report(token, WorkDoneProgressReport(message=...))`
            # sends, built directly: one goes out with every poll's heartbeat.
            self.ls.send_notification(
                "$/progress",
                {"token": token, "value": {"kind": "report", "message": f"{state.value}: {text}"}},
            )

    async def start_progress(
        self, run_id: str, title: str, token: types.ProgressToken | None
    ) -> None:
        record = self.manager.runs.get(run_id)
        if record is None or record.manifest.state in FINISHED_STATES:
            return
        if token is None:
            caps = self.ls.client_capabilities.window
            if not (caps and caps.work_done_progress):
                return
            token = f"co-sidecar/{run_id}"
            try:
                await self.ls.work_done_progress.create_async(token)
            except Exception as exc:  # the client may refuse; progress is optional
                log.info("client refused progress token: %s", exc)
                return
            if record.manifest.state in FINISHED_STATES:
                return
        self.run_tokens[run_id] = token
        self.progress_tokens[token] = run_id
        self.ls.work_done_progress.begin(
            token,
            types.WorkDoneProgressBegin(
                title=title, cancellable=True, message=record.manifest.state.value
            ),
        )

    async def client_apply(self, edit: dict[str, Any], label: str) -> tuple[bool, str | None]:
        caps = self.ls.client_capabilities.workspace
        if not (caps and caps.apply_edit):
            return False, "the client does not support workspace/applyEdit; use strategy git"
        params = lsp_converter().structure(
            {"label": label, "edit": edit}, types.ApplyWorkspaceEditParams
        )
        try:
            response = await self.ls.workspace_apply_edit_async(params)
        except JsonRpcException as exc:  # eglot answers a declined edit with an error
            return False, f"the client declined the edit: {exc.message}"
        if not response.applied:
            return False, f"the client did not apply the edit: {response.failure_reason or 'no reason given'}"
        return True, None

    # -- co/* methods: parsed params in, wire models out -----------------------
    def call(self, spec: Request, raw: Any) -> Any:
        """Call the handler of the same name with the request's params model (the registry's):
        `raw` is that model already (co/<name>: the transport validated it) or the JSON to parse
        (co.<name> commands); returns its result (or coroutine)."""
        params = raw if isinstance(raw, BaseModel) else parse_params(spec.params_model(), raw)
        return getattr(self, spec.name)(params)

    async def route(self, params: RouteParams) -> RouteResult:
        workspace = self.resolve_workspace(params.workspace_folder)
        return await asyncio.to_thread(self.manager.route, params, workspace)

    def _check_prompt_size(self, prompt: str, workspace: Path, warnings: list[str]) -> None:
        limit = self.config_for(workspace, warnings).runs.max_prompt_bytes
        size = len(prompt.encode("utf-8"))
        if size > limit:
            raise InvalidParams(
                f"invalid params: prompt: the prompt is {size} bytes, over runs.maxPromptBytes={limit}",
                category=ErrorCategory.PROMPT_TOO_LARGE,
                data={"field": "prompt", "bytes": size, "limit": limit},
            )

    def _start_progress_later(self, result: LaunchResult, prompt: str, token: types.ProgressToken | None) -> None:
        if result.state not in FINISHED_STATES:
            title = f"co-sidecar: {prompt.strip().splitlines()[0][:60]}"
            # Keep a reference: the loop holds tasks weakly, and a collected task never runs.
            task = asyncio.ensure_future(self.start_progress(result.run_id, title, token))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def followUp(self, params: FollowUpParams) -> LaunchResult:  # noqa: N802 - the method is co/followUp
        from . import followup

        self.ensure_all_loaded()
        parent = self.manager.get(params.run_id)
        self._check_prompt_size(params.prompt, parent.workspace, [])
        family = self.manager.family(parent)
        starting = await asyncio.to_thread(followup.starting_patch, parent, family)
        launch = followup.launch_params(parent, params)
        decision = await asyncio.to_thread(self.manager.route, launch, parent.workspace)
        result = self.manager.follow_up(parent, params, starting, decision)
        self._start_progress_later(result, params.prompt, params.work_done_token)
        return result

    async def launch(self, params: LaunchParams) -> LaunchResult:
        workspace = self.resolve_workspace(params.workspace_folder)
        warnings: list[str] = []
        self._check_prompt_size(params.prompt, workspace, warnings)
        try:
            # Routing may list cloud environments (cached): off the event loop.
            decision = await asyncio.to_thread(self.manager.route, params, workspace)
            result = self.manager.launch(params, workspace, decision)
        except OSError as exc:  # before a run was recorded (reading earlier runs, say)
            raise WorkspaceError(f"cannot launch: {os_cause(exc)}", category=RunErrorCode.SYSTEM_ERROR) from exc
        if warnings:
            result.warnings = config_issues(warnings) + result.warnings
            record = self.manager.runs.get(result.run_id)
            for warning in warnings:  # the editor's run view shows them too
                if record is not None:
                    record.emit(f"warning: {warning}")
        self._start_progress_later(result, params.prompt, params.work_done_token)
        return result

    def status(self, params: RunIdParams) -> RunManifest:
        self.ensure_all_loaded()
        return self.manager.get(params.run_id).manifest

    def list(self, params: ListParams) -> dict[str, Any]:
        self.ensure_all_loaded()
        return self.manager.list_runs(params)

    async def cancel(self, params: RunIdParams) -> RunStateResult:
        self.ensure_all_loaded()
        return await self.manager.cancel(params.run_id)

    async def diff(self, params: DiffParams) -> dict[str, Any]:
        self.ensure_all_loaded()
        documents = self.open_documents()
        # Off the event loop, wire form included: parsing a 100 MB patch and dumping its edit take
        # seconds, and co/status must not wait for them.
        return await asyncio.to_thread(lambda: self.manager.diff(params, documents).wire())

    async def apply(self, params: ApplyParams) -> ApplyResult:
        self.ensure_all_loaded()
        # Only the edit operations the client said it takes (workspace.workspaceEdit).
        caps = ClientEditCaps.from_lsp(self.ls.client_capabilities.workspace)
        client_apply = self.client_apply if caps.apply_edit else None
        return await self.manager.apply(params, self.open_documents(), client_apply, caps)

    async def reject(self, params: RunIdParams) -> RunStateResult:
        self.ensure_all_loaded()
        return await self.manager.reject(params.run_id)

    async def prune(self, params: PruneParams) -> PruneResult:
        workspace = self.resolve_workspace(params.workspace_folder)
        return await self.manager.prune(params, workspace)

    async def doctor(self, params: DoctorParams) -> DoctorResult:
        from .doctor import doctor as run_doctor

        try:
            workspace: Path | None = self.resolve_workspace(params.workspace_folder)
        except WorkspaceError:
            workspace = None
        warnings: list[str] = []
        result = await run_doctor(self.config_for(workspace, warnings), workspace)
        result.checks += config_checks(warnings)
        return result

    async def canary(self, params: CanaryParams) -> CanaryResult:
        from .canary import canary

        workspace = self.resolve_workspace(params.workspace_folder)
        return await canary(self.config_for(workspace), workspace, emulator=params.emulator)

    # -- lifecycle -------------------------------------------------------------
    def ensure_all_loaded(self) -> None:
        for folder in self.workspace_folders():
            self.manager.recover(self.manager.ensure_loaded(folder.resolve()))

    async def startup(self) -> None:
        """After initialize: load earlier runs, recover interrupted ones, sweep stale scratch copies."""
        self.ensure_all_loaded()
        from .local.pool import sweep_scratch

        runs = self.manager.runs.values()
        active = {r.run_id for r in runs if r.manifest.state in EXECUTING_STATES}
        known = {r.run_id for r in runs}
        for folder in self.workspace_folders():
            removed = await asyncio.to_thread(sweep_scratch, folder.resolve(), active, known)
            for path in removed:
                log.info("removed stale scratch copy %s", path)

    async def cancel_progress(self, token: types.ProgressToken) -> None:
        run_id = self.progress_tokens.get(token)
        if run_id is not None:
            try:
                await self.manager.cancel(run_id)
            except CoError as exc:
                log.info("progress cancel ignored: %s", exc.message)

    async def shutdown(self) -> None:
        await self.manager.shutdown()
