"""CloudExecutor with a FakeContext against the emulator; cloud preflight and reachability."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from co_sidecar.cloud.auth import Credentials
from co_sidecar.cloud.executor import CloudExecutor
from co_sidecar.cloud.http import HttpCloudClient
from co_sidecar.cloud.preflight import cloud_check, cloud_reachability
from co_sidecar.config import Config
from co_sidecar.manifest import CloudInfo, RunManifest
from co_sidecar.protocol import RunState
from test_cloud_support import TOKEN, FakeContext, cloud_config, git, make_repo, start_emulator


@pytest.fixture
def emulator(tmp_path):
    emu = start_emulator(tmp_path)
    yield emu
    emu.stop()


def env_for(tmp_path):
    return {"CODEX_CLOUD_TOKEN": TOKEN, "CODEX_HOME": str(tmp_path / "codex-home")}


async def test_single_attempt_fills_manifest(emulator, tmp_path):
    ctx = FakeContext(tmp_path, cloud_config(emulator.base_url))
    ctx.manifest.cloud = CloudInfo(branch="main")
    outcome = await CloudExecutor(environ=env_for(tmp_path)).execute(ctx)
    assert outcome.state == RunState.SUCCEEDED, outcome
    info = ctx.manifest.cloud
    assert info is not None
    assert info.adapter == "http" and info.env_id == "env_test" and info.branch == "main"
    assert info.task_id and info.task_url == f"{emulator.origin}/codex/tasks/{info.task_id}"
    assert info.attempts == 1 and info.poll_count >= 1 and info.status == "completed"
    assert info.created_at and info.last_polled_at and info.completed_at
    [attempt] = info.attempt_status
    assert attempt.attempt == 1 and attempt.status == "completed" and attempt.diff is not None
    assert attempt.diff.sha256 and b"attempt 1" in ctx.patches[1]
    assert ctx.states[0][0] == RunState.RUNNING and info.task_url in ctx.states[0][1]
    assert any(m.startswith("cloud task") and "(poll" in m for m in ctx.messages)
    # Every save was a valid manifest that still loads, and no token anywhere.
    for saved in ctx.saved:
        RunManifest.model_validate(saved)
    assert TOKEN not in repr(ctx.saved)
    post = next(r for r in emulator.requests if r["method"] == "POST")
    assert post["headers"]["Authorization"] == f"Bearer {TOKEN}"


async def test_best_of_two_records_each_attempt(emulator, tmp_path):
    ctx = FakeContext(tmp_path, cloud_config(emulator.base_url))
    ctx.manifest.cloud = CloudInfo(attempts=2)
    outcome = await CloudExecutor(environ=env_for(tmp_path)).execute(ctx)
    assert outcome.state == RunState.SUCCEEDED
    info = ctx.manifest.cloud
    assert info is not None
    assert [a.attempt for a in info.attempt_status] == [1, 2]
    assert all(a.diff is not None for a in info.attempt_status)
    assert b"attempt 1" in ctx.patches[1] and b"attempt 2" in ctx.patches[2]
    assert info.attempt_status[0].diff.sha256 != info.attempt_status[1].diff.sha256  # type: ignore[union-attr]


async def test_cancel_stops_polling_fast(emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_SLEEP", "30")
    ctx = FakeContext(
        tmp_path, cloud_config(emulator.base_url, intervalSeconds=5, maxIntervalSeconds=5)
    )
    task = asyncio.create_task(CloudExecutor(environ=env_for(tmp_path)).execute(ctx))
    for _ in range(200):
        if ctx.states:
            break
        await asyncio.sleep(0.01)
    started = time.monotonic()
    ctx.cancel_event.set()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.state == RunState.CANCELLED
    assert time.monotonic() - started < 1.5
    assert any(
        r["path"].endswith("/cancel") for r in emulator.requests
    )  # best-effort remote cancel
    assert ctx.manifest.cloud is not None and ctx.manifest.cloud.status == "cancelled"


async def test_resume_polls_existing_task_without_creating(emulator, tmp_path):
    client = HttpCloudClient(emulator.base_url, Credentials(TOKEN), request_timeout=5)
    ref = await client.create_task("resume me", "env_test", None, 1, False)
    ctx = FakeContext(tmp_path, cloud_config(emulator.base_url))
    ctx.manifest.cloud = CloudInfo(task_id=ref.id, task_url=ref.url, env_id="env_test", attempts=1)
    outcome = await CloudExecutor(environ=env_for(tmp_path)).resume(ctx)
    assert outcome.state == RunState.SUCCEEDED
    assert sum(r["method"] == "POST" for r in emulator.requests) == 1
    assert b"resume me" in ctx.patches[1]


async def test_missing_env_id_is_preflight_failure(emulator, tmp_path):
    config = cloud_config(emulator.base_url)
    config.cloud.env_id = None
    ctx = FakeContext(tmp_path, config)
    outcome = await CloudExecutor(environ=env_for(tmp_path)).execute(ctx)
    assert outcome.state == RunState.FAILED and outcome.error_code == "cloud_preflight"
    assert emulator.requests == []


def codes(issues):
    return sorted(i.code for i in issues)


def test_preflight_checks(tmp_path):
    repo = make_repo(tmp_path)
    empty_env = {"CODEX_HOME": str(tmp_path / "nohome")}
    cfg = Config.model_validate({"cloud": {"enabled": False}})
    assert codes(cloud_check(cfg, repo, environ=empty_env).issues) == ["cloud_disabled"]

    cfg = Config()
    assert codes(cloud_check(cfg, repo, environ=empty_env).issues) == [
        "cloud_credentials_missing",
        "cloud_env_missing",
    ]
    # Nothing listens on port 1: the environment list cannot be read, so the configured id is
    # used as given (no request ever leaves the machine in this test).
    offline = Config.model_validate({"cloud": {"baseUrl": "http://127.0.0.1:1/backend-api"}})
    assert cloud_check(offline, repo, env_id="env", environ={"CODEX_CLOUD_TOKEN": "t"}).issues == []

    loopback = Config.model_validate({"cloud": {"baseUrl": "http://127.0.0.1:1/backend-api"}})
    assert (
        cloud_check(loopback, repo, env_id="env", environ=empty_env).issues == []
    )  # emulator: no creds

    cli = Config.model_validate(
        {"cloud": {"adapter": "cli", "codexCommand": ["no-such-codex-xyz"]}}
    )
    assert codes(cloud_check(cli, repo, env_id="env", environ=empty_env).issues) == [
        "cloud_cli_missing"
    ]

    # A branch that is not on origin (refs/remotes/origin/<b> is checked, no network).
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)  # noqa: S603
    git(["remote", "add", "origin", str(origin)], repo)
    git(["push", "-q", "origin", "main"], repo)
    git(["fetch", "-q", "origin"], repo)
    ok = {"CODEX_CLOUD_TOKEN": "t"}
    assert cloud_check(offline, repo, env_id="env", branch="main", environ=ok).issues == []
    issues = cloud_check(offline, repo, env_id="env", branch="feature-x", environ=ok).issues
    assert codes(issues) == ["cloud_branch_missing"] and "git push" in (issues[0].fix or "")


async def test_reachability(emulator):
    good = Config.model_validate({"cloud": {"baseUrl": emulator.base_url}})
    assert await cloud_reachability(good, environ={}) is None
    bad = Config.model_validate(
        {
            "cloud": {
                "baseUrl": "http://127.0.0.1:9/backend-api",
                "poll": {"requestTimeoutSeconds": 1},
            }
        }
    )
    issue = await cloud_reachability(bad, environ={})
    assert issue is not None and issue.code == "cloud_unavailable"
