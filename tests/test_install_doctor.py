"""`co-sidecar doctor` says "ready" only when a run would work, and says what it checked.

Local with the real, pinned Codex CLI as the default agent: not ready while Codex is signed
out with no API key (with the fix), ready once an API key it reads is set. Cloud against the
loopback emulator: the ready line names the adapter, the base URL and the environment; an
unreachable service is a finding with a fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from co_sidecar.testing.emulator import Emulator
from conftest import DEMO_AGENT, codex_bin_dir

CLI = [sys.executable, "-m", "co_sidecar"]
CODEX = codex_bin_dir() / "codex"
needs_codex = pytest.mark.skipif(
    not CODEX.exists(),
    reason=f"the pinned Codex CLI is not installed at {CODEX} (./dev test installs it)",
)


def doctor(repo: Path, env: dict[str, str], *extra: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [*CLI, "doctor", "--workspace", str(repo), "--format", "json", *extra],
        capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def base_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CODEX_API_KEY", "OPENAI_API_KEY", "CO_CLOUD"))
    }
    return {**env, **extra}


@needs_codex
def test_local_is_not_ready_while_the_default_codex_agent_is_signed_out(repo: Path) -> None:
    env = base_env(PATH=f"{CODEX.parent}{os.pathsep}{os.environ['PATH']}")
    Path(env["CODEX_HOME"]).mkdir()  # an empty Codex home: "Not logged in"
    _, report = doctor(repo, env)
    assert report["local"]["ok"] is False, report
    (issue,) = [i for i in report["local"]["issues"] if i["code"] == "local_agent_signed_out"]
    assert "not signed in" in issue["message"] and "Not logged in" in issue["message"]
    assert "codex login" in issue["fix"]
    check = next(c for c in report["checks"] if c["name"] == "local")
    assert check["ok"] is False and check["fix"] == issue["fix"]

    # An API key codex exec reads: ready, and the line names the agent and its version.
    _, report = doctor(repo, {**env, "CODEX_API_KEY": "sk-test-not-real"})
    assert report["local"]["ok"] is True, report
    check = next(c for c in report["checks"] if c["name"] == "local")
    assert (
        check["message"].startswith("local mode ready: agent `codex` (")
        and "0.169.0" in check["message"]
    )
    assert "sk-test-not-real" not in json.dumps(report)


def test_local_ready_names_the_configured_agent(repo: Path) -> None:
    agent = json.dumps([sys.executable, str(DEMO_AGENT), "{prompt}"])
    _, report = doctor(repo, base_env(CO_AGENT_COMMAND=agent))
    check = next(c for c in report["checks"] if c["name"] == "local")
    assert check == {**check, "ok": True, "message": f"local mode ready: agent `{sys.executable}`"}


@pytest.fixture
def emulator(repo: Path) -> Iterator[Emulator]:
    emu = Emulator(str(repo), port=0)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def test_cloud_ready_names_the_adapter_url_and_environment(repo: Path, emulator: Emulator) -> None:
    agent = json.dumps([sys.executable, str(DEMO_AGENT), "{prompt}"])
    env = base_env(
        CO_AGENT_COMMAND=agent, CO_CLOUD_BASE_URL=emulator.base_url, CODEX_CLOUD_ENV_ID="env-demo"
    )
    code, report = doctor(repo, env, "--cloud")
    assert code == 0 and report["cloud"]["ok"] is True, report
    check = next(c for c in report["checks"] if c["name"] == "cloud")
    assert (
        check["message"]
        == f"cloud mode ready: adapter http, {emulator.base_url}, environment env-demo"
    )


def test_every_finding_has_a_fix_including_an_unreachable_service(
    repo: Path, emulator: Emulator
) -> None:
    url = emulator.base_url
    emulator.stop()  # nothing listens there any more
    env = base_env(CO_CLOUD_BASE_URL=url, CODEX_CLOUD_ENV_ID="env-demo", PATH="/usr/bin:/bin")
    code, report = doctor(repo, env, "--cloud")
    assert code == 1
    failing = [c for c in report["checks"] if not c["ok"]]
    assert {c["name"] for c in failing} == {"local", "cloud"}, failing
    assert all(c["fix"] for c in failing), failing
    unreachable = next(c for c in failing if c["name"] == "cloud")
    assert "not reachable" in unreachable["message"] and url in unreachable["fix"]
