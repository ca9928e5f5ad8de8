"""The core sidecar end to end: JSON-RPC over stdio against the real server, real git repos."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from conftest import SessionFactory, agent_command, git

RUN_NOT_FOUND = -32001
APPLY_REFUSED = -32003
INVALID_PARAMS = -32602


def manifest_of(workspace: Path, run_id: str, task_id: str = "adhoc") -> dict:
    return json.loads((workspace / ".runs" / task_id / run_id / "manifest.json").read_text())


async def test_launch_streams_updates_in_order_and_records_the_run(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    launched = await s.request("co/launch", {"prompt": "document the app", "taskId": "T-1"})
    assert launched["mode"] == "local" and launched["taskId"] == "T-1"
    assert launched["fallback"] is None
    assert "configured default mode 'local'" in launched["reason"]
    run_id = launched["runId"]
    assert await s.wait_state(run_id) == "succeeded"

    states = [u["state"] for u in s.updates_for(run_id) if not u.get("stream")]
    order = ["routing", "launching", "running", "succeeded"]
    assert [st for st in states if st in order] == sorted(set(states) & set(order), key=order.index)
    assert states[-1] == "succeeded"
    outputs = [u for u in s.updates_for(run_id) if u.get("stream") == "stdout"]
    assert any("[demo-agent]" in u["message"] for u in outputs)
    assert all(u["taskId"] == "T-1" and u["mode"] == "local" for u in s.updates_for(run_id))

    m = manifest_of(repo, run_id, "T-1")
    assert m["schemaVersion"] == 1 and m["state"] == "succeeded" and m["prompt"] == "document the app"
    assert [t["state"] for t in m["transitions"]] == ["routing", "launching", "running", "succeeded"]
    assert m["executor"]["exitCode"] == 0
    patch = repo / ".runs" / m["diff"]["patchPath"]
    assert patch.is_file() and len(m["diff"]["sha256"]) == 64
    # The user's tree is untouched before acceptance.
    assert git(repo, "status", "--porcelain") == ""


async def test_diff_gives_exact_edits_for_modify_create_delete_rename(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    run_id, state = await s.run_to_end("ship it")
    assert state == "succeeded"
    diff = await s.request("co/diff", {"runId": run_id})
    by_path = {f["path"]: f for f in diff["files"]}
    assert by_path["README.md"]["status"] == "modified" and by_path["README.md"]["additions"] == 2
    assert by_path["NOTES.md"]["status"] == "added"
    assert by_path["TODO.md"]["status"] == "deleted"
    assert by_path["CHANGELOG.md"]["status"] == "renamed" and by_path["CHANGELOG.md"]["oldPath"] == "CHANGES.md"
    assert diff["conflicts"] == []

    changes = diff["edit"]["documentChanges"]
    uri = lambda name: (repo / name).as_uri()  # noqa: E731
    readme = [c for c in changes if c.get("textDocument", {}).get("uri") == uri("README.md")]
    assert len(readme) == 1 and readme[0]["textDocument"]["version"] is None
    (edit,) = readme[0]["edits"]
    assert edit["range"] == {"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 0}}
    assert edit["newText"] == "\nDemo agent was asked: ship it\n"
    assert {"kind": "create", "uri": uri("NOTES.md")}.items() <= next(c for c in changes if c.get("kind") == "create").items()
    assert next(c for c in changes if c.get("kind") == "delete")["uri"] == uri("TODO.md")
    rename = next(c for c in changes if c.get("kind") == "rename")
    assert rename["oldUri"] == uri("CHANGES.md") and rename["newUri"] == uri("CHANGELOG.md")
    annotations = diff["edit"]["changeAnnotations"]
    assert all(a["needsConfirmation"] is True for a in annotations.values())
    assert all(c.get("annotationId") in annotations or all(e.get("annotationId") in annotations for e in c.get("edits", [])) for c in changes)


async def test_open_document_with_unsaved_edits_shifts_the_edit(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    run_id, _ = await s.run_to_end("note")
    unsaved = "# added in the editor\n\n# demo\n"
    s.client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=(repo / "README.md").as_uri(), language_id="markdown", version=7, text=unsaved
            )
        )
    )
    diff = await s.request("co/diff", {"runId": run_id})
    readme = next(c for c in diff["edit"]["documentChanges"] if c.get("textDocument", {}).get("uri") == (repo / "README.md").as_uri())
    assert readme["textDocument"]["version"] == 7
    assert readme["edits"][0]["range"]["start"]["line"] == 3  # after the two unsaved lines


async def test_apply_needs_acceptance_then_sends_apply_edit_and_records_it(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    run_id, _ = await s.run_to_end("apply me")
    with pytest.raises(JsonRpcException) as refused:
        await s.request("co/apply", {"runId": run_id})
    assert refused.value.code == APPLY_REFUSED and "accept" in refused.value.message
    assert s.apply_requests == []

    result = await s.request("co/apply", {"runId": run_id, "accept": True})
    assert result["applied"] is True and result["strategy"] == "client"
    assert len(s.apply_requests) == 1
    assert s.apply_requests[0]["edit"]["documentChanges"]
    m = manifest_of(repo, run_id)
    assert m["state"] == "applied" and m["apply"]["applied"] is True and m["apply"]["strategy"] == "client"
    with pytest.raises(JsonRpcException) as again:
        await s.request("co/apply", {"runId": run_id, "accept": True})
    assert again.value.code == APPLY_REFUSED and "already applied" in again.value.message


async def test_client_declining_the_edit_is_recorded_and_run_stays_applicable(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    s.apply_answer = {"applied": False, "failure_reason": "user said no"}
    run_id, _ = await s.run_to_end("x")
    result = await s.request("co/apply", {"runId": run_id, "accept": True})
    assert result["applied"] is False and "user said no" in result["failureReason"]
    m = manifest_of(repo, run_id)
    assert m["state"] == "succeeded" and m["apply"]["applied"] is False


async def test_git_strategy_applies_to_the_working_tree(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    run_id, _ = await s.run_to_end("headless")
    result = await s.request("co/apply", {"runId": run_id, "accept": True, "strategy": "git"})
    assert result["applied"] is True, result
    assert (repo / "NOTES.md").is_file() and not (repo / "TODO.md").exists()
    assert (repo / "CHANGELOG.md").read_text() == "v0\n" and "headless" in (repo / "README.md").read_text()
    assert manifest_of(repo, run_id)["apply"]["strategy"] == "git"


async def test_reject_records_and_blocks_apply(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    run_id, _ = await s.run_to_end("nah")
    assert (await s.request("co/reject", {"runId": run_id}))["state"] == "rejected"
    assert manifest_of(repo, run_id)["apply"]["rejected"] is True
    with pytest.raises(JsonRpcException):
        await s.request("co/apply", {"runId": run_id, "accept": True})


async def test_cancel_kills_the_agent(repo: Path, start_server: SessionFactory):
    s = await start_server(repo, env={"DEMO_AGENT_SLEEP": "60"})
    launched = await s.request("co/launch", {"prompt": "slow"})
    run_id = launched["runId"]
    await s.wait_state(run_id, {"running"})
    pid = manifest_of(repo, run_id)["executor"]["pid"]
    result = await s.request("co/cancel", {"runId": run_id})
    assert result["state"] == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert manifest_of(repo, run_id)["state"] == "cancelled"


async def test_agent_failure_reports_stderr_tail(repo: Path, start_server: SessionFactory):
    s = await start_server(repo, env={"DEMO_AGENT_FAIL": "1"})
    run_id, state = await s.run_to_end("break")
    assert state == "failed"
    m = manifest_of(repo, run_id)
    assert "code 3" in m["failureReason"] and "demo-agent" in m["failureReason"]
    assert m["executor"]["exitCode"] == 3


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("co/launch", {}, "prompt"),
        ("co/launch", {"prompt": "x", "mode": "space"}, "mode"),
        ("co/launch", {"prompt": "x", "cloud": {"attempts": 9}}, "cloud.attempts"),
        ("co/launch", {"prompt": "x", "taskId": "../etc"}, "taskId"),
        ("co/status", {"runid": "x"}, "runId"),
        ("co/apply", {"runId": "x", "strategy": "ftp"}, "strategy"),
        ("co/list", {"limit": 0}, "limit"),
    ],
)
async def test_invalid_params_name_the_field_and_server_stays_up(
    repo: Path, start_server: SessionFactory, method: str, params: dict, field: str
):
    s = await start_server(repo)
    with pytest.raises(JsonRpcException) as error:
        await s.request(method, params)
    assert error.value.code == INVALID_PARAMS
    assert field in error.value.message
    assert (await s.request("co/list", {}))["runs"] == []


async def test_unknown_run_id_has_its_own_code(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    for method in ("co/status", "co/diff", "co/cancel", "co/reject"):
        with pytest.raises(JsonRpcException) as error:
            await s.request(method, {"runId": "nope"})
        assert error.value.code == RUN_NOT_FOUND, method


async def test_manifests_reload_after_restart(repo: Path, start_server: SessionFactory):
    first = await start_server(repo)
    run_id, _ = await first.run_to_end("remember me")
    await first.client.shutdown_session()
    second = await start_server(repo)
    runs = (await second.request("co/list", {}))["runs"]
    assert [r["runId"] for r in runs] == [run_id]
    assert runs[0]["state"] == "succeeded" and runs[0]["prompt"] == "remember me"
    diff = await second.request("co/diff", {"runId": run_id})
    assert any(f["path"] == "NOTES.md" for f in diff["files"])


async def test_list_filters_and_orders_newest_first(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    a, _ = await s.run_to_end("one", taskId="A")
    b, _ = await s.run_to_end("two", taskId="B")
    assert [r["runId"] for r in (await s.request("co/list", {}))["runs"]] == [b, a]
    assert [r["runId"] for r in (await s.request("co/list", {"taskId": "A"}))["runs"]] == [a]
    assert [r["runId"] for r in (await s.request("co/list", {"limit": 1}))["runs"]] == [b]
    assert (await s.request("co/list", {"state": "failed"}))["runs"] == []


async def test_execute_command_mirrors_requests(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    launched = await s.client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="co.launch", arguments=[{"prompt": "via command"}])
    )
    assert (await s.wait_state(launched["runId"])) == "succeeded"
    status = await s.client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="co.status", arguments=[{"runId": launched["runId"]}])
    )
    assert status["state"] == "succeeded"


async def test_work_done_progress_begins_reports_and_ends(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    run_id, _ = await s.run_to_end("progress please")
    await asyncio.sleep(0.2)
    token = f"co-sidecar/{run_id}"
    reports = s.client.progress_reports.get(token, [])
    kinds = [r.kind for r in reports]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds
    assert "succeeded" in reports[-1].message


async def test_concurrent_runs_are_independent(repo: Path, start_server: SessionFactory):
    s = await start_server(repo, env={"DEMO_AGENT_DELAY": "0.3"})
    runs = [await s.request("co/launch", {"prompt": f"run {i}"}) for i in range(3)]
    await s.wait_state(runs[1]["runId"], {"running"})
    await s.request("co/cancel", {"runId": runs[1]["runId"]})
    states = await asyncio.gather(*(s.wait_state(r["runId"]) for r in runs))
    assert states == ["succeeded", "cancelled", "succeeded"]
    notes = [await s.request("co/diff", {"runId": r["runId"]}) for r in (runs[0], runs[2])]
    assert all("NOTES.md" in {f["path"] for f in d["files"]} for d in notes)


async def test_route_and_launch_fall_back_to_local_with_the_reason(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    decision = await s.request("co/route", {"prompt": "p", "metadata": {"parallel": True}})
    assert decision["mode"] == "local" and decision["requestedMode"] == "auto"
    assert {i["code"] for i in decision["issues"]} == {"cloud_env_missing", "cloud_credentials_missing"}
    assert (await s.request("co/list", {}))["runs"] == []  # route is a dry run

    launched = await s.request("co/launch", {"prompt": "p", "mode": "cloud"})
    assert launched["mode"] == "local" and launched["fallback"]["reason"] == launched["reason"]
    assert {i["code"] for i in launched["fallback"]["issues"]} == {"cloud_env_missing", "cloud_credentials_missing"}
    assert await s.wait_state(launched["runId"]) == "succeeded"
    assert any("falling back to local" in u["message"] for u in s.updates_for(launched["runId"]))
    m = manifest_of(repo, launched["runId"])
    assert m["requestedMode"] == "cloud" and m["selectedMode"] == "local"
    assert m["fallback"]["issues"][0]["code"] == "cloud_env_missing" and m["fallback"]["at"]


async def test_fallback_deny_fails_fast_naming_the_codes(repo: Path, start_server: SessionFactory):
    s = await start_server(repo, env={"CO_CLOUD_FALLBACK": "deny"})
    decision = await s.request("co/route", {"prompt": "p", "mode": "cloud"})
    assert decision["denied"] is True
    launched = await s.request("co/launch", {"prompt": "p", "mode": "cloud"})
    assert launched["state"] == "failed" and "deny" in launched["reason"]
    m = manifest_of(repo, launched["runId"])
    assert m["state"] == "failed" and m["errorCode"] == "cloud_preflight"
    assert "cloud_env_missing" in m["failureReason"] and "cloud_credentials_missing" in m["failureReason"]


async def test_progress_cancel_from_the_client_cancels_the_run(repo: Path, start_server: SessionFactory):
    s = await start_server(repo, env={"DEMO_AGENT_SLEEP": "60"})
    launched = await s.request("co/launch", {"prompt": "slow", "workDoneToken": "tok-1"})
    await s.wait_state(launched["runId"], {"running"})
    s.client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token="tok-1"))
    assert await s.wait_state(launched["runId"]) == "cancelled"
    assert [r.kind for r in s.client.progress_reports["tok-1"]][-1] == "end"


async def test_doctor_reports_both_modes(repo: Path, start_server: SessionFactory):
    s = await start_server(repo)
    report = await s.request("co/doctor", {})
    assert report["local"]["ok"] is True and report["cloud"]["ok"] is False
    assert report["fallbackPolicy"] == "allow" and report["defaultMode"] == "local"
    failing = {c["code"] for c in report["checks"] if not c["ok"]}
    assert {"cloud_env_missing", "cloud_credentials_missing"} <= failing
    assert all(c["fix"] for c in report["checks"] if not c["ok"])


async def test_diff_budget_marks_and_guards_apply(repo: Path, start_server: SessionFactory):
    options = {
        "local": {"agentCommand": agent_command(), "envAllow": ["DEMO_AGENT_*"]},
        "diff": {"maxFiles": 2},
    }
    s = await start_server(repo, options)
    run_id, _ = await s.run_to_end("big change")
    diff = await s.request("co/diff", {"runId": run_id})
    assert diff["overBudget"] is True
    assert diff["budget"]["files"] == len(diff["files"]) > 2 and diff["budget"]["maxFiles"] == 2
    with pytest.raises(JsonRpcException) as refused:
        await s.request("co/apply", {"runId": run_id, "accept": True, "strategy": "git"})
    assert refused.value.code == APPLY_REFUSED and "over budget" in refused.value.message
    assert not (repo / "NOTES.md").exists()
    forced = await s.request("co/apply", {"runId": run_id, "accept": True, "strategy": "git", "force": True})
    assert forced["applied"] is True
    m = manifest_of(repo, run_id)
    assert m["apply"]["forced"] is True and m["diff"]["overBudget"] is True


async def test_configuration_file_and_did_change_configuration_apply(repo: Path, start_server: SessionFactory, tmp_path: Path):
    (repo / "co-sidecar.toml").write_text('[runs]\nroot = ".co-runs"\n')
    s = await start_server(repo)
    first, _ = await s.run_to_end("from toml")
    assert (repo / ".co-runs" / "adhoc" / first / "manifest.json").is_file()

    failing_agent = ["python3", "-c", "import sys; sys.exit('configured to fail')"]
    s.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"co-sidecar": {"local": {"agentCommand": failing_agent}}})
    )
    second, state = await s.run_to_end("from settings")
    assert state == "failed"
    m = json.loads((repo / ".co-runs" / "adhoc" / second / "manifest.json").read_text())
    assert "configured to fail" in m["failureReason"]


async def test_list_pages_default_to_100_with_the_total(repo: Path, start_server: SessionFactory):
    from co_sidecar.manifest import ManifestStore, RunManifest, new_run_id, utc_now

    store = ManifestStore(repo / ".runs")
    for i in range(105):
        now = utc_now()
        store.save(RunManifest(
            run_id=new_run_id(), task_id="bulk", prompt=f"p{i}", workspace=str(repo), requested_mode="auto",
            selected_mode="local", routing_reason="r", state="succeeded", created_at=now, updated_at=now,
        ))  # fmt: skip
    s = await start_server(repo)
    page = await s.request("co/list", {})
    assert len(page["runs"]) == 100 and page["total"] == 105
    assert page["runs"][0]["prompt"] == "p104"  # newest first
    everything = await s.request("co/list", {"limit": 1000})
    assert len(everything["runs"]) == 105
