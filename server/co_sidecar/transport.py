"""The JSON-RPC transport, one for stdio and TCP: framing, the guard, dispatch into pygls.

Read side: `FramedReader` reads LSP base-protocol frames itself (bounded size, strict JSON,
bounded depth, resynchronisation after broken framing) and answers what it cannot use
(-32700, -32600) where pygls's own loop would go silent. Write side: `BatchingWriter`, one
write per event-loop turn. Between them `CoProtocol.receive` answers -32002 before
`initialize` and -32600 after `shutdown`, then hands the message to pygls.

Only pygls's public extension points are used (docs/architecture.md, "Transport"; every one
of them is pinned by tests/test_pygls_contract.py): a protocol class (`protocol_cls`) whose
`get_message_type` names `CoRequest` for every co/* method, a converter (`converter_factory`)
whose hook for `CoRequest` validates the params with the registry's pydantic model, and
`structure_message` / `handle_message` / `set_writer` / `writer`. A co/* handler gets its
params as that model, validated once.

Import-light, as server.py: pydantic loads with the first co/* request.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
import select
import threading
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Protocol

import attrs
from cattrs import Converter
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import JsonRPCNotification, LanguageServerProtocol, lsp_method

from .errors import CoError
from .jsonrpc import plain_converter
from .registry import REQUEST_BY_METHOD

log = logging.getLogger(__name__)
# pygls's JSON-RPC logger: messages we frame ourselves are logged there as pygls logs its own.
_PYGLS_RPC_LOG = logging.getLogger("pygls.protocol.json_rpc")
# The headers pygls writes (`JsonRPCProtocol._send_data`); the contract test holds them equal.
_CONTENT_TYPE = b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n"

# Framing limits (see docs/reliability.md).
MAX_MESSAGE_BYTES = int(os.environ.get("CO_MAX_MESSAGE_BYTES") or 64 * 1024 * 1024)
MAX_HEADER_LINE = 8 * 1024
DISCARD_CHUNK = 1024 * 1024
# Containers nested deeper than this are refused before anything walks them (json, pydantic,
# cattrs and the manifest writer all recurse); real co/* params nest a handful of levels.
MAX_JSON_DEPTH = 64
PARSE_ERROR, INVALID_REQUEST, SERVER_NOT_INITIALIZED = -32700, -32600, -32002
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
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
        write_all(self._stdout, data)

    def close(self) -> None:
        self.flush()
        self._stdout.close()


def write_all(stream: BinaryIO, data: bytes) -> None:
    """Write every byte of `data`. An unbuffered stdout (PYTHONUNBUFFERED=1 makes
    sys.stdout.buffer a raw FileIO) takes one write(2) per call: a pipe write interrupted by a
    signal returns a partial count, and a non-blocking one None; the rest is written after,
    never dropped (a dropped tail splices the next message into this one's body)."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if written is None:  # non-blocking and full: wait until the reader drains it
            select.select([], [stream], [])
            continue
        view = view[written:]
    stream.flush()


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


# -- the pygls side: message type, converter, protocol class --------------------------------


@attrs.define
class CoRequest:
    """A co/* request as pygls hands it to the handler: `params` is the registry's params model,
    validated (or the `CoError` that refused the params: the handler raises it, so the client
    gets it as any other error of the method)."""

    id: int | str
    method: str
    jsonrpc: str
    params: Any


def _structure_request(obj: dict[str, Any], cls: type[CoRequest]) -> Any:
    from .handlers import parse_params  # pydantic: loaded with the first co/* request

    spec = REQUEST_BY_METHOD[obj["method"]]
    params: Any
    try:
        params = parse_params(spec.params_model(), obj.get("params"))
    except CoError as exc:
        params = exc
    if "id" not in obj:  # a co/* method sent as a notification: pygls runs it, unanswered
        return JsonRPCNotification(method=obj["method"], jsonrpc=obj["jsonrpc"], params=params)
    return cls(**{**obj, "params": params})


def server_converter() -> Converter:
    """The server's converter: plain JSON for what pygls does not know (`plain_converter`), and
    co/* requests structured with their params models."""
    converter = plain_converter()
    converter.register_structure_hook(CoRequest, _structure_request)
    return converter


class CoProtocol(LanguageServerProtocol):
    """pygls's LSP protocol with the co/* message types, the guard and plain-JSON framing."""

    def __init__(self, server: Any, converter: Converter):
        super().__init__(server, converter)
        self.headers = True
        self.initialize_seen = False
        self.shut_down = False

    def set_writer(self, writer: Any, include_headers: bool = True) -> None:
        super().set_writer(writer, include_headers)
        self.headers = include_headers

    def get_message_type(self, method: str) -> type[Any] | None:  # type: ignore[override]  # pygls's is lru_cache-wrapped
        if method in REQUEST_BY_METHOD:
            return CoRequest
        return super().get_message_type(method)

    @lsp_method(types.SHUTDOWN)
    def lsp_shutdown(self, *args: Any) -> Generator[Any, Any, None]:
        """pygls's shutdown, then the guard refuses requests (pygls would drop them silently)."""
        yield from super().lsp_shutdown(*args)
        self.shut_down = True

    # -- writing ---------------------------------------------------------------------
    def write_json(self, message: dict[str, Any]) -> None:
        """A message that is plain JSON already (a heartbeat, an error reply), framed and
        written as pygls frames and writes its own (`_send_data`), without its message
        object, converter walk and debug formatting."""
        writer = self.writer
        if writer is None:
            log.error("unable to send data, no transport")
            return
        try:
            body = json.dumps(message).encode()
            if _PYGLS_RPC_LOG.isEnabledFor(logging.INFO):
                _PYGLS_RPC_LOG.info("Sending data: %s", body.decode())
            data = b"Content-Length: %d\r\n%s%s" % (len(body), _CONTENT_TYPE, body) if self.headers else body
            result = writer.write(data)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)
        except BrokenPipeError:
            _PYGLS_RPC_LOG.exception("Error sending data. BrokenPipeError")
            raise
        except Exception:  # as pygls reports a failed write: logged, the server goes on
            _PYGLS_RPC_LOG.exception("Error sending data")

    def notify_json(self, method: str, params: dict[str, Any]) -> None:
        self.write_json({"jsonrpc": "2.0", "method": method, "params": params})

    def reply_error(self, msg_id: Any, code: int, message: str) -> None:
        log.warning("JSON-RPC error %s for id %r: %s", code, msg_id, message)
        self.write_json({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})

    def _unknown_command(self, params: Any) -> bool:
        command = params.get("command") if isinstance(params, dict) else None
        return isinstance(command, str) and command not in self.fm.commands

    # -- reading -----------------------------------------------------------------------
    def receive(self, data: Any, problem: str | None = _UNCHECKED) -> None:
        """One parsed message: checked (shape, id, depth, the guard), then structured and
        handled by pygls. `problem` is `json_problem(data)` when the reader thread has
        computed it already."""
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
        if is_request and self.shut_down and method != "exit":
            self.reply_error(msg_id, INVALID_REQUEST, f"the server is shutting down; {method} refused")
            return
        if is_request and method == types.WORKSPACE_EXECUTE_COMMAND and self._unknown_command(data.get("params")):
            command = data["params"]["command"]
            self.reply_error(msg_id, METHOD_NOT_FOUND, f"method not found: unknown command {ascii(command)}")
            return  # pygls answers -32602; an unknown command is an unknown method (docs/protocol.md)
        try:
            message = self.structure_message(data)
        except JsonRpcException as exc:
            if is_request:
                self.reply_error(msg_id, JsonRpcInvalidParams.CODE, f"invalid params for {method}: {exc.message or 'cannot read them'}")
            return
        if method == "initialize" and is_request:
            self.initialize_seen = True
        self.handle_message(message)


