"""Every run reaches a terminal state, or its launch is refused with a clear error and no ghost:
file descriptors exhausted in the server, an unwritable runs root, a folder that is not a git
repository, and prompts too large for an argument (E2BIG) or over runs.maxPromptBytes."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, SessionFactory, git

sys.path.insert(0, str(ROOT / "scripts"))
from boundary_faults import BIG_PROMPT, PROMPT_READER  # noqa: E402
from rpc import RpcError, RpcProcess  # noqa: E402

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
# The same prompt-reading agent scripts/reliability.py uses (its figures come from the same case).
BIG, READER = BIG_PROMPT, PROMPT_READER


@pytest.fixture
def servers() -> Iterator[list[RpcProcess]]:
    started: list[RpcProcess] = []
    yield started
    for proc in started:
        proc.close()


def serve(workspace: Path, servers: list[RpcProcess], **local: object) -> RpcProcess:
    proc = RpcProcess(cwd=workspace)
    servers.append(proc)
    options = {"local": {"agentCommand": [sys.executable, "-c", "pass"], **local}}
    proc.initialize(workspace, options)
    return proc


def manifests(root: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in root.glob("*/*/manifest.json")]


def test_unwritable_runs_root_refuses_the_launch_and_leaves_no_ghost(repo: Path, servers: list[RpcProcess]) -> None:
    (repo / "blocker").write_text("a file where the runs root's parent should be\n")
    proc = RpcProcess(cwd=repo)
    servers.append(proc)
    proc.initialize(repo, {"runs": {"root": "blocker/runs"}, "local": {"agentCommand": [sys.executable, "-c", "pass"]}})
    with pytest.raises(RpcError) as refused:
        proc.request("co/launch", {"prompt": "p", "mode": "local"})
    assert refused.value.code == -32006 and refused.value.error["data"]["category"] == "runs_root"
    assert "blocker/runs" in refused.value.message and "ENOTDIR" in refused.value.message
    assert proc.request("co/list", {}) == {"runs": [], "total": 0}  # no ghost in routing
    assert proc.updates() == []
    if os.geteuid() != 0:  # a read-only directory (root writes through mode bits)
        ro = repo / "ro"
        ro.mkdir(mode=0o555)
        other = RpcProcess(cwd=repo)
        servers.append(other)
        other.initialize(repo, {"runs": {"root": "ro/runs"}, "local": {"agentCommand": [sys.executable, "-c", "pass"]}})
        with pytest.raises(RpcError) as denied:
            other.request("co/launch", {"prompt": "p", "mode": "local"})
        assert "EACCES" in denied.value.message
        assert other.request("co/list", {})["total"] == 0


def test_read_only_file_system_runs_root(repo: Path, tmp_path: Path, servers: list[RpcProcess]) -> None:
    """A runs root on a read-only mount (EROFS), where the machine lets us mount one."""
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "none", str(ro)], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        proc = RpcProcess(cwd=repo)
        servers.append(proc)
        proc.initialize(repo, {"runs": {"root": str(ro)}, "local": {"agentCommand": [sys.executable, "-c", "pass"]}})
        with pytest.raises(RpcError) as refused:
            proc.request("co/launch", {"prompt": "p", "mode": "local"})
        assert refused.value.error["data"]["category"] == "runs_root" and "EROFS" in refused.value.message
        assert proc.request("co/list", {}) == {"runs": [], "total": 0}
        assert [u for u in proc.updates() if u.get("state") == "routing"] == []
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_file_descriptors_exhausted_every_run_ends_or_is_refused(repo: Path, servers: list[RpcProcess]) -> None:
    server = serve(repo, servers, maxConcurrent=20)
    server.request("co/list", {})  # the core is loaded
    fds = len(os.listdir(f"/proc/{server.pid}/fd"))
    soft, hard = resource.prlimit(server.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (fds + 6, hard))
    launched, refused = [], []
    try:
        for i in range(20):
            try:
                launched.append(server.request("co/launch", {"prompt": f"run {i}", "mode": "local"})["runId"])
            except RpcError as exc:
                refused.append(exc)
        # Every launched run reaches a terminal state the editor hears about.
        ends = {run_id: server.wait_state(run_id, TERMINAL, timeout=60) for run_id in launched}
    finally:
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (soft, hard))
    causes = [e.message for e in refused] + [
        str(server.request("co/status", {"runId": r})["failureReason"]) for r, s in ends.items() if s == "failed"
    ]
    assert causes, "the limit never bit"
    assert all("EMFILE" in c for c in causes), causes  # the real cause, not local_agent_missing
    codes = {server.request("co/status", {"runId": r})["errorCode"] for r, s in ends.items() if s == "failed"}
    assert codes <= {"system_error", "local_spawn_failed", "local_workspace"}, codes
    for exc in refused:
        assert exc.error["data"]["category"] in ("runs_root", "system_error")
    # No ghost: the server lists exactly the launched runs, all terminal, and their manifests
    # reach disk once descriptors are back (a failed final write is retried).
    listed = server.request("co/list", {})["runs"]
    assert sorted(r["runId"] for r in listed) == sorted(launched)
    assert all(r["state"] in TERMINAL for r in listed)
    deadline = time.monotonic() + 15
    while any(m["state"] not in TERMINAL for m in manifests(repo / ".runs")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(m["runId"] for m in manifests(repo / ".runs")) == sorted(launched)
    assert all(m["state"] in TERMINAL for m in manifests(repo / ".runs"))
    ok = server.request("co/launch", {"prompt": "after", "mode": "local"})["runId"]
    assert server.wait_state(ok, TERMINAL) == "succeeded"


def test_not_a_git_repository_refuses_before_writing_anything(tmp_path: Path, servers: list[RpcProcess]) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not a repo\n")
    import subprocess

    if subprocess.run(["git", "rev-parse"], cwd=plain, capture_output=True, check=False).returncode == 0:
        pytest.skip("the temp dir is inside a git repository on this machine")
    server = serve(plain, servers)
    with pytest.raises(RpcError) as refused:
        server.request("co/launch", {"prompt": "p", "mode": "local"})
    assert refused.value.error["data"]["category"] == "local_not_git_repo"
    assert "not a git repository" in refused.value.message
    assert sorted(p.name for p in plain.iterdir()) == ["notes.txt"]  # no .runs/
    assert server.request("co/list", {})["total"] == 0


def test_large_prompt_reaches_the_agent_through_prompt_file(repo: Path, tmp_path: Path, servers: list[RpcProcess]) -> None:
    agent = tmp_path / "reader.py"
    agent.write_text(READER)
    server = serve(repo, servers, agentCommand=[sys.executable, str(agent), "--file", "{promptFile}"])
    prompt = "é" * (BIG // 2)  # 200,000 UTF-8 bytes
    run_id = server.request("co/launch", {"prompt": prompt, "mode": "local"})["runId"]
    assert server.wait_state(run_id, TERMINAL) == "succeeded"
    diff = server.request("co/diff", {"runId": run_id})
    assert f"+{BIG}" in diff["patch"]


def test_large_prompt_as_an_argument_fails_with_its_own_code(repo: Path, tmp_path: Path, servers: list[RpcProcess]) -> None:
    agent = tmp_path / "reader.py"
    agent.write_text(READER)
    server = serve(repo, servers, agentCommand=[sys.executable, str(agent), "{prompt}"])
    run_id = server.request("co/launch", {"prompt": "x" * BIG, "mode": "local"})["runId"]
    assert server.wait_state(run_id, TERMINAL) == "failed"
    status = server.request("co/status", {"runId": run_id})
    assert status["errorCode"] == "local_prompt_too_large"
    assert "E2BIG" in status["failureReason"] and "{promptFile}" in status["failureReason"]
    # Just under the argument limit still goes as an argument.
    small = server.request("co/launch", {"prompt": "y" * 100_000, "mode": "local"})["runId"]
    assert server.wait_state(small, TERMINAL) == "succeeded"
    assert "+100000" in server.request("co/diff", {"runId": small})["patch"]


def test_large_prompt_goes_to_codex_on_stdin(repo: Path, tmp_path: Path, servers: list[RpcProcess]) -> None:
    """A program named codex gets "-" for {prompt} and the prompt on stdin (`codex exec -`)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "codex"
    fake.write_text(f"#!{sys.executable}\n{READER}")
    fake.chmod(0o755)
    server = serve(repo, servers, agentCommand=[str(fake), "exec", "--", "{prompt}"])
    run_id = server.request("co/launch", {"prompt": "z" * BIG, "mode": "local"})["runId"]
    assert server.wait_state(run_id, TERMINAL) == "succeeded"
    assert f"+{BIG}" in server.request("co/diff", {"runId": run_id})["patch"]


