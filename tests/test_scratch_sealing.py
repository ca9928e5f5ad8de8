"""Local runs through the real server (JSON-RPC over stdio): an agent that runs every git
command it likes in its scratch changes nothing of the user's repository and makes the sidecar
run none of its code; scratches are reused between runs without leaking; two servers and
concurrent runs on one repository each get their own change."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from co_sidecar.local import pool
from co_sidecar.manifest import load_manifest
from conftest import SessionFactory, git, make_repo

HOSTILE = r'''
import json, os, shutil, subprocess, sys
spec = json.loads(sys.argv[1])
marker = spec["marker"]
def g(*args):
    subprocess.run(["git", "-c", "user.name=agent", "-c", "user.email=a@a", *args], check=True,
                   capture_output=True)
# The sidecar's own git directory for this scratch, found through the objects it lends the
# agent's .git: plant a filter, attributes and a redirection there (an unsandboxed agent can).
with open(os.path.join(".git", "objects", "info", "alternates")) as f:
    lent = [os.path.normpath(os.path.join(".git", "objects", line.strip())) for line in f if line.strip()]
for objects in lent:
    sidecar = os.path.dirname(objects)
    if os.path.basename(sidecar) != "git":
        continue  # the user's own store
    with open(os.path.join(sidecar, "config"), "a") as f:
        f.write(f'[filter "side"]\n\tclean = touch {marker}; cat\n\tsmudge = touch {marker}; cat\n')
        f.write('\trequired = true\n')
    with open(os.path.join(sidecar, "info", "attributes"), "w") as f:
        f.write("* filter=side\n")
    with open(os.path.join(sidecar, "commondir"), "w") as f:
        f.write("/nonexistent-co-sidecar-common-dir\n")
# The user's global config is readable (identity, aliases) but `--global` writes stay here.
seen = subprocess.run(["git", "config", "--global", "user.name"], capture_output=True, text=True).stdout
with open("seen-global.txt", "w") as f:
    f.write(seen)
g("config", "--global", "user.name", "Evil-global")
g("config", "--global", "core.hooksPath", marker + "-global-hooks")
g("checkout", "-q", "-b", "agent/feature")
g("tag", "agent-tag")
with open("README.md", "a") as f:
    f.write("stashed\n")
g("stash", "-q")
g("config", "user.name", "Evil")
g("config", "core.hooksPath", marker + "-hooks")
common = subprocess.run(["git", "rev-parse", "--git-common-dir"], capture_output=True,
                        text=True).stdout.strip()
for hooks in (os.path.join(".git", "hooks"), os.path.join(common, "hooks")):
    if os.path.isdir(os.path.dirname(hooks)):
        os.makedirs(hooks, exist_ok=True)
        with open(os.path.join(hooks, "pre-commit"), "w") as f:
            f.write(f"#!/bin/sh\ntouch {marker}\n")
        os.chmod(os.path.join(hooks, "pre-commit"), 0o755)
# Replace .git with a repository whose filters run a command, on every path.
if os.path.isdir(".git") and not os.path.islink(".git"):
    shutil.rmtree(".git")
else:
    os.unlink(".git")
g("init", "-q")
for kind in ("clean", "smudge"):
    g("config", f"filter.evil.{kind}", f"touch {marker}; cat")
g("config", "filter.evil.required", "true")
with open(".gitattributes", "w") as f:
    f.write("* filter=evil\n")
with open("README.md", "a") as f:
    f.write("agent change\n")
'''

TRACE = r'''
import json, os, sys, time
spec = json.loads(sys.argv[1])
print(f"START={time.time()!r}")
print("CWD=" + os.getcwd())
print("LEFT=" + ",".join(sorted(n for n in os.listdir(".") if n.startswith("out-"))))
with open(f"out-{os.environ['CO_RUN_ID']}.txt", "w") as f:
    f.write("written by " + os.environ["CO_RUN_ID"] + "\n")
time.sleep(spec.get("sleep", 0))
print(f"END={time.time()!r}")
'''


def script(tmp_path: Path, name: str, text: str) -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    return [sys.executable, str(path), "{prompt}"]


def user_snapshot(repo: Path) -> dict[str, Any]:
    dot = repo / ".git"
    files = {
        str(p.relative_to(repo)): p.read_bytes()
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(repo).parts[:1]
        and ".runs" not in p.relative_to(repo).parts[:1]
    }
    return {
        "files": files,
        "index": (dot / "index").read_bytes(),
        "refs": git(repo, "for-each-ref"),
        "stash": git(repo, "stash", "list"),
        "config": (dot / "config").read_bytes(),
        "hooks": sorted(p.name for p in (dot / "hooks").iterdir()) if (dot / "hooks").is_dir() else [],
        "worktrees": git(repo, "worktree", "list", "--porcelain"),
    }


def patch_of(repo: Path, run_id: str) -> bytes:
    (path,) = (repo / ".runs").glob(f"*/{run_id}/manifest.json")
    manifest = load_manifest(path)
    assert manifest.diff is not None
    return (repo / ".runs" / manifest.diff.patch_path).read_bytes()


async def test_an_agent_running_git_in_its_scratch_never_touches_the_users_repo(
    repo: Path, tmp_path: Path, start_server: SessionFactory
) -> None:
    (repo / "app.py").write_text("uncommitted\n")
    (repo / "untracked.txt").write_text("untracked\n")
    before = user_snapshot(repo)
    marker = tmp_path / "planted-code-ran"
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = The User\n\temail = user@example.com\n")
    global_before = (home / ".gitconfig").read_bytes()
    s = await start_server(
        repo,
        {"local": {"agentCommand": script(tmp_path, "hostile.py", HOSTILE)}},
        env={"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")},
    )
    for _ in range(2):  # the second run reuses the scratch the first one vandalised
        launched = await s.request("co/launch", {"prompt": json.dumps({"marker": str(marker)})})
        assert await s.wait_state(launched["runId"]) == "succeeded", s.updates_for(launched["runId"])[-1]
        patch = patch_of(repo, launched["runId"])
        assert b"+agent change" in patch and b"stashed" not in patch
        assert b"b/.gitattributes" in patch and b"\n+* filter=evil" in patch
        assert b"b/README.md" in patch and b"-# demo" not in patch  # only the agent's lines
        assert b"b/seen-global.txt" in patch and b"\n+The User\n" in patch
    assert not marker.exists()
    assert user_snapshot(repo) == before
    assert (home / ".gitconfig").read_bytes() == global_before and not (home / ".config").exists()


async def test_runs_reuse_a_clean_scratch(
    repo: Path, tmp_path: Path, start_server: SessionFactory
) -> None:
    s = await start_server(repo, {"local": {"agentCommand": script(tmp_path, "trace.py", TRACE)}})
    seen = []
    for _ in range(3):
        run_id, state = await s.run_to_end(json.dumps({}))
        assert state == "succeeded"
        status = await s.request("co/status", {"runId": run_id})
        out = dict(line.split("=", 1) for line in status["executor"]["stdoutTail"].splitlines())
        seen.append((out["CWD"], out["LEFT"]))
        assert patch_of(repo, run_id).count(b"diff --git") == 1
    # Reused: at most local.scratchPool.size (2) slots for 3 runs (a launch that arrives while
    # the previous slot is still being reset in the background may take the second one).
    assert len({cwd for cwd, _ in seen}) <= 2
    assert [left for _, left in seen] == ["", "", ""]  # nothing of the run before
    assert not (repo / ".git" / "worktrees").exists()


async def test_two_servers_and_concurrent_runs_on_one_repository(
    tmp_path: Path, start_server: SessionFactory
) -> None:
    repo = make_repo(tmp_path / "ws")
    (repo / "README.md").write_text("# uncommitted\n")
    options = {
        "local": {
            "agentCommand": script(tmp_path, "trace.py", TRACE),
            "maxConcurrent": 3,
            "scratchPool": {"size": 2},
        }
    }
    servers = [await start_server(repo, options), await start_server(repo, options)]
    prompt = json.dumps({"sleep": 0.3})
    launched = await asyncio.gather(
        *(s.request("co/launch", {"prompt": prompt}) for s in servers for _ in range(3))
    )
    owners = [servers[i // 3] for i in range(6)]
    states = await asyncio.gather(
        *(s.wait_state(r["runId"], timeout=60) for s, r in zip(owners, launched, strict=True))
    )
    assert states == ["succeeded"] * 6
    spans: dict[str, list[tuple[float, float]]] = {}
    for s, r in zip(owners, launched, strict=True):
        patch = patch_of(repo, r["runId"])
        assert patch.count(b"diff --git") == 1 and f"b/out-{r['runId']}.txt".encode() in patch
        status = await s.request("co/status", {"runId": r["runId"]})
        out = dict(line.split("=", 1) for line in status["executor"]["stdoutTail"].splitlines())
        assert out["LEFT"] == ""  # nothing of another run in its scratch
        spans.setdefault(out["CWD"], []).append((float(out["START"]), float(out["END"])))
    for runs in spans.values():  # a scratch serves one run at a time
        runs.sort()
        assert all(a[1] <= b[0] for a, b in zip(runs, runs[1:], strict=False)), runs
    assert len(spans) >= 2
    for _ in range(200):  # released and evicted after the runs were reported
        summary = pool.summary()
        if summary.slots <= 2 and summary.busy == 0:
            break
        await asyncio.sleep(0.05)
    assert (summary.slots, summary.busy) == (2, 0)
    assert git(repo, "status", "--porcelain") == " M README.md\n"
    assert os.listdir(repo / ".git" / "refs" / "heads") == ["main"]
