"""CO parity: feature guard, CO-compatible settings, cloud canary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from co_sidecar.canary import run_canary
from co_sidecar.config import build_config
from co_sidecar.testing.emulator import Emulator
from conftest import SessionFactory, agent_command, git


def options(base_url: str, **cloud: object) -> dict:
    return {
        "local": {"agentCommand": agent_command(), "envAllow": ["DEMO_AGENT_*"]},
        "cloud": {"baseUrl": base_url, "poll": {"intervalSeconds": 0.05, "maxIntervalSeconds": 0.2}, **cloud},
    }


async def test_feature_guard_routes_a_cloud_run_local_without_contacting_the_cloud(
    repo: Path, start_server: SessionFactory
):
    with Emulator(repo).start() as emu:
        s = await start_server(repo, options(emu.base_url, envId="env-1"), env={"CO_CLOUD_ENABLED": "0"})
        launched = await s.request("co/launch", {"prompt": "p", "mode": "cloud", "metadata": {"parallel": True}})
        assert launched["mode"] == "local" and "feature guard" in launched["reason"]
        assert [i["code"] for i in launched["fallback"]["issues"]] == ["cloud_disabled"]
        assert await s.wait_state(launched["runId"]) == "succeeded"
        doctor = await s.request("co/doctor", {})
        assert doctor["cloud"]["issues"][0]["code"] == "cloud_disabled"
        assert emu.requests == []


def test_feature_guard_imports_nothing_cloud_related(repo: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys
        from pathlib import Path
        from co_sidecar.config import load_config
        from co_sidecar.doctor import doctor
        from co_sidecar.protocol import LaunchParams
        from co_sidecar.router import route
        ws = Path({str(repo)!r})
        config = load_config(ws, {{"CO_CLOUD_ENABLED": "0", "CODEX_CLOUD_ENV_ID": "e", "CODEX_CLOUD_TOKEN": "t"}})
        decision = route(LaunchParams(prompt="p", mode="cloud"), config, ws, {{}})
        asyncio.run(doctor(config, ws, {{}}))
        loaded = sorted(m for m in sys.modules if m.startswith("co_sidecar.cloud") or m == "httpx")
        print(decision.mode, loaded)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "local []"


async def test_co_metadata_cloud_env_id_and_co_fallback_words(repo: Path, start_server: SessionFactory):
    with Emulator(repo).start() as emu:
        s = await start_server(repo, options(emu.base_url), env={"CODEX_ORCHESTRATOR_CLOUD_FALLBACK": "strict"})
        no_env = await s.request("co/launch", {"prompt": "p", "mode": "cloud"})
        assert no_env["state"] == "failed" and "cloud_env_missing" in no_env["reason"]
        launched = await s.request("co/launch", {"prompt": "p", "metadata": {"parallel": True, "cloudEnvId": "env-co"}})
        assert launched["mode"] == "cloud"
        assert await s.wait_state(launched["runId"]) == "succeeded"
        m = json.loads((repo / ".runs" / "adhoc" / launched["runId"] / "manifest.json").read_text())
        assert m["cloud"]["envId"] == "env-co"
        failed = json.loads((repo / ".runs" / "adhoc" / no_env["runId"] / "manifest.json").read_text())
        assert failed["state"] == "failed" and "cloud_env_missing" in failed["failureReason"]


def test_canary_cli_against_the_emulator_reports_every_phase(repo: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "co_sidecar", "canary", "--emulator", "--format", "json", "--workspace", str(repo)],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["taskUrl"]
    assert [p["name"] for p in report["phases"]] == ["preflight", "create", "poll", "diff", "apply_check"]
    assert all(p["ok"] and p["durationMs"] >= 0 for p in report["phases"])
    # The user's tree and run records are untouched: the canary lives in temp dirs.
    assert git(repo, "status", "--porcelain") == "" and not (repo / ".runs").exists()


def test_canary_without_cloud_set_up_fails_at_preflight(repo: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "co_sidecar", "canary", "--workspace", str(repo)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "FAIL] preflight" in result.stdout and "cloud_env_missing" in result.stdout


async def test_canary_names_the_failing_phase(repo: Path) -> None:
    with Emulator(repo, faults="create:401").start() as emu:
        config = build_config({"cloud": {"baseUrl": emu.base_url, "envId": "e", "poll": {"intervalSeconds": 0.05}}})
        report = await run_canary(config, repo)
    assert report.ok is False
    assert [(p.name, p.ok) for p in report.phases] == [("preflight", True), ("create", False)]
    assert "401" in report.phases[-1].detail or "auth" in report.phases[-1].detail.lower()


async def test_canary_over_json_rpc(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    report = await s.request("co/canary", {"emulator": True})
    assert report["ok"] is True, report
    assert [p["name"] for p in report["phases"]] == ["preflight", "create", "poll", "diff", "apply_check"]
    failing = await s.request("co/canary", {})
    assert failing["ok"] is False and failing["phases"][0]["name"] == "preflight"
    assert git(repo, "status", "--porcelain") == ""


FAKE_CODEX = """#!/bin/sh
case "$1 $2" in
  "--version "*) echo "codex-cli 0.169.0" ;;
  "login status") echo "Not logged in" >&2; exit 1 ;;
  *) exit 2 ;;
esac
"""


def test_doctor_shows_the_codex_cli(repo: Path, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "codex").write_text(FAKE_CODEX)
    (bindir / "codex").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "CO_CLOUD_ADAPTER": "cli",
           "CODEX_CLOUD_ENV_ID": "e"}  # fmt: skip
    doctor = [sys.executable, "-m", "co_sidecar", "doctor", "--workspace", str(repo)]
    out = subprocess.run([*doctor, "--format", "json"], capture_output=True, text=True, env=env, timeout=60)
    report = json.loads(out.stdout)
    assert report["codex"] == {
        "path": str(bindir / "codex"),
        "version": "codex-cli 0.169.0",
        "signedIn": False,
        "signInDetail": "Not logged in",
        "localDefault": True,  # local.agentCommand unset and codex on PATH
        "execArgs": ["exec", "--json", "--sandbox", "workspace-write"],
    }
    assert [i["code"] for i in report["cloud"]["issues"]] == ["cloud_auth"]
    text = subprocess.run(doctor, capture_output=True, text=True, env=env, timeout=60).stdout
    assert f"codex: codex-cli 0.169.0 at {bindir / 'codex'}" in text
    assert "  sign-in: not signed in (Not logged in)" in text
    assert "  local default agent: yes: codex exec --json --sandbox workspace-write ..." in text
    assert "[FAIL] cloud: the Codex CLI is not signed in (`codex login status`: Not logged in)" in text
    assert "fix: run `codex login`" in text
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_doctor_text_without_codex() -> None:
    from co_sidecar.cli import _codex_lines

    assert _codex_lines(None).startswith("codex: not found on PATH")
