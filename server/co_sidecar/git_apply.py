"""The headless "git" apply strategy: `git apply`, falling back to a 3-way merge.

Callers should already have run `diffs.parse_patch` and `diffs.check_paths` on the
patch (that is where refusals are reported to the user); `git_apply` repeats both so
that `git apply` never sees a refused patch, and raises `PatchRefused` the same way.

Why a temporary index: `git apply --3way` implies `--index`, which refuses files whose
working-tree copy differs from the index ("does not match index") and would stage the
result in the user's index. We instead run it against a throwaway index
(GIT_INDEX_FILE) holding HEAD plus the current working-tree state of the touched
paths, so the merge sees the user's uncommitted work as "ours" and the real index is
left alone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .diffs import FileChange, check_paths, parse_patch
from .errors import PatchRefused
from .gitcmd import run_git
from .protocol import Conflict

_PATCH_FAILED = re.compile(r"^error: patch failed: (?P<path>.+):(?P<line>\d+)$")
_ERROR = re.compile(r"^error: (?P<path>.+): (?P<reason>[^:]+)$")
_CONFLICTED = re.compile(r"^(?:U (?P<u>.+)|Applied patch to '(?P<a>.+)' with conflicts\.)$")
_TIMEOUT = 300


def parse_checked(patch: bytes) -> list[FileChange]:
    """`diffs.parse_patch` plus the refusals of content git itself never produces:
    a NUL byte in a text patch (git makes such files binary) and text with no
    `diff --git` header at all (parse_patch would read it as an empty preamble)."""
    if b"\0" in patch:
        raise PatchRefused("refused patch: contains a NUL byte (git diff never emits one in text)")
    changes = parse_patch(patch)
    if not changes and patch.strip():
        raise PatchRefused("malformed patch: no 'diff --git' header (this is not a git diff)")
    return changes


def external_symlinks_refused(external: list[Conflict]) -> str:
    return (
        "refused patch: it creates symlinks pointing outside the workspace ("
        + "; ".join(f"{c.path}: {c.reason}" for c in external)
        + "); pass allowExternalSymlinks: true to co/apply to allow them for this apply"
    )


@dataclass
class GitApplyResult:
    applied: bool
    paths: list[str]  # paths the patch touches (new and old names)
    conflicts: list[Conflict] = field(default_factory=list)
    failure_reason: str | None = None


def git_touched(patch_path: Path) -> list[str] | None:
    """The files `git apply` itself reads the patch as touching (new names; old ones for
    deletions), from `git apply --numstat -z`; None when git is not installed."""
    git = shutil.which("git")
    if git is None:
        return None
    with tempfile.TemporaryDirectory(prefix="co-sidecar-numstat-") as tmp:
        # Outside any repository: inside one, git apply would skip paths outside the cwd.
        done = run_git(
            ["apply", "--numstat", "-z", str(patch_path.resolve())], tmp,
            extra_env={"GIT_CEILING_DIRECTORIES": str(Path(tmp).parent)}, timeout=_TIMEOUT, git=git,
        )  # fmt: skip
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
        raise PatchRefused(f"refused patch: git cannot read it ({why[0] if why else 'git apply --numstat failed'})")
    names: list[str] = []
    fields = done.stdout.decode("utf-8", "surrogateescape").split("\0")
    i = 0
    while i < len(fields):
        record = fields[i]
        i += 1
        if not record:
            continue
        name = record.split("\t", 2)[2] if record.count("\t") >= 2 else ""
        if name:
            names.append(name)
        else:  # a rename or copy: "\0old\0new"
            names.append(fields[i + 1] if i + 1 < len(fields) else "")
            i += 2
    return names


def verify_with_git(changes: list[FileChange], patch_path: Path) -> None:
    """Refuse a patch git reads as touching other files than the ones we show."""
    names = git_touched(patch_path)
    if names is None:
        return
    ours = sorted(c.path for c in changes)
    if sorted(names) != ours:
        extra = sorted(set(names) - set(ours)) or sorted(set(ours) - set(names)) or names
        raise PatchRefused(
            "refused patch: git reads it as touching other files than it shows "
            f"({', '.join(repr(n) for n in extra[:5])})"
        )


def git_apply(
    workspace: Path,
    patch_path: Path,
    *,
    check_only: bool = False,
    runs_root: Path | None = None,
    allow_external_symlinks: bool = False,
) -> GitApplyResult:
    """Apply `patch_path` to `workspace` with git; with `check_only`, only report what would happen.

    1. `git apply --check`: if the patch applies as is, apply it (all or nothing).
    2. Otherwise, in a git repository, `git apply --3way` on a temporary index: first
       with `--check`, and only if every file can be applied or merged, for real. Files
       merged with conflicts keep git's conflict markers and are listed in `conflicts`
       (`applied` is True: the workspace changed).
    3. If neither works, nothing is written and `conflicts` says why per path.
    """
    changes = parse_checked(patch_path.read_bytes())
    external = check_paths(changes, workspace, runs_root)
    if external and not allow_external_symlinks:
        raise PatchRefused(external_symlinks_refused(external))
    verify_with_git(changes, patch_path)
    paths = list(dict.fromkeys(p for c in changes for p in (c.old_path, c.path) if p))
    if not changes:
        return GitApplyResult(applied=False, paths=[], failure_reason="the patch is empty")
    git = shutil.which("git")
    if git is None:
        return GitApplyResult(applied=False, paths=paths, failure_reason="git is not installed")

    prefix = _repo_prefix(git, workspace)
    base = [git, "apply", "--whitespace=nowarn"]
    if prefix:
        # Patch paths are workspace-relative; git apply reads them from the repo top.
        base.append(f"--directory={prefix}")
    patch = str(patch_path.resolve())

    direct = _run([*base, "--check", patch], workspace)
    if direct.returncode == 0:
        if check_only:
            return GitApplyResult(applied=False, paths=paths)
        done = _run([*base, patch], workspace)
        if done.returncode == 0:
            return GitApplyResult(applied=True, paths=paths)
        return _failed(paths, done.stderr, "git apply failed after a successful check")

    if prefix is None:
        return _failed(
            paths,
            direct.stderr,
            "the patch does not apply and the workspace is not a git repository (no 3-way merge)",
        )

    with tempfile.TemporaryDirectory(prefix="co-sidecar-index-") as tmp:
        env, staged = stage_temp_index(git, workspace, paths, Path(tmp) / "index")
        if staged.returncode != 0:
            return _failed(
                paths, direct.stderr + staged.stderr, "could not prepare the 3-way merge"
            )
        check = _run([*base, "--3way", "--check", patch], workspace, env)
        if check.returncode != 0:
            # Neither a direct apply nor a merge is possible: leave the workspace untouched.
            return _failed(
                paths,
                direct.stderr + check.stderr,
                "the patch does not apply, even with a 3-way merge",
            )
        if check_only:
            would_conflict = _conflicts(check.stderr, markers_only=True)
            return GitApplyResult(
                applied=False,
                paths=paths,
                conflicts=would_conflict,
                failure_reason="a 3-way merge would leave conflicts" if would_conflict else None,
            )
        merged = _run([*base, "--3way", patch], workspace, env)
    conflicts = _conflicts(merged.stderr, markers_only=True)
    if merged.returncode == 0:
        return GitApplyResult(applied=True, paths=paths)
    if conflicts:
        return GitApplyResult(
            applied=True,
            paths=paths,
            conflicts=conflicts,
            failure_reason=f"applied with a 3-way merge; {len(conflicts)} file(s) have conflict markers to resolve",
        )
    return _failed(paths, merged.stderr, "git apply --3way failed")


def stage_temp_index(
    git: str, workspace: Path, paths: list[str], index: Path
) -> tuple[dict[str, str], subprocess.CompletedProcess[str]]:
    """A throwaway index holding HEAD (empty without commits) plus the workspace's current
    `paths`, for `git apply --3way` to merge against without touching the user's index.
    Returns the extra environment naming it and the `update-index` result."""
    env = {"GIT_INDEX_FILE": str(index)}
    index.unlink(missing_ok=True)
    if _run([git, "read-tree", "HEAD"], workspace, env).returncode != 0:
        _run([git, "read-tree", "--empty"], workspace, env)
    return env, _run([git, "update-index", "--add", "--remove", "--", *paths], workspace, env)


def _run(argv: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`argv[0]` (git) with the rest, through gitcmd (GIT_* that would redirect it removed);
    output as text. The patch was checked by parse_patch before any apply."""
    done = run_git(argv[1:], cwd, extra_env=extra_env, timeout=_TIMEOUT, git=argv[0])
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    )


