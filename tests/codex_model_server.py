"""A scripted stand-in for the OpenAI Responses API, on loopback, for running the real Codex CLI
offline (tests/test_codex_cli.py).

`codex exec` streams each model turn from `POST {base_url}/responses` as server-sent events.
This server answers those requests from a script: a list of `Turn`s, one per request, in order.
A turn is either a stream of Responses events (tool calls, an assistant message), an HTTP error,
or a stream that stalls (a long-running model turn). Every request is recorded, so a test can
check what codex sent: the prompt, the tools it offered, the output of a tool it ran, the
headers (which API key).

Event shapes follow the Responses API streaming format as codex consumes it:
`response.created`, `response.output_item.done` (one per output item: `message`,
`function_call`, `custom_tool_call`), then `response.completed` (or `response.failed`).

    with ModelServer([Turn.apply_patch(PATCH), Turn.message("done")]) as model:
        ... run codex with base_url = model.base_url ...
        assert model.requests[0].prompt_texts()
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

Json = dict[str, Any]


@dataclass
class Turn:
    """One answer to one `POST /responses`.

    `items` are the output items streamed as `response.output_item.done` events, between
    `response.created` and `response.completed`. `status` other than 200 answers with that
    HTTP error and `error` as the body instead. `stall_seconds` holds the stream open after
    `response.created` before anything else (a model that takes long). `failed` ends the
    stream with `response.failed` carrying that message instead of `response.completed`.
    """

    items: list[Json] = field(default_factory=list)
    status: int = 200
    error: str = ""
    stall_seconds: float = 0.0
    failed: str = ""

    @staticmethod
    def message(text: str) -> Turn:
        """A final assistant message: codex ends the turn (and `codex exec` exits 0)."""
        return Turn([message_item(text)])

    @staticmethod
    def apply_patch(patch: str, call_id: str = "call-patch-1") -> Turn:
        """The model edits files with codex's `apply_patch` tool (freeform custom tool)."""
        return Turn([apply_patch_item(patch, call_id)])

    @staticmethod
    def shell(command: str, call_id: str = "call-shell-1") -> Turn:
        """The model runs a shell command with codex's `exec_command` tool."""
        return Turn([shell_item(command, call_id)])

    @staticmethod
    def http_error(status: int, message: str) -> Turn:
        return Turn(status=status, error=message)

    @staticmethod
    def stall(seconds: float) -> Turn:
        return Turn(stall_seconds=seconds)


def message_item(text: str, item_id: str = "msg-1") -> Json:
    return {
        "type": "message",
        "role": "assistant",
        "id": item_id,
        "content": [{"type": "output_text", "text": text}],
    }


def apply_patch_item(patch: str, call_id: str) -> Json:
    return {"type": "custom_tool_call", "name": "apply_patch", "input": patch, "call_id": call_id}


def shell_item(command: str, call_id: str) -> Json:
    return {
        "type": "function_call",
        "name": "exec_command",
        "arguments": json.dumps({"cmd": command}),
        "call_id": call_id,
    }


@dataclass
class Request:
    """One request codex made."""

    method: str
    path: str
    headers: dict[str, str]
    body: Json | None

    def input_items(self) -> list[Json]:
        items = (self.body or {}).get("input")
        return items if isinstance(items, list) else []

    def texts(self, role: str = "user") -> list[str]:
        """Every `input_text` span of the input messages with `role`."""
        return [
            span.get("text", "")
            for item in self.input_items()
            if item.get("type") == "message" and item.get("role") == role
            for span in item.get("content") or []
            if isinstance(span, dict) and span.get("type") == "input_text"
        ]

    def tool_names(self) -> list[str]:
        tools = (self.body or {}).get("tools") or []
        return [str(t.get("name") or t.get("type")) for t in tools if isinstance(t, dict)]

    def call_output(self, call_id: str) -> Json | None:
        """The `*_call_output` item codex sent back for the tool call `call_id`."""
        for item in self.input_items():
            if str(item.get("type", "")).endswith("call_output") and item.get("call_id") == call_id:
                return item
        return None


def sse(events: Iterable[Json]) -> Iterator[bytes]:
    for event in events:
        yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


class ModelServer:
    """The scripted model on 127.0.0.1 (a thread). `base_url` ends in /v1."""

    def __init__(self, turns: Iterable[Turn]):
        self.turns = list(turns)
        self.requests: list[Request] = []
        self.responses_served = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._record(self, None)
                self._json(404, {"error": {"message": f"not scripted: GET {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                server._record(self, body)
                if not self.path.rstrip("/").endswith("/responses"):
                    self._json(404, {"error": {"message": f"not scripted: POST {self.path}"}})
                    return
                turn = server._next_turn()
                if turn.status != 200:
                    self._json(turn.status, {"error": {"message": turn.error, "type": "scripted"}})
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    for chunk in server._stream(turn):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _json(self, status: int, payload: Json) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def model_requests(self) -> list[Request]:
        """The `POST …/responses` requests (one per model turn), in order."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/responses")]

    def _record(self, handler: BaseHTTPRequestHandler, body: Json | None) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append(Request(handler.command, handler.path, headers, body))

    def _next_turn(self) -> Turn:
        with self._lock:
            index = self.responses_served
            self.responses_served += 1
        if index < len(self.turns):
            return self.turns[index]
        # Past the script: end the conversation rather than leave codex retrying.
        return Turn.message("(script exhausted)")

    def _stream(self, turn: Turn) -> Iterator[bytes]:
        response_id = f"resp-{next(self._ids)}"
        yield from sse([{"type": "response.created", "response": {"id": response_id}}])
        if turn.stall_seconds:
            deadline = time.monotonic() + turn.stall_seconds
            while time.monotonic() < deadline and not self._stop.is_set():
                time.sleep(0.05)
        for item in turn.items:
            yield from sse([{"type": "response.output_item.done", "item": item}])
        if turn.failed:
            end: Json = {
                "type": "response.failed",
                "response": {
                    "id": response_id,
                    "error": {"code": "server_error", "message": turn.failed},
                },
            }
        else:
            end = {
                "type": "response.completed",
                "response": {
                    "id": response_id,
                    "usage": {
                        "input_tokens": 0,
                        "input_tokens_details": None,
                        "output_tokens": 0,
                        "output_tokens_details": None,
                        "total_tokens": 0,
                    },
                },
            }
        yield from sse([end])

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()


# A model slug codex 0.169 knows, so it offers its apply_patch tool (unknown slugs get
# fallback metadata without it).
MODEL = "gpt-5.5"


def write_codex_config(home: Path, model: ModelServer) -> Path:
    """`home`/config.toml ($CODEX_HOME) pointing codex at `model`.

    A custom provider speaking the Responses API over plain HTTP: the built-in `openai` provider
    tries a WebSocket first (five reconnects before it falls back). Its key comes from
    CODEX_API_KEY, the variable `codex exec` itself reads, so the sidecar's env allowlist is
    what's tested, not a `local.envAllow` addition. No retries: a failure fails at once.
    """
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.toml"
    config.write_text(
        f'model = "{MODEL}"\n'
        'model_provider = "scripted"\n'
        "\n"
        "[model_providers.scripted]\n"
        'name = "scripted model (tests/codex_model_server.py)"\n'
        f'base_url = "{model.base_url}"\n'
        'env_key = "CODEX_API_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )
    return config
