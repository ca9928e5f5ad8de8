"""A small per-repository pool of sealed scratch checkouts, reused and reset incrementally.

A slot is a directory under `<scratch root>/pool/<repo key>/<slot>/`:

- `work/`: the checkout the agent runs in, with its own throwaway repository `work/.git`
  (rebuilt for every run: HEAD at the base commit, an index, objects borrowed read-only
  from the user's store and the slot's store through `objects/info/alternates`). Whatever git
  commands the agent runs (branch, tag, stash, config, hooks, replacing `.git`) change only
  that repository.
- `git/`: the sidecar's own git directory for the slot (index, base commits, captured blobs),
  outside `work/`. Every sidecar call on the slot names it with GIT_DIR/GIT_WORK_TREE and
  ignores system/global config, hooks and attribute files, so nothing the agent planted runs.
- `lock` (flock: held while a run or its clean-up uses the slot), `meta.json`.

The base commit (HEAD + the user's staged, unstaged and untracked non-ignored files) is
built from a copy of the user's index into the slot's store: the user's index, refs and
object store are only read. Moving the slot to a new base touches only the paths that differ
(`git read-tree -m -u`). After a run is reported, the slot is reset to its base and every file
the agent left (untracked, ignored, nested repositories, modes) is removed, in the background.
Nothing is registered in the user's repository.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import RunErrorCode, WorkspaceError
from ..gitcmd import git_env, run_git
from .scratch import (
    BASE_COMMIT,
    DIFF_FLAGS,
    NO_COMMITS,
    SLOT_MARK,
    Scratch,
    _force_writable,
    _private_dir,
    _text,
    capture_worktree_patch,
    git,
    has_commit,
    read_capped,
    repo_toplevel,
    scratch_root,
    sweep_worktrees,
    workspace_key,
)

log = logging.getLogger(__name__)

DEFAULT_SIZE = 2
# A slot is rebuilt after this many runs: its private object store only grows.
MAX_USES = 200
# Directories as git checks them out: 0777 less the umask (read once, at import).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
DIR_MODE = 0o777 & ~_UMASK
# Beyond this many changed paths a slot is switched with `read-tree -m -u` (one pass).
SWITCH_MAX_PATHS = 2000
# How long a launch waits for a slot whose previous run is being cleaned up, before making one.
CLEANING_WAIT_S = 30.0
BASE_MESSAGE = "co-sidecar base: HEAD + uncommitted changes"

# Every sidecar git call on a slot: nothing from the slot's work tree, the user's global or
# system config, or a hooks directory may run code or change what is read.
SEALED = [
    "git", "-c", "core.quotepath=off",
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.attributesFile=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.untrackedCache=false",
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
    "-c", "advice.addEmbeddedRepo=false",
    "-c", "diff.external=",
    "-c", "checkout.workers=4",  # the checkout waits on the disk more than on a core
]  # fmt: skip
# User settings that decide what a file's content is or which files are ignored, copied from
# the user's repository (read there with the user's config) into the sealed calls.
CARRIED_CONFIG = ("core.autocrlf", "core.eol", "core.safecrlf", "core.filemode", "core.symlinks",
                  "core.ignorecase", "core.precomposeunicode", "core.excludesfile")  # fmt: skip


# The files of a slot's git directory that the sidecar writes. An agent without a sandbox runs
# as the user and can write there too (its own .git borrows the slot's objects by path): what
# the sidecar's git would read from them (a filter or textconv in `config`, another HEAD or
# object store) is put back as the sidecar wrote it before each of its own calls, and files it
# never writes that would redirect or configure git are removed (`reseal`).
SEALED_FILES = ("config", "HEAD", "objects/info/alternates", "info/exclude", "shallow")
FOREIGN_FILES = ("commondir", "config.worktree", "gitdir", "info/attributes", "info/grafts",
                 "objects/info/http-alternates")  # fmt: skip

Sealed = tuple[tuple[str, bytes | None], ...]


def seal_snapshot(gitdir: Path) -> Sealed:
    """What the sidecar wrote in a slot's git directory, taken before the agent starts."""
    out: list[tuple[str, bytes | None]] = []
    for name in SEALED_FILES:
        path = gitdir / name
        out.append((name, path.read_bytes() if path.is_file() and not path.is_symlink() else None))
    return tuple(out)


