"""The one way the sidecar runs git: an argv list (never a shell), an environment without the
GIT_* variables that would point git at another repository, no prompts, a timeout, stdin closed.

Callers that need their own variables (a temporary index, a ceiling directory) add them with
`extra_env`; the sealed scratch pool passes a whole environment of its own (`env`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

GIT_TIMEOUT_S = 60.0


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The sidecar's environment minus GIT_* variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    # Read-only commands (diff, status) must not refresh-and-write the user's index.
    env["GIT_OPTIONAL_LOCKS"] = "0"
    env.update(extra or {})
    return env


def run_git(
    args: Sequence[str],
    cwd: Path | str,
    *,
    extra_env: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float | None = GIT_TIMEOUT_S,
    git: str = "git",
) -> subprocess.CompletedProcess[bytes]:
    """Run `git <args>` in `cwd` and return what it did (never raises on a non-zero exit).
    Raises FileNotFoundError when git is not installed and subprocess.TimeoutExpired."""
    return subprocess.run(  # noqa: S603 - argv list, no shell
        [git, *args],
        cwd=cwd,
        env=dict(env) if env is not None else git_env(extra_env),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def git_output(args: Sequence[str], cwd: Path | str, timeout: float = 10.0) -> str | None:
    """git's stdout, stripped, when it exits 0 with output; None otherwise (not a repository,
    no such ref, git missing, too slow): for questions whose answer may be "unknown"."""
    try:
        done = run_git(args, cwd, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = done.stdout.decode("utf-8", "replace").strip()
    return out if done.returncode == 0 and out else None
