"""`./dev setup` (which `./dev test` and .ci/run run) on a machine missing the Debian packages
of the VS Code end-to-end suite: as root it installs them with apt-get; otherwise it prints the
exact command and `./dev test` reports that suite as skipped with that command as the reason.

A missing package is simulated with CHROMIUM pointing nowhere (e2e/run.sh then names
`chromium`); `id` and `apt-get` are stand-ins on PATH, so nothing is installed for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_npm = pytest.mark.skipif(
    shutil.which("npm") is None, reason="./dev setup's Node steps need npm"
)


def fake_bin(tmp_path: Path, uid: int) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    # Records its argv; "installs" nothing.
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "apt.log"}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


def dev(args: list[str], tmp_path: Path, uid: int) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("CO_SKIP_VSCODE_E2E", None)
    env.pop("CO_VSCODE_E2E_SKIP", None)
    env["PATH"] = f"{fake_bin(tmp_path, uid)}{os.pathsep}{env['PATH']}"
    env["CHROMIUM"] = str(tmp_path / "no-chromium")
    return subprocess.run(
        [str(ROOT / "dev"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


@needs_npm
@pytest.mark.timeout(600)
def test_not_root_prints_the_command_and_the_suite_is_reported_skipped(tmp_path: Path) -> None:
    proc = dev(
        ["test", "-q", "-p", "no:randomly", "tests/test_vscode_client.py::test_code_server_e2e"],
        tmp_path,
        uid=1000,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "dev: install them with:  sudo apt-get install -y chromium" in proc.stderr
    # pytest's summary (-ra) carries the reason and the command.
    assert "SKIPPED [1]" in proc.stdout, out
    assert (
        "the VS Code end-to-end suite: missing Debian packages (chromium): run  sudo apt-get install -y chromium"
        in proc.stdout
    )
    assert "1 skipped" in proc.stdout and "passed" not in proc.stdout
    assert not (tmp_path / "apt.log").exists(), "apt-get must not run when not root"


@needs_npm
@pytest.mark.timeout(600)
def test_root_installs_the_missing_packages_with_apt_get(tmp_path: Path) -> None:
    proc = dev(["setup"], tmp_path, uid=0)
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1] == "install -y -qq chromium"
    # The stand-in installed nothing, so the e2e install step that follows still finds it
    # missing and says so (and setup fails rather than pretending).
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "e2e: missing prerequisites: chromium" in proc.stderr