def reseal(gitdir: Path, sealed: Sealed) -> list[str]:
    """Put the slot's git directory back as `seal_snapshot` found it; the names changed."""
    changed: list[str] = []
    for name, content in sealed:
        path = gitdir / name
        same = (
            content is not None and path.is_file() and not path.is_symlink() and path.read_bytes() == content
        ) or (content is None and not os.path.lexists(path))
        if same:
            continue
        changed.append(name)
        _remove_path(path)
        if content is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    for name in FOREIGN_FILES:
        path = gitdir / name
        if os.path.lexists(path):
            changed.append(name)
            _remove_path(path)
    if changed:
        log.warning("the agent changed the scratch's git directory (%s): restored", ", ".join(changed))
    return changed


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        _rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def sealed_env(gitdir: Path, work: Path) -> dict[str, str]:
    env = git_env()
    env.update(
        GIT_DIR=str(gitdir),
        GIT_WORK_TREE=str(work),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_ATTR_NOSYSTEM="1",
        GIT_OPTIONAL_LOCKS="1",
    )
    return env


def _run(argv: Sequence[str], cwd: Path, env: dict[str, str], input: bytes | None = None) -> bytes:
    try:
        done = run_git(list(argv)[1:], cwd, env=env, input=input, timeout=None, git=argv[0])
    except FileNotFoundError as exc:
        raise WorkspaceError("git not found on PATH", category=RunErrorCode.LOCAL_GIT_MISSING) from exc
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip()
        raise WorkspaceError(f"git {_verb(argv)} failed ({done.returncode}): {err}")
    return done.stdout


def _verb(argv: Sequence[str]) -> str:
    it = iter(argv[1:])
    for arg in it:
        if arg == "-c":
            next(it, None)
        elif not arg.startswith("-"):
            return arg
    return "?"


@dataclass
class RepoInfo:
    """What a slot needs to know about the user's repository, read there in one git call."""

    toplevel: Path
    prefix: str
    objects: Path
    index: Path
    shallow: Path
    exclude_file: Path
    object_format: str
    head: str  # the user's HEAD commit
    config: list[str] = field(default_factory=list)  # ["-c", "k=v", ...] of CARRIED_CONFIG

    @classmethod
    def read(cls, workspace: Path) -> RepoInfo:
        toplevel = repo_toplevel(workspace)
        try:
            out = git(
                ["rev-parse", "--path-format=absolute", "--show-prefix",
                 "--git-path", "objects", "--git-path", "index", "--git-path", "shallow",
                 "--git-path", "info/exclude", "--show-object-format", "--verify", "HEAD^{commit}"],
                workspace,
            ).decode("utf-8", "surrogateescape")
        except WorkspaceError:
            if not has_commit(toplevel):
                raise WorkspaceError(NO_COMMITS, category=RunErrorCode.LOCAL_NO_COMMITS) from None
            raise
        prefix, objects, index, shallow, exclude_file, fmt, head = out.split("\n")[:7]
        carried: list[str] = []
        with contextlib.suppress(WorkspaceError):
            pattern = "^(" + "|".join(k.replace(".", r"\.") for k in CARRIED_CONFIG) + ")$"
            raw = git(["config", "--null", "--get-regexp", pattern], toplevel)
            for item in raw.split(b"\0"):
                key, _, value = os.fsdecode(item).partition("\n")
                if key:
                    if key == "core.excludesfile":
                        value = os.path.expanduser(value)
                    carried += ["-c", f"{key}={value}"]
        return cls(
            toplevel, prefix, Path(objects), Path(index), Path(shallow), Path(exclude_file),
            fmt or "sha1", head, carried,
        )  # fmt: skip


@dataclass
class Slot:
    dir: Path

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def gitdir(self) -> Path:
        return self.dir / "git"

    @property
    def meta_path(self) -> Path:
        return self.dir / "meta.json"

    def meta(self) -> dict[str, Any]:
        try:
            data = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_meta(self, **changes: Any) -> None:
        data = self.meta() | changes
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.meta_path)


def pools_root() -> Path:
    return scratch_root() / "pool"


def pool_dir(toplevel: Path) -> Path:
    return pools_root() / workspace_key(toplevel)


