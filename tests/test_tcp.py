"""`serve --tcp` is not an open door: a client proves the token the server wrote to a file only
its user can read; connections without it, and anything that looks like HTTP, are closed
before a single setting is taken. Real sockets against a real server process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from boundary_faults import (  # noqa: E402
    HTTP_REQUESTS,
    TcpServer,
    closed,
    read_message,
    tcp_frame,
    tcp_initialize,
)

CLI = [sys.executable, "-m", "co_sidecar"]


frame, initialize = tcp_frame, tcp_initialize


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


HTTP = list(HTTP_REQUESTS.values())


@pytest.mark.parametrize("request_bytes", HTTP, ids=list(HTTP_REQUESTS))
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
