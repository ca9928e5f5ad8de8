"""5. Notification throughput: local runs whose agent prints as fast as it can.

Measured at a stdio client: co/runUpdate and $/progress messages per second, agent
lines per second the server consumed, server RSS over time, and co/status round trips
during the flood (a server that fell behind would answer late).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .rpc import Client, git_repo, median, percentile, rss_mb, server_argv, server_env

FLOOD = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "w = sys.stdout.write\n"
    "n = 0\n"
    "while time.monotonic() < end:\n"
    "    for _ in range(1000):\n"
    "        n += 1\n"
    "        w(f'line {n} of the flood: ' + 'x' * 40 + '\\n')\n"
    "sys.stdout.flush()\n"
    "print(f'LINES={n}', file=sys.stderr)\n"
)


async def run(runs: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="co-bench-notify-") as tmp:
        repo = git_repo(Path(tmp) / "ws")
        options = {
            "local": {
                "agentCommand": [sys.executable, "-c", FLOOD, str(seconds)],
                "maxConcurrent": runs,
            }
        }
        client = Client()
        client.keep_arrivals = {"co/runUpdate", "$/progress"}
        env = server_env(CO_SCRATCH_ROOT=str(Path(tmp) / "scratch"))
        await client.start(server_argv(), env=env, cwd=str(repo))
        try:
            await client.initialize(repo, options)
            finished: set[str] = set()
            done = asyncio.Event()

            def on_update(params: Any) -> None:
                if params["state"] in ("succeeded", "failed", "cancelled", "timed_out"):
                    finished.add(params["runId"])
                    if len(finished) >= runs:
                        done.set()

            client.on_notification["co/runUpdate"] = on_update
            rss: list[tuple[float, float]] = []
            status_ms: list[float] = []
            start = time.perf_counter()
            launched = await asyncio.gather(
                *(client.request("co/launch", {"prompt": f"flood {i}"}) for i in range(runs))
            )
            ids = [r["runId"] for r in launched]
            while not done.is_set():
                rss.append((time.perf_counter() - start, rss_mb(client.pid)))
                t0 = time.perf_counter()
                await client.request("co/status", {"runId": ids[0]})
                status_ms.append((time.perf_counter() - t0) * 1000)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.2)
            wall = time.perf_counter() - start
            lines = 0
            agent_s: list[float] = []
            states = []
            for run_id in ids:
                manifest = await client.request("co/status", {"runId": run_id})
                states.append(manifest["state"])
                tail = manifest["executor"]["stderrTail"]
                lines += int(tail.rsplit("LINES=", 1)[1].split()[0]) if "LINES=" in tail else 0
                agent_s.append((manifest["executor"].get("durationMs") or 0) / 1000)
        finally:
            await client.stop(30)
    updates = client.arrivals["co/runUpdate"]
    progress = client.arrivals["$/progress"]
    window = max(seconds, 1e-9)
    # Messages during the flood (per second), counted at the client.
    in_flood = [t for t in updates if start + 0.5 <= t <= start + 0.5 + window]
    rss_values = [v for _, v in rss]
    return {
        "runs": runs,
        "seconds": seconds,
        "wall_s": wall,
        "succeeded": states.count("succeeded"),
        "lines": lines,
        "lines_per_s": lines / window,
        "updates": len(updates),
        "progress": len(progress),
        "updates_per_s": len(in_flood) / window,
        "progress_per_s": len(progress) / wall,
        "bytes_in_mb": client.bytes_in / 1e6,
        "rss_start_mb": rss_values[0] if rss_values else 0.0,
        "rss_max_mb": max(rss_values, default=0.0),
        "rss_end_mb": rss_values[-1] if rss_values else 0.0,
        "rss_series": rss,
        "status_p50_ms": median(status_ms) if status_ms else 0.0,
        "status_p99_ms": percentile(status_ms, 99) if status_ms else 0.0,
        "agent_s": max(agent_s, default=0.0),
    }


if __name__ == "__main__":
    import json

    out = asyncio.run(run(4, 5.0))
    out.pop("rss_series")
    print(json.dumps(out, indent=1))
