"""The server never dies of input: any JSON shape, any depth, any size up to the bound gets a
JSON-RPC error and the server goes on; co/* params are strict JSON types (over real stdio and
the TCP port alike)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from co_sidecar.protocol import REQUEST_PARAMS
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from rpc import RpcProcess, frame  # noqa: E402

LIMIT = 2_000_000  # CO_MAX_MESSAGE_BYTES for these servers


@pytest.fixture(params=["stdio", "tcp"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RpcProcess]:
    proc = RpcProcess(env={"CO_MAX_MESSAGE_BYTES": str(LIMIT)}, cwd=repo, tcp=request.param == "tcp")
    proc.initialize(repo, {"local": {"agentCommand": [sys.executable, "-c", "pass"]}})
    yield proc
    proc.close()


def still_answers(server: RpcProcess) -> None:
    assert server.alive()
    assert server.request("co/list", {}, timeout=10)["total"] >= 0


def nested(depth: int, kind: str = "array") -> str:
    return ("[" * depth + "]" * depth) if kind == "array" else ('{"a":' * depth + "1" + "}" * depth)


def request(params_json: str, msg_id: str = "7", method: str = "co/launch") -> bytes:
    return frame(f'{{"jsonrpc": "2.0", "id": {msg_id}, "method": "{method}", "params": {params_json}}}'.encode())


def in_metadata(value_json: str) -> str:
    return '{"prompt": "x", "metadata": {"a": ' + value_json + "}}"


# (name, raw message, id the error answers, expected code)
SHAPES: list[tuple[str, bytes, Any, int]] = [
    ("2,000-deep arrays in params (the red-team's 4 KB message)", request(nested(2000)), None, -32600),
    ("2,000-deep arrays in a params field", request(in_metadata(nested(2000))), None, -32600),
    ("2,000-deep objects in params", request(nested(2000, "object")), None, -32600),
    ("200,000-deep arrays (near the size bound)", request(nested(200_000)), None, -32600),
    ("65-deep metadata (over the depth bound, parses)", request(in_metadata(nested(65))), 7, -32602),
    ("deep arrays in the id", request("{}", msg_id=nested(2000)), None, -32600),
    ("deep objects in the id", request("{}", msg_id=nested(50, "object")), None, -32600),
    ("deep notification", frame(b'{"jsonrpc": "2.0", "method": "co/x", "params": ' + nested(5000).encode() + b"}"), None, -32600),
    ("deep response-shaped message", frame(b'{"jsonrpc": "2.0", "id": null, "result": ' + nested(5000).encode() + b"}"), None, -32600),
    ("top-level deep array", frame(nested(3000).encode()), None, -32600),
    ("number overflowing a double", request('{"prompt": "x", "metadata": {"n": 1e999}}'), 7, -32700),
    ("negative overflow", request('{"runId": -1e400}', method="co/status"), 7, -32700),
    ("5,000-digit integer", request('{"limit": ' + "9" * 5000 + "}", method="co/list"), 7, -32700),
    ("NaN literal", request('{"limit": NaN}', method="co/list"), 7, -32700),
    ("Infinity literal", request('{"prompt": "x", "metadata": {"n": Infinity}}'), 7, -32700),
    ("lone surrogate in the prompt", request('{"prompt": "fix \\ud800 it", "mode": "local"}'), 7, -32602),
    ("lone surrogate in a key", request('{"prompt": "x", "metadata": {"\\udfff": 1}}'), 7, -32602),
    ("lone surrogate in the runId", request('{"runId": "\\ud83d"}', method="co/status"), 7, -32602),
    ("lone surrogate in the method", frame(b'{"jsonrpc": "2.0", "id": 7, "method": "co/\\ud800", "params": {}}'), 7, -32602),
    ("lone surrogate in the id", request("{}", msg_id='"\\udc00"'), None, -32600),
    ("huge integer id", request("{}", msg_id="1" + "0" * 400, method="co/list"), 10**400, None),
]


def test_any_json_shape_gets_an_error_and_the_server_goes_on(server: RpcProcess) -> None:
    for name, raw, answers, code in SHAPES:
        assert len(raw) < LIMIT
        server.write(raw)
        still_answers(server)
        with server.cond:
            found = server.responses.pop(answers, None)
            server.responses.clear()
        assert found is not None, name
        if code is None:  # a well-formed request: answered, whatever the answer
            continue
        assert found["error"]["code"] == code, (name, found)
        assert "Traceback" not in found["error"]["message"]
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

SAMPLES: list[Any] = [True, False, "yes", "true", "1", "", 1, 0, 1.0, 2.5, [], [True], {}, {"a": 1}]


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}[type(value)]


def allowed_types(prop: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    """The JSON types a field's schema allows (pydantic's JSON schema of the params model)."""
    if "$ref" in prop:
        return allowed_types(defs[prop["$ref"].split("/")[-1]], defs)
    if "anyOf" in prop:
        return set().union(*(allowed_types(p, defs) for p in prop["anyOf"]))
    if "enum" in prop or "const" in prop:
        values = prop.get("enum", [prop.get("const")])
        return {json_type(v) for v in values}
    kind = prop.get("type")
    if kind == "number":
        return {"number", "integer"}
    return {kind} if kind else {"string", "integer", "number", "boolean", "array", "object", "null"}


def strict_cases() -> list[tuple[str, str, Any]]:
    cases = []
    for method, model in REQUEST_PARAMS.items():
        schema = model.model_json_schema(by_alias=True)
        defs = schema.get("$defs", {})
        for name, prop in schema["properties"].items():
            ok = allowed_types(prop, defs)
            cases += [(method, name, v) for v in SAMPLES if json_type(v) not in ok]
    return cases


STRICT = strict_cases()


def test_strict_matrix_every_param_refuses_every_wrong_json_type(server: RpcProcess) -> None:
    assert len(STRICT) > 100 and any(c[:2] == ("co/apply", "accept") for c in STRICT)
    launch = {"prompt": "x", "mode": "local"}
    base = {
        "co/launch": launch, "co/route": launch, "co/apply": {"runId": "r", "accept": True},
        "co/followUp": {"runId": "r", "prompt": "x"},
    }  # fmt: skip
    accepted = []
    for method, name, value in STRICT:
        params = {**base.get(method, {}), name: value}
        if method in ("co/status", "co/cancel", "co/reject", "co/diff") and name != "runId":
            params.setdefault("runId", "r")
        response = server.request_raw(method, params, timeout=30)
        error = response.get("error")
        if error is None or error["code"] != -32602 or not error["data"]["field"].startswith(name):
            accepted.append((method, name, value, response))
    assert accepted == []
    assert server.request("co/list", {})["total"] == 0  # not one launch got through


def test_apply_accepts_only_json_true_over_stdio(repo: Path) -> None:
    writer = [sys.executable, "-c", "open('accepted.txt', 'w').write('yes\\n')"]
    server = RpcProcess(cwd=repo)
    try:
        server.initialize(repo, {"local": {"agentCommand": writer}})
        launched = server.request("co/launch", {"prompt": "p", "mode": "local"})
        assert server.wait_state(launched["runId"], {"succeeded", "failed"}) == "succeeded"
        for accept in ["yes", "true", 1, 1.0, [True], {"accept": True}, None, False]:
            response = server.request_raw("co/apply", {"runId": launched["runId"], "accept": accept, "strategy": "git"})
            assert "error" in response, accept
            assert server.request("co/status", {"runId": launched["runId"]})["state"] == "succeeded"
            assert not (repo / "accepted.txt").exists()  # nothing written the user did not accept
        assert server.request("co/apply", {"runId": launched["runId"], "accept": True, "strategy": "git"})["applied"]
        assert (repo / "accepted.txt").read_text() == "yes\n"
    finally:
        server.close()
