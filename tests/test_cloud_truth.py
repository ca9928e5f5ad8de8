"""Codex Cloud read as the official client reads it, end to end: JSON-RPC over stdio → real
server → HTTP adapter → loopback emulator serving the shapes the real service sends (status only
in task_status_display, failed attempts without diffs, answers without diffs, environments by
label and by repository, tasks started from the user's local changes)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from co_sidecar.cloud import environments
from co_sidecar.testing.emulator import Emulator
from conftest import SessionFactory, agent_command, git, make_repo

ANSWER_AGENT = [
    sys.executable,
    "-c",
    "import sys; print('The answer is 42: app.main returns 1.'); print('read app.py', file=sys.stderr)",
]


@pytest.fixture(autouse=True)
def _fresh_environment_cache() -> None:
    environments.clear_cache()


def options(emu: Emulator, **cloud: Any) -> dict[str, Any]:
    return {
        "local": {"agentCommand": agent_command(), "envAllow": ["DEMO_AGENT_*"]},
        "cloud": {
            "baseUrl": emu.base_url,
            "fallback": "deny",
            "poll": {"intervalSeconds": 0.05, "maxIntervalSeconds": 0.2, "requestTimeoutSeconds": 5, "jitter": 0},
            **cloud,
        },
    }


def manifest_of(repo: Path, run_id: str) -> dict[str, Any]:
    return json.loads((repo / ".runs" / "adhoc" / run_id / "manifest.json").read_text())


def terminal(updates: list[dict[str, Any]]) -> dict[str, Any]:
    return [u for u in updates if u["state"] in {"succeeded", "failed", "cancelled", "timed_out"}][-1]


async def test_finished_by_display_with_no_turn_status(repo: Path, start_server: SessionFactory) -> None:
    with Emulator(repo, faults="task:nostatus").start() as emu:
        s = await start_server(repo, options(emu, envId="env-demo"))
        run_id, state = await s.run_to_end("add notes", mode="cloud")
        task = next(iter(emu.tasks.values()))
        details = emu.details(task)
    # What the service said: no turn_status anywhere, the display says completed.
    assert "turn_status" not in details["current_assistant_turn"]
    assert details["task_status_display"]["latest_turn_status_display"]["turn_status"] == "completed"
    assert state == "succeeded"
    m = manifest_of(repo, run_id)
    assert m["cloud"]["status"] == "completed" and m["cloud"]["attemptStatus"][0]["diff"]
    diff = await s.request("co/diff", {"runId": run_id})
    assert "NOTES.md" in {f["path"] for f in diff["files"]}


async def test_failed_first_attempt_then_a_diff_is_attempt_one(repo: Path, start_server: SessionFactory) -> None:
    with Emulator(repo, faults="task:fail=BOOM:attempt=1").start() as emu:
        s = await start_server(repo, options(emu, envId="env-demo"))
        run_id, state = await s.run_to_end("two ways", mode="cloud", cloud={"attempts": 2})
    assert state == "succeeded"
    attempts = manifest_of(repo, run_id)["cloud"]["attemptStatus"]
    # `codex cloud diff --attempt 1` is the attempt with a diff; the failed one follows.
    assert [(a["attempt"], a["placement"], bool(a["diff"])) for a in attempts] == [(1, 1, True), (2, 0, False)]
    assert attempts[1]["error"] == "BOOM: injected task failure" and attempts[1]["status"] == "failed"
    first = await s.request("co/diff", {"runId": run_id, "attempt": 1})
    assert first["attempt"] == 1 and first["files"]
    with pytest.raises(JsonRpcException, match="attempt 2 .* has no diff"):
        await s.request("co/diff", {"runId": run_id, "attempt": 2})


async def test_an_answer_without_a_diff_is_a_success_with_the_answer(repo: Path, start_server: SessionFactory) -> None:
    with Emulator(repo, agent=ANSWER_AGENT).start() as emu:
        s = await start_server(repo, options(emu, envId="env-demo"))
        run_id, state = await s.run_to_end("what does main return?", mode="cloud")
    assert state == "succeeded"
    last = terminal(s.updates_for(run_id))
    assert last["message"] == "cloud task answered without changes: The answer is 42: app.main returns 1."
    [answer] = last["answers"]
    assert answer["messages"] == ["The answer is 42: app.main returns 1."] and answer["hasDiff"] is False
    assert answer["worklog"] == "worklog: 1 entry (tool 1)"
    status = await s.request("co/status", {"runId": run_id})
    [attempt] = status["cloud"]["attemptStatus"]
    assert attempt["messages"] == answer["messages"] and attempt["diff"] is None
    with pytest.raises(JsonRpcException, match="has no diff"):
        await s.request("co/diff", {"runId": run_id})


ENVS = [
    {"id": "env-back", "label": "Backend", "task_count": 9},
    {"id": "env-front", "label": "Frontend", "task_count": 2},
    {"id": "env-widgets", "label": "Widgets", "repos": ["acme/widgets"]},
]


async def test_environment_by_label(repo: Path, start_server: SessionFactory) -> None:
    with Emulator(repo, environments=ENVS).start() as emu:
        s = await start_server(repo, options(emu, envId="FRONTEND"))
        route = await s.request("co/route", {"prompt": "p", "mode": "cloud"})
        assert route["cloudEnv"] == {
            "id": "env-front", "label": "Frontend", "source": "label",
            "reason": "label 'FRONTEND' names environment env-front",
        }  # fmt: skip
        launched = await s.request("co/launch", {"prompt": "p", "mode": "cloud"})
        assert launched["cloudEnv"]["id"] == "env-front" and launched["cloudEnv"]["source"] == "label"
        assert await s.wait_state(launched["runId"]) == "succeeded"
        [task] = emu.tasks.values()
        env_lists = [r for r in emu.requests if "/environments" in r["path"]]
    assert task.env_id == "env-front"
    cloud = manifest_of(repo, launched["runId"])["cloud"]
    assert cloud["envId"] == "env-front" and cloud["env"]["source"] == "label"
    assert len(env_lists) == 1  # cached: not fetched again by the launch, never by a poll


async def test_environment_detected_by_repository(repo: Path, start_server: SessionFactory) -> None:
    git(repo, "remote", "add", "origin", "git@github.com:acme/widgets.git")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")  # the branch is on origin
    with Emulator(repo, environments=ENVS).start() as emu:
        s = await start_server(repo, options(emu))
        launched = await s.request("co/launch", {"prompt": "p", "mode": "cloud"})
        assert launched["cloudEnv"] == {
            "id": "env-widgets", "label": "Widgets", "source": "detected_by_repo",
            "reason": "detected by repository acme/widgets: its only environment",
        }  # fmt: skip
        assert await s.wait_state(launched["runId"]) == "succeeded"
        paths = [r["path"] for r in emu.requests if "/environments" in r["path"]]
        doctor = await s.request("co/doctor", {})
    assert paths == ["/backend-api/wham/environments/by-repo/github/acme/widgets", "/backend-api/wham/environments"]
    assert manifest_of(repo, launched["runId"])["cloud"]["env"]["id"] == "env-widgets"
    [env_check] = [c for c in doctor["checks"] if c["name"] == "cloud_env"]
    assert env_check["ok"] and "env-widgets" in env_check["message"] and "detected by repository" in env_check["message"]


async def test_no_repository_match_takes_the_most_used(repo: Path, start_server: SessionFactory) -> None:
    with Emulator(repo, environments=ENVS).start() as emu:
        s = await start_server(repo, options(emu))
        route = await s.request("co/route", {"prompt": "p", "mode": "cloud"})
    assert route["cloudEnv"]["id"] == "env-back" and route["cloudEnv"]["source"] == "most_used"


async def test_unknown_environment_fails_at_preflight_listing_the_labels(repo: Path, start_server: SessionFactory) -> None:
    with Emulator(repo, environments=ENVS).start() as emu:
        s = await start_server(repo, options(emu, envId="nope"))
        launched = await s.request("co/launch", {"prompt": "p", "mode": "cloud"})
        creates = [r for r in emu.requests if r["method"] == "POST"]
    assert launched["state"] == "failed" and "cloud_env_unknown" in launched["reason"]
    m = manifest_of(repo, launched["runId"])
    assert m["errorCode"] == "cloud_preflight" and not creates
    route = await s.request("co/route", {"prompt": "p", "mode": "cloud"})
    [issue] = route["issues"]
    assert issue["code"] == "cloud_env_unknown"
    assert issue["message"] == (
        "environment 'nope' not found; available: Backend (env-back), Frontend (env-front), Widgets (env-widgets)"
    )
    assert "set cloud.envId" in issue["fix"]


def pushed_workspace(tmp_path: Path) -> tuple[Path, Path]:
    """A bare origin and a clone of it, as a user has them."""
    seed = make_repo(tmp_path / "seed")
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(origin)], check=True)
    ws = tmp_path / "ws"
    subprocess.run(["git", "clone", "-q", str(origin), str(ws)], check=True)
    return origin, ws


def make_local_work(ws: Path) -> None:
    (ws / "README.md").write_text("# demo\n\nlocal commit, not pushed\n")
    git(ws, "commit", "-qam", "local work")
    (ws / "app.py").write_text("def main():\n    return 2  # uncommitted\n")
    (ws / "draft.txt").write_text("an untracked draft\n")


async def test_start_from_local_changes_gives_a_diff_that_applies(
    tmp_path: Path, start_server: SessionFactory
) -> None:
    origin, ws = pushed_workspace(tmp_path)
    make_local_work(ws)
    with Emulator(origin).start() as emu:  # the service sees what was pushed
        s = await start_server(ws, options(emu, envId="env-demo"))
        launched = await s.request(
            "co/launch", {"prompt": "add notes", "mode": "cloud", "cloud": {"startFromLocalChanges": True}}
        )
        [warning] = launched["warnings"]
        assert warning["code"] == "cloud_branch_unpushed"
        assert warning["message"].startswith("1 commit on main is not on origin")
        assert "git push origin main" in warning["fix"]
        assert await s.wait_state(launched["runId"]) == "succeeded"
        [task] = emu.tasks.values()
        plain_id, plain_state = await s.run_to_end("add notes", mode="cloud")
    m = manifest_of(ws, launched["runId"])
    starting = m["cloud"]["startingDiff"]
    assert task.starting_diff is not None
    assert starting["sha256"] == hashlib.sha256(task.starting_diff.encode()).hexdigest()
    assert (starting["files"], starting["base"], starting["unpushedCommits"]) == (3, "origin/main", 1)
    assert "draft.txt" in task.starting_diff and ".runs" not in task.starting_diff
    assert m["cloud"]["startFromLocalChanges"] is True
    patch = ws / ".runs" / m["diff"]["patchPath"]
    check = subprocess.run(["git", "apply", "--check", str(patch)], cwd=ws, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # Without it, the cloud worked on origin/main: its diff does not apply to this workspace.
    assert plain_state == "succeeded"
    plain = ws / ".runs" / manifest_of(ws, plain_id)["diff"]["patchPath"]
    assert subprocess.run(["git", "apply", "--check", str(plain)], cwd=ws, capture_output=True).returncode != 0


async def test_starting_diff_over_the_limit_is_a_clear_error(tmp_path: Path, start_server: SessionFactory) -> None:
    origin, ws = pushed_workspace(tmp_path)
    make_local_work(ws)
    with Emulator(origin).start() as emu:
        s = await start_server(ws, options(emu, envId="env-demo", startFromLocalChanges=True, startingDiffMaxBytes=100))
        run_id, state = await s.run_to_end("add notes", mode="cloud")
        assert not emu.tasks
    m = manifest_of(ws, run_id)
    assert state == "failed" and m["errorCode"] == "cloud_preflight"
    assert "over cloud.startingDiffMaxBytes (100)" in m["failureReason"]
    assert "git push origin main" in m["failureReason"]


async def test_unreadable_status_is_said_not_polled_silently(repo: Path, start_server: SessionFactory) -> None:
    with Emulator(repo, faults="task:unreadable").start() as emu:
        opts = options(emu, envId="env-demo")
        opts["cloud"]["poll"]["timeoutSeconds"] = 3
        s = await start_server(repo, opts)
        run_id, state = await s.run_to_end("add notes", mode="cloud")
    assert state == "timed_out"
    said = [u["message"] for u in s.updates_for(run_id) if "status unreadable" in u["message"]]
    assert said and said[0].startswith("cloud task status unreadable for 3 polls")
    m = manifest_of(repo, run_id)
    assert [w["code"] for w in m["cloud"]["warnings"]] == ["cloud_status_unreadable"]
    assert m["cloud"]["statusUnreadablePolls"] >= 3


async def test_create_answered_with_a_bare_id(repo: Path, start_server: SessionFactory) -> None:
    with Emulator(repo, faults="create:bare_id").start() as emu:
        s = await start_server(repo, options(emu, envId="env-demo"))
        run_id, state = await s.run_to_end("add notes", mode="cloud")
        [task_id] = emu.tasks
    assert state == "succeeded" and manifest_of(repo, run_id)["cloud"]["taskId"] == task_id


def test_co_sidecar_run_and_doctor_show_the_answer_and_the_environment(tmp_path: Path) -> None:
    """`co-sidecar run` shows the chosen environment, the unpushed-commits warning, the
    assistant's answer and that there is nothing to apply; `doctor --cloud` names the env."""
    from test_cli import run_cli

    origin, ws = pushed_workspace(tmp_path)
    make_local_work(ws)
    with Emulator(origin, agent=ANSWER_AGENT, environments=ENVS).start() as emu:
        env = {"CO_CLOUD_BASE_URL": emu.base_url, "CODEX_CLOUD_ENV_ID": "backend"}
        out = run_cli("run", "what does main return?", "--workspace", str(ws), "--mode", "cloud",
                      "--start-from-local-changes", env=env)  # fmt: skip
        doctor = run_cli("doctor", "--workspace", str(ws), "--cloud", env=env)
        [task] = emu.tasks.values()
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.split())
    assert "environment env-back (Backend): label 'backend' names environment env-back" in text
    assert "warning: 1 commit on main is not on origin" in text and "git push origin main" in text
    assert "attempt 1 (completed):" in text and "The answer is 42: app.main returns 1." in text
    assert "worklog: 1 entry (tool 1)" in text and "no changes: nothing to apply" in text
    assert task.starting_diff is not None and "draft.txt" in task.starting_diff
    assert doctor.returncode == 0, doctor.stdout
    assert "[ok  ] cloud_env: environment env-back (Backend): label 'backend' names environment env-back [label]" in doctor.stdout
    assert "[warn] cloud_warning: 1 commit on main is not on origin" in doctor.stdout
    assert "fix: git push origin main, or launch with startFromLocalChanges" in doctor.stdout


def test_emulator_command_lists_the_environments_it_is_given(tmp_path: Path) -> None:
    import httpx

    repo = make_repo(tmp_path / "repo")
    proc = subprocess.Popen(
        [sys.executable, "-m", "co_sidecar", "emulator", "--repo", str(repo), "--port", "0",
         "--env", "env-w=Widgets@acme/widgets", "--env", "env-x"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip().rsplit(" at ", 1)[1]
        by_repo = httpx.get(f"{base}/wham/environments/by-repo/github/acme/widgets").json()
        everything = httpx.get(f"{base}/wham/environments").json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert by_repo == [{"id": "env-w", "label": "Widgets", "is_pinned": False, "task_count": 0}]
    assert [e["id"] for e in everything] == ["env-w", "env-x"] and everything[1]["label"] == "env-x"
