"""A JSON-RPC session with a co-sidecar server started over stdio, for the command-line clients.

It starts the server (this Python's `-m co_sidecar serve`, or `--server`), initializes it on one
workspace folder, collects `co/runUpdate`s, and never hangs on a server that died: a request
pending when the server exits fails with `ServerDied` naming its exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from . import __version__
from .jsonrpc import plain_converter

SHUTDOWN_TIMEOUT_S = 10.0


class ServerDied(Exception):
    """The server process exited while the client still needed it."""


class _Client(LanguageClient):
    def __init__(self) -> None:
        super().__init__("co-sidecar-cli", __version__, converter_factory=plain_converter)
        self.died = asyncio.Event()
        self.exit_status: int | None = None

    async def server_exit(self, server: asyncio.subprocess.Process) -> None:
        self.exit_status = server.returncode
        self.died.set()


class Session:
    """One initialized server: `request` a co/* method."""

    def __init__(self, client: _Client, workspace: Path):
        self.client = client
        self.workspace = workspace

    async def request(self, method: str, params: Any) -> Any:
        return await self._or_died(self.client.protocol.send_request_async(method, params), method)

    async def _or_died(self, awaitable: Any, what: str) -> Any:
        work = asyncio.ensure_future(awaitable)
        died = asyncio.ensure_future(self.client.died.wait())
        try:
            await asyncio.wait({work, died}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            died.cancel()
        if work.done():
            failure = work.exception()
            if not isinstance(failure, RuntimeError):
                return work.result()
            # pygls fails pending requests with a RuntimeError just before it reports the exit.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.client.died.wait(), 2)
            if not self.client.died.is_set():
                raise failure
        work.cancel()
        status = self.client.exit_status
        raise ServerDied(f"the co-sidecar server exited (status {status}) while waiting for {what}")


def server_argv(server: str | None) -> list[str]:
    return shlex.split(server) if server else [sys.executable, "-m", "co_sidecar", "serve"]


@contextlib.asynccontextmanager
async def open_session(
    workspace: Path, *, server: str | None = None, options: dict[str, Any] | None = None
) -> AsyncIterator[Session]:
    client = _Client()
    session = Session(client, workspace)

    @client.feature("co/runUpdate")
    def _on_update(params: Any) -> None:
        """The commands ask for state (co/status) instead of following updates: drop them."""

    argv = server_argv(server)
    try:
        await client.start_io(*argv)
    except OSError as exc:
        raise ServerDied(f"cannot start the co-sidecar server ({argv[0]}): {exc.strerror or exc}") from exc
    try:
        await session._or_died(
            client.initialize_async(
                types.InitializeParams(
                    capabilities=types.ClientCapabilities(),
                    root_uri=workspace.as_uri(),
                    workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)],
                    initialization_options=options or {},
                )
            ),
            "initialize",
        )
        client.initialized(types.InitializedParams())
        yield session
    finally:
        if not client.died.is_set():
            with contextlib.suppress(Exception):  # the server may be going away; nothing to save
                await asyncio.wait_for(session._or_died(client.shutdown_async(None), "shutdown"), SHUTDOWN_TIMEOUT_S)
                client.exit(None)
        await client.stop()
