"""3. Polling at scale: N concurrent emulated cloud runs polled to completion, HTTP vs CLI adapter.

HTTP: the loopback emulator (its own process, so its CPU is not the sidecar's) in
synthetic mode (`task:instant=P`: each task completes on its P-th poll, no agent).
CLI: a fake `codex` (a /bin/sh script using only builtins) that answers at once and
reports READY on the P-th `status`. Sidecar CPU = utime+stime of the server plus
cutime+cstime (its reaped children: the `codex` subprocesses), from /proc/<pid>/stat.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .rpc import PYTHON, Client, cpu_seconds, peak_rss_mb, rss_mb, server_argv, server_env

TARGET_RATIO = 20.0
TARGET_RSS_MB = 150.0
INTERVAL_S = 0.2

FAKE_CODEX = r"""#!/bin/sh
# A fake `codex` for benchmarks: answers at once, shell builtins only.
dir="@STATE@"
polls=@POLLS@
[ "$1" = cloud ] || { echo "unexpected: $*" >&2; exit 2; }
case "$2" in
exec)
  id="task_e_$$"
  while [ -e "$dir/$id" ]; do id="${id}x"; done
  echo 0 > "$dir/$id"
  echo "https://chatgpt.com/codex/tasks/$id"
  ;;
status)
  read n < "$dir/$3"
  n=$((n + 1))
  echo "$n" > "$dir/$3"
  if [ "$n" -ge "$polls" ]; then echo "[READY] bench"; exit 0; fi
  echo "[PENDING] bench"
  exit 1
  ;;
diff)
  printf 'diff --git a/EMULATED-%s.md b/EMULATED-%s.md\nnew file mode 100644\n--- /dev/null\n+++ b/EMULATED-%s.md\n@@ -0,0 +1 @@\n+bench\n' "$3" "$3" "$3"
  ;;
