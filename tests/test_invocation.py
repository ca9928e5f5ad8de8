"""The commands the CLI advises are ones that run as printed: `co-sidecar` only when the
user's PATH finds this very program, else the path it was started by."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import make_repo

SCRIPT = Path(sys.executable).parent / "co-sidecar"


def advice(argv: list[str], cwd: Path, path: str) -> str:
    env = {**os.environ, "PATH": path}
    done = subprocess.run([*argv, "runs", "show", "nosuchrun"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    found = re.search(r"no run matches 'nosuchrun' \((.+) runs lists them\)", done.stderr)
    assert done.returncode != 0 and found, done.stderr
    return found[1]


def test_advice_names_a_command_that_runs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "ws")
    without_venv = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != SCRIPT.parent)
    assert advice([str(SCRIPT)], repo, f"{SCRIPT.parent}{os.pathsep}{without_venv}") == "co-sidecar"
    for argv in ([str(SCRIPT)], [sys.executable, "-m", "co_sidecar"]):
        named = advice(argv, repo, without_venv)
        assert named != "co-sidecar"
        listed = subprocess.run([*shlex.split(named), "runs"], cwd=repo, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
        assert listed.returncode == 0, listed.stderr
