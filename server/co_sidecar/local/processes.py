"""Process lifecycle of a local agent: no process outlives its run.

On Linux every agent starts under `_launcher.py`, a tiny child subreaper with a parent-death
signal: descendants that double-fork and call setsid stay below it, and it ends all of them
when the agent exits, when the server asks (cancel, timeout, shutdown), and when the server
dies, kill -9 included. Elsewhere (no /proc, no prctl) the agent leads its own session and is
stopped by process group, as before: a setsid escapee is then out of reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunErrorCode
from ._launcher import descendants

LAUNCHER = Path(__file__).with_name("_launcher.py")
# What one argument or one environment string may hold on Linux (MAX_ARG_STRLEN, 32 pages):
# longer ones fail exec with E2BIG whatever the total size.
MAX_ARG_BYTES = 128 * 1024


def launcher_available() -> bool:
    return sys.platform.startswith("linux") and os.path.exists("/proc/self/stat") and LAUNCHER.is_file()


@dataclass
class Agent:
    """A started agent: `proc` is what the server waits on and reads (the launcher, or the agent
    itself without one); `pid` is the agent's own pid."""

    proc: asyncio.subprocess.Process
    pid: int
    launched: bool  # under the launcher


class SpawnError(Exception):
    """The agent could not be started: `code` is the run error code, the message the cause."""

    def __init__(self, message: str, code: RunErrorCode):
        super().__init__(message)
        self.message = message
        self.code = code


def spawn_error(program: str, exc: OSError) -> SpawnError:
    """An exec failure as the run's error: the real cause (errno name) and its own code."""
    num = exc.errno or 0
    name = errno.errorcode.get(num, str(num))
    text = f"cannot start agent {program}: {exc.strerror or exc} ({name})"
    if num in (errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR, errno.EISDIR):
        return SpawnError(text, RunErrorCode.LOCAL_AGENT_MISSING)
    if num == errno.E2BIG:
        return SpawnError(
            f"{text}: its arguments or environment are too large for the system (one argument "
            f"holds at most {MAX_ARG_BYTES} bytes); put {{promptFile}} in local.agentCommand",
            RunErrorCode.LOCAL_PROMPT_TOO_LARGE,
        )
    return SpawnError(text, RunErrorCode.LOCAL_SPAWN_FAILED)  # EMFILE, ENOMEM, EAGAIN...


async def spawn(
    argv: list[str], *, cwd: Path, env: dict[str, str], stdin: int, grace: float
) -> Agent:
    """Start `argv` (under the launcher when available) with piped stdout/stderr."""
    common: dict[str, Any] = {
        "cwd": cwd,
        "env": env,
        "stdin": stdin,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.PIPE,
        "start_new_session": True,
    }
    if not launcher_available():
        try:
            proc = await asyncio.create_subprocess_exec(*argv, **common)
        except OSError as exc:
            raise spawn_error(argv[0], exc) from exc
        return Agent(proc, proc.pid, launched=False)
    read_end, write_end = os.pipe()
    try:
        head = [sys.executable, "-I", "-S", str(LAUNCHER), "--parent", str(os.getpid())]
        head += ["--grace", str(grace), "--status-fd", str(write_end), "--"]
        try:
            proc = await asyncio.create_subprocess_exec(*head, *argv, pass_fds=(write_end,), **common)
        except OSError as exc:
            raise spawn_error(argv[0], exc) from exc
        os.close(write_end)
        write_end = -1
        status = await asyncio.to_thread(_read_status, read_end)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    word, _, rest = status.partition(" ")
    if word == "ok":
        return Agent(proc, int(rest), launched=True)
    await proc.wait()
    if word == "error":
        num, _, text = rest.partition(" ")
        raise spawn_error(argv[0], OSError(int(num), text))
    raise SpawnError(f"cannot start agent {argv[0]}: the launcher exited with {proc.returncode}", RunErrorCode.LOCAL_SPAWN_FAILED)


def _read_status(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").strip()


def request_stop(agent: Agent, graceful: bool) -> None:
    """Ask for the whole tree to end: gracefully (SIGTERM, then SIGKILL after the launcher's
    grace) or at once. Without the launcher: the agent's process group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if agent.launched:
            os.kill(agent.proc.pid, signal.SIGTERM if graceful else signal.SIGUSR1)
        else:
            os.killpg(agent.proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)


def kill_tree(agent: Agent) -> None:
    """Last resort: SIGKILL every descendant the server can see, the agent's group, then the
    launcher (descendants first: once the launcher is gone they would be re-parented away)."""
    for _ in range(20):
        pids = descendants(agent.proc.pid) if agent.launched else []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not pids:
            break
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(agent.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(agent.proc.pid, signal.SIGKILL)
