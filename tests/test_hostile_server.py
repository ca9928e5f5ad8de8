"""The server never dies of input: any JSON shape, any depth, any size up to the bound gets a
JSON-RPC error and the server goes on; co/* params are strict JSON types (over real stdio and
the TCP port alike)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from boundary_faults import (  # noqa: E402
    NOT_TRUE,
    SHAPES,
    SHAPES_LIMIT,
    STRICT,
    shape_answers,
    shape_ok,
    strict_accepted,
)
from rpc import RpcProcess, frame  # noqa: E402

LIMIT = SHAPES_LIMIT  # CO_MAX_MESSAGE_BYTES for these servers


@pytest.fixture(params=["stdio", "tcp"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RpcProcess]:
    proc = RpcProcess(env={"CO_MAX_MESSAGE_BYTES": str(LIMIT)}, cwd=repo, tcp=request.param == "tcp")
    proc.initialize(repo, {"local": {"agentCommand": [sys.executable, "-c", "pass"]}})
    yield proc
    proc.close()


def still_answers(server: RpcProcess) -> None:
    assert server.alive()
    assert server.request("co/list", {}, timeout=10)["total"] >= 0


def test_any_json_shape_gets_an_error_and_the_server_goes_on(server: RpcProcess) -> None:
    assert all(len(raw) < LIMIT for _, raw, _, _ in SHAPES)
    seen = shape_answers(server)  # each shape, then a co/list that must be answered
    expected = {name: code for name, _, _, code in SHAPES}
    assert [name for name, _, alive in seen if not alive] == []
    assert [(name, found) for name, found, _ in seen if not shape_ok(expected[name], found)] == []
    assert server.request("co/list", {}, timeout=10)["total"] == 0  # nothing was launched


def test_every_shape_in_one_session_then_a_real_run(server: RpcProcess, repo: Path) -> None:
    for _, raw, _, _ in SHAPES:
        server.write(raw)
    still_answers(server)
    launched = server.request("co/launch", {"prompt": "still works", "mode": "local"})
    assert server.wait_state(launched["runId"], {"succeeded", "failed"}) == "succeeded"


def test_message_at_the_size_bound_is_answered_and_one_over_is_refused(server: RpcProcess) -> None:
    pad = "a" * (LIMIT - 200)
    body = json.dumps({"jsonrpc": "2.0", "id": 11, "method": "co/status", "params": {"runId": pad}}).encode()
    assert len(body) <= LIMIT
    server.write(frame(body))
    assert server.wait_response(11)["error"]["code"] == -32001  # unknown run: read and answered
    over = json.dumps({"jsonrpc": "2.0", "id": 12, "method": "co/list", "params": {"x": "a" * LIMIT}}).encode()
    server.write(frame(over))
    still_answers(server)
    with server.cond:
        error = server.responses.pop(None)["error"]
    assert error["code"] == -32600 and "exceeds the limit" in error["message"]


# -- strict types at the boundary ----------------------------------------------------------


def test_strict_matrix_every_param_refuses_every_wrong_json_type(server: RpcProcess) -> None:
    assert len(STRICT) > 100 and any(c[:2] == ("co/apply", "accept") for c in STRICT)
    assert strict_accepted(server) == []  # each refused with -32602 naming its field
    assert server.request("co/list", {})["total"] == 0  # not one launch got through


def test_apply_accepts_only_json_true_over_stdio(repo: Path) -> None:
    writer = [sys.executable, "-c", "open('accepted.txt', 'w').write('yes\\n')"]
    server = RpcProcess(cwd=repo)
    try:
        server.initialize(repo, {"local": {"agentCommand": writer}})
        launched = server.request("co/launch", {"prompt": "p", "mode": "local"})
        assert server.wait_state(launched["runId"], {"succeeded", "failed"}) == "succeeded"
        for accept in NOT_TRUE:
            response = server.request_raw("co/apply", {"runId": launched["runId"], "accept": accept, "strategy": "git"})
            assert "error" in response, accept
            assert server.request("co/status", {"runId": launched["runId"]})["state"] == "succeeded"
            assert not (repo / "accepted.txt").exists()  # nothing written the user did not accept
        assert server.request("co/apply", {"runId": launched["runId"], "accept": True, "strategy": "git"})["applied"]
        assert (repo / "accepted.txt").read_text() == "yes\n"
    finally:
        server.close()