*) echo "unexpected: $*" >&2; exit 2 ;;
esac
"""


def _git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    run = ["git", "-c", "user.name=b", "-c", "user.email=b@b", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    (path / "README.md").write_text("# bench\n")
    subprocess.run([*run, "add", "-A"], cwd=path, check=True)
    subprocess.run([*run, "commit", "-qm", "base"], cwd=path, check=True)
    return path


async def _start_emulator(repo: Path, polls: int) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "co_sidecar", "emulator", "--repo", str(repo), "--port", "0",
        "--faults", f"task:instant={polls}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=server_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    return proc, line.rsplit(" at ", 1)[1].strip()


async def _batch(client: Client, runs: int, prompt: str, timeout: float) -> list[dict[str, Any]]:
    finished: dict[str, dict[str, Any]] = {}
    done = asyncio.Event()
    wanted: set[str] = set()

    def on_update(params: Any) -> None:
        if params["state"] in ("succeeded", "failed", "cancelled", "timed_out"):
            finished[params["runId"]] = params
            if wanted and wanted <= finished.keys():
                done.set()

    client.on_notification["co/runUpdate"] = on_update
    launched = await asyncio.gather(
        *(client.request("co/launch", {"prompt": f"{prompt} {i}", "mode": "cloud"}) for i in range(runs))
    )
    wanted.update(r["runId"] for r in launched)
    if not wanted <= finished.keys():
        await asyncio.wait_for(done.wait(), timeout)
    return [await client.request("co/status", {"runId": run_id}) for run_id in sorted(wanted)]


async def _measure(adapter: str, runs: int, polls: int, tmp: Path) -> dict[str, Any]:
    repo = _git_repo(tmp / f"ws-{adapter}")
    cloud: dict[str, Any] = {
        "envId": "bench",
        "adapter": adapter,
        "poll": {
            "intervalSeconds": INTERVAL_S,
            "maxIntervalSeconds": INTERVAL_S,
            "backoff": 1.0,
            "jitter": 0.0,
            "timeoutSeconds": 900,
        },
    }
    emulator = None
    if adapter == "http":
        emulator, base_url = await _start_emulator(repo, polls)
        cloud["baseUrl"] = base_url
    else:
        state = tmp / "codex-state"
        state.mkdir(exist_ok=True)
        fake = tmp / "bin" / "codex"
        fake.parent.mkdir(exist_ok=True)
        fake.write_text(FAKE_CODEX.replace("@STATE@", str(state)).replace("@POLLS@", str(polls)))
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
        cloud["codexCommand"] = [str(fake)]
    env = server_env(
        CO_SCRATCH_ROOT=str(tmp / "scratch"),
        CODEX_HOME=str(tmp / "codex-home"),
        PATH=f"{tmp / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    client = Client()
    await client.start(server_argv(), env=env, cwd=str(repo))
    try:
        await client.initialize(repo, {"mode": "cloud", "cloud": cloud})
        # Warm-up: one run loads the cloud modules (and httpx), so the batch measures steady state.
        await _batch(client, 1, "warm-up", 60)
        cpu0_self = cpu_seconds(client.pid, children=False)
        cpu0_all = cpu_seconds(client.pid)
        updates0 = client.counts["co/runUpdate"]
        wall0 = time.perf_counter()
        rss_samples: list[float] = []
        sampling = True

        async def sample() -> None:
            while sampling:
                rss_samples.append(rss_mb(client.pid))
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample())
        results = await _batch(client, runs, "bench", 900)
        sampling = False
        await sampler
        wall = time.perf_counter() - wall0
        cpu_self = cpu_seconds(client.pid, children=False) - cpu0_self
        cpu_all = cpu_seconds(client.pid) - cpu0_all
        states = [r["state"] for r in results]
        total_polls = sum((r.get("cloud") or {}).get("pollCount", 0) for r in results)
        return {
            "adapter": adapter,
            "runs": runs,
            "succeeded": states.count("succeeded"),
            "polls": total_polls,
            "wall_s": wall,
            "cpu_s": cpu_all,
            "cpu_self_s": cpu_self,
            "cpu_children_s": cpu_all - cpu_self,
            "cpu_ms_per_poll": cpu_all / max(total_polls, 1) * 1000,
            "updates": client.counts["co/runUpdate"] - updates0,
            "peak_rss_mb": peak_rss_mb(client.pid),
            "max_sampled_rss_mb": max(rss_samples, default=0.0),
        }
    finally:
        await client.stop(30)
        if emulator is not None:
            with contextlib.suppress(ProcessLookupError):
                emulator.terminate()
            await emulator.wait()


def _cpu_now() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


async def floors(tmp: Path, count: int) -> dict[str, float]:
    """CPU of the bare transport per call, in this process: one pooled httpx GET of a task
    (JSON decoded) against one asyncio spawn of the fake `codex status` (pipes read, reaped)."""
    import httpx

    import co_sidecar.cloud.http  # noqa: F401 - the same httpcore set-up as the sidecar's

    repo = tmp / "ws-floor"
    if not repo.exists():
        _git_repo(repo)
    emulator, base_url = await _start_emulator(repo, 10**9)
    try:
        async with httpx.AsyncClient() as client:
            created = await client.post(
                f"{base_url}/wham/tasks",
                json={
                    "new_task": {"environment_id": "e"},
                    "input_items": [
                        {"type": "message", "content": [{"content_type": "text", "text": "x"}]}
                    ],
                },
            )
            url = f"{base_url}/wham/tasks/{created.json()['task']['id']}"
            (await client.get(url)).json()
            start = _cpu_now()
            for _ in range(count):
                (await client.get(url)).json()
            http = (_cpu_now() - start) / count
    finally:
        emulator.terminate()
        await emulator.wait()
    state = tmp / "floor-state"
    state.mkdir(exist_ok=True)
    (state / "task_floor").write_text("0\n")
    fake = tmp / "floor-codex"
    fake.write_text(FAKE_CODEX.replace("@STATE@", str(state)).replace("@POLLS@", str(10**9)))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    start = _cpu_now()
    for _ in range(count):
        proc = await asyncio.create_subprocess_exec(
            str(fake), "cloud", "status", "task_floor",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await proc.communicate()
    spawn = (_cpu_now() - start) / count
    return {"http_get_ms": http * 1000, "spawn_ms": spawn * 1000, "ratio": spawn / max(http, 1e-9)}


async def run(runs: int, polls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="co-bench-poll-") as tmp:
        http = await _measure("http", runs, polls, Path(tmp))
        cli = await _measure("cli", runs, polls, Path(tmp))
        floor = await floors(Path(tmp), max(50, runs))
    ratio = cli["cpu_ms_per_poll"] / max(http["cpu_ms_per_poll"], 1e-9)
    rss = max(http["peak_rss_mb"], cli["peak_rss_mb"])
    return {
        "runs": runs,
        "polls_per_run": polls,
        "interval_s": INTERVAL_S,
        "http": http,
        "cli": cli,
        "floor": floor,
        "ratio": ratio,
        "met_ratio": ratio >= TARGET_RATIO,
        "met_rss": http["peak_rss_mb"] <= TARGET_RSS_MB,
        "all_succeeded": http["succeeded"] == runs and cli["succeeded"] == runs,
        "max_rss_mb": rss,
    }


if __name__ == "__main__":
    import json
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(json.dumps(asyncio.run(run(n, 10)), indent=1))
