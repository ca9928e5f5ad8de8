"""`serve --tcp` is not an open door: a client proves the token the server wrote to a file only
its user can read; connections without it, and anything that looks like HTTP, are closed
before a single setting is taken. Real sockets against a real server process."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "co_sidecar"]


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def initialize(repo: Path, options: dict[str, Any], msg_id: int = 1) -> bytes:
    return frame({
        "jsonrpc": "2.0", "id": msg_id, "method": "initialize",
        "params": {"processId": None, "rootUri": repo.as_uri(), "capabilities": {}, "initializationOptions": options},
    })  # fmt: skip


def read_message(sock: socket.socket) -> dict[str, Any] | None:
    """One framed message, or None when the server closed the connection."""
    if sock not in _streams:
        _streams[sock] = sock.makefile("rb")
    stream = _streams[sock]
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    assert length is not None
    body = stream.read(length)
    return json.loads(body) if len(body) == length else None


_streams: weakref.WeakKeyDictionary[socket.socket, Any] = weakref.WeakKeyDictionary()


def closed(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except ConnectionResetError:
        return True


class TcpServer:
    def __init__(self, repo: Path, tmp_path: Path):
        self.token_file = tmp_path / "rt" / "tcp.token"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc = subprocess.Popen(  # noqa: S603
            [*CLI, "serve", "--tcp", f"127.0.0.1:{self.port}", "--token-file", str(self.token_file)],
            stderr=subprocess.PIPE, text=True, cwd=repo,
        )  # fmt: skip
        assert self.proc.stderr is not None
        self.banner = self.proc.stderr.readline()
        self.token = self.token_file.read_text().strip()

    def connect(self) -> socket.socket:
        for _ in range(100):
            try:
                return socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except OSError:
                time.sleep(0.05)
        raise AssertionError("server not listening")


@pytest.fixture
def tcp(repo: Path, tmp_path: Path) -> Iterator[TcpServer]:
    server = TcpServer(repo, tmp_path)
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
    server.proc.wait(10)


def test_token_file_is_private_and_announced(tcp: TcpServer) -> None:
    assert str(tcp.token_file) in tcp.banner and f"127.0.0.1:{tcp.port}" in tcp.banner
    assert stat.S_IMODE(tcp.token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(tcp.token_file.parent.stat().st_mode) == 0o700
    assert len(tcp.token) >= 32


def test_without_the_token_nothing_runs(tcp: TcpServer, repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = {"local": {"agentCommand": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]}}
    launch = frame({"jsonrpc": "2.0", "id": 2, "method": "co/launch", "params": {"prompt": "p", "mode": "local"}})
    for options in ({}, {"authToken": "guess"}, {"authToken": tcp.token[:-1]}, {"authToken": 123}):
        with tcp.connect() as sock:
            sock.sendall(initialize(repo, {**evil, **options}) + launch)
            answer = read_message(sock)
            assert answer is not None and answer["error"]["code"] == -32600
            assert "authentication required" in answer["error"]["message"] and str(tcp.token_file) in answer["error"]["message"]
            assert closed(sock)
    with tcp.connect() as sock:  # not even a request: a notification first
        sock.sendall(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
        assert closed(sock)
    assert not marker.exists() and tcp.proc.poll() is None  # still listening for its real client


HTTP = [
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\n\r\n",
    b"PUT /x HTTP/1.0\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", HTTP, ids=["POST", "GET", "OPTIONS", "PUT"])
def test_http_is_refused_and_closed(tcp: TcpServer, request_bytes: bytes) -> None:
    with tcp.connect() as sock:
        sock.sendall(request_bytes)
        assert closed(sock)
    assert tcp.proc.poll() is None


def test_the_token_opens_a_session_and_http_inside_it_closes_it(tcp: TcpServer, repo: Path) -> None:
    with tcp.connect() as sock:
        sock.sendall(initialize(repo, {"authToken": tcp.token, "local": {"agentCommand": [sys.executable, "-c", "pass"]}}))
        answer = read_message(sock)
        assert answer is not None and answer["result"]["serverInfo"]["name"] == "co-sidecar"
        sock.sendall(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
        sock.sendall(frame({"jsonrpc": "2.0", "id": 2, "method": "co/list", "params": {}}))
        listed = read_message(sock)
        while listed is not None and listed.get("id") != 2:
            listed = read_message(sock)
        assert listed is not None and listed["result"] == {"runs": [], "total": 0}
        # A browser-style POST on the kept-alive connection: the session ends there.
        sock.sendall(b"POST /co HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}")
        assert closed(sock)
    assert tcp.proc.wait(30) == 0
    assert not tcp.token_file.exists()  # removed on exit
    assert not (repo / ".runs").exists()


def test_default_token_location_is_under_the_runtime_dir(repo: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    proc = subprocess.Popen(  # noqa: S603
        [*CLI, "serve", "--tcp", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True, cwd=repo,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        [token_file] = list((runtime / "co-sidecar").glob("tcp-*.token"))
        assert str(token_file) in banner and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    finally:
        proc.kill()
        proc.wait(10)
