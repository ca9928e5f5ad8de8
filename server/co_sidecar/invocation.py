"""How the user can run this command-line tool again, for the next steps it prints.

`co-sidecar apply RUN` is only advice when `co-sidecar` is what the user's PATH finds; started
as `.venv/bin/co-sidecar` or `python -m co_sidecar` (the README's and `./dev demo`'s ways), the
advice names that instead.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import sys
from pathlib import Path

NAME = "co-sidecar"


@functools.cache
def self_command() -> str:
    """`co-sidecar` when PATH finds this very program; else a path or `python -m` form that runs it."""
    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    candidates = [started] if started is not None and started.name == NAME else []
    candidates.append(Path(sys.executable).parent / NAME)  # the script beside this interpreter
    found = shutil.which(NAME)
    for script in candidates:
        if not script.is_file():
            continue
        if found and os.path.realpath(found) == os.path.realpath(script):
            return NAME
        return shlex.quote(_short(script))
    return f"{shlex.quote(sys.executable)} -m co_sidecar"


def run_arg(run_id: str, workspace: Path) -> str:
    """The run as a next command takes it: `--workspace DIR RUN` when the shell is elsewhere.

    `./dev demo` runs in demo/repo while the shell stays in the project: advice without the
    workspace would look for the run in the wrong runs root.
    """
    try:
        here = workspace.resolve() == Path.cwd().resolve()
    except OSError:
        here = False
    return run_id if here else f"--workspace {shlex.quote(_short(workspace))} {run_id}"


def _short(path: Path) -> str:
    """Relative to the working directory when under it (`.venv/bin/co-sidecar`), else absolute."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)
