"""A small blocking JSON-RPC client over a subprocess's stdio or TCP port (stdlib only).

Used by scripts/reliability.py and the hostile-input tests: it can write raw
bytes (broken framing, non-JSON bodies) as well as well-formed messages, and
records every notification and server-to-client request it receives.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO


def frame(body: bytes) -> bytes:
    return b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def encode(message: dict[str, Any]) -> bytes:
    return frame(json.dumps(message).encode())


class RpcProcess:
    """`python -m co_sidecar serve` (or any argv) with a reader thread parsing its stdout; with
    `tcp=True`, `serve --tcp` on a free loopback port, spoken to over a socket (the token it
    writes is sent in `initialize`, see `auth_options`)."""

    def __init__(
        self,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stderr: BinaryIO | int | None = subprocess.DEVNULL,
        apply_edit_result: dict[str, Any] | None = None,
        tcp: bool = False,
    ):
        self.argv = argv or [sys.executable, "-m", "co_sidecar", "serve"]
        self.token: str | None = None
        self._tmp: str | None = None
        self.sock: socket.socket | None = None
        if tcp:
            self._tmp = tempfile.mkdtemp(prefix="co-rpc-")
            token_file = Path(self._tmp) / "run" / "tcp.token"
            self.argv = [*self.argv, "--tcp", "127.0.0.1:0", "--token-file", str(token_file)]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            self.argv,
            stdin=subprocess.DEVNULL if tcp else subprocess.PIPE,
            stdout=subprocess.DEVNULL if tcp else subprocess.PIPE,
            stderr=subprocess.PIPE if tcp else stderr,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        if tcp:
            self.sock = self._connect_tcp(token_file)
            self._in: BinaryIO = self.sock.makefile("wb")
            self._out: BinaryIO = self.sock.makefile("rb")
        else:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self._in, self._out = self.proc.stdin, self.proc.stdout
        self.apply_edit_result = apply_edit_result or {"applied": True}
        self.ids = itertools.count(1)
        self.responses: dict[Any, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.server_requests: list[dict[str, Any]] = []
        self.received: list[bytes] = []  # every raw body, for secret scans
        self.answered: list[Any] = []  # response ids in the order they arrived
        self.cond = threading.Condition()
        self.closed = False
        self._write_lock = threading.Lock()
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()

    def _connect_tcp(self, token_file: Path) -> socket.socket:
        """Read the port from the server's banner and the token from its file, then connect;
        the server's stderr (its log) is drained from then on, so it never blocks on it."""
        err = self.proc.stderr
        assert err is not None
        port = None
        while port is None:
            line = err.readline()
            if not line:
                raise RuntimeError(f"serve --tcp exited before listening ({self.proc.wait()})")
            found = re.search(rb"listening on \S+:(\d+);", line)
            port = int(found.group(1)) if found else None
        self.token = token_file.read_text().strip()
        threading.Thread(target=lambda: all(iter(err.readline, b"")), daemon=True).start()
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.settimeout(None)
        return sock

    def auth_options(self) -> dict[str, Any]:
        """What `initializationOptions` must carry for this server (the TCP token)."""
        return {"authToken": self.token} if self.token else {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- wire ----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        with self._write_lock:
            self._in.write(data)
            self._in.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.write(encode(message))

    def _read_loop(self) -> None:
        out = self._out
        try:
            while True:
                length = None
                while True:
                    line = out.readline()
                    if not line:
                        return
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length is None:
                    continue
                body = out.read(length)
                self.received.append(body)
                self._dispatch(json.loads(body))
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "method" in message and "id" in message:
            self.server_requests.append(message)
            result: Any = None
            if message["method"] == "workspace/applyEdit":
                result = self.apply_edit_result
            self.send({"jsonrpc": "2.0", "id": message["id"], "result": result})
            return
        with self.cond:
            if "method" in message:
                self.notifications.append(message)
            else:
                self.responses[message.get("id")] = message
                self.answered.append(message.get("id"))
            self.cond.notify_all()

    # -- requests --------------------------------------------------------------------
    def request_raw(self, method: str, params: Any = None, timeout: float = 30) -> dict[str, Any]:
        """The whole response message (with `result` or `error`)."""
        msg_id = next(self.ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self.wait_response(msg_id, timeout)

    def wait_response(self, msg_id: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while msg_id not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise TimeoutError(f"no response to {msg_id!r} (server exited: {self.closed})")
                self.cond.wait(left)
            return self.responses.pop(msg_id)

    def request(self, method: str, params: Any = None, timeout: float = 30) -> Any:
        response = self.request_raw(method, params, timeout)
        if "error" in response:
            raise RpcError(response["error"])
        return response.get("result")

    def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def initialize(self, workspace: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
        result = self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": workspace.as_uri(),
                "workspaceFolders": [{"uri": workspace.as_uri(), "name": "ws"}],
                "capabilities": {
                    "workspace": {"applyEdit": True, "workspaceEdit": {"documentChanges": True}},
                    "window": {"workDoneProgress": True},
                },
                "initializationOptions": {**(options or {}), **self.auth_options()},
            },
        )
        self.notify("initialized", {})
        return result

    # -- run updates -------------------------------------------------------------------
    def updates(self, run_id: str | None = None) -> list[dict[str, Any]]:
        with self.cond:
            found = [n["params"] for n in self.notifications if n["method"] == "co/runUpdate"]
        return [u for u in found if run_id is None or u.get("runId") == run_id]

    def wait_state(self, run_id: str, states: set[str], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for update in self.updates(run_id):
                    if update["state"] in states:
                        return str(update["state"])
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    seen = [u["state"] for u in self.updates(run_id)]
                    raise TimeoutError(f"run {run_id} never reached {states}; saw {seen}")
                self.cond.wait(min(left, 0.5))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, timeout: float = 15) -> None:
        if self.alive():
            try:
                self.request("shutdown", None, timeout=timeout)
                self.notify("exit")
                self.proc.wait(timeout)
            except (TimeoutError, RpcError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        with contextlib.suppress(OSError):
            self._in.close()
        self.proc.wait(timeout)
        self._close_socket()
        self.reader.join(timeout)

    def _close_socket(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._close_socket()
        self.reader.join(10)


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]):
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error
        self.code = error.get("code")
        self.message = str(error.get("message"))
