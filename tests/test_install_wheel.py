"""The Python package as a user gets it: `./dev dist` builds an sdist and a wheel; the wheel,
installed into a brand-new virtualenv, gives a `co-sidecar` that reports its version, answers
`doctor --format json` and does a local run with the demo agent, from outside this checkout
and with nothing of the project's .venv on PATH.

The wheel's dependencies come from a wheelhouse that `pip download` fills once per set of
declared requirements (~/.cache/co-sidecar/wheelhouse-<hash>), so the install is offline and
quick; the venv itself is new every time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_AGENT = ROOT / "examples" / "demo_agent.py"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# `./dev dist` rewrites dist/ in the checkout: `./dev test` runs this module on one pytest-xdist
# worker, so its module fixtures are built once (conftest.ONE_WORKER_MODULES).


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 300)
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload, no-any-return]


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (
        f"{proc.args}\n--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def dist() -> dict[str, Path]:
    out = ok(run([str(ROOT / "dev"), "dist"], cwd=ROOT))
    files = {Path(line).name: Path(line) for line in out.splitlines() if line.startswith("/")}
    wheel = files.get(f"co_sidecar-{VERSION}-py3-none-any.whl")
    sdist = files.get(f"co_sidecar-{VERSION}.tar.gz")
    assert wheel and wheel.is_file() and sdist and sdist.is_file(), out
    return {"wheel": wheel, "sdist": sdist}


def test_dist_builds_an_sdist_and_a_wheel(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as whl:
        names = set(whl.namelist())
        entry_points = whl.read(f"co_sidecar-{VERSION}.dist-info/entry_points.txt").decode()
        metadata = whl.read(f"co_sidecar-{VERSION}.dist-info/METADATA").decode()
    assert {"co_sidecar/cli.py", "co_sidecar/server.py", "co_sidecar/py.typed"} <= names
    assert "co-sidecar = co_sidecar.cli:main" in entry_points
    assert "Requires-Python: >=3.11" in metadata
    assert not [n for n in names if n.startswith(("tests/", "editor-clients/"))]
    with tarfile.open(dist["sdist"]) as sdist:
        members = set(sdist.getnames())
    prefix = f"co_sidecar-{VERSION}"
    assert {
        f"{prefix}/pyproject.toml",
        f"{prefix}/README.md",
        f"{prefix}/server/co_sidecar/cli.py",
    } <= members


BUILD_REQUIRES = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]


def wheelhouse(wheel: Path) -> Path:
    """The wheel's dependencies (and the build backend, to install from a source tree) as
    wheels, downloaded once per set of requirements."""
    with zipfile.ZipFile(wheel) as whl:
        metadata = whl.read(f"co_sidecar-{VERSION}.dist-info/METADATA").decode()
    requires = sorted(line for line in metadata.splitlines() if line.startswith("Requires-Dist:"))
    key = hashlib.sha256("\n".join([sys.version, *requires, *BUILD_REQUIRES]).encode()).hexdigest()[
        :12
    ]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "co-sidecar"
    house = cache / f"wheelhouse-{key}"
    if not (house / ".complete").exists():
        shutil.rmtree(house, ignore_errors=True)
        ok(
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--only-binary=:all:",
                    "-d",
                    str(house),
                    str(wheel),
                    *BUILD_REQUIRES,
                ]
            )
        )
        for own in house.glob("co_sidecar-*"):
            own.unlink()
        (house / ".complete").touch()
    return house


@pytest.fixture(scope="module")
def installed(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A new virtualenv with only the wheel (and its dependencies) installed, and the
    environment of a user who has nothing else of the project."""
    base = tmp_path_factory.mktemp("wheel-user")
    venv = base / "venv"
    # Without its own pip (ensurepip is the slow part): this pip installs into it.
    ok(run([sys.executable, "-m", "venv", "--without-pip", str(venv)]))
    pip = [
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "--python",
        str(venv / "bin" / "python"),
    ]
    house = wheelhouse(dist["wheel"])
    ok(
        run(
            [
                *pip,
                "install",
                "--quiet",
                "--no-compile",
                "--no-index",
                "--find-links",
                str(house),
                str(dist["wheel"]),
            ]
        )
    )
    project_bins = {str(ROOT / ".venv" / "bin"), str(Path(sys.executable).parent)}
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and d not in project_bins]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CO_", "CODEX_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    env["HOME"] = str(base / "home")  # no user config, no codex sign-in
    (base / "home").mkdir()
    return {"venv": venv, "env": env, "base": base, "house": house}


