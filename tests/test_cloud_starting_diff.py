"""`startFromLocalChanges`' diff, made in real git repositories: what goes in, what is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from co_sidecar.cloud.starting_diff import StartingDiffError, make_starting_diff
from conftest import git, make_repo


def clone_of_origin(tmp_path: Path) -> tuple[Path, Path]:
    seed = make_repo(tmp_path / "seed")
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(origin)], check=True)
    ws = tmp_path / "ws"
    subprocess.run(["git", "clone", "-q", str(origin), str(ws)], check=True)
    return origin, ws


def test_clean_workspace_has_no_starting_diff(tmp_path: Path) -> None:
    _, ws = clone_of_origin(tmp_path)
    assert make_starting_diff(ws, "main", 10_000) is None


def test_local_work_leaves_out_ignored_files_and_the_runs_root_and_the_index_alone(tmp_path: Path) -> None:
    _, ws = clone_of_origin(tmp_path)
    (ws / ".gitignore").write_text("build/\n")
    git(ws, "add", ".gitignore")  # staged, not committed: part of the local work
    (ws / "build").mkdir()
    (ws / "build" / "out.bin").write_text("ignored\n")
    runs = ws / "records"  # a runs root that does not ignore itself
    runs.mkdir()
    (runs / "manifest.json").write_text("{}\n")
    (ws / "new.txt").write_text("new\n")
    staged_before = git(ws, "diff", "--cached", "--name-only")
    made = make_starting_diff(ws, "main", 10_000, runs_root=runs)
    assert made is not None and made.base == "origin/main" and made.unpushed_commits == 0
    assert "new.txt" in made.text and ".gitignore" in made.text
    assert "build/out.bin" not in made.text and "records/" not in made.text
    assert git(ws, "diff", "--cached", "--name-only") == staged_before  # the user's index untouched
    applied = tmp_path / "check"
    subprocess.run(["git", "clone", "-q", str(tmp_path / "origin.git"), str(applied)], check=True)
    (tmp_path / "start.diff").write_text(made.text)
    assert subprocess.run(["git", "apply", "--check", str(tmp_path / "start.diff")], cwd=applied).returncode == 0


def test_a_branch_behind_origin_is_refused_with_the_fix(tmp_path: Path) -> None:
    origin, ws = clone_of_origin(tmp_path)
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(origin), str(other)], check=True)
    (other / "README.md").write_text("# upstream change\n")
    git(other, "commit", "-qam", "upstream")
    git(other, "push", "-q", "origin", "main")
    git(ws, "fetch", "-q", "origin")
    (ws / "app.py").write_text("local\n")
    with pytest.raises(StartingDiffError, match=r"git pull --rebase origin main"):
        make_starting_diff(ws, "main", 10_000)


def test_the_cloud_token_never_leaves_in_a_starting_diff(tmp_path: Path) -> None:
    _, ws = clone_of_origin(tmp_path)
    (ws / "config.env").write_text("TOKEN=sk-secret-token-12345\n")
    with pytest.raises(StartingDiffError, match="contain the Codex Cloud token"):
        make_starting_diff(ws, "main", 10_000, secrets=["sk-secret-token-12345"])


def test_the_cli_adapter_is_bounded_by_one_environment_string(tmp_path: Path) -> None:
    _, ws = clone_of_origin(tmp_path)
    (ws / "big.txt").write_text("x" * 200 + "\n" * 1 + ("line\n" * 40_000))
    assert make_starting_diff(ws, "main", 10_000_000) is not None
    with pytest.raises(StartingDiffError, match="one environment variable can carry"):
        make_starting_diff(ws, "main", 10_000_000, for_env=True)
