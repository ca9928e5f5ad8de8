"""pygls wiring only: the LSP shell, thin co/* handlers, error mapping.

The wire (framing, the guard, dispatch into pygls) is `transport.py`'s, for stdio and TCP alike.
Kept import-light: the core (pydantic models, run manager, git, httpx) loads
in `handlers.py` after `initialize` has answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from . import __version__
from .errors import CoError
from .registry import REQUESTS, Request
from .transport import CoProtocol, FramedReader, serve, server_converter

if TYPE_CHECKING:
    from .handlers import Handlers

log = logging.getLogger(__name__)


class CoSidecarServer(LanguageServer):
    protocol: CoProtocol

    def __init__(self) -> None:
        super().__init__(
            "co-sidecar",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=CoProtocol,
            converter_factory=server_converter,
        )
        self.init_options: Any = None
        self.settings: Any = None
        self._terminating = False
        self._runs_stopped = False
        self._tasks: set[asyncio.Future[None]] = set()
        # Run when a signal ends the process (os._exit skips finally blocks): e.g. the TCP token file.
        self.exit_hooks: list[Callable[[], None]] = []

    # -- transport (transport.py) ------------------------------------------------------
    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """pygls's stdio entry point, served by our transport (as `serve --tcp` is)."""
        serve(self, FramedReader(stdin or sys.stdin.buffer), stdout or sys.stdout.buffer)

    def connection_started(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    async def connection_ended(self) -> None:
        # The client is gone (end of input) or the loop stopped: end runs as `shutdown` would.
        await self.stop_runs()

    def send_notification(self, method: str, params: dict[str, Any]) -> None:
        """A notification whose params are plain JSON already (a run's heartbeat, sent on every
        poll), framed by the transport without pygls's message object."""
        self.protocol.notify_json(method, params)

    def _on_signal(self, sig: signal.Signals) -> None:
        """SIGTERM, SIGHUP, SIGINT: exactly what shutdown + exit do (runs end in a terminal
        state, agents and their descendants are ended, scratch copies removed), then exit."""
        if self._terminating:  # a second signal: leave now (agents still die: parent-death signal)
            log.warning("%s received again: exiting at once", sig.name)
            os._exit(1)
        self._terminating = True
        log.warning("%s received: shutting down", sig.name)
        task = asyncio.ensure_future(self._terminate())
        self._tasks.add(task)

    async def _terminate(self) -> None:
        try:
            await self.stop_runs()
        finally:
            with contextlib.suppress(Exception):
                self.protocol.writer.flush()  # type: ignore[union-attr]
            for hook in self.exit_hooks:
                with contextlib.suppress(Exception):
                    hook()
            logging.shutdown()
            # Not sys.exit: the reader thread may sit in a blocking read of stdin for ever.
            os._exit(0)

    async def stop_runs(self) -> None:
        """Cancel live runs and wait for them to be recorded (once per server)."""
        if "handlers" in self.__dict__ and not self._runs_stopped:
            self._runs_stopped = True
            try:
                await self.handlers.shutdown()
            except Exception:  # shutting down: record what we can, never raise
                log.exception("error while stopping runs")

    @functools.cached_property
    def handlers(self) -> Handlers:
        from .handlers import Handlers

        return Handlers(self)


def to_rpc_error(exc: CoError) -> JsonRpcException:
    from .redact import redact  # the core is loaded by now; keep start-up imports light

    return JsonRpcException(message=redact(exc.message), code=exc.code, data=exc.payload())


def method(ls: CoSidecarServer, spec: Request) -> Callable[[Any], Awaitable[Any]]:
    """co/<name>: call the handler (`Handlers.call`) with the params the transport validated
    (`transport.CoRequest`), map core errors to JSON-RPC errors, return plain JSON."""

    async def run(params: Any) -> Any:
        try:
            if isinstance(params, CoError):  # the params model refused them
                raise params
            result = ls.handlers.call(spec, params)
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
    for spec in REQUESTS:
        handler = method(ls, spec)
        ls.feature(spec.method)(handler)
        ls.command(f"co.{spec.name}")(command(handler))

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
        await ls.stop_runs()  # nothing to stop if no co/* request ever came

    return ls
