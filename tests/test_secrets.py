"""Secret hygiene: with a known CODEX_CLOUD_TOKEN in the server's environment, run local and cloud
runs (one with retried faults) and grep every manifest, patch, log line, notification and response
for it. The token must be used (the emulator demands it) and appear nowhere."""

from __future__ import annotations

import sys
from pathlib import Path

from co_sidecar.testing.emulator import Emulator
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from rpc import RpcProcess  # noqa: E402

TOKEN = "sk-co-sidecar-SECRET-7f3a9c1e5b"
# An agent that tries hard to leak: its whole environment goes to stdout, stderr and a file
# that ends up in the diff.
LEAKY_AGENT = (
    "import os, sys; dump = '\\n'.join(f'{k}={v}' for k, v in sorted(os.environ.items()));"
    "print(dump); print(dump, file=sys.stderr); open('ENV_DUMP.txt', 'w').write(dump + '\\n')"
)


def test_the_cloud_token_never_leaks(repo: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    agent = [sys.executable, "-c", LEAKY_AGENT]
    with Emulator(repo, token=TOKEN, agent=agent, faults="poll:500:times=1,diff:503:times=1", hang_seconds=3).start() as emu:
        options = {
            # Even an allow-everything pattern must not pass the cloud token to the agent.
            "local": {"agentCommand": agent, "envAllow": ["*"]},
            "cloud": {
                "envId": "env-secret",
                "baseUrl": emu.base_url,
                "poll": {"intervalSeconds": 0.05, "maxIntervalSeconds": 0.2, "requestTimeoutSeconds": 2},
            },
        }
        server = RpcProcess(
            argv=[sys.executable, "-m", "co_sidecar", "serve", "--log-file", str(log), "--log-level", "DEBUG"],
            env={"CODEX_CLOUD_TOKEN": TOKEN, "CODEX_CLOUD_ACCOUNT_ID": "acct-1"},
            cwd=repo,
        )
        try:
            server.initialize(repo, options)
            runs = [server.request("co/launch", {"prompt": f"leak {mode}", "mode": mode})["runId"] for mode in ("local", "cloud", "local", "cloud")]
            states = [server.wait_state(r, {"succeeded", "failed", "cancelled", "timed_out"}) for r in runs]
            assert states == ["succeeded"] * 4
            for run_id in runs:
                server.request("co/status", {"runId": run_id})
                diff = server.request("co/diff", {"runId": run_id})
                assert "ENV_DUMP.txt" in diff["patch"] and "PATH=" in diff["patch"]  # the dump is there...
            server.request("co/list", {})
            server.request("co/doctor", {})
        finally:
            server.close()
        bearer = [r for r in emu.requests if r["headers"].get("Authorization") == f"Bearer {TOKEN}"]
        assert bearer  # the token was really used against the (emulated) service

    exposed: list[str] = []
    for path in [*(repo / ".runs").rglob("*"), log]:
        if path.is_file() and TOKEN.encode() in path.read_bytes():
            exposed.append(str(path))
    exposed += [f"message {i}" for i, body in enumerate(server.received) if TOKEN.encode() in body]
    assert log.stat().st_size > 10_000  # DEBUG really logged the traffic
    assert len(server.received) > 20
    assert exposed == []  # ...but the token is nowhere
