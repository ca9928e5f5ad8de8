"""The VS Code extension (editor-clients/vscode): type check, bundle, and its node tests.

`npm test` runs node's test runner on the extension's plain modules, the bundled
extension under a stand-in `vscode` module, and the extension's request/apply
logic against the REAL server over stdio (spawned with this interpreter's
`python -m co_sidecar serve`). Those skip only when node/npm are not installed.

test_code_server_e2e runs the packaged extension in a real VS Code (code-server driven
by headless Chromium, editor-clients/vscode/e2e/); it fails when its prerequisites are
missing. It is skipped with CO_SKIP_VSCODE_E2E=1, and when `./dev setup` could not install
its Debian packages (not root): then CO_VSCODE_E2E_SKIP says what to run, and the skip
reason in pytest's summary repeats it.
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
# The tests here build into EXT (out/, bundled/, the .vsix): `./dev test` runs them all on one
# pytest-xdist worker, one after another (conftest.ONE_WORKER_MODULES).
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
@pytest.mark.skipif(
    bool(os.environ.get("CO_VSCODE_E2E_SKIP")),
    reason=f"the VS Code end-to-end suite: {os.environ.get('CO_VSCODE_E2E_SKIP')}",
)
def test_code_server_e2e() -> None:
    """The packaged extension in a real VS Code (code-server), driven through its UI.

    editor-clients/vscode/e2e/run.sh installs Node 24 and code-server from the npm registry
    into a cache (the first time: a few minutes), packages co-sidecar-linux-x64-<version>.vsix
    (the server bundled) and runs the ten steps of e2e/e2e.mjs as a user with no co-sidecar.
    Missing prerequisites and a failed install fail this test; CO_SKIP_VSCODE_E2E=1 skips it,
    and so does a CO_VSCODE_E2E_SKIP reason from `./dev setup`.
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
    assert (int(summary[1]), int(summary[2])) == (10, 0), summary[0]


# pydantic-core's compiled module, as each platform's wheels name it, for CPython 3.XY.
PYDANTIC_CORE_BINARY = {
    "linux-x64": "_pydantic_core.cpython-3{minor}-x86_64-linux-gnu.so",
    "linux-arm64": "_pydantic_core.cpython-3{minor}-aarch64-linux-gnu.so",
    "darwin-arm64": "_pydantic_core.cpython-3{minor}-darwin.so",
    "win32-x64": "_pydantic_core.cp3{minor}-win_amd64.pyd",
}


def test_bundled_requirements_pin_every_server_dependency() -> None:
    """bundled/requirements.txt (scripts/bundle.py --lock) satisfies pyproject's dependencies."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock = EXT / "bundled" / "requirements.txt"
    pins = {
        canonicalize_name(Requirement(line).name): str(Requirement(line).specifier).removeprefix(
            "=="
        )
        for line in lock.read_text().splitlines()
        if line and not line.startswith("#")
    }
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = canonicalize_name(dep.name)
        assert name in pins, f"{dep.name} is not pinned in {lock}: run scripts/bundle.py --lock"
        assert dep.specifier.contains(pins[name]), (
            f"{dep.name}=={pins[name]} does not satisfy {dep}"
        )


def bundled_binaries(names: set[str]) -> set[str]:
    return {n.rsplit("/", 1)[1] for n in names if n.endswith((".so", ".pyd"))}


def expected_binaries(target: str, pythons: list[str]) -> set[str]:
    return {PYDANTIC_CORE_BINARY[target].format(minor=v.split(".")[1]) for v in pythons}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("target", ["win32-x64", "darwin-arm64", "linux-arm64"])
def test_bundle_for_other_platforms(target: str, tmp_path: Path) -> None:
    """scripts/bundle.py --target T: the server, its libraries and pydantic-core's compiled
    module for T and every carried CPython version (pip --platform, cached by the lock's hash)."""
    ext = tmp_path / "ext"
    shutil.copytree(EXT / "scripts", ext / "scripts")
    (ext / "bundled").mkdir()
    shutil.copy(EXT / "bundled" / "requirements.txt", ext / "bundled")
    # bundle.py finds the repository two levels up: give it the server's source there.
    shutil.copytree(
        ROOT / "server", tmp_path / "server", ignore=shutil.ignore_patterns("__pycache__")
    )
    work = tmp_path / "editor-clients"
    work.mkdir()
    ext.rename(work / "vscode")
    proc = subprocess.run(
        [sys.executable, str(work / "vscode" / "scripts" / "bundle.py"), "--target", target],
        capture_output=True, text=True, timeout=580, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bundled = work / "vscode" / "bundled"
    manifest = json.loads((bundled / "manifest.json").read_text())
    assert manifest["target"] == target
    assert manifest["pythons"] == ["3.11", "3.12", "3.13", "3.14"]
    names = {p.relative_to(bundled).as_posix() for p in bundled.rglob("*") if p.is_file()}
    assert "libs/co_sidecar/server.py" in names and "libs/pygls/__init__.py" in names
    assert bundled_binaries(names) == expected_binaries(target, manifest["pythons"])


@needs_node
@pytest.mark.timeout(600)
def test_linux_x64_package_carries_the_server(node_modules: Path) -> None:
    """`npm run package -- linux-x64` (scripts/package.sh): a platform .vsix with the server
    tool, the bundle and this platform's compiled modules (the e2e suite installs and runs it)."""
    import zipfile

    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(EXT / "scripts" / "package.sh"), "linux-x64"],
        cwd=EXT, env=env, capture_output=True, text=True, timeout=580, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    version = json.loads((EXT / "package.json").read_text())["version"]
    with zipfile.ZipFile(EXT / f"co-sidecar-linux-x64-{version}.vsix") as vsix:
        names = set(vsix.namelist())
        vsixmanifest = vsix.read("extension.vsixmanifest").decode()
        manifest = json.loads(vsix.read("extension/bundled/manifest.json"))
    assert 'TargetPlatform="linux-x64"' in vsixmanifest
    assert manifest["target"] == "linux-x64"
    assert {"extension/bundled/tool/server.py", "extension/out/extension.js"} <= names
    assert "extension/bundled/libs/co_sidecar/server.py" in names
    assert not [n for n in names if "__pycache__" in n]
    assert bundled_binaries(names) == expected_binaries("linux-x64", manifest["pythons"])
