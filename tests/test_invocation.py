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


def test_advice_given_from_outside_the_workspace_names_it(tmp_path: Path) -> None:
    """`./dev demo` runs in demo/repo while the shell stays in the project: the next steps it
    prints must find the run from where the user is, not in the shell's own runs root."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from apply_faults import seed_run  # noqa: PLC0415

    from test_apply_choices import CALC, EDIT_8, patch_of  # noqa: PLC0415
    from test_apply_choices import make_repo as make_calc_repo  # noqa: PLC0415

    repo = make_calc_repo(tmp_path / "ws")
    run_id = seed_run(repo, patch_of(repo, {"calc.py": EDIT_8, "other.py": "a = 2\n"}))
    (repo / "calc.py").write_text(CALC.replace("line 8\n", "line 8 (mine)\n"))
    cli = [sys.executable, "-m", "co_sidecar"]

    def shell(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603

    refused = shell(*cli, "apply", "--workspace", "ws", run_id)
    assert refused.returncode == 1, refused.stderr
    advice = re.search(r"nothing was written\. (.+) --on-conflict skip applies the other files", refused.stdout)
    assert advice and f"--workspace ws {run_id}" in advice[1], refused.stdout
    taken = shell(*shlex.split(advice[1]), "--on-conflict", "skip")
    assert taken.stdout.startswith(f"applied {run_id}: other.py\n"), taken.stdout + taken.stderr
    assert (repo / "other.py").read_text() == "a = 2\n"

    missing = shell(*cli, "runs", "show", "--workspace", "ws", "nosuchrun")
    listing = re.search(r"no run matches 'nosuchrun' \((.+) lists them\)", missing.stderr)
    assert listing, missing.stderr
    listed = shell(*shlex.split(listing[1]))
    assert listed.returncode == 0 and run_id in listed.stdout, listed.stdout + listed.stderr