def test_prompt_over_the_bound_is_refused_at_launch(repo: Path, servers: list[RpcProcess]) -> None:
    server = RpcProcess(cwd=repo)
    servers.append(server)
    server.initialize(repo, {"runs": {"maxPromptBytes": 1000}, "local": {"agentCommand": [sys.executable, "-c", "pass"]}})
    with pytest.raises(RpcError) as refused:
        server.request("co/launch", {"prompt": "x" * 1001, "mode": "local"})
    assert refused.value.code == -32602
    assert refused.value.error["data"]["category"] == "prompt_too_large"
    assert "runs.maxPromptBytes=1000" in refused.value.message
    assert server.request("co/list", {})["total"] == 0
    assert git(repo, "status", "--porcelain") == ""


async def test_real_codex_reads_a_large_prompt_from_stdin(repo: Path, start_server: SessionFactory) -> None:
    pytest.importorskip("codex_model_server")
    import test_codex_cli as real

    codex = real.CODEX_BIN / "codex"
    if not codex.exists():
        pytest.skip("the pinned Codex CLI is not installed (./dev test installs it)")
    from codex_model_server import ModelServer, Turn, write_codex_config

    prompt = "Please read all of this. " + "lorem ipsum " * (BIG // 12) + "THE END"
    with ModelServer([Turn.message("Read it.")]) as model:
        write_codex_config(Path(os.environ["CODEX_HOME"]), model)
        s = await start_server(repo, options={}, env=real.server_env())
        launched = await s.request("co/launch", {"prompt": prompt, "mode": "local"})
        state = await s.wait_state(launched["runId"], timeout=60)
        m = real.manifest_of(repo, launched["runId"])
        assert state == "succeeded", (m.get("failureReason"), m["executor"].get("stderrTail"))
        [turn] = model.model_requests
        assert prompt in turn.texts("user")
