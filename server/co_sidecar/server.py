"""pygls wiring only: validate params, call the core, map errors, forward notifications."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pydantic import BaseModel, ValidationError
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from . import __version__
from .config import Config, load_config
from .diffs import OpenDocument
from .errors import CoError, InvalidParams, WorkspaceError
from .execution import Executor, Outcome
from .jsonrpc import lsp_converter, plain_converter
from .protocol import (
    FINISHED_STATES,
    ApplyParams,
    DiffParams,
    LaunchParams,
    ListParams,
    Mode,
    RouteParams,
    RunIdParams,
    RunState,
    RunUpdate,
)
from .runs import RunManager

log = logging.getLogger(__name__)
P = TypeVar("P", bound=BaseModel)

METHODS = ("route", "launch", "status", "list", "cancel", "diff", "apply", "reject", "doctor")


def parse_params(model: type[P], raw: Any) -> P:
    """Validate params; the error names the first bad field in camelCase."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidParams(f"params must be an object, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        raise InvalidParams(f"invalid params: {where}: {first['msg']}", data={"field": where}) from exc


def to_rpc_error(exc: CoError) -> JsonRpcException:
    return JsonRpcException(message=exc.message, code=exc.code, data=exc.payload())


class CloudNotConfigured:
    """Stands in when the cloud executor cannot be imported."""

    def __init__(self, why: str):
        self.why = why

    async def execute(self, ctx: Any) -> Outcome:
        return Outcome(RunState.FAILED, f"cloud executor not configured: {self.why}", "cloud_preflight")


class CoSidecarServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "co-sidecar",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            converter_factory=plain_converter,
        )
        self.init_options: Any = None
        self.settings: Any = None
        self.manager = RunManager(self.send_run_update, self.config_for, self.executor_for)
        self.progress_tokens: dict[str, types.ProgressToken] = {}
        self.token_runs: dict[types.ProgressToken, str] = {}
        self._executors: dict[Mode, Executor] = {}

    # -- configuration & workspaces ----------------------------------------
    def config_for(self, workspace: Path | None) -> Config:
        return load_config(workspace, os.environ, self.init_options, self.settings)

    def workspace_folders(self) -> list[Path]:
        try:
            workspace = self.workspace
        except RuntimeError:
            return []
        folders = [Path(to_fs_path(f.uri) or f.uri) for f in workspace.folders.values()]
        if not folders and workspace.root_path:
            folders = [Path(workspace.root_path)]
        return folders

    def resolve_workspace(self, folder: str | None) -> Path:
        if folder:
            path = Path(to_fs_path(folder) or folder) if folder.startswith("file:") else Path(folder)
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
        docs = self.workspace.text_documents
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
    def send_run_update(self, update: RunUpdate) -> None:
        # $/progress first: a client that reacts to the runUpdate has already seen the progress end.
        self.report_progress(update)
        self.protocol.notify("co/runUpdate", update.wire())

    def report_progress(self, update: RunUpdate) -> None:
        token = self.progress_tokens.get(update.run_id)
        if token is None:
            return
        text = update.message.splitlines()[-1] if update.message else update.state.value
        if update.state in FINISHED_STATES:
            self.progress_tokens.pop(update.run_id, None)
            self.token_runs.pop(token, None)
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=f"{update.state.value}: {text}"))
        else:
            self.work_done_progress.report(token, types.WorkDoneProgressReport(message=f"{update.state.value}: {text}"))

    async def start_progress(self, run_id: str, title: str, token: types.ProgressToken | None) -> None:
        record = self.manager.runs.get(run_id)
        if record is None or record.manifest.state in FINISHED_STATES:
            return
        if token is None:
            caps = self.client_capabilities.window
            if not (caps and caps.work_done_progress):
                return
            token = f"co-sidecar/{run_id}"
            try:
                await self.work_done_progress.create_async(token)
            except Exception as exc:  # the client may refuse; progress is optional
                log.info("client refused progress token: %s", exc)
                return
            if record.manifest.state in FINISHED_STATES:
                return
        self.progress_tokens[run_id] = token
        self.token_runs[token] = run_id
        self.work_done_progress.begin(
            token,
            types.WorkDoneProgressBegin(title=title, cancellable=True, message=record.manifest.state.value),
        )

    async def client_apply(self, edit: dict[str, Any], label: str) -> tuple[bool, str | None]:
        caps = self.client_capabilities.workspace
        if not (caps and caps.apply_edit):
            return False, "the client does not support workspace/applyEdit; use strategy git"
        params = lsp_converter().structure({"label": label, "edit": edit}, types.ApplyWorkspaceEditParams)
        response = await self.workspace_apply_edit_async(params)
        return bool(response.applied), response.failure_reason


