"""`startFromLocalChanges`: the user's local work as a cloud task's starting diff.

The cloud checks out `origin/<branch>`; what the user sees is that plus the commits origin
lacks plus the uncommitted changes (untracked files included, ignored ones not). This module
makes that difference as one binary git diff against `origin/<branch>` (against HEAD when
there is no such ref), through a temporary index so the user's index is never touched. The
task then starts from it (`pre_apply_patch` over HTTP, `CODEX_STARTING_DIFF` for the CLI),
and its own diff applies to the workspace as it is.

The runs root is left out, the patch passes the same path checks as every patch, it must not
contain the cloud token, and its size is bounded (`cloud.startingDiffMaxBytes`).
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..gitcmd import run_git

# What one environment string may hold on Linux (MAX_ARG_STRLEN): the CLI adapter passes the
# diff as CODEX_STARTING_DIFF, so it cannot send more.
ENV_VALUE_MAX = 128 * 1024 - 1 - len("CODEX_STARTING_DIFF=")


class StartingDiffError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class StartingDiff:
    text: str
    sha256: str
    bytes: int
    files: int
    additions: int
    deletions: int
    base: str  # the ref the diff is made against: origin/<branch>, or HEAD
    unpushed_commits: int


def _git(workspace: Path, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return run_git(args, workspace, extra_env=extra_env)


def _ok(workspace: Path, *args: str) -> str | None:
    proc = _git(workspace, *args)
    return proc.stdout.decode("utf-8", "replace").strip() if proc.returncode == 0 else None


def _relative(path: Path, root: Path) -> str | None:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return rel.as_posix() if rel.parts else None


DIFF_FLAGS = ["--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/"]


def _apply_cached(workspace: Path, index: Path, patch: bytes, what: str) -> None:
    """`patch` applied to the temporary `index` only (never the user's files or index)."""
    proc = run_git(["apply", "--cached", "--binary", "-"], workspace, extra_env={"GIT_INDEX_FILE": str(index)}, input=patch)
    if proc.returncode != 0:
        raise StartingDiffError(f"{what}: {proc.stderr.decode('utf-8', 'replace').strip()[:300]}")


def compose_cumulative(workspace: Path, parent: bytes | None, step: bytes, runs_root: Path | None) -> bytes:
    """A cloud follow-up's cumulative change against the workspace as it is: its parent's
    cumulative change, then its step, applied in a temporary index (the user's index and
    files are never touched). Raises `StartingDiffError` when they do not apply."""
    with tempfile.TemporaryDirectory(prefix="co-cumulative-") as tmp:
        index = Path(tmp) / "index"
        extra = {"GIT_INDEX_FILE": str(index)}
        pathspec = ["--", "."]
        excluded = _relative(runs_root, workspace) if runs_root is not None else None
        if excluded:
            pathspec.append(f":(exclude){excluded}")
        for args in (["read-tree", "HEAD"], ["add", "-A", *pathspec], ["write-tree"]):
            proc = run_git(args, workspace, extra_env=extra)
            if proc.returncode != 0:
                raise StartingDiffError(f"git {args[0]} failed: {proc.stderr.decode('utf-8', 'replace').strip()[:300]}")
        start = proc.stdout.decode().strip()
        if parent:
            _apply_cached(workspace, index, parent, "the parent run's change does not apply to the workspace")
        if step:
            _apply_cached(workspace, index, step, "this follow-up's change does not apply on its parent's")
        proc = run_git(["diff", "--cached", *DIFF_FLAGS, start], workspace, extra_env=extra)
    if proc.returncode != 0:
        raise StartingDiffError(f"git diff failed: {proc.stderr.decode('utf-8', 'replace').strip()[:300]}")
    return proc.stdout


def make_starting_diff(
    workspace: Path,
    branch: str,
    max_bytes: int,
    *,
    runs_root: Path | None = None,
    secrets: list[str | None] | None = None,
    for_env: bool = False,
    on_top: bytes | None = None,
    include_local: bool = True,
) -> StartingDiff | None:
    """The starting diff, or None when the workspace matches its base. Raises
    `StartingDiffError` with a sentence for the user. A follow-up's starting diff is its
    parent's cumulative change (`on_top`) on top of the local changes (`include_local`, the
    parent's startFromLocalChanges) or of the base alone."""
    if _ok(workspace, "rev-parse", "--verify", "--quiet", "HEAD") is None:
        raise StartingDiffError(f"{workspace} is not a git repository with a commit")
    remote = f"refs/remotes/origin/{branch}"
    if _ok(workspace, "rev-parse", "--verify", "--quiet", remote) is not None:
        if _git(workspace, "merge-base", "--is-ancestor", remote, "HEAD").returncode != 0:
            raise StartingDiffError(
                f"startFromLocalChanges: origin/{branch} has commits your branch lacks, so your "
                f"changes cannot be expressed against it; run `git pull --rebase origin {branch}` first"
            )
        base, base_name = remote, f"origin/{branch}"
        unpushed = int(_ok(workspace, "rev-list", "--count", f"{remote}..HEAD") or 0)
    else:
        base, base_name, unpushed = "HEAD", "HEAD", 0
    with tempfile.TemporaryDirectory(prefix="co-starting-diff-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        pathspec = ["--", "."]
        excluded = _relative(runs_root, workspace) if runs_root is not None else None
        if excluded:
            pathspec.append(f":(exclude){excluded}")
        steps = [["read-tree", "HEAD"], ["add", "-A", *pathspec]] if include_local else [["read-tree", base]]
        for args in steps:
            proc = _git(workspace, *args, extra_env=env)
            if proc.returncode != 0:
                raise StartingDiffError(
                    f"startFromLocalChanges: git {args[0]} failed: "
                    f"{proc.stderr.decode('utf-8', 'replace').strip()[:300]}"
                )
        if on_top:
            _apply_cached(workspace, Path(tmp) / "index", on_top, f"the parent run's result does not apply to {base_name}")
        proc = _git(workspace, "diff", "--cached", "--binary", "--no-color", "--no-ext-diff", base, extra_env=env)
    if proc.returncode != 0:
        raise StartingDiffError(
            f"startFromLocalChanges: git diff failed: {proc.stderr.decode('utf-8', 'replace').strip()[:300]}"
        )
    raw = proc.stdout
    if not raw.strip():
        return None
    limit = min(max_bytes, ENV_VALUE_MAX) if for_env else max_bytes
    if len(raw) > limit:
        why = (
            f"cloud.startingDiffMaxBytes ({max_bytes})"
            if limit == max_bytes
            else f"the {limit} bytes one environment variable can carry to `codex cloud exec`"
        )
        raise StartingDiffError(
            f"startFromLocalChanges: your local changes make a {len(raw)}-byte diff against "
            f"{base_name}, over {why}; commit and push them (git push origin {branch}), or "
            "raise cloud.startingDiffMaxBytes"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise StartingDiffError("startFromLocalChanges: the diff is not UTF-8 text") from None
    for secret in secrets or []:
        if secret and len(secret) >= 8 and secret in text:
            raise StartingDiffError(
                "startFromLocalChanges: your local changes contain the Codex Cloud token; "
                "remove it from the working tree before starting a cloud task from them"
            )
    from ..diffs import parse_patch, totals
    from ..errors import PatchRefused

    try:
        changes = parse_patch(raw)
    except PatchRefused as exc:
        raise StartingDiffError(f"startFromLocalChanges: {exc.message}") from None
    additions, deletions = totals(changes)
    return StartingDiff(
        text=text,
        sha256=hashlib.sha256(raw).hexdigest(),
        bytes=len(raw),
        files=len(changes),
        additions=additions,
        deletions=deletions,
        base=base_name,
        unpushed_commits=unpushed,
    )
