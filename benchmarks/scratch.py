"""6. Scratch copies: what a local run's isolation costs, against its floors.

For each repository (generated ones of N files, cached by `bench_repos`, and a clone of this
project), with a few uncommitted and untracked changes, one server and a marker-writing agent:

- launch → agent started: `co/launch` sent (client clock) → the agent's first act, writing
  `time.time()` to a marker file;
- agent exit → diff ready: the agent's last act (a timestamp) → the `succeeded` co/runUpdate
  at the client;
- disk: bytes the run's scratch holds beside the user's repository (unique inodes under the
  scratch root, measured by the agent while it runs; objects borrowed from the user's store are
  not counted);
- 4 runs at once: wall time from four `co/launch` to the last `succeeded`.

Cold = the first run of a fresh server with an empty scratch root; warm = later runs (median),
each launched 1 s after the previous one succeeded, plus one launched back to back.
Floors in the same run: `git worktree add` (and remove) of the same repository, the same
agent started directly in the workspace (spawn → marker), and `git status` in the workspace.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .bench_repos import bench_repo, project_clone, user_changes
from .rpc import ROOT, Client, median, server_argv, server_env

AGENT = r'''
import json, os, sys, time
spec = json.loads(sys.argv[1])
with open(spec["marker"] + ".start", "w") as f:
    f.write(repr(time.time()))
if spec.get("edit"):
    with open("README.md", "a") as f:
        f.write("agent was here\n")
    with open("AGENT_NEW.txt", "w") as f:
        f.write("new file from the agent\n")
if spec.get("du"):
    seen, total = set(), 0
    for top, dirs, files in os.walk(spec["du"]):
        for name in dirs + files:
            st = os.lstat(os.path.join(top, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    with open(spec["marker"] + ".du", "w") as f:
        f.write(str(total))
with open(spec["marker"] + ".exit", "w") as f:
    f.write(repr(time.time()))
'''
# Between runs: a user reads one diff before launching the next (and a pooled scratch is reset
# after its run is reported). One more warm run is launched back to back, without it.
PAUSE_S = 1.0
PARTIAL = Path(tempfile.gettempdir()) / "co-bench-scratch-partial.json"
FINISHED = ("succeeded", "failed", "cancelled", "timed_out")


def _worktree_floor(repo: Path, tmp: Path) -> float:
    dest = tmp / "floor-wt"
    t0 = time.perf_counter()
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(dest), "HEAD"], cwd=repo, check=True)
    took = time.perf_counter() - t0
    subprocess.run(["git", "worktree", "remove", "--force", str(dest)], cwd=repo, check=True)
    return took


def _status_floor(repo: Path) -> float:
    """`git status` in the workspace: the scan any copy of "HEAD + uncommitted changes" needs."""
    t0 = time.perf_counter()
    subprocess.run(["git", "status", "--porcelain"], cwd=repo, check=True, capture_output=True)
    return time.perf_counter() - t0


def _direct_floor(agent: list[str], repo: Path, tmp: Path) -> float:
    marker = tmp / "direct"
    t0 = time.time()
    subprocess.run([*agent, json.dumps({"marker": str(marker)})], cwd=repo, check=True)
    return float((tmp / "direct.start").read_text()) - t0


class Runs:
    """One server on one repository; launches runs and times them."""

    def __init__(self, client: Client, tmp: Path):
        self.client = client
        self.tmp = tmp
        self.done: dict[str, asyncio.Future[tuple[str, float]]] = {}
        self.count = 0
        client.on_notification["co/runUpdate"] = self._on_update

    def _on_update(self, params: Any) -> None:
        if params["state"] in FINISHED:
            future = self.done.setdefault(
                params["runId"], asyncio.get_running_loop().create_future()
            )
            if not future.done():
                future.set_result((params["state"], time.time()))

    async def one(self, du: Path | None = None) -> dict[str, float]:
        self.count += 1
        marker = self.tmp / f"run{self.count}"
        spec = {"marker": str(marker), "edit": True, "du": str(du) if du else None}
        t0 = time.time()
        launched = await self.client.request("co/launch", {"prompt": json.dumps(spec)})
        future = self.done.setdefault(launched["runId"], asyncio.get_running_loop().create_future())
        state, at = await asyncio.wait_for(future, 900)
        if state != "succeeded":
            status = await self.client.request("co/status", {"runId": launched["runId"]})
            raise RuntimeError(f"bench run {state}: {status.get('failureReason')}")
        out = {
            "launch_s": float(Path(f"{marker}.start").read_text()) - t0,
            "exit_s": at - float(Path(f"{marker}.exit").read_text()),
            "total_s": at - t0,
        }
        if du is not None:
            out["disk_mb"] = int(Path(f"{marker}.du").read_text()) / 1e6
        return out


async def _measure_repo(name: str, repo: Path, warm_reps: int, concurrent: int) -> dict[str, Any]:
    user_changes(repo)
    files = len(subprocess.run(["git", "ls-files", "-z"], cwd=repo, check=True, capture_output=True).stdout.split(b"\0")) - 1
    tmp = Path(tempfile.mkdtemp(prefix="co-bench-scratch-", dir=repo.parent))
    try:
        agent_file = tmp / "agent.py"
        agent_file.write_text(AGENT)
        agent = [sys.executable, str(agent_file)]
        scratch_root = tmp / "scratch-root"
        floor_wt = _worktree_floor(repo, tmp)
        floor_direct = _direct_floor(agent, repo, tmp)
        _status_floor(repo)  # once to warm the cache, as a warm launch finds it
        floor_status = _status_floor(repo)
        client = Client()
        await client.start(
            server_argv(), env=server_env(CO_SCRATCH_ROOT=str(scratch_root)), cwd=str(repo)
        )
        try:
            options = {"local": {"agentCommand": [*agent, "{prompt}"], "maxConcurrent": concurrent}}
            await client.initialize(repo, options)
            runs = Runs(client, tmp)
            cold = await runs.one(du=scratch_root)
            warm = []
            for i in range(warm_reps):
                await asyncio.sleep(PAUSE_S)  # the user reads the diff before the next launch
                warm.append(await runs.one(du=scratch_root if i == 0 else None))
            back_to_back = await runs.one()  # launched the moment the last one succeeded
            await asyncio.sleep(PAUSE_S)
            t0 = time.perf_counter()
            together = await asyncio.gather(*(runs.one() for _ in range(concurrent)))
            wall = time.perf_counter() - t0
            floor_wt_warm = _worktree_floor(repo, tmp)
        finally:
            await client.stop(60)
    finally:
        # rm(1): several checkouts of 200,000 files go faster than with shutil.rmtree.
        subprocess.run(["rm", "-rf", "--", str(tmp)], check=False)
    return {
        "name": name,
        "files": files,
        "floor_worktree_s": floor_wt,
        "floor_worktree_warm_s": floor_wt_warm,
        "floor_direct_s": floor_direct,
        "floor_status_s": floor_status,
        "cold": cold,
        "warm": {
            "launch_s": median([w["launch_s"] for w in warm]),
            "exit_s": median([w["exit_s"] for w in warm]),
            "disk_mb": warm[0]["disk_mb"],
            "back_to_back_launch_s": back_to_back["launch_s"],
        },
        "concurrent": {
            "runs": concurrent,
            "wall_s": wall,
            "launch_max_s": max(r["launch_s"] for r in together),
            "exit_max_s": max(r["exit_s"] for r in together),
        },
    }


async def run(sizes: list[int], warm_reps: int, concurrent: int, own_repo: bool) -> dict[str, Any]:
    rows = []
    if own_repo:
        print("[bench]   scratch: this project", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="co-bench-own-") as tmp:
            repo = project_clone(Path(tmp) / "co-sidecar", ROOT)
            rows.append(await _measure_repo("this project", repo, warm_reps, concurrent))
    for files in sizes:
        print(f"[bench]   scratch: {files} files", file=sys.stderr, flush=True)
        rows.append(await _measure_repo(f"generated, {files:,} files", bench_repo(files), warm_reps, concurrent))
        PARTIAL.write_text(json.dumps(rows, indent=1) + "\n")  # a long run's figures survive a crash
    return {"rows": rows, "warm_reps": warm_reps, "git": _git_version()}


def _git_version() -> str:
    return subprocess.run(["git", "--version"], capture_output=True, text=True, check=False).stdout.strip()


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] or [2000]
    print(json.dumps(asyncio.run(run(sizes, 2, 4, False)), indent=1))
