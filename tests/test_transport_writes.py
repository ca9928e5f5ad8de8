"""Every byte the server writes reaches the client, in order, whatever the stdout.

With PYTHONUNBUFFERED=1 (set on this machine, common in CI and containers) sys.stdout.buffer
is a raw FileIO: one write(2) per call, and a pipe write interrupted by a signal returns a
partial count. The server used to drop the rest, so the next message was spliced into a big
answer's body (seen as a JSON error at byte 131,006 of a 2 MB co/status answer)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from co_sidecar.transport import write_all
from conftest import make_repo


class Stingy(io.RawIOBase):
    """A raw stream that takes at most 1,000 bytes a call and, every third call, none (None:
    a full non-blocking pipe)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.calls = 0

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:  # select() on it: stdout is always writable in the test run
        return sys.__stdout__.fileno() if sys.__stdout__ else 1

    def write(self, b: object) -> int | None:  # type: ignore[override]
        self.calls += 1
        if self.calls % 3 == 0:
            return None
        chunk = bytes(memoryview(b))[:1000]  # type: ignore[arg-type]
        self.data += chunk
        return len(chunk)


def test_partial_and_refused_writes_are_completed_in_order() -> None:
    stream = Stingy()
    payload = bytes(range(256)) * 40
    write_all(stream, payload)  # type: ignore[arg-type]
    assert bytes(stream.data) == payload and stream.calls > 10


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def frames(raw: bytes) -> list[dict[str, object]]:
    out, at = [], 0
    while at < len(raw):
        head = re.match(rb"Content-Length: (\d+)\r\n(?:Content-Type: [^\r]*\r\n)?\r\n", raw[at:])
        assert head, f"no header at byte {at}: {raw[at:at + 80]!r}"
        start = at + head.end()
        out.append(json.loads(raw[start : start + int(head[1])]))
        at = start + int(head[1])
    return out


def test_a_big_answer_to_a_slow_reader_arrives_whole(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "ws")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CO_MAX_MESSAGE_BYTES": "4000000"}
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "co_sidecar", "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, cwd=repo, env=env,
    )  # fmt: skip
    assert server.stdin is not None and server.stdout is not None
    chunks: list[bytes] = []

    def slow_reader() -> None:  # keeps the pipe full, so the server's writes block for long
        while chunk := os.read(server.stdout.fileno(), 4096):  # type: ignore[union-attr]
            chunks.append(chunk)
            time.sleep(0.0005)

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    pad = "a" * 1_000_000
    for message in (
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "rootUri": repo.as_uri(), "capabilities": {}}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        *({"jsonrpc": "2.0", "id": 10 + n, "method": "co/status", "params": {"runId": pad}} for n in range(8)),
        {"jsonrpc": "2.0", "id": 20, "method": "co/list", "params": {}},
        {"jsonrpc": "2.0", "id": 21, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"},
    ):
        server.stdin.write(frame(json.dumps(message).encode()))
        server.stdin.flush()
    assert server.wait(timeout=90) == 0
    reader.join(timeout=30)
    answers = {m.get("id"): m for m in frames(b"".join(chunks)) if "id" in m}
    assert set(answers) == {1, *range(10, 18), 20, 21}
    assert all(pad in str(answers[10 + n]["error"]) for n in range(8))  # type: ignore[index]
