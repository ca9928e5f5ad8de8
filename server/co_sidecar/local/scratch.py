"""Scratch copies: the git helpers, the `Scratch` record, capture, and the sweep.

Local runs get their scratch from the pool (pool.py: sealed, reused checkouts). The
worktree copy below (`create_scratch`) is what the canary's `git apply --check` uses: a
detached, locked `git worktree` of HEAD plus the user's uncommitted changes.

The scratch lives outside the user's tree (see `scratch_root`). Its HEAD is a
"base" commit of the user's current state, so `git diff <base>` in the scratch
is exactly the agent's change. The user's files, index and refs are never
written: the only trace in the user's repository is the worktree's admin entry
under `.git/worktrees/` and objects in the shared store, both removed/pruned
with the scratch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import WORKSPACE_ERROR, CoError, RunErrorCode, WorkspaceError
from ..gitcmd import git_env, run_git

NO_COMMITS = "workspace has no commits: commit once so a scratch worktree can be made"

# Settings for every git call: stable paths in output, no pager/prompts.
GIT_BASE = ["git", "-c", "core.quotepath=off"]
# Extra settings for commands run inside a scratch: no user hooks (post-checkout,
# post-commit), no auto-gc of the shared object store, no fsmonitor daemon.
SCRATCH_GIT = [
    "-c", "core.hooksPath=/dev/null",
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
    "-c", "core.fsmonitor=false",
]  # fmt: skip
BASE_COMMIT = [
    "-c", "user.name=co-sidecar",
    "-c", "user.email=co-sidecar@localhost",
    "-c", "commit.gpgsign=false",
]  # fmt: skip
# Diff output `git apply` understands whatever the user's diff.* settings say.
DIFF_FLAGS = [
    "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
    "--src-prefix=a/", "--dst-prefix=b/",
]  # fmt: skip


def git(
    args: Sequence[str], cwd: Path, *, input: bytes | None = None, scratch: bool = False
) -> bytes:
    """Run git with an argv list, return stdout bytes; raise WorkspaceError with git's stderr."""
    argv = [*GIT_BASE[1:], *(SCRATCH_GIT if scratch else []), *args]
    try:
        done = run_git(argv, cwd, input=input, timeout=None)
    except FileNotFoundError as exc:
        raise WorkspaceError("git not found on PATH", category=RunErrorCode.LOCAL_GIT_MISSING) from exc
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip()
        raise WorkspaceError(f"git {args[0]} failed ({done.returncode}): {err}")
    return done.stdout


# The setting that bounds a captured patch (the same hard limit co/diff and co/apply enforce).
PATCH_LIMIT_SETTING = "diff.hardMaxPatchBytes"
READ_CHUNK = 1024 * 1024


class PatchTooLarge(CoError):
    code = WORKSPACE_ERROR
    category = RunErrorCode.LOCAL_PATCH_TOO_LARGE


def read_capped(argv: Sequence[str], cwd: Path, env: dict[str, str], limit: int | None) -> bytes:
    """git's stdout, read in chunks; past `limit` bytes git is killed and PatchTooLarge raised,
    so an agent's huge change is never held whole in the server's memory."""
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
                list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
            )
        except FileNotFoundError as exc:
            raise WorkspaceError("git not found on PATH", category=RunErrorCode.LOCAL_GIT_MISSING) from exc
        assert proc.stdout is not None
        chunks: list[bytes] = []
        size = 0
        complete = False
        try:
            while chunk := proc.stdout.read(READ_CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise PatchTooLarge(
                        f"the agent's change is over {PATCH_LIMIT_SETTING}={limit} bytes as a patch; it was "
                        f"not captured (raise {PATCH_LIMIT_SETTING} to keep a change this large, or ask for "
                        "a smaller one)"
                    )
                chunks.append(chunk)
            complete = True
        finally:
            if not complete:  # stopped early: git would block on a full pipe
                proc.kill()
            proc.stdout.close()
            proc.wait()
        if proc.returncode != 0:
            err.seek(0)
            text = err.read(64 * 1024).decode("utf-8", "replace").strip()
            raise WorkspaceError(f"git diff failed ({proc.returncode}): {text}")
    return b"".join(chunks)


def _text(out: bytes) -> str:
    return out.decode("utf-8", "replace").strip()


def repo_toplevel(workspace: Path) -> Path:
    """The git top level containing `workspace`, or a clear WorkspaceError."""
    if not workspace.is_dir():
        raise WorkspaceError(f"workspace is not a directory: {workspace}")
    try:
        return Path(_text(git(["rev-parse", "--show-toplevel"], workspace)))
    except WorkspaceError as exc:
        if exc.category == RunErrorCode.LOCAL_GIT_MISSING:
            raise
        raise WorkspaceError(
            f"workspace is not a git repository: {workspace} (local mode needs git to make a scratch copy)",
            category=RunErrorCode.LOCAL_NOT_GIT_REPO,
        ) from exc


def has_commit(toplevel: Path) -> bool:
    try:
        git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], toplevel)
    except WorkspaceError:
        return False
    return True


