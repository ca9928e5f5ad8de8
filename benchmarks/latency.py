"""2. Latency of co/status and co/list with many runs on disk (client-side round trip over stdio)."""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from co_sidecar.manifest import (
    MANIFEST_NAME,
    CloudInfo,
    DiffEvidence,
    ManifestStore,
    RunManifest,
    Transition,
)
from co_sidecar.protocol import FileStat, RunState

from .rpc import Client, percentile, rss_mb, server_argv, server_env

TARGET_P99_MS = 5.0
STATES = [RunState.SUCCEEDED, RunState.FAILED, RunState.APPLIED, RunState.REJECTED, RunState.CANCELLED]


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_runs(workspace: Path, count: int, seed: int = 6) -> list[str]:
    """`count` finished runs written with the manifest model (no fsync: this is set-up)."""
    rng = random.Random(seed)
    store = ManifestStore(workspace / ".runs")
    base = datetime(2025, 1, 1, tzinfo=UTC)
    ids: list[str] = []
    for n in range(count):
        created = base + timedelta(seconds=37 * n)
        run_id = created.strftime("%Y%m%dT%H%M%S%f") + f"-{n:06x}"
        state = STATES[n % len(STATES)]
        cloud = n % 3 == 0
        task_id = f"task-{n % 40}"
        manifest = RunManifest(
            run_id=run_id,
            task_id=task_id,
            prompt=f"benchmark run {n}: " + "refactor the parser " * rng.randint(1, 6),
            workspace=str(workspace),
            requested_mode="auto",
            selected_mode="cloud" if cloud else "local",
            routing_reason="benchmark",
            state=state,
            failure_reason="agent exited 1" if state == RunState.FAILED else None,
            created_at=_iso(created),
            updated_at=_iso(created + timedelta(seconds=30)),
            transitions=[
                Transition(state=s, at=_iso(created + timedelta(seconds=i)))
                for i, s in enumerate([RunState.ROUTING, RunState.LAUNCHING, RunState.RUNNING, state])
            ],
            diff=DiffEvidence(
                patch_path=f"{task_id}/{run_id}/patch.diff",
                sha256="0" * 64,
                bytes=1234,
                files=[
                    FileStat(path=f"src/m{k}.py", status="modified", additions=3, deletions=1)
                    for k in range(rng.randint(1, 5))
                ],
                additions=12,
                deletions=4,
            ),
            cloud=CloudInfo(adapter="http", task_id=f"task_e_{n:08x}", poll_count=9)
            if cloud
            else None,
        )
        path = store.path_for(manifest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest.wire(), indent=2) + "\n")
        assert path.name == MANIFEST_NAME
        ids.append(run_id)
    (workspace / ".runs" / ".gitignore").write_text("*\n")
    return ids


async def _timed(client: Client, method: str, params: Any) -> float:
    start = time.perf_counter()
    await client.request(method, params)
    return (time.perf_counter() - start) * 1000


async def run(runs: int, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="co-bench-lat-") as tmp:
        workspace = Path(tmp) / "ws"
        workspace.mkdir()
        ids = make_runs(workspace, runs)
        env = server_env(CO_SCRATCH_ROOT=str(Path(tmp) / "scratch"))
        client = Client()
        await client.start(server_argv(), env=env, cwd=str(workspace))
        await client.initialize(workspace)
        load_start = time.perf_counter()
        listed = await client.request("co/list", {"limit": 10_000})
        first_list_ms = (time.perf_counter() - load_start) * 1000
        assert len(listed["runs"]) == runs, len(listed["runs"])
        rng = random.Random(1)
        cases: dict[str, tuple[str, Any]] = {
            "co/status": ("co/status", None),
            "co/list (default page)": ("co/list", {}),
            "co/list (all runs)": ("co/list", {"limit": 10_000}),
            "co/list (limit 50)": ("co/list", {"limit": 50}),
            "co/list (state filter)": ("co/list", {"state": "failed"}),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(10):  # warm-up
            for method, params in cases.values():
                await client.request(method, params if params is not None else {"runId": ids[0]})
        for _ in range(requests):
            for name, (method, params) in cases.items():
                if params is None:
                    params = {"runId": rng.choice(ids)}
                samples[name].append(await _timed(client, method, params))
        list_bytes = len(json.dumps(listed))
        rss = rss_mb(client.pid)
        await client.stop()
    rows = {
        name: {
            "p50_ms": percentile(values, 50),
            "p99_ms": percentile(values, 99),
            "max_ms": max(values),
        }
        for name, values in samples.items()
    }
    worst = max(rows["co/status"]["p99_ms"], rows["co/list (default page)"]["p99_ms"])
    return {
        "runs": runs,
        "requests": requests,
        "first_list_ms": first_list_ms,
        "list_bytes": list_bytes,
        "server_rss_mb": rss,
        "rows": rows,
        "met": worst <= TARGET_P99_MS,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(1000, 300)), indent=1))
