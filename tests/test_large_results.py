"""Large results are bounded: a cloud task whose diff is over cloud.maxResponseBytes is refused
while it is fetched (the run fails with cloud_protocol naming the setting), through the real
server and the loopback emulator; a local agent's change over diff.hardMaxPatchBytes is refused
while git's output is read (local_patch_too_large), and the server goes on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from co_sidecar.local.pool import acquire, capture_patch
from co_sidecar.local.scratch import PatchTooLarge
from co_sidecar.testing.emulator import Emulator
from conftest import ROOT, make_repo

sys.path.insert(0, str(ROOT / "scripts"))
from rpc import RpcProcess  # noqa: E402

BIG_AGENT = "open('big.txt', 'w').write(('y' * 99 + '\\n') * 3000)"


def test_a_cloud_diff_over_max_response_bytes_is_refused_while_fetched(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "ws")
    with Emulator(repo, agent=[sys.executable, "-c", BIG_AGENT]).start() as emu:
        options = {
            "cloud": {
                "envId": "env-big",
                "baseUrl": emu.base_url,
                "maxResponseBytes": 64 * 1024,
                "poll": {"intervalSeconds": 0.05, "maxIntervalSeconds": 0.2, "maxRetries": 0},
            }
        }
        server = RpcProcess(cwd=repo)
        try:
            server.initialize(repo, options)
            run_id = server.request("co/launch", {"prompt": "big", "mode": "cloud"})["runId"]
            assert server.wait_state(run_id, {"succeeded", "failed", "timed_out", "cancelled"}) == "failed"
            status = server.request("co/status", {"runId": run_id})
        finally:
            server.close()
    assert status["errorCode"] == "cloud_protocol"
    assert "cloud.maxResponseBytes=65536" in status["failureReason"]
    assert status["diff"] is None


TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
LIMIT = 256 * 1024
# Asked for "huge": 2 MiB of text, a patch about 8 times diff.hardMaxPatchBytes below.
AGENT = """
import sys
if "huge" in sys.argv[1]:
    open("huge.txt", "w").write(("z" * 1023 + "\\n") * 2048)
else:
    open("small.txt", "w").write("ok\\n")
"""


def test_a_local_change_over_hard_max_patch_bytes_fails_the_run_and_the_server_goes_on(repo: Path) -> None:
    script = repo.parent / "agent.py"
    script.write_text(AGENT)
    options = {"local": {"agentCommand": [sys.executable, str(script), "{prompt}"]}, "diff": {"hardMaxPatchBytes": LIMIT}}
    server = RpcProcess(cwd=repo)
    try:
        server.initialize(repo, options)
        run_id = server.request("co/launch", {"prompt": "write a huge file", "mode": "local"})["runId"]
        assert server.wait_state(run_id, TERMINAL) == "failed"
        status = server.request("co/status", {"runId": run_id})
        assert status["errorCode"] == "local_patch_too_large"
        assert f"diff.hardMaxPatchBytes={LIMIT}" in status["failureReason"]
        assert status["diff"] is None
        assert [u["state"] for u in server.updates(run_id)][-1] == "failed"
        assert "error" in server.request_raw("co/diff", {"runId": run_id})  # nothing captured to show
        assert not (next((repo / ".runs").glob(f"*/{run_id}")) / "patch.diff").exists()
        assert not (repo / "huge.txt").exists()
        # The same server still answers, and its next run captures a small change.
        assert server.request("co/list", {})["total"] == 1
        small = server.request("co/launch", {"prompt": "a small one", "mode": "local"})["runId"]
        assert server.wait_state(small, TERMINAL) == "succeeded"
        assert "small.txt" in server.request("co/diff", {"runId": small})["patch"]
    finally:
        server.close()


def test_capture_bound_is_exact(repo: Path) -> None:
    lease = acquire(repo, "r1", exclude=[repo / ".runs"])
    try:
        (lease.scratch.path / "new.txt").write_text("line\n" * 1000)
        patch = capture_patch(lease.scratch)
        assert b"+line" in patch
        assert capture_patch(lease.scratch, len(patch)) == patch  # at the limit: kept
        with pytest.raises(PatchTooLarge) as refused:
            capture_patch(lease.scratch, len(patch) - 1)
        assert refused.value.category == "local_patch_too_large"
        assert f"diff.hardMaxPatchBytes={len(patch) - 1}" in refused.value.message
    finally:
        lease.release()
