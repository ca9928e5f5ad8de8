"""The scratch pool (local/pool.py) with real git repositories: a reused scratch leaks nothing
from one run into the next, the sidecar's own git calls run nothing the agent planted, what
may reach a patch, and the pool's bounds (LRU eviction, prune, the start-up sweep)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from co_sidecar.errors import WorkspaceError
from co_sidecar.local import pool
from co_sidecar.local.pool import acquire, capture_patch, link_stays_inside
from conftest import git, make_repo

FILES = {
    "README.md": "# demo\n",
    "app.py": "print(1)\n",
    "run.sh": "#!/bin/sh\necho hi\n",
    "sub/b.txt": "b\n",
    "sub/deep/c.txt": "c\n",
    "locked/d.txt": "d\n",
    ".gitignore": "*.log\nbuild/\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = make_repo(tmp_path / "ws", FILES)
    os.chmod(path / "run.sh", 0o755)
    (path / "link").symlink_to("README.md")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "modes and a link")
    # The user's uncommitted state: one staged, one unstaged, one deleted, untracked, ignored.
    (path / "app.py").write_text("print(2)\n")
    git(path, "add", "app.py")
    (path / "sub" / "b.txt").write_text("b, unstaged\n")
    (path / "sub" / "deep" / "c.txt").unlink()
    (path / "notes").mkdir()
    (path / "notes" / "todo.txt").write_text("untracked\n")
    (path / "debug.log").write_text("ignored: never carried\n")
    return path


def state(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under `root` but its top-level `.git`: kind, permission bits, content."""
    out: dict[str, tuple[str, int, bytes]] = {}
    for top, dirs, files in os.walk(root):
        rel_top = os.path.relpath(top, root)
        if rel_top == ".":
            dirs[:] = [d for d in dirs if d != ".git"]
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.normpath(os.path.join(rel_top, name))
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", 0, os.readlink(path).encode())
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", stat.S_IMODE(info.st_mode), b"")
            else:
                out[rel] = ("file", stat.S_IMODE(info.st_mode), Path(path).read_bytes())
    return out


def user_snapshot(repo: Path) -> dict[str, object]:
    """What the user owns: files, index, refs, stash, config, hooks, registered worktrees."""
    dot = repo / ".git"
    return {
        "files": state(repo),
        "index": (dot / "index").read_bytes(),
        "refs": git(repo, "for-each-ref"),
        "stash": git(repo, "stash", "list"),
        "config": (dot / "config").read_bytes(),
        "hooks": sorted(p.name for p in (dot / "hooks").iterdir()) if (dot / "hooks").is_dir() else [],
        "worktrees": git(repo, "worktree", "list", "--porcelain"),
        "head": git(repo, "rev-parse", "HEAD"),
    }