def scratch_root() -> Path:
    """Per-user directory holding scratch worktrees; `CO_SCRATCH_ROOT` overrides (tests)."""
    if override := os.environ.get("CO_SCRATCH_ROOT"):
        return Path(override)
    if cache := os.environ.get("XDG_CACHE_HOME"):
        return Path(cache) / "co-sidecar" / "scratch"
    home = Path.home()
    if home.is_dir() and os.access(home, os.W_OK):
        return home / ".cache" / "co-sidecar" / "scratch"
    return Path(tempfile.gettempdir()) / f"co-sidecar-scratch-{os.getuid()}"


def workspace_key(toplevel: Path) -> str:
    """Directory name grouping one repository's scratches: readable name + path hash."""
    digest = hashlib.sha256(str(toplevel).encode()).hexdigest()[:10]
    return f"{toplevel.name or 'repo'}-{digest}"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    # Under a shared temp dir, refuse a directory someone else planted.
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid():
        raise WorkspaceError(f"scratch root {path} is not a directory owned by this user")
    return path


@contextlib.contextmanager
def worktree_lock(repo: Path) -> Iterator[None]:
    """Serialize worktree add/remove/prune on one repository, across threads and processes:
    a concurrent `git worktree prune` can delete the admin entry of a worktree being added."""
    common = _text(git(["rev-parse", "--path-format=absolute", "--git-common-dir"], repo))
    locks = _private_dir(scratch_root()) / "locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    name = hashlib.sha256(common.encode()).hexdigest()[:16] + ".lock"
    with open(locks / name, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


@dataclass(frozen=True)
class Scratch:
    path: Path  # worktree root
    repo: Path  # the user's git top level
    prefix: str  # workspace relative to `repo`, "" or "sub/dir/" (git's --show-prefix)
    base: str  # sha of the base commit (HEAD + user's uncommitted changes)
    # A pool slot (local/pool.py): the sidecar's own git directory for it, outside `path`,
    # and top-level-relative paths never carried (the runs root). None: a git worktree.
    gitdir: Path | None = None
    excludes: tuple[str, ...] = ()
    git_config: tuple[str, ...] = ()  # ("-c", "core.autocrlf=...", ...) read from the user's repo
    # A pool slot's git directory files as the sidecar wrote them (pool.seal_snapshot), put
    # back before each of its own git calls there (pool.reseal).
    sealed: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def cwd(self) -> Path:
        """Where the agent runs: the scratch counterpart of the user's workspace."""
        return self.path / self.prefix if self.prefix else self.path


def create_scratch(workspace: Path, run_id: str, *, exclude: Collection[Path] = ()) -> Scratch:
    """Make the scratch for `run_id`. `exclude`: untracked paths not to copy (e.g. the runs root)."""
    toplevel = repo_toplevel(workspace)
    if not has_commit(toplevel):
        raise WorkspaceError(NO_COMMITS, category=RunErrorCode.LOCAL_NO_COMMITS)
    prefix = _text(git(["rev-parse", "--show-prefix"], workspace))
    parent = _private_dir(scratch_root()) / workspace_key(toplevel)
    parent.mkdir(mode=0o700, exist_ok=True)
    path = parent / run_id
    if path.exists():
        raise WorkspaceError(f"scratch directory already exists: {path}")
    with worktree_lock(toplevel):
        # Locked, with a reason, so the user's `git worktree prune` leaves it alone and
        # `git worktree list` says whose it is.
        git(["worktree", "add", "--detach", "--quiet", "--lock", "--reason",
             "co-sidecar scratch copy (removed after use)", str(path), "HEAD"], toplevel, scratch=True)  # fmt: skip
    try:
        _carry_over(toplevel, path, [p.resolve() for p in exclude])
        git(["add", "-A"], path, scratch=True)
        git(
            [*BASE_COMMIT, "commit", "-q", "--allow-empty", "--no-verify",
             "-m", "co-sidecar base: HEAD + uncommitted changes"],
            path, scratch=True,
        )  # fmt: skip
        base = _text(git(["rev-parse", "HEAD"], path))
    except BaseException:
        remove_scratch(path, toplevel)
        raise
    return Scratch(path=path, repo=toplevel, prefix=prefix, base=base)


def _carry_over(toplevel: Path, dest: Path, exclude: Sequence[Path]) -> None:
    """Apply the user's tracked changes (staged + unstaged) and copy untracked, non-ignored files."""
    patch = git(
        ["diff", *DIFF_FLAGS, "--no-renames", "--ignore-submodules=all", "--no-relative", "HEAD"],
        toplevel,
    )
    if patch:
        try:
            git(["apply", "--binary", "--whitespace=nowarn", "-"], dest, input=patch, scratch=True)
        except WorkspaceError as exc:
            raise WorkspaceError(
                f"could not carry uncommitted changes into the scratch copy: {exc.message}"
            ) from exc
    listing = git(["ls-files", "--others", "--exclude-standard", "-z"], toplevel)
    for raw in listing.split(b"\0"):
        if not raw or raw.endswith(b"/"):  # "dir/" = a nested repository: not ours to copy
            continue
        rel = os.fsdecode(raw)
        src = toplevel / rel
        if any(src == ex or ex in src.parents for ex in exclude):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.unlink(missing_ok=True)
            os.symlink(os.readlink(src), target)
        elif src.is_file():
            shutil.copy2(src, target)  # copy2 keeps the mode (executable bits)


# The file that marks a directory as a pool slot (local/pool.py), so removal knows its kind.
SLOT_MARK = "co-sidecar-scratch-slot"


def capture_worktree_patch(scratch: Scratch, limit: int | None = None) -> bytes:
    """A worktree scratch's change (`create_scratch`, the canary's) as a binary-safe git patch,
    relative to the user's workspace; PatchTooLarge past `limit` bytes. Pooled scratches:
    `pool.capture_patch`."""
    git(["add", "-A"], scratch.path, scratch=True)
    relative = f"--relative={scratch.prefix}" if scratch.prefix else "--no-relative"
    argv = [*GIT_BASE, *SCRATCH_GIT, "diff", "--cached", *DIFF_FLAGS, "-M", relative, scratch.base, "--"]
    return read_capped(argv, scratch.path, git_env(), limit)


def _force_writable(func: Callable[..., Any], path: str, _exc: Any) -> None:
    # An agent may leave read-only directories behind; make them deletable and retry once.
    try:
        os.chmod(os.path.dirname(path) or ".", 0o700)
        os.chmod(path, 0o700)
        func(path)
    except OSError:
        pass


def remove_scratch(path: Path, repo: Path | None = None) -> None:
    """Remove a scratch worktree (best effort, never raises) and prune its admin entry."""
    for slot in (path, path.parent):
        if (slot / SLOT_MARK).is_file() and not slot.is_symlink():
            # A kept pool slot: its own repository, nothing registered with the user's.
            shutil.rmtree(slot, onerror=_force_writable)
            return
    if repo is None:
        try:
            repo = Path(
                _text(git(["rev-parse", "--path-format=absolute", "--git-common-dir"], path))
            )
        except (WorkspaceError, OSError):
            repo = None  # not a worktree (anymore): just delete the directory
    lock = worktree_lock(repo) if repo is not None else contextlib.nullcontext()
    try:
        with lock:
            if repo is not None:
                with contextlib.suppress(WorkspaceError, OSError):
                    git(["worktree", "remove", "--force", "--force", str(path)], repo, scratch=True)
            if path.is_symlink():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path, onerror=_force_writable)
            if repo is not None:
                git(["worktree", "prune"], repo, scratch=True)
    except (WorkspaceError, OSError):
        if path.exists() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


def sweep_worktrees(
    workspace: Path,
    active: Collection[str] = (),
    known: Collection[str] | None = None,
    unknown_grace_seconds: float = 86_400.0,
) -> list[Path]:
    """Remove this workspace's leftover scratches whose run id is not in `active`; return them.

    With `known` (the run ids this caller has manifests for), a scratch of an unknown run is
    left alone until it is `unknown_grace_seconds` old: it may belong to another server
    working in the same repository.
    """
    try:
        toplevel = repo_toplevel(workspace)
    except WorkspaceError:
        return []
    parent = scratch_root() / workspace_key(toplevel)
    removed: list[Path] = []
    now = time.time()
    if parent.is_dir():
        for child in sorted(parent.iterdir()):
            if known is not None and child.name not in known:
                with contextlib.suppress(OSError):
                    if now - child.stat().st_mtime < unknown_grace_seconds:
                        continue
            if child.name not in active:
                remove_scratch(child, toplevel)
                removed.append(child)
    with contextlib.suppress(WorkspaceError), worktree_lock(toplevel):
        git(["worktree", "prune"], toplevel, scratch=True)
    return removed
