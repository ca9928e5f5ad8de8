"""6. co/status while a big co/diff is built: the diff is parsed, built and dumped off the event
loop, so status requests keep being answered. Measured at the client, over stdio."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from co_sidecar.manifest import DiffEvidence, ManifestStore, RunManifest, new_run_id, utc_now
from co_sidecar.protocol import RunState

from .rpc import Client, percentile, server_argv, server_env

# The worst co/status round trip answered while the co/diff is being built, as a share of the
# co/diff's own time. (A status sent as the diff's answer goes out waits behind it on the one
# stdio pipe: reported apart, it is the transport, not the server.)
TARGET_SHARE = 0.1


def big_patch(files: int, lines: int = 100) -> bytes:
    body = "".join(f"+line {n:04d} " + "x" * 48 + "\n" for n in range(lines))
    return "".join(
        f"diff --git a/big/f{i:05d}.txt b/big/f{i:05d}.txt\nnew file mode 100644\nindex 0000000..1111111\n"
        f"--- /dev/null\n+++ b/big/f{i:05d}.txt\n@@ -0,0 +1,{lines} @@\n{body}"
        for i in range(files)
    ).encode()


def seed(workspace: Path, patch: bytes) -> str:
    store = ManifestStore(workspace / ".runs")
    run_id, now = new_run_id(), utc_now()
    (store.run_dir("bench", run_id)).mkdir(parents=True)
    (store.run_dir("bench", run_id) / "patch.diff").write_bytes(patch)
    store.save(
        RunManifest(
            run_id=run_id, task_id="bench", prompt="big diff", workspace=str(workspace), requested_mode="local",
            selected_mode="local", routing_reason="benchmark", state=RunState.SUCCEEDED, created_at=now, updated_at=now,
            diff=DiffEvidence(patch_path=f"bench/{run_id}/patch.diff", sha256=hashlib.sha256(patch).hexdigest(), bytes=len(patch)),
        )
    )  # fmt: skip
    return run_id


async def _status_ms(client: Client, run_id: str) -> float:
    start = time.perf_counter()
    await client.request("co/status", {"runId": run_id})
    return (time.perf_counter() - start) * 1000


async def run(files: int, idle_probes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="co-bench-stall-") as tmp:
        workspace = Path(tmp) / "ws"
        workspace.mkdir()
        subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)  # noqa: S607
        patch = big_patch(files)
        run_id = seed(workspace, patch)
        client = Client()
        await client.start(server_argv(), env=server_env(CO_SCRATCH_ROOT=str(Path(tmp) / "scratch")), cwd=str(workspace))
        await client.initialize(workspace)
        await client.request("co/list", {})
        idle = [await _status_ms(client, run_id) for _ in range(idle_probes)]
        started = time.perf_counter()
        diff = asyncio.ensure_future(client.request("co/diff", {"runId": run_id}))
        during: list[float] = []  # answered before the diff's answer arrived
        behind = 0.0  # the one status that was queued behind the diff's answer on the pipe
        while not diff.done():
            ms = await _status_ms(client, run_id)
            if diff.done():
                behind = ms
            else:
                during.append(ms)
        result = await diff
        diff_s = time.perf_counter() - started
        answer_mb = client.bytes_in / 1e6
        await client.stop()
    worst = max(during) if during else 0.0
    return {
        "files": files,
        "patch_mb": len(patch) / 1e6,
        "diff_s": diff_s,
        "diff_files": len(result["files"]),
        "answer_mb": answer_mb,
        "idle_p50_ms": percentile(idle, 50),
        "during_count": len(during),
        "during_p50_ms": percentile(during, 50) if during else 0.0,
        "during_max_ms": worst,
        "behind_answer_ms": behind,
        "share": worst / (diff_s * 1000) if diff_s else 0.0,
        "met": bool(during) and worst / (diff_s * 1000) <= TARGET_SHARE,
    }
