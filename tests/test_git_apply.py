"""git_apply.py: headless apply with git, 3-way fallback, refusals before git runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from co_sidecar import git_apply as git_apply_module
from co_sidecar.errors import PatchRefused
from co_sidecar.git_apply import git_apply


def git(repo: Path, *args: str) -> str:
    return subprocess.run(  # noqa: S603 - fixed git argv, no shell
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_repo(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", ".")
    write(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    return root


def write(root: Path, files: dict[str, str | bytes | None]) -> None:
    for name, content in files.items():
        path = root / name
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def take_patch(repo: Path, target: dict[str, str | bytes | None], out: Path) -> Path:
    """Write target, save `git diff --cached --binary -M`, and restore the committed tree."""
    write(repo, target)
    git(repo, "add", "-A")
    out.write_bytes(
        subprocess.run(  # noqa: S603 - fixed git argv
            ["git", "diff", "--cached", "--binary", "-M"], cwd=repo, check=True, capture_output=True
        ).stdout
    )
    git(repo, "reset", "-q", "--hard", "HEAD")
    git(repo, "clean", "-fdq")
    return out


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


NUMS = "".join(f"{i}\n" for i in range(1, 31))


def test_clean_apply_all_kinds(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "r", {"f.txt": NUMS, "gone.txt": "bye\n", "old.txt": NUMS, "img.bin": b"\0\1"}
    )
    target: dict[str, str | bytes | None] = {
        "f.txt": NUMS.replace("5\n", "five\n"),
        "gone.txt": None,
        "old.txt": None,
        "new/renamed.txt": NUMS.replace("30\n", "thirty\n"),
        "added.txt": "hello\n",
        "img.bin": b"\0\2\3",
    }
    patch = take_patch(repo, target, tmp_path / "p.diff")
    write(repo, target)
    expected = snapshot(repo)
    git(repo, "reset", "-q", "--hard", "HEAD")
    git(repo, "clean", "-fdq")

    check = git_apply(repo, patch, check_only=True)
    assert check.applied is False and check.failure_reason is None and check.conflicts == []
    assert snapshot(repo) != expected

    result = git_apply(repo, patch)
    assert result.applied and result.conflicts == [] and result.failure_reason is None
    assert set(result.paths) == {
        "f.txt",
        "gone.txt",
        "old.txt",
        "new/renamed.txt",
        "added.txt",
        "img.bin",
    }
    assert snapshot(repo) == expected
    assert git(repo, "diff", "--cached", "--name-only") == ""  # the user's index is not touched


def test_three_way_merge_with_uncommitted_work(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"f.txt": NUMS})
    patch = take_patch(repo, {"f.txt": NUMS.replace("10\n", "ten\n")}, tmp_path / "p.diff")
    # Uncommitted work inside the hunk's context: a direct apply fails, a merge does not.
    write(repo, {"f.txt": NUMS.replace("13\n", "thirteen\n")})
    result = git_apply(repo, patch)
    assert result.applied and result.conflicts == [], result
    assert (repo / "f.txt").read_text() == NUMS.replace("10\n", "ten\n").replace(
        "13\n", "thirteen\n"
    )
    assert git(repo, "diff", "--cached", "--name-only") == ""


def test_three_way_conflict_is_reported_with_path(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"f.txt": NUMS, "g.txt": NUMS})
    patch = take_patch(
        repo,
        {"f.txt": NUMS.replace("10\n", "ten\n"), "g.txt": NUMS.replace("2\n", "two\n")},
        tmp_path / "p",
    )
    write(repo, {"f.txt": NUMS.replace("10\n", "TEN!\n")})
    check = git_apply(repo, patch, check_only=True)
    assert not check.applied and [c.path for c in check.conflicts] == ["f.txt"]
    assert (repo / "f.txt").read_text() == NUMS.replace("10\n", "TEN!\n")

    result = git_apply(repo, patch)
    assert result.applied
    assert [c.path for c in result.conflicts] == ["f.txt"]
    assert "conflict" in result.conflicts[0].reason
    assert "<<<<<<<" in (repo / "f.txt").read_text()
    assert (repo / "g.txt").read_text() == NUMS.replace("2\n", "two\n")


def test_check_failure_leaves_tree_unchanged(tmp_path: Path) -> None:
    # The patch comes from another repository, so its preimage blob is not here: no 3-way.
    other = make_repo(tmp_path / "other", {"f.txt": NUMS, "ok.txt": "a\n"})
    patch = take_patch(
        other, {"f.txt": NUMS.replace("10\n", "ten\n"), "ok.txt": "b\n"}, tmp_path / "p"
    )
    repo = make_repo(tmp_path / "r", {"f.txt": NUMS.replace("11\n", "local\n"), "ok.txt": "a\n"})
    before = snapshot(repo)
    result = git_apply(repo, patch)
    assert not result.applied
    assert "f.txt" in [c.path for c in result.conflicts]
    assert result.failure_reason
    assert snapshot(repo) == before  # ok.txt would apply, but nothing is half-applied


def test_not_a_repository_direct_apply_and_failure(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"f.txt": NUMS})
    patch = take_patch(repo, {"f.txt": NUMS.replace("3\n", "three\n")}, tmp_path / "p")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "f.txt").write_text(NUMS)
    assert git_apply(plain, patch).applied
    assert (plain / "f.txt").read_text() == NUMS.replace("3\n", "three\n")
    result = git_apply(plain, patch)  # already applied: the base no longer matches
    assert not result.applied and [c.path for c in result.conflicts] == ["f.txt"]


def test_workspace_in_a_subdirectory(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"sub/f.txt": NUMS, "top.txt": "t\n"})
    patch = tmp_path / "p"
    patch.write_text(
        "diff --git a/f.txt b/f.txt\n--- a/f.txt\n+++ b/f.txt\n@@ -1,3 +1,3 @@\n-1\n+one\n 2\n 3\n"
    )
    result = git_apply(repo / "sub", patch)
    assert result.applied, result
    assert (repo / "sub/f.txt").read_text().startswith("one\n2\n")


@pytest.mark.parametrize(
    "path", ["../outside.txt", "sub/../../outside.txt", ".git/config", "x/.git/hooks/pre-commit"]
)
def test_refused_patch_never_reaches_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    repo = make_repo(tmp_path / "ws", {"a.txt": "a\n"})
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    patch = tmp_path / "p"
    patch.write_text(
        f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+pwned\n"
    )

    def no_git(*args: object, **kwargs: object) -> None:
        raise AssertionError("git must not run for a refused patch")

    monkeypatch.setattr(git_apply_module, "_run", no_git)
    with pytest.raises(PatchRefused, match=path.replace(".", r"\.")):
        git_apply(repo, patch)
    assert outside.read_text() == "keep\n"


def test_symlink_escape_never_reaches_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "ws", {"a.txt": "a\n"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "s.txt").write_text("s\n")
    (repo / "link").symlink_to(outside, target_is_directory=True)
    patch = tmp_path / "p"
    patch.write_text(
        "diff --git a/link/s.txt b/link/s.txt\n--- a/link/s.txt\n+++ b/link/s.txt\n@@ -1 +1 @@\n-s\n+pwned\n"
    )
    monkeypatch.setattr(git_apply_module, "_run", lambda *a, **k: pytest.fail("git ran"))
    with pytest.raises(PatchRefused, match="link/s.txt"):
        git_apply(repo, patch)
    assert (outside / "s.txt").read_text() == "s\n"
