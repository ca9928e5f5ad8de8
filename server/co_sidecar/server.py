"""pygls wiring only: the LSP shell, thin co/* handlers, error mapping.

Kept import-light: the core (pydantic models, run manager, git, httpx) loads
in `handlers.py` after `initialize` has answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from . import __version__
from .errors import CoError
from .jsonrpc import plain_converter
from .registry import REQUESTS, Request

if TYPE_CHECKING:
    from .handlers import Handlers

log = logging.getLogger(__name__)
# pygls's JSON-RPC logger: `send_notification` leaves the message to pygls when it logs them.
_PYGLS_RPC_LOG = logging.getLogger("pygls.protocol.json_rpc")
_CONTENT_TYPE = b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n"

# Framing limits of the stdio transport (see docs/reliability.md).
MAX_MESSAGE_BYTES = int(os.environ.get("CO_MAX_MESSAGE_BYTES") or 64 * 1024 * 1024)
MAX_HEADER_LINE = 8 * 1024
DISCARD_CHUNK = 1024 * 1024
# Containers nested deeper than this are refused before anything walks them (json, pydantic,
# cattrs and the manifest writer all recurse); real co/* params nest a handful of levels.
MAX_JSON_DEPTH = 64
PARSE_ERROR, INVALID_REQUEST, SERVER_NOT_INITIALIZED = -32700, -32600, -32002
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
_CONTENT_LENGTH = re.compile(rb"content-length:[ \t]*(\S*)[ \t]*\r?\n?$", re.IGNORECASE)
# Requests a client may send before `initialize` has been answered (LSP: all others get -32002).
_BEFORE_INIT = {"initialize", "shutdown", "exit"}


class BatchingWriter:
    """stdout for pygls, one write per event-loop turn: messages written during a turn (a
    poll round's 200 heartbeats and progress reports, say) go out together, in order, when the
    turn's callbacks are done, as one write and one flush instead of one each. Off the loop (a
    worker thread, shutdown) a write goes out at once, after whatever is pending."""

    def __init__(self, stdout: BinaryIO):
        self._stdout = stdout
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self._scheduled = False

    def write(self, data: bytes) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._pending.append(data)
            if loop is None:
                self._write_pending()
            elif not self._scheduled:
                self._scheduled = True
                loop.call_soon(self.flush)

    def flush(self) -> None:
        with self._lock:
            self._scheduled = False
            try:
                self._write_pending()
            except (BrokenPipeError, ValueError, OSError):
                # The client is gone (as pygls logs a failed write); the reader sees the end.
                log.error("connection to the client is lost; dropping output", exc_info=True)

    def _write_pending(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        self._stdout.write(data)
        self._stdout.flush()

    def close(self) -> None:
        self.flush()
        self._stdout.close()


# A request line of HTTP (a browser's fetch, a proxy probe): never JSON-RPC.
_HTTP_REQUEST = re.compile(rb"^(GET|POST|PUT|HEAD|OPTIONS|DELETE|PATCH|CONNECT|TRACE|PRI) \S+( HTTP/\d(\.\d)?)?\r?\n?$")


class FramedReader:
    """Reads LSP base-protocol messages from a binary stream, tolerating broken framing.

    Unlike pygls' loop it answers what it cannot use instead of going silent: a
    non-JSON body gets -32700, a body that is no request object -32600, a
    message over `MAX_MESSAGE_BYTES` -32600 (its body is read and dropped), and
    after a malformed header it resynchronises on the next `Content-Length:`.
    """

    def __init__(self, stream: BinaryIO, refuse_http: bool = False):
        self.stream = stream
        self.pushback = b""  # bytes read too far (a body shorter than its Content-Length)
        self.refuse_http = refuse_http  # TCP: a line that looks like HTTP ends the connection

    def readline(self) -> bytes:
        if self.pushback:
            end = self.pushback.find(b"\n") + 1
            if end:
                line, self.pushback = self.pushback[:end], self.pushback[end:]
                return line
            line, self.pushback = self.pushback, b""
            return line + self.stream.readline(MAX_HEADER_LINE)
        return self.stream.readline(MAX_HEADER_LINE)

    def read(self, n: int) -> bytes:
        head, self.pushback = self.pushback[:n], self.pushback[n:]
        return head + (self.stream.read(n - len(head)) if n > len(head) else b"")

    def discard(self, n: int) -> int:
        dropped = 0
        while dropped < n:
            chunk = self.stream.read(min(DISCARD_CHUNK, n - dropped))
            if not chunk:
                break
            dropped += len(chunk)
        return dropped

    def next_message(self) -> tuple[str, Any] | None:
        """("message", parsed JSON) or ("error", (code, text)); None at end of input (and, with
        `refuse_http`, at anything that looks like an HTTP request)."""
        length: int | None = None
        bad: str | None = None
        saw_header = False
        while True:
            line = self.readline()
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                if not saw_header:
                    continue  # stray blank line between messages
                break
            if self.refuse_http and _HTTP_REQUEST.match(line):
                log.warning("refused an HTTP request on the JSON-RPC connection: %r", line[:80])
                return None
            saw_header = True
            at = line.lower().find(b"content-length:")
            if at > 0:
                # Junk before a header (e.g. the body of a badly framed message): resync here.
                line = line[at:]
            match = _CONTENT_LENGTH.match(line)
            if match:
                value = match.group(1)
                if value.isdigit():
                    length, bad = int(value), None
                else:
                    bad = f"invalid Content-Length header {value[:40].decode('latin-1')!r}"
            elif not line.endswith(b"\n") or b":" not in line:
                bad = bad or "malformed header line"
        if length is None:
            return "error", (PARSE_ERROR, bad or "missing Content-Length header; message ignored")
        if length > MAX_MESSAGE_BYTES:
            self.discard(length)
            return "error", (
                INVALID_REQUEST,
                f"message of {length} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes; discarded",
            )
        body = self.read(length) if length else b""
        if len(body) < length:
            return None
        try:
            return "message", parse_json(body)
        except RecursionError:
            return "error", (INVALID_REQUEST, f"invalid request: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        except ValueError as exc:
            at = _resync_point(body)
            if at > 0:  # the declared length ran into the next message: resynchronise on it
                self.pushback = body[at:] + self.pushback
                return "error", (PARSE_ERROR, "parse error: the body is shorter than its Content-Length")
            # Valid to Python's lenient reading (NaN, Infinity, a huge number): the request's id
            # can still be read, so its caller gets the answer instead of waiting for ever.
            return "error", (PARSE_ERROR, f"parse error: the message body is not JSON ({exc})", _salvage_id(body))
        except Exception as exc:  # MemoryError and the like: this message is lost, the server is not
            return "error", (PARSE_ERROR, f"parse error: cannot read the message ({type(exc).__name__})")


def _salvage_id(body: bytes) -> int | str | None:
    try:
        data = json.loads(body, parse_int=lambda text: 0 if len(text) > 4000 else int(text))
    except Exception:
        return None
    msg_id = data.get("id") if isinstance(data, dict) else None
    return msg_id if isinstance(msg_id, int | str) and not isinstance(msg_id, bool) else None


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """Strict JSON: no NaN/Infinity (Python's json takes them; no client may send them and no
    manifest may hold them), no number that overflows a double. Integers of more than 4,300
    digits are refused by Python itself (ValueError)."""
    return json.loads(body, parse_float=_finite, parse_constant=_no_constant)


_UNCHECKED = "unchecked"  # dispatch: check the message itself (not read by `read_checked`)


def read_checked(reader: FramedReader) -> tuple[str, Any, str | None] | None:
    """The next message and its `json_problem`, both on the reader's thread: walking a large
    message must not hold up the event loop."""
    item = reader.next_message()
    if item is None:
        return None
    kind, value = item
    return kind, value, json_problem(value) if kind == "message" else None


def json_problem(value: Any, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Why a parsed value cannot be handled (too deep, a string that is not valid Unicode: a
    lone surrogate), else None. Iterative, so any depth is safe to check."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return "a string holds a lone UTF-16 surrogate (not valid Unicode)"
        elif isinstance(item, dict | list):
            if depth > limit:
                return f"JSON nested deeper than {limit} levels"
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return None


def _resync_point(body: bytes) -> int:
    """Where the next message's header starts inside a body that overran into it, else -1."""
    token = b"Content-Length:"
    at = body.find(token, 1)
    if at > 0:
        return at
    for k in range(min(len(token) - 1, len(body) - 1), 2, -1):  # cut off inside the header name
        if body.endswith(token[:k]):
            return len(body) - k
    return -1


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
        self.initialize_seen = False
        self._terminating = False
        self._runs_stopped = False
        self._tasks: set[asyncio.Future[None]] = set()
        # Run when a signal ends the process (os._exit skips finally blocks): e.g. the TCP token file.
        self.exit_hooks: list[Callable[[], None]] = []

    # -- transport -------------------------------------------------------------
    def _start_io_async(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """pygls' stdio server with our framing reader (see `FramedReader`) and writer
        (`BatchingWriter`)."""
        self.serve_stream(FramedReader(stdin or sys.stdin.buffer), stdout or sys.stdout.buffer)

    def serve_stream(self, reader: FramedReader, stdout: BinaryIO, first: Any = None) -> None:
        """Serve one connection until its end: stdio, or an authenticated TCP connection
        whose first message (`first`, already read) is handled before the rest."""
        self._stop_event = threading.Event()
        writer = BatchingWriter(stdout)
        self.protocol.set_writer(writer)
        try:
            asyncio.run(self._serve(reader, first))
        except BrokenPipeError:
            log.error("connection to the client is lost; shutting down")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            writer.flush()  # what the last turn wrote, if the loop stopped before its flush
            self.shutdown()

    async def _serve(self, reader: FramedReader, first: Any = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            if first is not None:
                self.dispatch(first)
            await self._read_loop(reader, loop)
        finally:
            # The client is gone (end of input) or the loop stopped: end runs as `shutdown` would.
            await self.stop_runs()

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

    async def _read_loop(self, reader: FramedReader, loop: asyncio.AbstractEventLoop) -> None:
        while self._stop_event is not None and not self._stop_event.is_set():
            try:
                item = await loop.run_in_executor(self.thread_pool, read_checked, reader)
            except OSError as exc:  # the input is gone (closed, reset): as at its end
                log.error("cannot read from the client: %s", exc)
                break
            if item is None:
                break
            kind, value, problem = item
            if kind == "error":
                code, text, *msg_id = value
                self.reply_error(msg_id[0] if msg_id else None, code, text)
                continue
            try:
                self.dispatch(value, problem)
            except Exception:  # never let one message take the server down
                log.exception("unable to handle message")

    def send_notification(self, method: str, params: dict[str, Any]) -> None:
        """A notification whose params are plain JSON already (a run's heartbeat, sent on every
        poll): framed and written here, as pygls's `protocol.notify` would frame and write it,
        without its message object, converter hook and debug formatting. Falls back to
        `protocol.notify` whenever pygls would do more than that: no writer yet, no headers
        (websocket), or its own logger wants the message."""
        protocol = self.protocol
        writer = protocol.writer
        if writer is None or not protocol._include_headers or _PYGLS_RPC_LOG.isEnabledFor(logging.INFO):
            protocol.notify(method, params)
            return
        try:
            body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params}).encode()
            result = writer.write(b"Content-Length: %d\r\n%s%s" % (len(body), _CONTENT_TYPE, body))
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)
        except BrokenPipeError:
            _PYGLS_RPC_LOG.exception("Error sending data. BrokenPipeError", exc_info=True)
            raise
        except Exception as error:  # as pygls's `_send_data` reports a failed write
            _PYGLS_RPC_LOG.exception("Error sending data", exc_info=True)
            self._report_server_error(error, JsonRpcInternalError)

    def reply_error(self, msg_id: Any, code: int, message: str) -> None:
        log.warning("JSON-RPC error %s for id %r: %s", code, msg_id, message)
        self.protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})

    def dispatch(self, data: Any, problem: str | None = _UNCHECKED) -> None:
        if not isinstance(data, dict):
            self.reply_error(None, INVALID_REQUEST, f"invalid request: expected a JSON object, got {type(data).__name__}")
            return
        msg_id = data.get("id")
        method = data.get("method")
        is_request = "id" in data and "method" in data
        if not isinstance(msg_id, int | str | None) or isinstance(msg_id, bool) or json_problem(msg_id):
            self.reply_error(None, INVALID_REQUEST, "invalid request: id must be a string or an integer")
            return
        if problem is _UNCHECKED:
            problem = json_problem(data)
        if problem is not None:
            if is_request:
                self.reply_error(msg_id, INVALID_PARAMS, f"invalid params for {ascii(method)}: {problem}")
            elif "method" not in data and msg_id is None:
                self.reply_error(None, INVALID_REQUEST, f"invalid request: {problem}")
            return
        if data.get("jsonrpc") != "2.0" or ("method" in data and not isinstance(method, str)):
            if "method" in data or "id" not in data:
                self.reply_error(msg_id, INVALID_REQUEST, 'invalid request: needs "jsonrpc": "2.0" and a string "method"')
            return
        if method is not None and not self.initialize_seen and method not in _BEFORE_INIT:
            if is_request:
                self.reply_error(msg_id, SERVER_NOT_INITIALIZED, f"server not initialized: send initialize before {method}")
            return  # notifications before initialize are dropped (LSP)
        if is_request and self.protocol._shutdown and method != "exit":
            self.reply_error(msg_id, INVALID_REQUEST, f"the server is shutting down; {method} refused")
            return
        if is_request and method == types.WORKSPACE_EXECUTE_COMMAND and self._unknown_command(data.get("params")):
            command = data["params"]["command"]
            self.reply_error(msg_id, METHOD_NOT_FOUND, f"method not found: unknown command {ascii(command)}")
            return  # pygls answers -32602; an unknown command is an unknown method (docs/protocol.md)
        try:
            message = self.protocol.structure_message(data)
        except JsonRpcException as exc:
            if is_request:
                self.reply_error(msg_id, JsonRpcInvalidParams.CODE, f"invalid params for {method}: {exc.message or 'cannot read them'}")
            return
        if method == "initialize" and is_request:
            self.initialize_seen = True
        self.protocol.handle_message(message)

    def _unknown_command(self, params: Any) -> bool:
        command = params.get("command") if isinstance(params, dict) else None
        return isinstance(command, str) and command not in self.protocol.fm.commands

    @functools.cached_property
    def handlers(self) -> Handlers:
        from .handlers import Handlers

        return Handlers(self)


def to_rpc_error(exc: CoError) -> JsonRpcException:
    from .redact import redact  # the core is loaded by now; keep start-up imports light

    return JsonRpcException(message=redact(exc.message), code=exc.code, data=exc.payload())


def method(ls: CoSidecarServer, spec: Request) -> Callable[[Any], Awaitable[Any]]:
    """co/<name>: parse params and call the handler (`Handlers.call`), map core errors to
    JSON-RPC errors, return plain JSON."""

    async def run(params: Any) -> Any:
        try:
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