@contextlib.contextmanager
def _flock(path: Path, blocking: bool = True) -> Iterator[IO[str] | None]:
    handle = open(path, "a")  # noqa: SIM115 - closed below; closing releases the lock
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        yield handle
    finally:
        handle.close()


def _try_lock(path: Path) -> IO[str] | None:
    handle = open(path, "a")  # noqa: SIM115 - owned by the lease
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=_force_writable)


@dataclass
class Lease:
    """One run's hold on a slot: its Scratch, and the lock that keeps others out until released."""

    slot: Slot
    scratch: Scratch
    repo: RepoInfo
    excludes: list[str]  # top-level-relative paths never carried (the runs root)
    handle: IO[str] | None
    pool_size: int
    cold: bool
    run_id: str

    def git(self, args: Sequence[str], input: bytes | None = None) -> bytes:
        argv = [*SEALED, *self.repo.config, *args]
        return _run(argv, self.slot.work, sealed_env(self.slot.gitdir, self.slot.work), input)

    def release(self) -> None:
        """Reset the slot to its base, drop everything the agent left, return it to the pool."""
        try:
            try:
                self.slot.write_meta(state="cleaning")
                reseal(self.slot.gitdir, self.scratch.sealed)  # a smudge filter would run in the reset
                _clean(self.slot, self.git, self.scratch.base)
                self.slot.write_meta(state="clean", used=time.time())
            except (WorkspaceError, OSError):
                _discard(self.slot)
        finally:
            self._unlock()
        evict(self.repo.toplevel, self.pool_size)

    def detach(self) -> Path:
        """Keep this scratch out of the pool (`local.keepScratch`): it moves beside the legacy
        per-run scratches, where the start-up sweep removes it once its run is gone."""
        dest = _private_dir(scratch_root()) / workspace_key(self.repo.toplevel) / self.run_id
        dest.parent.mkdir(mode=0o700, exist_ok=True)
        try:
            os.rename(self.slot.dir, dest)
        finally:
            self._unlock()
        return dest / "work"

    def _unlock(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _clean(slot: Slot, run: Any, base: str) -> None:
    """Make `slot.work` exactly `base` again: tracked files, modes, and nothing else."""
    work = slot.work
    info = work.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise WorkspaceError("scratch work tree was replaced")
    os.chmod(work, 0o700)
    (slot.gitdir / "index.lock").unlink(missing_ok=True)
    _rmtree(work / ".git")
    _scrub(work)
    run(["reset", "-q", "--hard", base])
    run(["clean", "-q", "-ffdx"])


def _scrub(work: Path) -> None:
    """Remove every `.git` below the top (git's own walks never look inside one, so `clean`
    would keep a nested repository planted in a tracked directory) and give directories the
    mode git made them with (git tracks no directory modes; a locked one would stop `clean`)."""
    for _ in range(8):  # again after unlocking directories `find` could not enter
        found = _find_strays(work)
        if found is None:
            return _scrub_walk(work)
        changed = False
        for path in found:
            if path.name == ".git":
                _rmtree(path)
            else:
                with contextlib.suppress(OSError):
                    os.chmod(path, DIR_MODE)
                    changed = True
        if not changed:
            return None
    return None


def _find_strays(work: Path) -> list[Path] | None:
    """`.git` entries and directories of another mode, via find(1) (C speed); None without it."""
    argv = ["find", str(work), "-mindepth", "1", "(", "-name", ".git", "-prune", "-print0", ")",
            "-o", "(", "-type", "d", "!", "-perm", f"{DIR_MODE:o}", "-print0", ")"]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, check=False)  # noqa: S603 - argv list
    except OSError:
        return None
    return [Path(os.fsdecode(p)) for p in done.stdout.split(b"\0") if p]


def _scrub_walk(work: Path) -> None:
    stack = [work]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError), os.scandir(current) as entries:
            for entry in entries:
                if entry.name == ".git":
                    _rmtree(Path(entry.path))
                elif entry.is_dir(follow_symlinks=False):
                    if stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) != DIR_MODE:
                        os.chmod(entry.path, DIR_MODE)
                    stack.append(Path(entry.path))