def agent_git(work: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", "-c", "user.name=agent", "-c", "user.email=a@a", *args],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def hostile_agent(work: Path) -> None:
    """Everything an agent could leave behind in its scratch."""
    (work / "README.md").write_text("agent edit\n")
    (work / "sub" / "b.txt").unlink()
    (work / "new.txt").write_text("created\n")
    (work / "newdir" / "inner").mkdir(parents=True)
    (work / "newdir" / "inner" / "x.txt").write_text("untracked dir\n")
    (work / "agent.log").write_text("ignored file\n")
    (work / "build").mkdir()
    (work / "build" / "out.o").write_bytes(b"\0ignored dir\0")
    os.chmod(work / "app.py", 0o755)  # mode changes both ways
    os.chmod(work / "run.sh", 0o644)
    (work / "empty" / "dirs").mkdir(parents=True)
    (work / "link").unlink()
    (work / "link").symlink_to("app.py")  # a changed symlink
    (work / "notes" / "todo.txt").unlink()
    (work / "notes" / "todo.txt").symlink_to("../README.md")  # a file turned into a symlink
    agent_git(work, "checkout", "-q", "-b", "agent/feature")
    agent_git(work, "tag", "agent-tag")
    agent_git(work, "config", "user.name", "Agent")
    (work / ".git" / "hooks").mkdir(exist_ok=True)
    (work / ".git" / "hooks" / "pre-commit").write_text("#!/bin/sh\nexit 1\n")
    (work / "nested").mkdir()
    agent_git(work / "nested", "init", "-q")  # a nested repository in a new directory
    (work / "nested" / "n.txt").write_text("n\n")
    agent_git(work / "sub", "init", "-q")  # and one planted in a tracked directory
    agent_git(work / "locked", "init", "-q")
    os.chmod(work / "locked", 0o000)  # a directory the agent locked, a repository inside


@pytest.mark.parametrize("captured", [True, False], ids=["after-capture", "failed-run"])
def test_a_reused_scratch_leaks_nothing_into_the_next_run(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured: bool
) -> None:
    first = acquire(repo, "r1", exclude=[repo / ".runs"])
    assert first.cold
    work = first.scratch.path
    assert "debug.log" not in state(work) and state(work)["notes/todo.txt"][2] == b"untracked\n"
    assert agent_git(work, "status", "--porcelain") == ""  # the user's changes are its base
    hostile_agent(work)
    if captured:
        assert b"agent edit" in capture_patch(first.scratch)
    first.release()

    # The user moves on between runs: a commit, and a new uncommitted change.
    git(repo, "commit", "-qm", "user commit")
    (repo / "README.md").write_text("# demo, edited by the user\n")
    second = acquire(repo, "r2", exclude=[repo / ".runs"])
    assert not second.cold and second.slot.dir == first.slot.dir
    monkeypatch.setenv("CO_SCRATCH_ROOT", str(tmp_path / "fresh-root"))
    fresh = acquire(repo, "r3", exclude=[repo / ".runs"])
    assert fresh.cold
    assert state(second.scratch.path) == state(fresh.scratch.path)
    assert agent_git(work, "status", "--porcelain", "--ignored") == ""
    assert agent_git(work, "for-each-ref") == ""  # no branch, tag or stash of run 1
    assert "Agent" not in (work / ".git" / "config").read_text()
    assert not (work / ".git" / "hooks").exists()
    assert capture_patch(second.scratch) == b""
    second.release()
    fresh.release()


def test_the_user_repository_is_only_read(repo: Path) -> None:
    before = user_snapshot(repo)
    objects = sorted(p.name for p in (repo / ".git" / "objects").iterdir())
    lease = acquire(repo, "r1")
    hostile_agent(lease.scratch.path)
    agent_git(lease.scratch.path, "stash", "-q")
    capture_patch(lease.scratch)
    lease.release()
    assert user_snapshot(repo) == before
    # New objects (the base commit, the agent's blobs) went to the slot's store, not the user's.
    assert sorted(p.name for p in (repo / ".git" / "objects").iterdir()) == objects


def test_a_planted_filter_never_runs_in_the_sidecars_git(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "filter-ran"
    lease = acquire(repo, "r1")
    work = lease.scratch.path
    # The agent replaces its .git with a repository whose clean/smudge filters run a command,
    # and sets that filter on every path.
    subprocess.run(["rm", "-rf", str(work / ".git")], check=True)
    agent_git(work, "init", "-q")
    for kind in ("clean", "smudge", "process"):
        agent_git(work, "config", f"filter.evil.{kind}", f"touch {marker}; cat")
    agent_git(work, "config", "core.fsmonitor", f"touch {marker}")
    agent_git(work, "config", "diff.external", f"touch {marker}")
    (work / ".gitattributes").write_text("* filter=evil diff=evil\n")
    (work / "README.md").write_text("changed under a planted filter\n")
    patch = capture_patch(lease.scratch)
    assert b"changed under a planted filter" in patch and b".gitattributes" in patch
    lease.release()
    second = acquire(repo, "r2")
    assert not marker.exists()
    assert not (second.scratch.path / ".gitattributes").exists()
    second.release()


def test_nothing_under_the_runs_root_is_carried_either_way(repo: Path) -> None:
    records = repo / "records"  # a runs root that the user's .gitignore does not cover
    records.mkdir()
    (records / "manifest.json").write_text("{}\n")
    lease = acquire(repo, "r1", exclude=[records])
    work = lease.scratch.path
    assert not (work / "records").exists()
    (work / "records").mkdir()
    (work / "records" / "planted.json").write_text("from the agent\n")
    (work / "ok.txt").write_text("fine\n")
    patch = capture_patch(lease.scratch)
    assert b"ok.txt" in patch and b"records" not in patch
    lease.release()


@pytest.mark.parametrize(
    ("link", "target"),
    [("out", "/etc/passwd"), ("sub/up", "../../outside"), ("sub/git", "../.git/config")],
)
def test_a_symlink_out_of_the_workspace_is_refused(repo: Path, link: str, target: str) -> None:
    lease = acquire(repo, "r1")
    (lease.scratch.path / link).symlink_to(target)
    with pytest.raises(WorkspaceError, match="symlink pointing outside the workspace"):
        capture_patch(lease.scratch)
    lease.release()


def test_symlink_rule() -> None:
    assert link_stays_inside("a/b", "../c", "")
    assert link_stays_inside("ws/a", "b/c", "ws/")
    assert not link_stays_inside("ws/a", "../../x", "ws/")
    assert not link_stays_inside("ws/a", "../other/x", "ws/")  # in the repo, out of the workspace
    assert not link_stays_inside("a", "/abs", "")
    assert not link_stays_inside("a", "x/../../.git/hooks", "")


def test_the_pool_is_bounded_least_recently_used_and_pruned(repo: Path, tmp_path: Path) -> None:
    leases = [acquire(repo, f"r{i}", size=2) for i in range(3)]  # three at once: three slots
    assert len({lease.slot.dir for lease in leases}) == 3
    for lease in leases:
        lease.release()  # each release evicts beyond 2, least recently used first
    kept = sorted(p.dir for p in pool._slots(pool.pool_dir(leases[0].repo.toplevel)))
    assert kept == sorted([leases[1].slot.dir, leases[2].slot.dir])
    summary = pool.summary()
    assert (summary.repos, summary.slots, summary.busy) == (1, 2, 0) and summary.bytes > 0
    half_deleted = pool.pool_dir(leases[0].repo.toplevel) / ".trash-0123"  # by a process that died
    (half_deleted / "work").mkdir(parents=True)
    assert pool.evict(leases[0].repo.toplevel, 2) == [] and not half_deleted.exists()
    busy = acquire(repo, "r9", size=2)  # the most recently used slot, reused
    assert busy.slot.dir == leases[2].slot.dir
    assert pool.prune() == [leases[1].slot.dir]  # a slot in use is never removed
    busy.release()
    assert sorted(pool.prune()) == [busy.slot.dir]
    assert pool.summary().slots == 0


def test_pool_size_zero_keeps_nothing(repo: Path) -> None:
    lease = acquire(repo, "r1", size=0)
    lease.release()
    assert pool.summary().slots == 0


def test_a_slot_left_by_a_dead_server_is_swept_and_never_reused_dirty(repo: Path) -> None:
    lease = acquire(repo, "r1")
    (lease.scratch.path / "left.txt").write_text("by a crashed run\n")
    lease.handle.close()  # type: ignore[union-attr]  # the process died: its lock is gone
    again = acquire(repo, "r2")  # reused after a full clean-up
    assert again.slot.dir == lease.slot.dir and not (again.scratch.path / "left.txt").exists()
    again.handle.close()  # type: ignore[union-attr]
    assert pool.sweep(lease.repo.toplevel) == [lease.slot.dir]
    assert not lease.slot.dir.exists()


def test_a_workspace_in_a_subdirectory(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "mono", {"pkg/a.txt": "a\n", "other/b.txt": "b\n"})
    lease = acquire(repo / "pkg", "r1")
    assert lease.scratch.cwd == lease.scratch.path / "pkg"
    (lease.scratch.cwd / "a.txt").write_text("a2\n")
    (lease.scratch.path / "other" / "b.txt").write_text("outside the workspace\n")
    patch = capture_patch(lease.scratch)
    assert b"+a2" in patch and b"a/a.txt" in patch and b"outside" not in patch
    lease.release()


def test_scratch_prune_from_the_command_line(repo: Path) -> None:
    import sys

    lease = acquire(repo, "r1")
    lease.release()
    shown = subprocess.run([sys.executable, "-m", "co_sidecar", "scratch", "show"], capture_output=True, text=True, check=True)
    assert shown.stdout.startswith("1 slot(s), 0 in use, 1 repositories")
    doctor = subprocess.run([sys.executable, "-m", "co_sidecar", "doctor", "--workspace", str(repo), "--format", "json"], capture_output=True, text=True, check=False)
    (check,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "scratch"]
    assert check["ok"] and check["message"].startswith("scratch pool: 1 slot(s) (0 in use) for 1 repositories")
    assert "`co-sidecar scratch prune` removes them" in check["message"]
    pruned = subprocess.run([sys.executable, "-m", "co_sidecar", "scratch", "prune"], capture_output=True, text=True, check=True)
    assert pruned.stdout.startswith("removed 1 scratch slot(s)")
    assert not lease.slot.dir.exists() and pool.summary().slots == 0


def test_a_reused_scratch_follows_every_kind_of_user_change(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acquire(repo, "r1").release()
    # Between runs the user: deletes, turns a file into a directory and a directory into a
    # file, changes a mode and a symlink, adds files deep down.
    (repo / "README.md").unlink()
    (repo / "app.py").unlink()
    (repo / "app.py").mkdir()
    (repo / "app.py" / "main.py").write_text("now a package\n")
    for child in (repo / "sub").rglob("*"):
        if child.is_file():
            child.unlink()
    for child in sorted((repo / "sub").rglob("*"), reverse=True):
        child.rmdir()
    (repo / "sub").rmdir()
    (repo / "sub").write_text("now a file\n")
    os.chmod(repo / "run.sh", 0o644)
    (repo / "link").unlink()
    (repo / "link").symlink_to("run.sh")
    (repo / "a" / "b" / "c").mkdir(parents=True)
    (repo / "a" / "b" / "c" / "deep.txt").write_text("deep\n")
    second = acquire(repo, "r2")
    assert not second.cold
    monkeypatch.setenv("CO_SCRATCH_ROOT", str(tmp_path / "fresh-root"))
    fresh = acquire(repo, "r3")
    assert state(second.scratch.path) == state(fresh.scratch.path)
    assert agent_git(second.scratch.path, "status", "--porcelain") == ""


def test_the_users_ignore_rules_hold_in_capture(repo: Path, tmp_path: Path) -> None:
    ignore = tmp_path / "global-ignore"
    ignore.write_text("*.swp\n")
    git(repo, "config", "core.excludesFile", str(ignore))
    (repo / ".git" / "info" / "exclude").write_text("scratchpad/\n")
    lease = acquire(repo, "r1")
    work = lease.scratch.path
    (work / "x.swp").write_text("editor swap file\n")
    (work / "scratchpad").mkdir()
    (work / "scratchpad" / "n.txt").write_text("private\n")
    (work / "kept.txt").write_text("a real change\n")
    patch = capture_patch(lease.scratch)
    assert b"kept.txt" in patch and b"x.swp" not in patch and b"scratchpad" not in patch
    lease.release()


def test_nested_repositories_and_an_ignored_runs_root(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.log\nbuild/\n.runs/\n")  # the runs root ignored by the user
    (repo / ".runs" / "t").mkdir(parents=True)
    (repo / ".runs" / "t" / "manifest.json").write_text("{}\n")
    make_repo(repo / "vendored")  # untracked nested repositories, with and without a commit
    (repo / "fresh").mkdir()
    git(repo / "fresh", "init", "-q")
    (repo / "fresh" / "f.txt").write_text("f\n")
    lease = acquire(repo, "r1", exclude=[repo / ".runs"])
    work = lease.scratch.path
    assert not (work / ".runs").exists() and not (work / "vendored").exists()
    assert not (work / "fresh").exists() and (work / "notes" / "todo.txt").exists()
    (work / ".runs").mkdir()
    (work / ".runs" / "x.json").write_text("ignored in the scratch too\n")
    (work / "theirs").mkdir()
    git(work / "theirs", "init", "-q")  # the agent's nested repository, no commit
    (work / "theirs" / "t.txt").write_text("t\n")
    make_repo(work / "committed")  # and one with a commit
    (work / ".gitignore").write_text("*.log\n")  # the agent un-ignores the runs root
    (work / "ok.txt").write_text("ok\n")
    patch = capture_patch(lease.scratch)
    assert b"ok.txt" in patch and b".gitignore" in patch
    assert b"b/.runs/" not in patch and b"x.json" not in patch
    assert b"theirs" not in patch and b"committed" not in patch
    lease.release()