def wrap(handler: Callable[[Any], Any]) -> Callable[[Any], Awaitable[Any]]:
    """Run a handler and turn core errors into JSON-RPC errors; results become plain JSON."""

    async def run(params: Any) -> Any:
        try:
            result = handler(params)
            if asyncio.iscoroutine(result):
                result = await result
        except CoError as exc:
            raise to_rpc_error(exc) from exc
        return result.wire() if hasattr(result, "wire") else result

    return run


def create_server() -> CoSidecarServer:
    ls = CoSidecarServer()
    mgr = ls.manager

    async def route(raw: Any) -> Any:
        params = parse_params(RouteParams, raw)
        workspace = ls.resolve_workspace(params.workspace_folder)
        return await asyncio.to_thread(mgr.route, params, workspace)

    def launch(raw: Any) -> Any:
        params = parse_params(LaunchParams, raw)
        result = mgr.launch(params, ls.resolve_workspace(params.workspace_folder))
        if result.state not in FINISHED_STATES:
            title = f"co-sidecar: {params.prompt.strip().splitlines()[0][:60]}"
            asyncio.ensure_future(ls.start_progress(result.run_id, title, params.work_done_token))
        return result

    def status(raw: Any) -> Any:
        ensure_all_loaded()
        return mgr.get(parse_params(RunIdParams, raw).run_id).manifest

    def list_runs(raw: Any) -> Any:
        ensure_all_loaded()
        return mgr.list_runs(parse_params(ListParams, raw))

    async def cancel(raw: Any) -> Any:
        ensure_all_loaded()
        return await mgr.cancel(parse_params(RunIdParams, raw).run_id)

    def diff(raw: Any) -> Any:
        ensure_all_loaded()
        return mgr.diff(parse_params(DiffParams, raw), ls.open_documents())

    async def apply(raw: Any) -> Any:
        ensure_all_loaded()
        return await mgr.apply(parse_params(ApplyParams, raw), ls.open_documents(), ls.client_apply)

    def reject(raw: Any) -> Any:
        ensure_all_loaded()
        return mgr.reject(parse_params(RunIdParams, raw).run_id)

    async def doctor(raw: Any) -> Any:
        from .doctor import doctor as run_doctor

        folder = raw.get("workspaceFolder") if isinstance(raw, dict) else None
        try:
            workspace: Path | None = ls.resolve_workspace(folder)
        except WorkspaceError:
            workspace = None
        return await run_doctor(ls.config_for(workspace), workspace)

    def ensure_all_loaded() -> None:
        for folder in ls.workspace_folders():
            mgr.recover(mgr.ensure_loaded(folder.resolve()))

    handlers: dict[str, Callable[[Any], Any]] = {
        "route": route,
        "launch": launch,
        "status": status,
        "list": list_runs,
        "cancel": cancel,
        "diff": diff,
        "apply": apply,
        "reject": reject,
        "doctor": doctor,
    }
    for name, handler in handlers.items():
        wrapped = wrap(handler)
        ls.feature(f"co/{name}")(wrapped)
        ls.command(f"co.{name}")(_command(wrapped))

    @ls.feature(types.INITIALIZE)
    def on_initialize(params: types.InitializeParams) -> None:
        ls.init_options = params.initialization_options

    @ls.feature(types.INITIALIZED)
    async def on_initialized(params: types.InitializedParams) -> None:
        # Load earlier runs after initialize has answered, so start-up stays fast.
        try:
            ensure_all_loaded()
        except CoError as exc:
            ls.window_log_message(types.LogMessageParams(types.MessageType.Error, exc.message))

    @ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def on_configuration(params: types.DidChangeConfigurationParams) -> None:
        ls.settings = params.settings

    @ls.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    async def on_progress_cancel(params: types.WorkDoneProgressCancelParams) -> None:
        run_id = ls.token_runs.get(params.token)
        if run_id is not None:
            try:
                await mgr.cancel(run_id)
            except CoError as exc:
                log.info("progress cancel ignored: %s", exc.message)

    @ls.feature(types.SHUTDOWN)
    async def on_shutdown(params: Any) -> None:
        await mgr.shutdown()

    return ls


def _command(handler: Callable[[Any], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def command(*args: Any) -> Any:
        if len(args) > 1:
            raise JsonRpcInvalidParams(f"expected one arguments object, got {len(args)}")
        return await handler(args[0] if args else {})

    return command
