"""A minimal asyncio JSON-RPC client over a child's stdio, plus /proc readers.

Deliberately not pygls: the client's own overhead should be small and steady so
that round trips measure the server. Server-to-client requests get a benign
answer (progress tokens accepted, configuration empty, edits not applied).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PYTHON = sys.executable
ROOT = Path(__file__).resolve().parents[1]


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]):
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error


# A request unanswered this long is a hang (a broken stream), not a slow machine.
REQUEST_TIMEOUT_S = 180.0


class Client:
    """One server process and what it sent us."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.reader_error: BaseException | None = None
        self.counts: Counter[str] = Counter()
        self.bytes_in = 0
        self.on_notification: dict[str, Callable[[Any], None]] = {}
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.keep_arrivals: set[str] = set()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(
        self, argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None
    ) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            limit=1 << 24,
        )
        self._reader = asyncio.create_task(self._read_loop())

    def _write(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        body = json.dumps(message, separators=(",", ":")).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    async def request(self, method: str, params: Any = None) -> Any:
        self._next_id += 1
        rid = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._reader is not None and self._reader.done():  # nothing would ever answer
            raise ConnectionError(f"{method}: the client stopped reading the server ({self.reader_error!r})")
        self._pending[rid] = future
        self._write({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        try:
            return await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        except TimeoutError:
            raise TimeoutError(
                f"{method} (id {rid}) not answered in {REQUEST_TIMEOUT_S:g}s; "
                f"{self.bytes_in} bytes read so far, reader error: {self.reader_error!r}"
            ) from None

    def notify(self, method: str, params: Any = None) -> None:
        self._write({"jsonrpc": "2.0", "method": method, "params": params})

    async def _read_loop(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        try:
            while True:
                length = 0
                while True:
                    line = await out.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = await out.readexactly(length)
                self.bytes_in += length
                self._dispatch(json.loads(body))
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        except Exception as exc:  # a body that is not JSON, a handler that raised: say so
            self.reader_error = exc
            return
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("server closed its output"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            future = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(RpcError(message["error"]))
                else:
                    future.set_result(message.get("result"))
            return
        self.counts[method] += 1
        if method in self.keep_arrivals:
            self.arrivals[method].append(time.perf_counter())
        if "id" in message:  # a request from the server
            params = message.get("params") or {}
            result: Any = None
            if method == "workspace/configuration":
                result = [None] * len(params.get("items", []))
            elif method == "workspace/applyEdit":
                result = {"applied": False, "failureReason": "benchmark client"}
            self._write({"jsonrpc": "2.0", "id": message["id"], "result": result})
            return
        handler = self.on_notification.get(method)
        if handler is not None:
            handler(message.get("params"))

    async def initialize(
        self, workspace: Path | None = None, options: Any = None, progress: bool = True
    ) -> Any:
        params: dict[str, Any] = {
            "processId": os.getpid(),
            "capabilities": {
                "window": {"workDoneProgress": progress},
                "workspace": {"applyEdit": True, "workspaceEdit": {"documentChanges": True}},
            },
            "initializationOptions": options,
        }
        if workspace is not None:
            params["rootUri"] = workspace.as_uri()
            params["workspaceFolders"] = [{"uri": workspace.as_uri(), "name": "ws"}]
        result = await self.request("initialize", params)
        self.notify("initialized", {})
        return result

    async def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.request("shutdown"), timeout)
                self.notify("exit")
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        await self._stop_reader()

    async def _stop_reader(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        await self._stop_reader()


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int, children: bool = True) -> float:
    """utime + stime of `pid` (and of its reaped children: cutime + cstime), in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    """A `kB` field of /proc/<pid>/status, e.g. VmRSS (now) or VmHWM (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    return status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    return status_kb(pid, "VmHWM") / 1024


def git_repo(path: Path) -> Path:
    """A one-commit git repository for the server to work in."""
    path.mkdir(parents=True)
    run = ["git", "-c", "user.name=b", "-c", "user.email=b@b", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    (path / "README.md").write_text("# bench\n")
    subprocess.run([*run, "add", "-A"], cwd=path, check=True)
    subprocess.run([*run, "commit", "-qm", "base"], cwd=path, check=True)
    return path


def server_argv() -> list[str]:
    profile = os.environ.get("CO_BENCH_PROFILE")  # investigation only: figures get slower
    if profile:
        return [PYTHON, "-m", "cProfile", "-o", profile, "-m", "co_sidecar", "serve"]
    return [PYTHON, "-m", "co_sidecar", "serve"]


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CO_", "CODEX_"))}
    env.update(extra)
    return env


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
