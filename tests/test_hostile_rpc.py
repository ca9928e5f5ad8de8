"""Hostile JSON-RPC over the real server's stdio and its TCP port: broken framing, junk
bodies, bad params.

Raw bytes go to `co-sidecar serve` (and `serve --tcp`, after its token) through scripts/rpc.py.
Every bad message gets a clear JSON-RPC error (or is dropped, as LSP asks for notifications),
and the server keeps answering valid requests afterwards: one transport serves both.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from co_sidecar.protocol import REQUEST_PARAMS, param_names
from conftest import ROOT, make_repo

sys.path.insert(0, str(ROOT / "scripts"))
from rpc import RpcProcess, frame  # noqa: E402

TRANSPORTS = ["stdio", "tcp"]
KNOWN_ERRORS = {-32700, -32600, -32601, -32602, -32001, -32002, -32003, -32004, -32005, -32006, -32007}


@pytest.fixture(params=TRANSPORTS)
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RpcProcess]:
    proc = RpcProcess(env={"CO_MAX_MESSAGE_BYTES": "100000"}, cwd=repo, tcp=request.param == "tcp")
    proc.initialize(repo, {"local": {"agentCommand": [sys.executable, "-c", "pass"]}})
    yield proc
    proc.close()


@pytest.fixture(scope="module", params=TRANSPORTS)
def framing_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RpcProcess]:
    """One server per transport for every framing case (each is followed by a request that
    must be answered, so the cases cannot leak into each other)."""
    tmp = tmp_path_factory.mktemp(f"framing-{request.param}")
    repo = make_repo(tmp / "ws")
    env = {"CO_MAX_MESSAGE_BYTES": "100000", "CO_SCRATCH_ROOT": str(tmp / "scratch"), "CODEX_HOME": str(tmp / "codex-home")}
    proc = RpcProcess(env=env, cwd=repo, tcp=request.param == "tcp")
    proc.initialize(repo, {"local": {"agentCommand": [sys.executable, "-c", "pass"]}})
    yield proc
    proc.close()


def errors_with_null_id(server: RpcProcess) -> list[dict[str, Any]]:
    with server.cond:
        found = server.responses.pop(None, None)
    return [found["error"]] if found else []


def still_answers(server: RpcProcess) -> None:
    assert server.alive()
    assert server.request("co/list", {}, timeout=10) == {"runs": [], "total": 0}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_requests_before_initialize_get_server_not_initialized(repo: Path, transport: str) -> None:
    proc = RpcProcess(cwd=repo, tcp=transport == "tcp")
    try:
        if transport == "stdio":  # over TCP the first message must be initialize, with the token
            early = proc.request_raw("co/list", {}, timeout=10)
            assert early["error"]["code"] == -32002
            assert "not initialized" in early["error"]["message"]
        # An initialize that cannot be read initializes nothing: the guard still holds.
        bad = proc.request_raw("initialize", {"processId": "nope", "capabilities": {}, "initializationOptions": proc.auth_options()})
        assert bad["error"]["code"] == -32602
        early = proc.request_raw("co/list", {}, timeout=10)
        assert early["error"]["code"] == -32002 and "not initialized" in early["error"]["message"]
        proc.notify("co/whatever", {})  # a notification before initialize is dropped silently
        proc.initialize(repo)
        assert proc.request("co/list", {}, timeout=10) == {"runs": [], "total": 0}
    finally:
        proc.close()


FRAMING = [
    ("non-JSON body", frame(b"{not json"), -32700, "not JSON"),
    ("non-numeric Content-Length", b"Content-Length: abc\r\n\r\n{}", -32700, "Content-Length"),
    ("negative Content-Length", b"Content-Length: -5\r\n\r\n", -32700, "Content-Length"),
    ("no Content-Length", b"Content-Type: x\r\n\r\n", -32700, "Content-Length"),
    ("zero-length body", b"Content-Length: 0\r\n\r\n", -32700, "not JSON"),
    ("body shorter than declared", b"Content-Length: 10\r\n\r\n{}", -32700, "shorter"),
    ("JSON array (batch)", frame(b"[1, 2]"), -32600, "JSON object"),
    ("JSON number", frame(b"42"), -32600, "JSON object"),
    ("not UTF-8", frame(b"\xff\xfe\x00"), -32700, "not JSON"),
    ("oversized message", frame(b'{"pad": "' + b"a" * 200_000 + b'"}'), -32600, "exceeds the limit"),
    ("object id", frame(b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "co/list"}'), -32600, "id"),
]


@pytest.mark.parametrize(("raw", "code", "words"), [f[1:] for f in FRAMING], ids=[f[0] for f in FRAMING])
def test_broken_framing_gets_a_clear_error_and_the_server_stays_up(
    framing_server: RpcProcess, raw: bytes, code: int, words: str
) -> None:
    server = framing_server
    server.write(raw)
    still_answers(server)  # the valid request right after the junk is answered
    [error] = errors_with_null_id(server)
    assert error["code"] == code and words in error["message"]


def test_unknown_methods_and_missing_jsonrpc_version(server: RpcProcess) -> None:
    unknown = server.request_raw("co/frobnicate", {})
    assert unknown["error"]["code"] == -32601 and "co/frobnicate" in unknown["error"]["message"]
    server.notify("co/frobnicate", {})  # unknown notification: ignored
    server.write(frame(json.dumps({"id": 77, "method": "co/list"}).encode()))
    assert server.wait_response(77)["error"]["code"] == -32600
    still_answers(server)


# -- property tests over the co/* params --------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
# co/canary is left out: it starts a cloud task (or an emulator) per call.
FIELDS = {m: param_names(model) for m, model in REQUEST_PARAMS.items() if m != "co/canary"}


@st.composite
def co_requests(draw: st.DrawFn) -> tuple[str, Any]:
    method = draw(st.sampled_from(sorted(FIELDS)))
    if draw(st.integers(0, 9)) == 0:
        return method, draw(json_values)  # params that are not even an object
    fields = draw(st.lists(st.sampled_from(FIELDS[method]), unique=True))
    params = {name: draw(json_values) for name in fields}
    if method == "co/launch" and "prompt" in params and draw(st.booleans()):
        params["mode"] = "local"  # sometimes a launch that can really run
    return method, params


def test_property_random_params_give_a_result_or_a_clear_error(server: RpcProcess) -> None:
    seen: dict[str, int] = {"result": 0, "error": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(co_requests())
    def check(request: tuple[str, Any]) -> None:
        method, params = request
        response = server.request_raw(method, params, timeout=30)
        if "error" in response:
            error = response["error"]
            assert error["code"] in KNOWN_ERRORS, (method, params, error)
            assert error["message"] and "Traceback" not in error["message"], error
            seen["error"] += 1
        else:
            seen["result"] += 1
        # The same params through workspace/executeCommand take the same path.
        command = server.request_raw(
            "workspace/executeCommand", {"command": method.replace("/", "."), "arguments": [params]}
        )
        if "error" in command:
            assert command["error"]["code"] in KNOWN_ERRORS, (method, params, command)

    check()
    assert server.alive()
    assert isinstance(server.request("co/list", {}, timeout=10)["runs"], list)
    assert seen["error"] > 0 and seen["result"] > 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_requests_after_shutdown_are_refused_and_exit_ends_the_server(repo: Path, transport: str) -> None:
    proc = RpcProcess(cwd=repo, tcp=transport == "tcp")
    try:
        proc.initialize(repo)
        assert proc.request("shutdown", None, timeout=15) is None
        late = proc.request_raw("co/list", {}, timeout=10)  # pygls alone would never answer it
        assert late["error"]["code"] == -32600 and "shutting down" in late["error"]["message"]
        proc.notify("exit")
        assert proc.proc.wait(15) == 0
    finally:
        proc.close()
