"""The real HTTP adapter against the emulator over loopback, plus recorded JSON shapes."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from co_sidecar.cloud import http as cloud_http
from co_sidecar.cloud.auth import Credentials, load_credentials
from co_sidecar.cloud.client import CloudAuthError, CloudClientError, CloudNotFound
from co_sidecar.cloud.http import HttpCloudClient, snapshot_from_details, task_url, tasks_root
from co_sidecar.protocol import RunState
from test_cloud_support import TOKEN, start_emulator

FIXTURES = Path(__file__).parent / "fixtures" / "cloud"


def load(name: str):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def emulator(tmp_path):
    emu = start_emulator(tmp_path)
    yield emu
    emu.stop()


async def wait_done(client: HttpCloudClient, task_id: str):
    for _ in range(200):
        snap = await client.get_task(task_id)
        if snap.state != RunState.RUNNING and snap.all_attempts_done:
            return snap
        await asyncio.sleep(0.02)
    raise AssertionError("task did not finish")


@pytest.mark.parametrize("style", ["wham", "codex_api"])
async def test_create_poll_diff_both_path_styles(emulator, tmp_path, style):
    base = emulator.base_url if style == "wham" else emulator.codex_api_base_url
    client = HttpCloudClient(base, Credentials(TOKEN, "acct_1"), request_timeout=5)
    ref = await client.create_task("say hi", "env_test", "main", 1, False)
    assert ref.id.startswith("task_e_")
    assert ref.url == f"{emulator.origin}/codex/tasks/{ref.id}"
    snap = await wait_done(client, ref.id)
    assert snap.state == RunState.SUCCEEDED and snap.status == "completed"
    diff = await client.get_diff(ref.id)
    assert diff is not None and b"+attempt 1: say hi" in diff
    # The diff applies to the repo at HEAD.
    repo = tmp_path / "repo"
    subprocess.run(["git", "apply", "--check", "-"], cwd=repo, input=diff, check=True)
    listed = await client.list_tasks(limit=5)
    assert ref.id in [t.id for t in listed]
    prefix = "/backend-api/wham/tasks" if style == "wham" else "/api/codex/tasks"
    paths = [r["path"] for r in emulator.requests]
    assert all(p.startswith(prefix) for p in paths)
    assert any(p.startswith(f"{prefix}/list?limit=5&task_filter=current") for p in paths)


async def test_best_of_two_with_sibling_turns(emulator):
    client = HttpCloudClient(emulator.base_url, Credentials(TOKEN), request_timeout=5)
    ref = await client.create_task("pick one", "env_test", None, 2, False)
    snap = await wait_done(client, ref.id)
    assert [a.attempt for a in snap.attempts] == [1, 2]
    assert all(a.state == RunState.SUCCEEDED for a in snap.attempts)
    d1, d2 = await client.get_diff(ref.id, 1), await client.get_diff(ref.id, 2)
    assert d1 and b"attempt 1" in d1 and d2 and b"attempt 2" in d2
    with pytest.raises(CloudNotFound):
        await client.get_diff(ref.id, 3)
    assert any("/sibling_turns" in r["path"] for r in emulator.requests)
    body = next(r for r in emulator.requests if r["method"] == "POST")
    assert body["path"] == "/backend-api/wham/tasks"


async def test_headers_seen_by_server(emulator):
    client = HttpCloudClient(emulator.base_url, Credentials(TOKEN, "acct_42"), request_timeout=5)
    await client.list_tasks()
    headers = emulator.requests[-1]["headers"]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["ChatGPT-Account-Id"] == "acct_42"
    assert headers["User-Agent"].startswith("co-sidecar/")


async def test_token_never_in_errors(tmp_path):
    emu = start_emulator(tmp_path, token="the-right-token")
    try:
        client = HttpCloudClient(emu.base_url, Credentials(TOKEN), request_timeout=5)
        with pytest.raises(CloudAuthError) as info:
            await client.create_task("x", "env", None, 1, False)
        assert info.value.category == "cloud_auth" and not info.value.transient
        assert TOKEN not in str(info.value) and TOKEN not in repr(info.value.payload())
        assert TOKEN not in repr(Credentials(TOKEN))
    finally:
        emu.stop()


async def test_connection_refused_is_transient():
    client = HttpCloudClient(
        "http://127.0.0.1:9/backend-api", Credentials(TOKEN), request_timeout=1
    )
    with pytest.raises(CloudClientError) as info:
        await client.get_task("task_e_x")
    assert info.value.category == "cloud_unavailable" and info.value.transient
    assert TOKEN not in str(info.value)


async def test_one_pooled_client_per_base_url(emulator):
    a = cloud_http.pooled_client(emulator.base_url)
    b = cloud_http.pooled_client(emulator.base_url + "/")
    assert a is b
    await cloud_http.aclose_all()
    assert a.is_closed


def test_recorded_shapes():
    done = snapshot_from_details(
        load("task_details_completed.json"), base="https://chatgpt.com/backend-api"
    )
    assert done.state == RunState.SUCCEEDED and done.turn_id == "turn_a1"
    assert done.diff is not None and done.diff.startswith(b"diff --git a/hello.txt")
    assert done.url == "https://chatgpt.com/codex/tasks/task_e_demo001"

    failed = snapshot_from_details(load("task_details_error_pr.json"))
    assert failed.state == RunState.FAILED
    assert (
        failed.error_code == "APPLY_FAILED" and failed.error_message == "Patch could not be applied"
    )
    assert failed.diff is not None and b"lib.py" in failed.diff  # the `pr` item's output_diff

    running = snapshot_from_details(
        load("task_details_in_progress_best_of_2.json"), load("sibling_turns.json")["sibling_turns"]
    )
    assert running.state == RunState.RUNNING and running.attempt_total == 2
    # Numbered as `codex cloud diff --attempt N`: the attempt with a diff is 1, the one
    # still running (no diff yet) follows.
    assert [(a.attempt, a.turn_id, a.state) for a in running.attempts] == [
        (1, "turn_c2", RunState.SUCCEEDED),
        (2, "turn_c1", RunState.RUNNING),
    ]
    assert not running.all_attempts_done

    request = load("create_task_request.json")
    assert request["metadata"]["best_of_n"] == 2
    assert request["input_items"][0]["content"][0]["content_type"] == "text"


def test_paths_and_urls():
    assert tasks_root("https://chatgpt.com") == "https://chatgpt.com/backend-api/wham/tasks"
    assert (
        tasks_root("https://chatgpt.com/backend-api/")
        == "https://chatgpt.com/backend-api/wham/tasks"
    )
    assert tasks_root("http://localhost:8000") == "http://localhost:8000/api/codex/tasks"
    assert task_url("https://chatgpt.com/backend-api", "t1") == "https://chatgpt.com/codex/tasks/t1"
    assert task_url("http://h:1/api/codex", "t1") == "http://h:1/codex/tasks/t1"
    assert task_url("http://h:1", "t1") == "http://h:1/codex/tasks/t1"


def test_credentials_env_then_auth_json(tmp_path):
    env = {
        "CODEX_CLOUD_TOKEN": "abc-token",
        "CODEX_CLOUD_ACCOUNT_ID": "acct_env",
        "CODEX_HOME": str(tmp_path),
    }
    creds = load_credentials(env)
    assert creds is not None and creds.token == "abc-token" and creds.account_id == "acct_env"

    assert load_credentials({"CODEX_HOME": str(tmp_path)}) is None
    (tmp_path / "auth.json").write_text((FIXTURES / "auth.json").read_text())
    creds = load_credentials({"CODEX_HOME": str(tmp_path)})
    assert creds is not None and creds.token == "fixture-access-token-not-real"
    assert creds.account_id == "acct_from_jwt"  # from the id_token claim