def _repo_prefix(git: str, workspace: Path) -> str | None:
    """The workspace's path inside its git repository ("" at the top), or None outside git."""
    done = _run([git, "rev-parse", "--show-prefix"], workspace)
    if done.returncode != 0:
        return None
    return done.stdout.strip()


def _failed(paths: list[str], stderr: str, reason: str) -> GitApplyResult:
    conflicts = _conflicts(stderr)
    # git's messages that name no path (e.g. "repository lacks the necessary blob ...").
    general = [
        line.strip().removeprefix("error: ")
        for line in stderr.splitlines()
        if line.startswith("error: ") and not _PATCH_FAILED.match(line) and not _ERROR.match(line)
    ]
    if not conflicts and not general:
        general = stderr.strip().splitlines()[:1]
    detail = "; ".join(dict.fromkeys(general))
    return GitApplyResult(
        applied=False,
        paths=paths,
        conflicts=conflicts,
        failure_reason=f"{reason} ({detail})" if detail else reason,
    )


def _conflicts(stderr: str, *, markers_only: bool = False) -> list[Conflict]:
    """Per-path reasons from git apply's stderr, first reason per path first."""
    reasons: dict[str, list[str]] = {}
    for raw in stderr.splitlines():
        line = raw.strip()
        if m := _CONFLICTED.match(line):
            path, reason = (
                m.group("u") or m.group("a"),
                "merge conflict: conflict markers left in the file",
            )
        elif markers_only:
            continue
        elif m := _PATCH_FAILED.match(line):
            path, reason = m.group("path"), f"patch failed at line {m.group('line')}"
        elif m := _ERROR.match(line):
            path, reason = m.group("path"), m.group("reason")
        else:
            continue
        seen = reasons.setdefault(path, [])
        if reason not in seen:
            seen.append(reason)
    return [Conflict(path=path, reason="; ".join(why)) for path, why in reasons.items()]
