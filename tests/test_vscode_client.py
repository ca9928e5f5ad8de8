"""The VS Code extension (editor-clients/vscode): type check, bundle, and its node tests.

`npm test` runs node's test runner on the extension's plain modules, the bundled
extension under a stand-in `vscode` module, and the extension's request/apply
logic against the REAL server over stdio (spawned with this interpreter's
`python -m co_sidecar serve`). Those skip only when node/npm are not installed.

test_code_server_e2e runs the packaged extension in a real VS Code (code-server driven
by headless Chromium, editor-clients/vscode/e2e/); it fails when its prerequisites are
missing, and only CO_SKIP_VSCODE_E2E=1 skips it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXT = ROOT / "editor-clients" / "vscode"
NODE = shutil.which("node")
NPM = shutil.which("npm")

# The node tests skip without node/npm; the e2e suite fails instead (its run.sh names what is missing).
needs_node = pytest.mark.skipif(
    NODE is None or NPM is None,
    reason="node and npm are needed for the VS Code extension tests (install Node 20+)",
)


def npm(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # The node tests start the server with this interpreter (same venv as pytest).
    env["CO_SIDECAR_CMD"] = json.dumps([sys.executable, "-m", "co_sidecar", "serve"])
    env["CO_PYTHON"] = sys.executable
    env.setdefault("NO_COLOR", "1")
    env.pop("NODE_OPTIONS", None)
    return subprocess.run(
        [NPM or "npm", *args],
        cwd=EXT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def check(proc: subprocess.CompletedProcess[str], what: str) -> str:
    output = f"$ npm {what}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    if proc.returncode != 0:
        print(output)
    assert proc.returncode == 0, f"npm {what} failed (exit {proc.returncode}):\n{output[-6000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def node_modules() -> Path:
    modules = EXT / "node_modules"
    if not (modules / ".package-lock.json").exists():
        check(npm("ci", "--no-audit", "--no-fund", timeout=600), "ci")
    return modules


@needs_node
@pytest.mark.timeout(300)
def test_typecheck(node_modules: Path) -> None:
    check(npm("run", "typecheck", timeout=240), "run typecheck")


@needs_node
@pytest.mark.timeout(300)
def test_build(node_modules: Path) -> None:
    check(npm("run", "build", timeout=240), "run build")
    bundle = EXT / "out" / "extension.js"
    assert bundle.is_file() and bundle.stat().st_size > 10_000


@needs_node
@pytest.mark.timeout(300)
def test_node_tests_against_real_server(node_modules: Path) -> None:
    out = check(npm("test", timeout=240), "test")
    summary = {
        key: int(value)
        for key, value in (
            line.removeprefix("ℹ ").split(" ", 1)
            for line in out.splitlines()
            if line.startswith("ℹ ") and line.split(" ")[-1].isdigit() and len(line.split(" ")) == 3
        )
    }
    print(
        "\n".join(line for line in out.splitlines() if line.startswith(("ℹ", "✔", "✖", "▶", "  ")))
    )
    assert summary.get("fail") == 0, summary
    assert summary.get("pass", 0) >= 30, f"too few node tests ran: {summary}"
    # The server suite must not have been skipped for want of a server.
    assert summary.get("skipped", 0) == 0, summary


E2E_SUMMARY = re.compile(r"^e2e: (\d+) passed, (\d+) failed", re.M)


@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    os.environ.get("CO_SKIP_VSCODE_E2E") == "1",
    reason="CO_SKIP_VSCODE_E2E=1: the VS Code end-to-end suite (code-server) skipped on purpose",
)
def test_code_server_e2e() -> None:
    """The packaged extension in a real VS Code (code-server), driven through its UI.

    editor-clients/vscode/e2e/run.sh installs Node 24 and code-server from the npm registry
    into a cache (the first time: a few minutes), packages co-sidecar-<version>.vsix and runs
    the six steps of e2e/e2e.mjs. Missing prerequisites and a failed install fail this test;
    only CO_SKIP_VSCODE_E2E=1 skips it.
    """
    env = dict(os.environ)
    env.pop("NODE_OPTIONS", None)
    env.setdefault("NO_COLOR", "1")
    proc = subprocess.run(
        ["bash", str(EXT / "e2e" / "run.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1700,
        stdin=subprocess.DEVNULL,
    )
    output = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-6000:]}"
    print(output)
    if proc.returncode == 3:
        pytest.fail(
            "the VS Code e2e suite's prerequisites are missing (CO_SKIP_VSCODE_E2E=1 skips it):\n"
            + proc.stderr[-2000:],
            pytrace=False,
        )
    if proc.returncode == 4:
        pytest.fail(
            f"installing code-server for the VS Code e2e suite failed:\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    assert proc.returncode == 0, output
    summary = E2E_SUMMARY.search(proc.stdout)
    assert summary, output
    assert (int(summary[1]), int(summary[2])) == (6, 0), summary[0]
