"""pygls wiring only: the LSP shell, thin co/* handlers, error mapping.

Kept import-light: the core (pydantic models, run manager, git, httpx) loads
in `handlers.py` after `initialize` has answered.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from . import __version__
from .errors import CoError
from .jsonrpc import plain_converter

if TYPE_CHECKING:
    from .handlers import Handlers

log = logging.getLogger(__name__)

METHODS = ("route", "launch", "status", "list", "cancel", "diff", "apply", "reject", "doctor")


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

    @functools.cached_property
    def handlers(self) -> Handlers:
        from .handlers import Handlers

        return Handlers(self)


def to_rpc_error(exc: CoError) -> JsonRpcException:
    return JsonRpcException(message=exc.message, code=exc.code, data=exc.payload())


def method(ls: CoSidecarServer, name: str) -> Callable[[Any], Awaitable[Any]]:
    """co/<name>: call the handler, map core errors to JSON-RPC errors, return plain JSON."""

    async def run(params: Any) -> Any:
        try:
            result = getattr(ls.handlers, name)(params)
            if asyncio.iscoroutine(result):
                result = await result
        except CoError as exc:
            raise to_rpc_error(exc) from exc
        return result.wire() if hasattr(result, "wire") else result

    return run


def command(handler: Callable[[Any], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """co.<name> for workspace/executeCommand: one arguments object, the same params."""

    async def run(*args: Any) -> Any:
        if len(args) > 1:
            raise JsonRpcInvalidParams(f"expected one arguments object, got {len(args)}")
        return await handler(args[0] if args else {})

    return run


def create_server() -> CoSidecarServer:
    ls = CoSidecarServer()
    for name in METHODS:
        handler = method(ls, name)
        ls.feature(f"co/{name}")(handler)
        ls.command(f"co.{name}")(command(handler))

    @ls.feature(types.INITIALIZE)
    def on_initialize(params: types.InitializeParams) -> None:
        ls.init_options = params.initialization_options

    @ls.feature(types.INITIALIZED)
    async def on_initialized(params: types.InitializedParams) -> None:
        # Load earlier runs after initialize has answered, so start-up stays fast.
        try:
            await ls.handlers.startup()
        except CoError as exc:
            ls.window_log_message(types.LogMessageParams(types.MessageType.Error, exc.message))

    @ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def on_configuration(params: types.DidChangeConfigurationParams) -> None:
        ls.settings = params.settings

    @ls.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    async def on_progress_cancel(params: types.WorkDoneProgressCancelParams) -> None:
        await ls.handlers.cancel_progress(params.token)

    @ls.feature(types.SHUTDOWN)
    async def on_shutdown(params: Any) -> None:
        if "handlers" in ls.__dict__:  # nothing to stop if no co/* request ever came
            await ls.handlers.shutdown()

    return ls