# -- one connection -----------------------------------------------------------------------


class Endpoint(Protocol):
    """What `serve` needs of the server (`server.CoSidecarServer`)."""

    @property
    def protocol(self) -> CoProtocol: ...

    @property
    def thread_pool(self) -> ThreadPoolExecutor: ...

    def shutdown(self) -> None: ...

    def connection_started(self, loop: asyncio.AbstractEventLoop) -> None: ...

    async def connection_ended(self) -> None: ...


def serve(server: Endpoint, reader: FramedReader, stdout: BinaryIO, first: Any = None) -> None:
    """Serve one connection until its end: stdio, or an authenticated TCP connection whose
    first message (`first`, already read) is handled before the rest."""
    writer = BatchingWriter(stdout)
    server.protocol.set_writer(writer)
    try:
        asyncio.run(_session(server, reader, first))
    except BrokenPipeError:
        log.error("connection to the client is lost; shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass  # `exit` (pygls ends the process with SystemExit) or ^C
    finally:
        writer.flush()  # what the last turn wrote, if the loop stopped before its flush
        server.shutdown()


async def _session(server: Endpoint, reader: FramedReader, first: Any) -> None:
    loop = asyncio.get_running_loop()
    server.connection_started(loop)
    protocol = server.protocol
    try:
        if first is not None:
            protocol.receive(first)
        while True:
            try:
                item = await loop.run_in_executor(server.thread_pool, read_checked, reader)
            except OSError as exc:  # the input is gone (closed, reset): as at its end
                log.error("cannot read from the client: %s", exc)
                break
            if item is None:
                break
            kind, value, problem = item
            if kind == "error":
                code, text, *msg_id = value
                protocol.reply_error(msg_id[0] if msg_id else None, code, text)
                continue
            try:
                protocol.receive(value, problem)
            except Exception:  # never let one message take the server down
                log.exception("unable to handle message")
    finally:
        # The client is gone (end of input) or the loop stopped: end runs as `shutdown` would.
        await server.connection_ended()
