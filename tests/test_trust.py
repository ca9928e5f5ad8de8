"""A repository cannot aim the user's credentials or run code by being opened: a hostile
co-sidecar.toml / pyproject.toml that sets cloud.baseUrl and local.agentCommand is ignored for
those settings unless the user trusts the workspace (trustedWorkspaces in the user's
config.toml, or the editor's trust in initializationOptions). Over stdio, with a loopback
server standing for the attacker's host that must receive no request."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from boundary_faults import TRUST_TOKEN, Host, hostile_repo, user_config  # noqa: E402
from rpc import RpcProcess  # noqa: E402

TOKEN = TRUST_TOKEN
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


@pytest.fixture
def hosts() -> Iterator[tuple[Host, Host]]:
    evil, good = Host(), Host()
    yield evil, good
    evil.close()
    good.close()


def serve(repo: Path, config_home: Path, options: dict[str, Any] | None = None) -> RpcProcess:
    proc = RpcProcess(env={"XDG_CONFIG_HOME": str(config_home), "CODEX_CLOUD_TOKEN": TOKEN}, cwd=repo)
    proc.initialize(repo, options or {})
    return proc


@pytest.mark.parametrize("kind", ["co-sidecar.toml", "pyproject.toml"])
def test_untrusted_repository_config_neither_runs_code_nor_gets_the_token(
    repo: Path, tmp_path: Path, hosts: tuple[Host, Host], kind: str
) -> None:
    evil, good = hosts
    marker = hostile_repo(repo, tmp_path, evil, kind)
    server = serve(repo, user_config(tmp_path, good))
    try:
        local = server.request("co/launch", {"prompt": "p", "mode": "local"})
        assert server.wait_state(local["runId"], TERMINAL) == "succeeded"
        assert "good.txt" in server.request("co/diff", {"runId": local["runId"]})["patch"]  # the user's agent ran
        [issue] = local["warnings"]
        warning = issue["message"]
        assert issue["code"] == "config_warning" and "trust" in issue["fix"]
        assert "local.agentCommand" in warning and "cloud.baseUrl" in warning and "cloud.codexCommand" in warning
        assert "local.envAllow" in warning and "trustedWorkspaces" in warning and str(repo) in warning
        assert any(u["message"].startswith("warning: ") for u in server.updates(local["runId"]))

        cloud = server.request("co/launch", {"prompt": "p", "mode": "cloud"})
        assert cloud["mode"] == "cloud"  # envId from the repository is harmless: it is honoured
        server.wait_state(cloud["runId"], TERMINAL)
        doctor = server.request("co/doctor", {})
        assert any(c["code"] == "config_warning" and "not trusted" in c["message"] for c in doctor["checks"])
    finally:
        server.close()
    assert not marker.exists()  # the repository's program never ran
    assert evil.requests == []  # the repository's host never heard from us
    assert good.requests and all(auth == f"Bearer {TOKEN}" for _, _, auth in good.requests)


@pytest.mark.parametrize("how", ["trustedWorkspaces", "editor"])
def test_trusted_workspace_config_is_honoured(repo: Path, tmp_path: Path, hosts: tuple[Host, Host], how: str) -> None:
    evil, good = hosts  # here "evil" is the repository's own, trusted, host
    marker = hostile_repo(repo, tmp_path, evil, "co-sidecar.toml")
    if how == "trustedWorkspaces":
        server = serve(repo, user_config(tmp_path, good, trusted=[repo.parent]))  # a parent trusts below it
    else:
        server = serve(repo, user_config(tmp_path, good), {"co-sidecar": {}, "workspaceTrusted": True})
    try:
        local = server.request("co/launch", {"prompt": "p", "mode": "local"})
        assert local["warnings"] == []
        assert server.wait_state(local["runId"], TERMINAL) == "succeeded"
        cloud = server.request("co/launch", {"prompt": "p", "mode": "cloud"})
        server.wait_state(cloud["runId"], TERMINAL)
    finally:
        server.close()
    assert marker.read_text() == "pwned"
    assert evil.requests and good.requests == []


def test_editor_saying_untrusted_does_not_trust(repo: Path, tmp_path: Path, hosts: tuple[Host, Host]) -> None:
    evil, good = hosts
    marker = hostile_repo(repo, tmp_path, evil, "co-sidecar.toml")
    server = serve(repo, user_config(tmp_path, good), {"workspaceTrusted": "yes"})  # only JSON true trusts
    try:
        run = server.request("co/launch", {"prompt": "p", "mode": "local"})
        assert server.wait_state(run["runId"], TERMINAL) == "succeeded"
        assert run["warnings"]
    finally:
        server.close()
    assert not marker.exists() and evil.requests == []


def test_relative_runs_root_inside_the_workspace_needs_no_trust(repo: Path, tmp_path: Path, hosts: tuple[Host, Host]) -> None:
    _, good = hosts
    (repo / "co-sidecar.toml").write_text('[runs]\nroot = ".co-runs"\n[local]\ntimeoutSeconds = 30\n')
    server = serve(repo, user_config(tmp_path, good))
    try:
        run = server.request("co/launch", {"prompt": "p", "mode": "local"})
        assert run["warnings"] == []
        server.wait_state(run["runId"], TERMINAL)
    finally:
        server.close()
    assert (repo / ".co-runs" / "adhoc" / run["runId"] / "manifest.json").is_file()
    (repo / "co-sidecar.toml").write_text(f'[runs]\nroot = "{tmp_path / "outside"}"\n')
    server = serve(repo, tmp_path / "config-home")
    try:
        run = server.request("co/launch", {"prompt": "p", "mode": "local"})
        assert "runs.root" in run["warnings"][0]["message"]
        server.wait_state(run["runId"], TERMINAL)
    finally:
        server.close()
    assert not (tmp_path / "outside").exists()


def test_co_sidecar_run_trusts_only_with_the_flag(repo: Path, tmp_path: Path) -> None:
    import os
    import subprocess

    (tmp_path / "agent.py").write_text("import pathlib; pathlib.Path('from-repo.txt').write_text('hi\\n')\n")
    (repo / "co-sidecar.toml").write_text(f'[local]\nagentCommand = ["{sys.executable}", "{tmp_path / "agent.py"}"]\n')
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}  # no codex either
    cli = [sys.executable, "-m", "co_sidecar", "run", "p", "--workspace", str(repo), "--mode", "local"]
    plain = subprocess.run(cli, capture_output=True, text=True, timeout=120, env=env, check=False)  # noqa: S603
    assert plain.returncode == 1 and "from-repo.txt" not in plain.stdout
    assert "not trusted" in plain.stdout
    trusted = subprocess.run([*cli, "--trust-workspace"], capture_output=True, text=True, timeout=120, env=env, check=False)  # noqa: S603
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert "from-repo.txt" in trusted.stdout
