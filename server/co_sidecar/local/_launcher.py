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

import contextlib
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Rounds of "find every descendant, SIGKILL it": a process may fork while we kill its parent.
KILL_ROUNDS = 200


def prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


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

    def signal_all(self, sig: int) -> None:
        for pid in descendants(self.me):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        try:  # without /proc: at least the agent's process group
            if self.agent_pid is not None:
                os.killpg(self.agent_pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_all(self) -> None:
        for _ in range(KILL_ROUNDS):
            self.signal_all(signal.SIGKILL)
            self.reap(block=False)
            if not descendants(self.me):
                return

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
        # The agent's own process group (not a new session): the server's fallback killpg
        # reaches it, and a terminal's signals do not (the launcher leads a new session).
        proc = subprocess.Popen(agent, process_group=0)  # noqa: S603 - the configured argv, no shell
    except OSError as exc:
        os.write(status_fd, f"error {exc.errno or 0} {exc.strerror or exc}\n".encode())
        os._exit(127)
    launcher.agent_pid = proc.pid
    os.write(status_fd, f"ok {proc.pid}\n".encode())
    os.close(status_fd)
    while launcher.reap(block=True):  # until no child is left (orphans come to us too)
        pass
    launcher.kill_all()
    launcher.exit()


if __name__ == "__main__":
    main(sys.argv[1:])
