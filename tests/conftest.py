"""Shared fixtures: real git repositories and real servers over stdio (pytest-lsp clients)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import register_lsp_features

from co_sidecar.jsonrpc import plain_converter

ROOT = Path(__file__).resolve().parents[1]
CODEX_PACKAGE = ROOT / "tests" / "codex"


def codex_bin_dir() -> Path:
    """Where the pinned Codex CLI (tests/codex) is installed: $CO_CODEX_BIN_DIR (./dev test
    sets it), else the cache ./dev test installs into, keyed by the lockfile's sha256."""
    if os.environ.get("CO_CODEX_BIN_DIR"):
        return Path(os.environ["CO_CODEX_BIN_DIR"])
    import hashlib

    digest = hashlib.sha256((CODEX_PACKAGE / "package-lock.json").read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "co-sidecar" / f"codex-{digest}" / "node_modules" / ".bin"
DEMO_AGENT = ROOT / "examples" / "demo_agent.py"
FINISHED = {"succeeded", "failed", "cancelled", "timed_out", "applied", "rejected"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    files = files if files is not None else {
        "README.md": "# demo\n",
        "app.py": "def main():\n    return 1\n",
        "TODO.md": "- nothing\n",
        "CHANGES.md": "v0\n",
    }
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "base")
    return path


# Under pytest-xdist (`./dev test` runs `-n 4 --dist loadgroup`) the tests are spread one by one
# over the workers, except the modules here: their tests write the same files in the checkout
# (so two of them must never run at once), or share an expensive module fixture. Each module
# runs whole on one worker, and these start first (they are the longest). xdist's own
# xdist_group mark is not used: it does not group under pytest 9.2 (pytest-xdist issue 1386).
ONE_WORKER_MODULES = {
    "tests/test_vscode_client.py",  # npm build/test/package and the e2e: out/, bundled/, *.vsix
    "tests/test_install_wheel.py",  # `./dev dist` rewrites dist/; the wheel's venv is built once
}


# The longest single tests (minutes beside other workers): started first under xdist, so none
# of them is the tail of the run. Only the order changes.
SLOW_FIRST_MODULES = (
    "tests/test_benchmarks_quick.py",
    "tests/test_reliability_script.py",
    "tests/test_runs_cli.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: every worker sorts alike
        items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in SLOW_FIRST_MODULES)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else super()._split_scope(nodeid)

    return ModuleGroups(config, log)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "ws")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Scratch copies and Codex credentials stay inside the test's temp dir.
    monkeypatch.setenv("CO_SCRATCH_ROOT", str(tmp_path / "scratch"))
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex-home"))
    for name in ("CODEX_CLOUD_TOKEN", "CODEX_CLOUD_ENV_ID", "CO_CLOUD_FALLBACK", "CO_AGENT_COMMAND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEMO_AGENT_DELAY", "0.05")


def agent_command(script: Path = DEMO_AGENT) -> list[str]:
    return [sys.executable, str(script), "{prompt}"]


class Session:
    """A real server over stdio plus what its client saw."""

    def __init__(self, client: LanguageClient, workspace: Path):
        self.client = client
        self.workspace = workspace
        self.updates: list[dict[str, Any]] = []
        self.apply_requests: list[dict[str, Any]] = []
        self.apply_answer: dict[str, Any] = {"applied": True}
        self._changed = asyncio.Event()

        @client.feature("co/runUpdate")
        def _on_update(params: Any) -> None:
            self.updates.append(_plain(params))
            self._changed.set()

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def _on_apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            self.apply_requests.append(_plain(client.protocol._converter.unstructure(params)))
            return types.ApplyWorkspaceEditResult(**self.apply_answer)

    async def request(self, method: str, params: Any) -> Any:
        return await self.client.protocol.send_request_async(method, params)

    def updates_for(self, run_id: str) -> list[dict[str, Any]]:
        return [u for u in self.updates if u["runId"] == run_id]

    async def wait_state(self, run_id: str, states: set[str] = FINISHED, timeout: float = 30) -> str:
        async def loop() -> str:
            while True:
                seen = [u["state"] for u in self.updates_for(run_id)]
                hit = [s for s in seen if s in states]
                if hit:
                    return hit[-1]
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(loop(), timeout)

    async def run_to_end(self, prompt: str = "add notes", **params: Any) -> tuple[str, str]:
        launched = await self.request("co/launch", {"prompt": prompt, **params})
        return launched["runId"], await self.wait_state(launched["runId"])


def _plain(value: Any) -> Any:
    """pygls hands custom params over as attrs/namedtuples or dicts; tests want dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    return value


SessionFactory = Callable[..., Awaitable[Session]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[SessionFactory]:
    sessions: list[Session] = []

    async def start(
        workspace: Path,
        options: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        capabilities: types.ClientCapabilities | None = None,
    ) -> Session:
        client = LanguageClient(converter_factory=plain_converter)
        register_lsp_features(client)
        session = Session(client, workspace)
        server_env = {**os.environ, **(env or {})}
        await client.start_io(sys.executable, "-m", "co_sidecar", "serve", env=server_env)
        if options is None:
            options = {"local": {"agentCommand": agent_command(), "envAllow": ["DEMO_AGENT_*"]}}
        await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities or client_capabilities("visual-studio-code"),
                root_uri=workspace.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name="ws")],
                initialization_options=options,
            )
        )
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.client.shutdown_session(), 15)
        await session.client.stop()
