"""Large results are bounded: a cloud task whose diff is over cloud.maxResponseBytes is refused
while it is fetched (the run fails with cloud_protocol naming the setting), through the real
server and the loopback emulator."""

from __future__ import annotations

import sys
from pathlib import Path

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