def _write_gitdir(path: Path, alternates: Sequence[str], head: str, repo: RepoInfo) -> None:
    """A minimal repository directory, written directly (no templates, no sample hooks)."""
    for sub in ("objects/info", "refs/heads", "refs/tags", "info"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    version = 1 if repo.object_format != "sha1" else 0
    config = f"[core]\n\trepositoryformatversion = {version}\n\tfilemode = true\n\tbare = false\n"
    if version:
        config += f"[extensions]\n\tobjectformat = {repo.object_format}\n"
    (path / "config").write_text(config)
    (path / "HEAD").write_text(head + "\n")
    (path / "objects" / "info" / "alternates").write_text("".join(a + "\n" for a in alternates))
    for mine, theirs in ((path / "info" / "exclude", repo.exclude_file), (path / "shallow", repo.shallow)):
        _remove_path(mine)  # not left from an earlier run (or planted) when the user has none
        if theirs.is_file():
            shutil.copyfile(theirs, mine)


def _base_commit(repo: RepoInfo, slot: Slot, excludes: Sequence[str]) -> str:
    """Commit HEAD + the user's uncommitted and untracked (non-ignored) files into the slot's
    store, through a copy of the user's index: the user's index and objects are only read."""
    env = git_env()
    index = slot.gitdir / "base-index"
    env.update(
        GIT_INDEX_FILE=str(index),
        GIT_OBJECT_DIRECTORY=str(slot.gitdir / "objects"),
        GIT_ALTERNATE_OBJECT_DIRECTORIES=str(repo.objects),
    )
    top = repo.toplevel
    base = ["git", "-c", "core.quotepath=off", "-c", "advice.addEmbeddedRepo=false",
            "-c", "gc.auto=0", "-c", "maintenance.auto=false"]  # fmt: skip
    try:
        # copy2 keeps the index's mtime: git's racy-clean check compares file times to it.
        shutil.copy2(repo.index, index)
    except FileNotFoundError:
        _run([*base, "read-tree", "HEAD"], top, env)

    def run(args: Sequence[str], input: bytes | None = None) -> bytes:
        return _run([*base, *args], top, env, input)

    try:
        add_all(run, top, excludes)
        tree = _text(run(["write-tree"]))
    except WorkspaceError:
        # An index git cannot use here (e.g. mid-merge oddities): start from HEAD's tree.
        index.unlink(missing_ok=True)
        run(["read-tree", "HEAD"])
        add_all(run, top, excludes)
        tree = _text(run(["write-tree"]))
    env.update(
        GIT_AUTHOR_NAME="co-sidecar", GIT_AUTHOR_EMAIL="co-sidecar@localhost",
        GIT_COMMITTER_NAME="co-sidecar", GIT_COMMITTER_EMAIL="co-sidecar@localhost",
    )  # fmt: skip
    return _text(_run([*base, *BASE_COMMIT, "commit-tree", tree, "-p", "HEAD", "-m", BASE_MESSAGE], top, env))


def _prepare_agent_repo(slot: Slot, base: str, repo: RepoInfo) -> None:
    """A fresh `work/.git` for the agent: HEAD at the base, the slot's index (stat data fresh,
    so the agent's first `git status` does not re-read every file)."""
    agent = slot.work / ".git"
    _rmtree(agent)
    # Relative to work/.git/objects: the slot still works if it is moved whole (keepScratch).
    _write_gitdir(agent, [str(repo.objects), "../../../git/objects"], base, repo)
    shutil.copy2(slot.gitdir / "index", agent / "index")


def _new_slot(parent: Path) -> Slot:
    slot = Slot(parent / uuid.uuid4().hex[:12])
    slot.dir.mkdir(mode=0o700)
    (slot.dir / SLOT_MARK).write_text("a co-sidecar scratch slot; `co-sidecar scratch prune` removes it\n")
    return slot


def acquire(
    workspace: Path, run_id: str, *, exclude: Collection[Path] = (), size: int = DEFAULT_SIZE
) -> Lease:
    """A scratch for `run_id` at the user's current state: a reused slot when one is free."""
    repo = RepoInfo.read(workspace)
    excludes = _relative_excludes(repo.toplevel, exclude)
    _private_dir(scratch_root())
    parent = pool_dir(repo.toplevel)
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    slot, handle = _claim(parent)
    cold = slot is None
    try:
        if slot is not None and handle is not None:
            try:
                base = _reuse(slot, repo, excludes, handle)
            except (WorkspaceError, OSError):
                _discard(slot)
                handle.close()
                slot = None
                cold = True
        if slot is None:
            with _flock(parent / "pool.lock"):
                slot = _new_slot(parent)
                handle = _try_lock(slot.dir / "lock")
            base = _create(slot, repo, excludes)
        assert handle is not None
        slot.write_meta(state="running", run=run_id, used=time.time(), base=base,
                        uses=int(slot.meta().get("uses", 0)) + 1, pid=os.getpid())  # fmt: skip
        (slot.work / repo.prefix).mkdir(parents=True, exist_ok=True)
    except BaseException:
        if slot is not None:
            _discard(slot)
        if handle is not None:
            handle.close()
        raise
    scratch = Scratch(path=slot.work, repo=repo.toplevel, prefix=repo.prefix, base=base,
                      gitdir=slot.gitdir, excludes=tuple(excludes), git_config=tuple(repo.config),
                      sealed=seal_snapshot(slot.gitdir))  # fmt: skip
    return Lease(slot, scratch, repo, excludes, handle, size, cold, run_id)


def _relative_excludes(toplevel: Path, exclude: Collection[Path]) -> list[str]:
    out = []
    for path in exclude:
        with contextlib.suppress(ValueError):
            rel = path.resolve().relative_to(toplevel)
            out.append(rel.as_posix() if str(rel) != "." else ".")
    return out


def _claim(parent: Path) -> tuple[Slot | None, IO[str] | None]:
    """Lock a free slot, most recently used first (its files are the likeliest in the page
    cache). A slot being cleaned up after its run is waited for rather than passed over."""
    with _flock(parent / "pool.lock"):
        slots = _slots(parent)
        slots.sort(key=lambda s: float(s.meta().get("used", 0)), reverse=True)
        cleaning = None
        for slot in slots:
            handle = _try_lock(slot.dir / "lock")
            if handle is not None:
                return slot, handle
            if cleaning is None and slot.meta().get("state") == "cleaning":
                cleaning = slot
    # Poll rather than block: another run may take the slot first, and then this one would
    # wait for that whole run instead of making a new slot.
    deadline = time.monotonic() + CLEANING_WAIT_S
    while cleaning is not None and time.monotonic() < deadline:
        handle = _try_lock(cleaning.dir / "lock")
        if handle is not None:
            if (cleaning.dir / SLOT_MARK).is_file():
                return cleaning, handle
            handle.close()
            break
        if cleaning.meta().get("state") != "cleaning":
            break
        time.sleep(0.02)
    return None, None


def _slots(parent: Path) -> list[Slot]:
    if not parent.is_dir():
        return []
    return [
        Slot(p) for p in parent.iterdir()
        if not p.name.startswith(".") and (p / SLOT_MARK).is_file() and not p.is_symlink()
    ]  # fmt: skip


def _create(slot: Slot, repo: RepoInfo, excludes: Sequence[str]) -> str:
    """A new slot: HEAD checked out while the base commit is made (the two overlap: the
    checkout waits on the disk, the base on a scan of the user's tree), then moved to it."""
    _write_gitdir(slot.gitdir, [str(repo.objects)], repo.head, repo)
    slot.work.mkdir(mode=0o700)
    argv = [*SEALED, *repo.config, "read-tree", "-u", "--reset", repo.head]
    checkout = subprocess.Popen(  # noqa: S603 - argv list, no shell
        argv, cwd=slot.work, env=sealed_env(slot.gitdir, slot.work),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        base = _base_commit(repo, slot, excludes)
    finally:
        _, err = checkout.communicate()
    if checkout.returncode != 0:
        raise WorkspaceError(f"git read-tree failed ({checkout.returncode}): {err.decode('utf-8', 'replace').strip()}")
    run = _slot_runner(slot, repo)
    _switch(slot, run, repo.head, base)
    (slot.gitdir / "HEAD").write_text(base + "\n")
    _prepare_agent_repo(slot, base, repo)
    return base


def _slot_runner(slot: Slot, repo: RepoInfo) -> Any:
    env = sealed_env(slot.gitdir, slot.work)

    def run(args: Sequence[str], input: bytes | None = None) -> bytes:
        return _run([*SEALED, *repo.config, *args], slot.work, env, input)

    return run


def _reuse(slot: Slot, repo: RepoInfo, excludes: Sequence[str], handle: IO[str]) -> str:
    meta = slot.meta()
    if int(meta.get("uses", 0)) >= MAX_USES:
        raise WorkspaceError("slot retired")
    run = _slot_runner(slot, repo)
    old = str(meta.get("base", ""))
    if meta.get("state") != "clean":  # its last run never released it (a crash): clean now,
        # with the git directory as the sidecar writes it (the agent may have changed it)
        _write_gitdir(slot.gitdir, [str(repo.objects)], old, repo)
        reseal(slot.gitdir, seal_snapshot(slot.gitdir))
        _clean(slot, run, old)
    # Same exclude file and shallow list as the user's repository, for this run's base.
    _write_gitdir(slot.gitdir, [str(repo.objects)], old, repo)
    base = _base_commit(repo, slot, excludes)
    _switch(slot, run, old, base)
    (slot.gitdir / "HEAD").write_text(base + "\n")
    _prepare_agent_repo(slot, base, repo)
    return base


def _switch(slot: Slot, run: Any, old: str, new: str) -> None:
    """Move a clean slot from `old` to `new`, writing only the paths that differ.

    `git read-tree -m -u old new` does the same but walks both trees and the whole index
    whatever changed; here the difference comes from `diff-tree` (which skips equal subtrees),
    the index is edited in place and only changed paths are checked out."""
    raw = run(["diff-tree", "-r", "-z", "--no-renames", old, new])
    entries = list(_raw_entries(raw))
    if not entries:
        return
    if len(entries) > SWITCH_MAX_PATHS or any(b"160000" in meta[:2] for meta, _ in entries):
        run(["read-tree", "-m", "-u", old, new])
        return
    zero = "0" * len(entries[0][0][2])
    info, gone, wanted = [], [], []
    for meta, path in entries:
        new_mode, new_sha, status = meta[1].decode(), meta[3].decode(), meta[4][:1]
        if status == b"D":
            info.append(f"0 {zero}\t{path}")
            gone.append(path)
        else:
            info.append(f"{new_mode} {new_sha}\t{path}")
            wanted.append(path)
            if status == b"T":
                gone.append(path)
    run(["update-index", "-z", "--index-info"], input="".join(i + "\0" for i in info).encode())
    for path in sorted(gone, key=lambda p: -p.count("/")):  # files first, then emptied dirs
        target = slot.work / path
        with contextlib.suppress(FileNotFoundError):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        parent = target.parent
        while parent != slot.work and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    if wanted:
        stdin = "".join(p + "\0" for p in wanted).encode()
        run(["checkout-index", "-f", "-u", "-z", "--stdin"], input=stdin)


def capture_patch(scratch: Scratch, limit: int | None = None) -> bytes:
    """The agent's change as a binary-safe git patch, relative to the user's workspace;
    PatchTooLarge once it passes `limit` bytes (diff.hardMaxPatchBytes)."""
    if scratch.gitdir is not None:
        return capture(scratch, limit)
    return capture_worktree_patch(scratch, limit)


def sweep_scratch(
    workspace: Path,
    active: Collection[str] = (),
    known: Collection[str] | None = None,
    unknown_grace_seconds: float = 86_400.0,
) -> list[Path]:
    """At start-up: this workspace's leftover worktree scratches (`scratch.sweep_worktrees`) and
    its pool slots whose run never released them; return what was removed."""
    removed = sweep_worktrees(workspace, active, known, unknown_grace_seconds)
    try:
        toplevel = repo_toplevel(workspace)
    except WorkspaceError:
        return removed
    return removed + sweep(toplevel)


def capture(scratch: Scratch, limit: int | None = None) -> bytes:
    """The agent's change as a git patch relative to the user's workspace, from the sealed
    git directory. Nested repositories the agent made are left out (a patch can only name
    their commit); a symlink pointing out of the workspace is refused; a patch over `limit`
    bytes is refused while it is read (PatchTooLarge), never held whole."""
    assert scratch.gitdir is not None
    reseal(scratch.gitdir, scratch.sealed)
    env = sealed_env(scratch.gitdir, scratch.path)

    def run(args: Sequence[str], input: bytes | None = None) -> bytes:
        return _run([*SEALED, *scratch.git_config, *args], scratch.path, env, input)

    spec = add_all(run, scratch.path, scratch.excludes)
    raw = run(["diff", "--cached", "--raw", "-z", "--no-renames", scratch.base, *spec])
    check_symlinks(scratch, raw)
    relative = f"--relative={scratch.prefix}" if scratch.prefix else "--no-relative"
    argv = [*SEALED, *scratch.git_config, "diff", "--cached", *DIFF_FLAGS, "-M", relative, scratch.base, *spec]
    return read_capped(argv, scratch.path, env, limit)


def add_all(run: Any, root: Path, excludes: Sequence[str]) -> list[str]:
    """`git add -A` of everything but `excludes` and nested repositories; returns the pathspec
    used (for the diffs that follow). A nested repository is left out whether or not it has a
    commit (a patch could only name its commit, not carry its files)."""
    spec = ["--", ".", *(f":(exclude,literal){rel}" for rel in _not_ignored(run, excludes))]
    try:
        out = run(["add", "-A", "--verbose", *spec])
    except WorkspaceError:
        # A nested repository without a commit stops `git add`: find them and leave them out.
        listing = run(["ls-files", "--others", "--directory", "-z", *spec])
        nested = [
            os.fsdecode(p).rstrip("/") for p in listing.split(b"\0")
            if p.endswith(b"/") and (root / os.fsdecode(p) / ".git").exists()
        ]  # fmt: skip
        if not nested:
            raise
        spec += [f":(exclude,literal){rel}" for rel in nested]
        out = run(["add", "-A", "--verbose", *spec])
    # `add 'path'` lines name what was added; a directory among them is a nested repository.
    added = [line[5:-1] for line in os.fsdecode(out).splitlines() if line.startswith("add '")]
    gitlinks = [rel for rel in added if (root / rel).is_dir() and not (root / rel).is_symlink()]
    if gitlinks:
        run(["rm", "--cached", "-q", "-r", "--", *gitlinks])
        spec += [f":(exclude,literal){rel}" for rel in gitlinks]
    return spec


def _not_ignored(run: Any, paths: Sequence[str]) -> list[str]:
    """The paths git would not ignore anyway: an exclude pathspec naming an ignored directory
    makes `git add` fail ("paths are ignored"), and an ignored one needs no exclusion."""
    if not paths:
        return []
    try:
        stdin = "".join(p + "\0" for p in paths).encode()
        ignored = set(os.fsdecode(run(["check-ignore", "-z", "--stdin"], input=stdin)).split("\0"))
    except WorkspaceError:  # exit 1: none of them is ignored
        ignored = set()
    return [p for p in paths if p not in ignored]


def _raw_entries(raw: bytes) -> Iterator[tuple[list[bytes], str]]:
    """(fields of the ":old new sha sha status" part, path) of `git diff --raw -z` output."""
    items = raw.split(b"\0")
    for i in range(0, len(items) - 1, 2):
        yield items[i].split(), os.fsdecode(items[i + 1])


def check_symlinks(scratch: Scratch, raw: bytes) -> None:
    """Every symlink the agent added or changed must resolve (lexically) inside the workspace
    and not into a `.git` directory; the patch would plant it in the user's tree."""
    bad: list[str] = []
    for meta, path in _raw_entries(raw):
        if len(meta) < 5 or meta[1] != b"120000" or meta[4].startswith(b"D"):
            continue
        try:
            target = os.readlink(scratch.path / path)
        except OSError:
            continue
        if not link_stays_inside(path, target, scratch.prefix):
            bad.append(f"{path} -> {target}")
    if bad:
        raise WorkspaceError(
            "the agent's change adds a symlink pointing outside the workspace; not captured: "
            + ", ".join(bad[:5])
        )


def link_stays_inside(path: str, target: str, prefix: str) -> bool:
    """Does a symlink at top-level-relative `path` with `target` stay inside `prefix`?"""
    if os.path.isabs(target) or not target:
        return False
    resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
    parts = resolved.split(os.sep)
    if resolved.startswith("..") or ".git" in parts:
        return False
    return not prefix or (resolved + "/").startswith(prefix)


def evict(toplevel: Path, size: int) -> list[Path]:
    """Remove free slots beyond `size`, least recently used first; return them."""
    parent = pool_dir(toplevel)
    if not parent.is_dir():
        return []
    with _flock(parent / "pool.lock"):
        slots = sorted(_slots(parent), key=lambda s: float(s.meta().get("used", 0)), reverse=True)
        removed = _take_free(parent, slots[max(size, 0) :])
    _empty_trash(parent)
    return removed


def sweep(toplevel: Path) -> list[Path]:
    """At start-up: a free slot whose run never released it (the server died) is removed."""
    parent = pool_dir(toplevel)
    if not parent.is_dir():
        return []
    with _flock(parent / "pool.lock"):
        removed = _take_free(parent, [s for s in _slots(parent) if s.meta().get("state") != "clean"])
    _empty_trash(parent)
    return removed


def _take_free(parent: Path, slots: Sequence[Slot]) -> list[Path]:
    """Move the slots no one holds to the pool's trash (a rename: quick, under the pool lock);
    `_empty_trash` deletes them after the lock is released."""
    taken = []
    for slot in slots:
        with _flock(slot.dir / "lock", blocking=False) as held:
            if held is not None:
                os.rename(slot.dir, parent / f".trash-{slot.dir.name}")
                taken.append(slot.dir)
    return taken


def _discard(slot: Slot) -> None:
    """Take a slot out of the pool now (a rename); the next eviction deletes it."""
    try:
        os.rename(slot.dir, slot.dir.parent / f".trash-{slot.dir.name}")
    except OSError:
        _rmtree(slot.dir)


def _empty_trash(parent: Path) -> None:
    # Also what an earlier process left half-deleted when it exited.
    for trash in parent.glob(".trash-*"):
        _rmtree(trash)


@dataclass(frozen=True)
class PoolSummary:
    repos: int
    slots: int
    busy: int
    bytes: int
    root: Path


def summary(root: Path | None = None) -> PoolSummary:
    """Every repository's pool under the scratch root: slots, busy ones, disk (doctor)."""
    root = root or pools_root()
    repos = slots = busy = size = 0
    if root.is_dir():
        for parent in root.iterdir():
            found = _slots(parent)
            repos += 1 if found else 0
            for slot in found:
                held = _held(slot.dir / "lock")
                if held is None:  # evicted while we looked
                    continue
                slots += 1
                busy += held
                size += _disk(slot.dir)
    return PoolSummary(repos, slots, busy, size, root)


def _held(lock: Path) -> bool | None:
    """Whether someone holds a slot's lock; None when the slot is gone. Opened read-only so a
    look never creates a lock file in a slot that is being removed."""
    try:
        handle = open(lock)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def _disk(path: Path) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        # Exit 1 when a file vanished mid-scan (a slot being reset): its total still stands.
        out = subprocess.run(["du", "-sk", "--", str(path)], capture_output=True, check=False)  # noqa: S603, S607
        return int(out.stdout.split()[0]) * 1024
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in [*files, *_dirs]:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
    return total


def prune(root: Path | None = None) -> list[Path]:
    """Remove every free slot of every repository (`co-sidecar scratch prune`)."""
    root = root or pools_root()
    removed: list[Path] = []
    if root.is_dir():
        for parent in root.iterdir():
            if parent.is_dir() and not parent.is_symlink():
                removed += evict_all(parent)
    return removed


def evict_all(parent: Path) -> list[Path]:
    with _flock(parent / "pool.lock"):
        removed = _take_free(parent, _slots(parent))
    _empty_trash(parent)
    with contextlib.suppress(OSError):
        if not _slots(parent):
            shutil.rmtree(parent)
    return removed


def doctor_line(size: int) -> str:
    s = summary()
    return (
        f"scratch pool: {s.slots} slot(s) ({s.busy} in use) for {s.repos} repositories, "
        f"{s.bytes / 1e6:.0f} MB in {s.root}; up to {size} kept per repository "
        "(local.scratchPool.size); `co-sidecar scratch prune` removes them"
    )


def scratch_command(action: str) -> int:
    """`co-sidecar scratch show|prune`."""
    if action == "prune":
        removed = prune()
        left = summary()
        print(f"removed {len(removed)} scratch slot(s); {left.slots} in use kept")
        return 0
    s = summary()
    print(f"{s.slots} slot(s), {s.busy} in use, {s.repos} repositories, {s.bytes / 1e6:.0f} MB in {s.root}")
    return 0
