"""What transport.py relies on in pygls, pinned: if a pygls upgrade changes any of it, a test
here fails and says what broke and where it is used (docs/architecture.md, "Transport").

Every test drives pygls's own code with the transport's pieces plugged in through its public
extension points: `protocol_cls`, `converter_factory`, `get_message_type`, `structure_message`,
`handle_message`, `set_writer`/`writer`, the builtin `shutdown`/`exit` handlers, `start_io`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import io
import json
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol.json_rpc import RPCNotification, RPCRequest

from co_sidecar.errors import InvalidParams
from co_sidecar.protocol import ListParams
from co_sidecar.server import CoSidecarServer
from co_sidecar.transport import CoProtocol, CoRequest

PYGLS = importlib.metadata.version("pygls")


def broke(what: str, used_by: str) -> str:
    return f"pygls {PYGLS}: {what}; transport.py relies on it for {used_by} (see docs/architecture.md, Transport)"


class Capture:
    """A synchronous writer as pygls's `set_writer` takes it: `write(bytes)`, `close()`."""

    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def messages(self) -> list[dict[str, Any]]:
        out, data = [], self.data
        while data:
            head, _, rest = data.partition(b"\r\n\r\n")
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
            size = int(headers["Content-Length"])
            out.append(json.loads(rest[:size]))
            data = rest[size:]
        return out


def server_with_writer() -> tuple[CoSidecarServer, Capture]:
    server = CoSidecarServer()
    out = Capture()
    server.protocol.set_writer(out)
    return server, out


async def answered(out: Capture, count: int = 1) -> list[dict[str, Any]]:
    """The messages written once pygls has run the handler (a few loop turns)."""
    for _ in range(200):
        if len(out.messages()) >= count:
            break
        await asyncio.sleep(0)
    return out.messages()


def test_protocol_cls_and_converter_factory_build_the_servers_protocol() -> None:
    server = CoSidecarServer()
    assert isinstance(server.protocol, CoProtocol), broke(
        "LanguageServer(protocol_cls=...) no longer builds server.protocol from it", "CoProtocol (the guard, co/* types)"
    )
    # The converter the factory made is the one structure_message uses (next test too).
    message = server.protocol.structure_message({"jsonrpc": "2.0", "id": 1, "method": "co/list", "params": {"limit": 5}})
    assert isinstance(message, CoRequest), broke(
        "structure_message no longer asks get_message_type for a request's type, or ignores converter_factory's hooks",
        "co/* requests whose params are the registry's models",
    )


def test_a_co_request_is_structured_once_into_its_params_model() -> None:
    protocol = CoSidecarServer().protocol
    message = protocol.structure_message({"jsonrpc": "2.0", "id": 7, "method": "co/list", "params": {"limit": 5}})
    assert (message.id, message.method, message.params) == (7, "co/list", ListParams(limit=5))
    refused = protocol.structure_message({"jsonrpc": "2.0", "id": 8, "method": "co/list", "params": {"limit": "5"}})
    assert isinstance(refused.params, InvalidParams) and refused.params.data == {"field": "limit"}
    # A co/* method sent as a notification is still one: pygls runs it and answers nothing.
    note = protocol.structure_message({"jsonrpc": "2.0", "method": "co/list", "params": {"limit": 1}})
    assert isinstance(note, RPCNotification) and not isinstance(note, RPCRequest) and note.params == ListParams(limit=1)
    # Notifications the server sends keep pygls's own types (co/runUpdate is plain JSON).
    assert protocol.get_message_type("co/runUpdate") is None
    assert protocol.get_message_type(types.INITIALIZE) is types.InitializeRequest


def test_an_unreadable_lsp_message_raises_a_json_rpc_exception() -> None:
    protocol = CoSidecarServer().protocol
    bad = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": "nope", "capabilities": {}}}
    with pytest.raises(JsonRpcException):  # CoProtocol.receive answers it with -32602
        protocol.structure_message(bad)


async def test_handle_message_calls_the_feature_with_the_params_and_writes_its_result() -> None:
    server, out = server_with_writer()
    seen: list[Any] = []

    @server.feature("co/list")
    async def co_list(params: Any) -> Any:
        seen.append(params)
        return {"runs": [], "total": 0}

    server.protocol.handle_message(CoRequest(id=3, method="co/list", jsonrpc="2.0", params=ListParams(limit=2)))
    [response] = await answered(out)
    assert seen == [ListParams(limit=2)], broke("handle_message no longer passes message.params to the feature", "co/* handlers")
    assert response == {"jsonrpc": "2.0", "id": 3, "result": {"runs": [], "total": 0}}, broke(
        "a request's result is no longer written to protocol.writer as a framed response", "the BatchingWriter"
    )


async def test_a_json_rpc_exception_from_a_handler_is_answered_with_its_code_and_data() -> None:
    server, out = server_with_writer()

    @server.feature("co/status")
    async def co_status(params: Any) -> Any:
        raise JsonRpcException(message="unknown runId: 'r'", code=-32001, data={"category": "run_not_found"})

    server.protocol.handle_message(CoRequest(id=4, method="co/status", jsonrpc="2.0", params=None))
    [response] = await answered(out)
    assert response["error"] == {"code": -32001, "message": "unknown runId: 'r'", "data": {"category": "run_not_found"}}, broke(
        "a JsonRpcException raised by a handler no longer becomes its error response", "server.to_rpc_error (codes, data)"
    )