def test_the_wheel_installs_and_runs_from_a_clean_venv(installed: dict[str, object]) -> None:
    venv = installed["venv"]
    env = installed["env"]
    base = installed["base"]
    assert isinstance(venv, Path) and isinstance(env, dict) and isinstance(base, Path)
    exe = str(venv / "bin" / "co-sidecar")

    # Imported from the venv's site-packages, not this checkout.
    where = ok(
        run(
            [str(venv / "bin" / "python"), "-c", "import co_sidecar; print(co_sidecar.__file__)"],
            cwd=base,
            env=env,
        )
    )
    assert where.strip().startswith(str(venv)), where
    assert ok(run([exe, "--version"], cwd=base, env=env)).strip() == f"co-sidecar {VERSION}"

    repo = base / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# demo\n")
    (repo / "app.py").write_text("print('hi')\n")
    (repo / ".gitignore").write_text(".runs/\n")
    agent = json.dumps([str(venv / "bin" / "python"), str(DEMO_AGENT), "{prompt}"])
    # The user's own config (a repository's file may not choose the agent unless trusted).
    user_config = base / "home" / ".config" / "co-sidecar" / "config.toml"
    user_config.parent.mkdir(parents=True, exist_ok=True)
    user_config.write_text(f"[local]\nagentCommand = {agent}\n")
    git = [
        "git",
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "-c",
        "commit.gpgsign=false",
    ]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        ok(run([*git, *args], cwd=repo, env=env))

    report = json.loads(
        ok(run([exe, "doctor", "--format", "json", "--workspace", str(repo)], cwd=base, env=env))
    )
    assert report["local"]["ok"] is True, report
    assert any(c["name"] == "local" and c["ok"] for c in report["checks"]), report["checks"]

    out = ok(
        run(
            [exe, "run", "add notes", "--mode", "local", "--workspace", str(repo), "--apply"],
            cwd=base,
            env={**env, "DEMO_AGENT_DELAY": "0"},
        )
    )
    assert re.search(r"succeeded", out), out
    notes = repo / "NOTES.md"
    assert notes.is_file() and "add notes" in notes.read_text(), out
    manifests = list((repo / ".runs").rglob("manifest.json"))
    assert len(manifests) == 1
    assert json.loads(manifests[0].read_text())["state"] == "applied"


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed in the dev venv (a dev dependency: ./dev setup)")
    return found


def test_pipx_and_uv_install_it_as_the_docs_say(
    dist: dict[str, Path], installed: dict[str, object], tmp_path: Path
) -> None:
    """README: `pipx install` / `uv tool install` of a clone or of the wheel. Offline: the
    dependencies and the build backend come from the wheelhouse."""
    house = installed["house"]
    env = installed["env"]
    assert isinstance(house, Path) and isinstance(env, dict)
    clone = tmp_path / "co-sidecar"
    ok(run(["git", "clone", "--quiet", str(ROOT), str(clone)]))
    python = getattr(sys, "_base_executable", sys.executable)

    # uv tool install <clone>: builds it from the source tree.
    uv_env = {**env, "UV_TOOL_DIR": str(tmp_path / "uv-tools"), "UV_TOOL_BIN_DIR": str(tmp_path / "uv-bin"),
              "UV_CACHE_DIR": str(tmp_path / "uv-cache")}  # fmt: skip
    ok(
        run(
            [
                tool("uv"),
                "tool",
                "install",
                "--offline",
                "--no-index",
                "--find-links",
                str(house),
                "--python",
                python,
                str(clone),
            ],
            env=uv_env,
            cwd=tmp_path,
        )
    )
    assert (
        ok(
            run([str(tmp_path / "uv-bin" / "co-sidecar"), "--version"], env=env, cwd=tmp_path)
        ).strip()
        == f"co-sidecar {VERSION}"
    )

    # pipx install <the wheel>.
    pipx_env = {**env, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "pipx-bin"),
                "PIPX_MAN_DIR": str(tmp_path / "pipx-man")}  # fmt: skip
    pip_args = f"--no-index --find-links {house}"
    ok(
        run(
            [
                tool("pipx"),
                "install",
                "--python",
                python,
                f"--pip-args={pip_args}",
                str(dist["wheel"]),
            ],
            env=pipx_env,
            cwd=tmp_path,
        )
    )
    assert (
        ok(
            run([str(tmp_path / "pipx-bin" / "co-sidecar"), "--version"], env=env, cwd=tmp_path)
        ).strip()
        == f"co-sidecar {VERSION}"
    )
