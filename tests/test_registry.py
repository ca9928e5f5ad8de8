"""The protocol registry is the one list of methods: the server, the handlers, the docs and the
editor clients all follow it."""

from __future__ import annotations

import inspect
import json
import sys
import typing
from pathlib import Path

from co_sidecar import docgen, handlers, protocol
from co_sidecar.registry import NOTIFICATIONS, REQUESTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from rpc import RpcProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_every_request_has_a_handler_typed_with_its_params_model() -> None:
    for request in REQUESTS:
        handler = getattr(handlers.Handlers, request.name, None)
        assert handler is not None, f"{request.method}: no Handlers.{request.name}"
        hints = typing.get_type_hints(handler)
        assert list(inspect.signature(handler).parameters) == ["self", "params"], request.method
        assert hints["params"] is request.params_model(), request.method


def test_examples_are_valid_params_and_results() -> None:
    for request in REQUESTS:
        request.params_model().model_validate_json(json.dumps(request.example))
        if request.answer is not None:
            request.result_model().model_validate(request.answer)
    for note in NOTIFICATIONS:
        for example in note.examples:
            note.params_model().model_validate(example)


def test_fuzzers_draw_from_the_registry() -> None:
    assert list(protocol.REQUEST_PARAMS) == [r.method for r in REQUESTS]


def test_generated_client_files_name_every_method_and_state() -> None:
    assert docgen.stale() == [], "run: python -m co_sidecar.docgen"
    ts = (ROOT / "editor-clients/vscode/src/core/protocol.generated.ts").read_text()
    lua = (ROOT / "editor-clients/nvim/lua/co_sidecar/protocol.lua").read_text()
    for request in REQUESTS:
        assert f'"{request.method}"' in ts and f'"{request.method}"' in lua
    for state in protocol.RunState:
        assert f'"{state.value}"' in ts and f'"{state.value}"' in lua
    # The hand-written client modules import the generated lists instead of keeping their own.
    hand = (ROOT / "editor-clients/vscode/src/core/protocol.ts").read_text()
    assert '"timed_out"' not in hand.replace("timed_out:", "")
    for name in ("state.lua", "commands.lua"):
        assert "'timed_out'" not in (ROOT / "editor-clients/nvim/lua/co_sidecar" / name).read_text()


def test_the_server_answers_every_registered_method(repo: Path) -> None:
    """Over stdio: every request in the registry is registered (an unknown method is -32601;
    these get a result or a co-sidecar error), and so is its co.<name> command."""
    proc = RpcProcess(cwd=repo)
    try:
        proc.initialize(repo)
        assert proc.request_raw("co/nope", {})["error"]["code"] == -32601  # what "unregistered" looks like
        for request in REQUESTS:
            if request.method in ("co/canary", "co/launch"):
                continue  # they start real work; other tests drive them
            direct = proc.request_raw(request.method, {"runId": "nope"})
            command = proc.request_raw(
                "workspace/executeCommand", {"command": f"co.{request.name}", "arguments": [{"runId": "nope"}]}
            )
            for answer in (direct, command):
                assert answer.get("error", {}).get("code") != -32601, (request.method, answer)
    finally:
        proc.close()
