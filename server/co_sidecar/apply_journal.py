"""Pre-images of every file an apply touches, kept in the run directory until the apply ends.

`snapshot` runs before the first file is touched; a failed apply (or the next server, after a
crash mid-apply) calls `restore` to put back each file exactly: content, mode, or its absence
(and the directories the apply created for it). `changed` says which files differ from their
pre-image now, for the report after a crash.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from .manifest import atomic_write_bytes

JOURNAL_DIR = "apply-preimages"
JOURNAL_FILE = "journal.json"


@dataclass
class Entry:
    path: str  # relative to the workspace, POSIX
    kind: str  # "file", "link", "missing" or "other" (a directory: never touched by restore)
    mode: int = 0
    blob: str | None = None  # file name of the saved content in the journal directory
    link: str | None = None
    created_dirs: list[str] | None = None  # parent dirs that did not exist, deepest first


def journal_dir(run_dir: Path) -> Path:
    return run_dir / JOURNAL_DIR


def exists(run_dir: Path) -> bool:
    return (journal_dir(run_dir) / JOURNAL_FILE).is_file()


def snapshot(workspace: Path, paths: list[str], run_dir: Path) -> list[Entry]:
    """Save the pre-image of each path (fsynced) before an apply touches any of them."""
    folder = journal_dir(run_dir)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    entries: list[Entry] = []
    for number, rel in enumerate(dict.fromkeys(paths)):
        target = workspace / rel
        try:
            info = target.lstat()
        except FileNotFoundError:
            entries.append(Entry(rel, "missing", created_dirs=_missing_parents(workspace, rel)))
            continue
        if stat.S_ISLNK(info.st_mode):
            entries.append(Entry(rel, "link", link=os.readlink(target)))
        elif stat.S_ISREG(info.st_mode):
            blob = f"{number}.blob"
            atomic_write_bytes(folder / blob, target.read_bytes())
            entries.append(Entry(rel, "file", mode=stat.S_IMODE(info.st_mode), blob=blob))
        else:
            entries.append(Entry(rel, "other"))
    data = json.dumps([asdict(e) for e in entries], indent=1).encode()
    atomic_write_bytes(folder / JOURNAL_FILE, data)
    return entries


def load(run_dir: Path) -> list[Entry]:
    raw = json.loads((journal_dir(run_dir) / JOURNAL_FILE).read_text(encoding="utf-8"))
    return [Entry(**item) for item in raw]


def changed(workspace: Path, run_dir: Path) -> list[str]:
    """The journaled paths whose current state differs from their pre-image."""
    return [e.path for e in load(run_dir) if not _matches(workspace, run_dir, e)]


def restore(workspace: Path, run_dir: Path) -> list[str]:
    """Put every journaled path back as it was; returns the ones that had changed. The journal
    stays until every path is back, so a restore cut short can simply be run again."""
    restored: list[str] = []
    root = workspace.resolve()
    for entry in load(run_dir):
        if _matches(workspace, run_dir, entry):
            continue
        target = workspace / entry.path
        if not target.parent.resolve().is_relative_to(root):
            raise OSError(f"{entry.path}: its directory now resolves outside the workspace; not restoring it")
        if entry.kind == "other":
            continue  # a directory: an apply never replaces one
        _remove(target)
        if entry.kind == "file":
            assert entry.blob is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            # Written in place after the removal above: on a full disk that frees the space.
            with open(target, "wb") as handle:
                handle.write((journal_dir(run_dir) / entry.blob).read_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(target, entry.mode)
        elif entry.kind == "link":
            assert entry.link is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(entry.link, target)
        else:
            for folder in entry.created_dirs or []:
                try:
                    (workspace / folder).rmdir()
                except OSError:
                    break  # not empty (or gone): it holds something else now
        restored.append(entry.path)
    return restored


def clear(run_dir: Path) -> None:
    shutil.rmtree(journal_dir(run_dir), ignore_errors=True)


def _matches(workspace: Path, run_dir: Path, entry: Entry) -> bool:
    target = workspace / entry.path
    try:
        info = target.lstat()
    except FileNotFoundError:
        return entry.kind == "missing" and not any((workspace / d).exists() for d in entry.created_dirs or [])
    if entry.kind == "link":
        return stat.S_ISLNK(info.st_mode) and os.readlink(target) == entry.link
    if entry.kind == "file":
        assert entry.blob is not None
        return (
            stat.S_ISREG(info.st_mode)
            and stat.S_IMODE(info.st_mode) == entry.mode
            and target.read_bytes() == (journal_dir(run_dir) / entry.blob).read_bytes()
        )
    return entry.kind == "other" and not stat.S_ISREG(info.st_mode) and not stat.S_ISLNK(info.st_mode)


def _remove(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        target.rmdir()  # only an empty one: anything in it is not ours to delete


def _missing_parents(workspace: Path, rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    missing: list[str] = []
    for depth in range(len(parts), 0, -1):
        folder = "/".join(parts[:depth])
        if os.path.lexists(workspace / folder):
            break
        missing.append(folder)
    return missing