async def test_execute_command_hands_a_star_args_command_the_raw_arguments() -> None:
    server, out = server_with_writer()

    @server.command("t.echo")
    async def echo(*args: Any) -> Any:
        return list(args)

    request = {"jsonrpc": "2.0", "id": 5, "method": "workspace/executeCommand", "params": {"command": "t.echo", "arguments": [{"limit": "x", "a-b": 1}]}}
    server.protocol.handle_message(server.protocol.structure_message(request))
    [response] = await answered(out)
    assert response["result"] == [{"limit": "x", "a-b": 1}], broke(
        "workspace/executeCommand no longer hands *args commands their arguments as plain JSON", "co.<name> commands"
    )


def frames(data: bytes, headers: bool) -> list[tuple[str, Any]]:
    """(header block, parsed body) per message; bodies compared parsed (key order is free)."""
    if not headers:
        return [("", json.loads(data))]
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        size = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        out.append((head.decode().replace(str(size), "N"), json.loads(rest[:size])))
        data = rest[size:]
    return out


@pytest.mark.parametrize("headers", [True, False])
def test_our_framing_is_pygls_framing(headers: bool) -> None:
    ours, theirs = CoSidecarServer().protocol, CoSidecarServer().protocol
    for protocol in (ours, theirs):
        protocol.set_writer(Capture(), include_headers=headers)
    params = {"runId": "r1", "message": "caf\u00e9 \u2603", "n": 3}
    ours.notify_json("co/runUpdate", params)
    theirs.notify("co/runUpdate", params)
    got, want = (frames(p.writer.data, headers) for p in (ours, theirs))  # type: ignore[union-attr]
    assert got == want, broke(
        "the bytes pygls writes for a message changed (headers, Content-Type, encoding)", "write_json (heartbeats, error replies)"
    )


async def test_shutdown_is_pyglss_with_the_guard_flag_set_after_it() -> None:
    server, out = server_with_writer()
    protocol = server.protocol
    assert protocol.fm.builtin_features[types.SHUTDOWN].__func__ is CoProtocol.lsp_shutdown, broke(
        "builtin features are no longer the protocol's lsp_method-decorated methods", "CoProtocol.lsp_shutdown (the shutdown guard)"
    )
    ran: list[str] = []

    @server.feature(types.SHUTDOWN)
    async def on_shutdown(params: Any) -> None:
        ran.append("user handler")
        assert not protocol.shut_down

    protocol.handle_message(protocol.structure_message({"jsonrpc": "2.0", "id": 6, "method": "shutdown"}))
    [response] = await answered(out)
    assert ran == ["user handler"] and response == {"jsonrpc": "2.0", "id": 6, "result": None}
    assert protocol.shut_down


def test_exit_closes_the_writer_and_raises_system_exit_out_of_handle_message() -> None:
    server, out = server_with_writer()
    protocol = server.protocol
    with pytest.raises(SystemExit) as ended:
        protocol.handle_message(protocol.structure_message({"jsonrpc": "2.0", "method": "exit"}))
    assert out.closed and ended.value.code == 1, broke(  # 1: exit without shutdown first
        "exit no longer closes the writer and leaves by SystemExit from handle_message", "transport.serve ending the session"
    )


def test_start_io_is_served_by_the_transport() -> None:
    """`co-sidecar serve` calls pygls's `start_io`; ours reads with the transport, so junk is
    answered (pygls's own loop would say nothing) and the session goes on to `initialize`."""
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {}}}).encode()
    stdin = io.BytesIO(b"Content-Length: x\r\n\r\n" + b"Content-Length: %d\r\n\r\n%s" % (len(init), init))

    class Stdout(io.BytesIO):
        def close(self) -> None:  # keep the bytes readable after the session
            pass

    stdout = Stdout()
    server = CoSidecarServer()
    assert type(server).start_io is not LanguageServer.start_io
    server.start_io(stdin, stdout)
    capture = Capture()
    capture.data = stdout.getvalue()
    first, second = capture.messages()
    assert first["error"]["code"] == -32700 and "Content-Length" in first["error"]["message"]
    assert second["id"] == 1 and second["result"]["serverInfo"]["name"] == "co-sidecar", broke(
        "start_io(stdin, stdout) is no longer the stdio entry point", "co-sidecar serve"
    )


async def test_co_params_are_validated_once_on_the_way_to_the_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    from co_sidecar import handlers
    from co_sidecar.server import create_server

    calls: list[Any] = []
    real = handlers.parse_params

    def counting(model: Any, raw: Any) -> Any:
        calls.append(raw)
        return real(model, raw)

    monkeypatch.setattr(handlers, "parse_params", counting)
    server = create_server()
    out = Capture()
    server.protocol.set_writer(out)
    server.protocol.receive({"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {"processId": None, "capabilities": {}}})
    server.protocol.receive({"jsonrpc": "2.0", "id": 10, "method": "co/list", "params": {"limit": 3}})
    responses = {m["id"]: m for m in await answered(out, 2)}
    assert responses[10]["result"] == {"runs": [], "total": 0}
    assert calls == [{"limit": 3}]
