"""The agent's launcher: a tiny process between the server and the agent (Linux).

    python -I -S _launcher.py --parent PID --grace SECONDS --status-fd FD -- AGENT ARGV...

Standalone on purpose (stdlib only, run with -I -S): it starts in milliseconds and imports
nothing of the sidecar. It makes itself a child subreaper, so every process the agent starts,
even one that double-forks and calls setsid, stays its descendant; and it asks the kernel
for SIGTERM when the server dies (parent-death signal, kill -9 included). It ends every
descendant when:

- the agent exits (background children never outlive the run);
- SIGTERM, SIGHUP or SIGINT (the server's graceful stop, or the server died): SIGTERM to all,
  then SIGKILL to all after --grace seconds;
- SIGUSR1 (the server's cancel): SIGKILL to all at once.

Then it exits with the agent's exit code, or dies of the agent's signal. On --status-fd it
writes "ok <agent pid>" once the agent is started, or "error <errno> <text>" if it cannot be.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs this process more than its work
if TYPE_CHECKING:
    from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Rounds of "find every descendant, SIGKILL it": a process may fork while we kill its parent.
KILL_ROUNDS = 200
HAVE_PROC = os.path.isdir("/proc/self/task")


def prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _quietly(kill: Callable[[int, int], None], pid: int, sig: int) -> None:
    # Not contextlib.suppress: this file imports as little as it can (it starts per agent).
    try:  # noqa: SIM105
        kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def descendants(root: int) -> list[int]:
    """Every live process below `root`, from /proc (each one's parent pid)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Launcher:
    def __init__(self, grace: float):
        self.grace = grace
        self.me = os.getpid()
        self.agent_pid: int | None = None
        self.agent_status: int | None = None
        self.stopping = False
        self.killed = False  # everything was to be ended (a stop may come before the agent starts)

    def signal_all(self, sig: int) -> list[int]:
        """Send `sig` to every descendant; the ones found."""
        pids = descendants(self.me) if HAVE_PROC else []
        for pid in pids:
            _quietly(os.kill, pid, sig)
        if not HAVE_PROC and self.agent_pid is not None:  # at least the agent's process group
            _quietly(os.killpg, self.agent_pid, sig)
        return pids

    def kill_all(self) -> None:
        self.killed = True
        for _ in range(KILL_ROUNDS):
            if not self.signal_all(signal.SIGKILL):
                return
            self.reap(block=False)

    def reap(self, block: bool) -> bool:
        """Collect exited children (ours and re-parented orphans); False when there are none."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.agent_pid:
                self.agent_status = status
                self.kill_all()
            if block:
                return True

    def on_stop(self, signum: int, frame: object) -> None:
        if signum == signal.SIGUSR1 or self.grace <= 0:
            self.kill_all()
        elif not self.stopping:
            self.stopping = True
            self.signal_all(signal.SIGTERM)
            signal.setitimer(signal.ITIMER_REAL, self.grace)

    def on_alarm(self, signum: int, frame: object) -> None:
        self.kill_all()

    def exit(self) -> None:
        status = self.agent_status
        if status is None:
            os._exit(1)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(self.me, sig)
        os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def main(argv: list[str]) -> None:
    split = argv.index("--")
    opts = dict(zip(argv[:split:2], argv[1:split:2], strict=True))
    agent = argv[split + 1 :]
    status_fd = int(opts["--status-fd"])
    launcher = Launcher(float(opts["--grace"]))
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, launcher.on_stop)
    signal.signal(signal.SIGALRM, launcher.on_alarm)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(opts["--parent"]):  # the server died before the line above
        os._exit(1)
    try:
        # posix_spawn, not subprocess (whose import alone costs more than the rest of this
        # file): exec errors still come back as OSError. The agent gets its own process group
        # (the server's fallback killpg reaches it; the launcher leads a new session, so a
        # terminal's signals do not), not the status pipe, and default SIGPIPE/SIGXFSZ
        # (Python ignores them, and ignored signals survive exec).
        pid = os.posix_spawnp(
            agent[0],
            agent,
            os.environ,
            file_actions=[(os.POSIX_SPAWN_CLOSE, status_fd)],
            setpgroup=0,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    except OSError as exc:
        os.write(status_fd, f"error {exc.errno or 0} {exc.strerror or exc}\n".encode())
        os._exit(127)
    launcher.agent_pid = pid
    os.write(status_fd, f"ok {pid}\n".encode())
    os.close(status_fd)
    if launcher.killed:  # told to end everything while the agent was starting
        launcher.kill_all()
    while launcher.reap(block=True):  # until no child is left (orphans come to us too)
        pass
    launcher.exit()


if __name__ == "__main__":
    main(sys.argv[1:])
