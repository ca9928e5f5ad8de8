"""Unified git patches → per-file changes, stats, safety checks and an LSP WorkspaceEdit.

Each file's extended header is read as git's apply.c reads it (every header line git knows,
renames and copies in all spellings, modes, symlinks, gitlinks; any other line refuses the
patch), so the files shown are the files `git apply` would touch; hunks by a one-pass
parser that refuses anything irregular. This module
also derives safe paths and locates each hunk in the text the client will actually
edit (its open buffer, else the file on disk). A hunk that cannot be located exactly becomes a
Conflict for its file; we never emit an edit we are not sure of.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pygls import uris

from .errors import PatchRefused
from .protocol import Conflict, FileStat

ANNOTATION_ID = "co-sidecar"
GIT_STRATEGY_HINT = 'apply it with strategy "git"'

_FILE_START = re.compile(r"(?m)^(?=diff --git )")
_HUNK_HEADER = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_LONE_CR = re.compile(r"\r(?!\n)")
_SURROGATE = re.compile("[\udc80-\udcff]")
_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
_PLAIN_MODES = {"100644", None}
_KNOWN_MODES = {"100644", "100755", "120000", "160000"}


@dataclass(frozen=True)
class OpenDocument:
    uri: str
    version: int
    text: str


@dataclass
class Block:
    """One run of removed/added lines inside a hunk, between context lines."""

    offset: int  # index into Hunk.source where the removed lines start
    removed: int  # how many source lines it replaces
    added: list[str]  # replacement lines, each with its exact line ending (or none at EOF)


@dataclass
class Hunk:
    source_start: int  # as in the header: 1-based first line, or the line after which to insert
    source: list[str]  # context + removed lines, exact endings
    blocks: list[Block]

    @property
    def target_text(self) -> str:
        return "".join(line for block in self.blocks for line in block.added)


@dataclass
class FileChange:
    """One file of a patch."""

    path: str  # new path (the old one for deletions), POSIX, relative to the workspace
    old_path: str | None  # set for renames and copies
    status: Literal["added", "modified", "deleted", "renamed", "binary"]
    additions: int
    deletions: int
    is_binary: bool
    hunks: list[Hunk] = field(default_factory=list)
    old_mode: str | None = None
    new_mode: str | None = None
    is_copy: bool = False
    is_new: bool = False
    is_deleted: bool = False
    # Why this change cannot be a text edit (symlink, mode change, non-UTF-8), if so.
    unsupported: str | None = None


# --------------------------------------------------------------------------- parsing


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building large acyclic structures.

    A big patch allocates millions of small objects; each allocation burst triggers
    collections that rescan everything that survived, which made time per MB grow with
    the patch. Nothing built here forms cycles, so reference counting frees it all.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_patch(patch: bytes | str) -> list[FileChange]:
    """Parse `git diff --binary -M` output the way `git apply` reads it (apply.c's
    parse_git_diff_header and find_header). Raises PatchRefused for unsafe paths, headers git
    would read differently than we do, and anything else irregular."""
    # surrogateescape keeps non-UTF-8 content lines lossless; such files become conflicts.
    text = patch.decode("utf-8", "surrogateescape") if isinstance(patch, bytes) else patch
    changes: list[FileChange] = []
    with _gc_paused():
        for chunk in _FILE_START.split(text):
            if not chunk:
                continue
            lines = list(io.StringIO(chunk, newline="\n"))  # split on "\n" only, like git
            if chunk.startswith("diff --git "):
                changes.append(_parse_chunk(lines, _SURROGATE.search(chunk) is not None))
            else:
                # A preamble (mail header, commit message): git skips it unless it holds a
                # patch of its own, which we do not show, so refuse it.
                _check_junk(lines, 0, "the text before the first 'diff --git'")
    return changes


@dataclass
class _Header:
    """What git's header parser (apply.c) derives from a file's extended header lines."""

    def_name: str | None
    old: str | None = None
    new: str | None = None
    is_new: bool = False
    is_deleted: bool = False
    is_rename: bool = False
    is_copy: bool = False
    old_mode: str | None = None
    new_mode: str | None = None
    binary: bool = False


def _parse_chunk(lines: list[str], non_utf8: bool) -> FileChange:
    head = lines[0].rstrip("\n")
    where = repr(head[:200])
    h = _Header(def_name=_git_header_name(head[len("diff --git ") :]))
    i = 1
    while i < len(lines):
        line = lines[i]
        if line.startswith("@@ -"):
            break
        if line.startswith(("GIT binary patch", "Binary files ")):
            h.binary = True
            break
        if not line.endswith("\n"):
            raise PatchRefused(f"malformed patch near {where}: incomplete header line {line[:200]!r}")
        body = line[:-1]
        for prefix, handler in _HEADER_LINES:
            if body.startswith(prefix):
                handler(h, body[len(prefix) :], where)
                break
        else:
            # git ends the header at a line it does not know and reads on past it: whatever
            # followed would be applied or skipped without the user seeing it.
            raise PatchRefused(
                f"refused patch near {where}: header line {body[:200]!r} is not one git's apply "
                "understands the same way"
            )
        if sum((h.is_new, h.is_deleted, h.is_rename, h.is_copy)) > 1:
            raise PatchRefused(f"refused patch near {where}: inconsistent header lines (new, deleted, rename, copy)")
        i += 1
    if h.old is None and h.new is None:
        if h.def_name is None:
            raise PatchRefused(f"malformed patch near {where}: the header names no file")
        h.old = h.new = h.def_name
    if (h.new is None and not h.is_deleted) or (h.old is None and not h.is_new):
        raise PatchRefused(f"malformed patch near {where}: the header lacks a file name")
    for candidate in (h.old, h.new):
        if candidate is not None:
            _refuse_unsafe(candidate)

    hunks: list[Hunk] = []
    if h.binary:
        _check_junk(lines, i + 1, where)  # binary data lines never start a header
    else:
        parsed = _fast_hunks(lines, i)
        if parsed is None:
            raise PatchRefused(f"malformed patch near {where}: a hunk does not match its header")
        hunks, end = parsed
        _check_junk(lines, end, where)
    return _file_change(h, hunks, non_utf8)


def _check_junk(lines: list[str], start: int, where: str) -> None:
    """Lines git skips between patches: refuse any that git would read as a patch or hunk."""
    for j in range(start, len(lines)):
        line = lines[j]
        if line.startswith("@@ -") or (
            line.startswith("--- ") and j + 1 < len(lines) and lines[j + 1].startswith("+++ ")
        ):
            raise PatchRefused(f"malformed patch near {where}: a hunk or file header outside any file ({line[:100]!r})")


def _fast_hunks(lines: list[str], start: int) -> tuple[list[Hunk], int] | None:
    """The hunks of one file from `lines[start:]` and where they end, or None if a hunk is
    shorter or longer than its header says or holds a line git would not accept."""
    hunks: list[Hunk] = []
    last: list[str] | None = None  # the list holding the previous line, for "\ No newline"
    i, n = start, len(lines)
    while i < n:
        line = lines[i]
        if line.startswith("\\ ") and hunks:
            i += 1
            if last and last[-1].endswith("\n"):
                last[-1] = last[-1][:-1]
            continue
        if not line.startswith("@@ -"):
            break
        i += 1
        match = _HUNK_HEADER.match(line)
        if match is None:
            return None
        want_source = 1 if match[2] is None else int(match[2])
        want_target = 1 if match[4] is None else int(match[4])
        source: list[str] = []
        blocks: list[Block] = []
        current: Block | None = None
        last = None
        seen_source = seen_target = 0
        while seen_source < want_source or seen_target < want_target:
            if i >= n:
                return None  # shorter than its header says
            line = lines[i]
            i += 1
            kind = line[:1]
            if kind == " " or line == "\n" or line == "\r\n":
                source.append(line[1:] if kind == " " else line)
                seen_source += 1
                seen_target += 1
                current = None
                last = source
            elif kind == "-":
                if current is None:
                    current = Block(offset=len(source), removed=0, added=[])
                    blocks.append(current)
                source.append(line[1:])
                current.removed += 1
                seen_source += 1
                last = source
            elif kind == "+":
                if current is None:
                    current = Block(offset=len(source), removed=0, added=[])
                    blocks.append(current)
                current.added.append(line[1:])
                seen_target += 1
                last = current.added
            elif kind == "\\":
                if last and last[-1].endswith("\n"):
                    last[-1] = last[-1][:-1]
            else:
                return None
            if seen_source > want_source or seen_target > want_target:
                return None
        if not blocks:
            return None  # git: a hunk that changes nothing is corrupt
        hunks.append(Hunk(source_start=int(match[1]), source=source, blocks=blocks))
    return hunks, i


def _file_change(h: _Header, hunks: list[Hunk], non_utf8: bool) -> FileChange:
    additions = deletions = 0
    for hunk in hunks:
        for block in hunk.blocks:
            additions += len(block.added)
            deletions += block.removed
    is_new, is_deleted, is_copy = h.is_new, h.is_deleted, h.is_copy
    path = h.old if is_deleted else h.new
    assert path is not None
    old = h.old
    renamed = h.is_rename and old != path
    status: Literal["added", "modified", "deleted", "renamed", "binary"]
    if h.binary:
        status = "binary"
    elif is_new or is_copy:
        status = "added"
    elif is_deleted:
        status = "deleted"
    elif renamed:
        status = "renamed"
    else:
        status = "modified"

    old_mode = None if is_new else h.old_mode
    new_mode = None if is_deleted else (h.new_mode or h.old_mode)
    unsupported = None
    if non_utf8:
        unsupported = f"content is not UTF-8 text; {GIT_STRATEGY_HINT}"
    elif "120000" in (old_mode, new_mode):
        unsupported = f"symbolic link; {GIT_STRATEGY_HINT}"
    elif "160000" in (old_mode, new_mode):
        unsupported = f"submodule; {GIT_STRATEGY_HINT}"
    elif is_new and new_mode not in _PLAIN_MODES:
        unsupported = f"new file mode {new_mode} cannot be set by a text edit; {GIT_STRATEGY_HINT}"
    elif not is_new and not is_deleted and old_mode and new_mode and old_mode != new_mode:
        unsupported = (
            f"file mode change {old_mode} -> {new_mode} cannot be made by a text edit; "
            f"{GIT_STRATEGY_HINT}"
        )
    return FileChange(
        path=path,
        old_path=old if (renamed or is_copy) else None,
        status=status,
        additions=0 if h.binary else additions,
        deletions=0 if h.binary else deletions,
        is_binary=h.binary,
        hunks=hunks,
        old_mode=old_mode,
        new_mode=new_mode,
        is_copy=is_copy,
        is_new=is_new,
        is_deleted=is_deleted,
        unsupported=unsupported,
    )


# -- the extended header lines git's apply.c knows (its `optable`), each as git treats it


def _mode(value: str, where: str) -> str:
    mode = value.strip()
    if mode not in _KNOWN_MODES:
        raise PatchRefused(f"refused patch near {where}: unsupported file mode {value[:40]!r}")
    return mode


def _old_name(h: _Header, value: str, where: str) -> None:
    # "--- a/x": the old name, which must agree with one a rename/copy line already gave.
    if h.is_new:
        if value.split("\t")[0] != "/dev/null":
            raise PatchRefused(f"malformed patch near {where}: a new file's old name must be /dev/null")
        return
    name = _dash_name(value, "a/", where)
    if h.old is not None and name != h.old:
        raise PatchRefused(f"refused patch near {where}: '--- {value[:100]}' names another file than the header")
    h.old = name


def _new_name(h: _Header, value: str, where: str) -> None:
    if h.is_deleted:
        if value.split("\t")[0] != "/dev/null":
            raise PatchRefused(f"malformed patch near {where}: a deleted file's new name must be /dev/null")
        return
    name = _dash_name(value, "b/", where)
    if h.new is not None and name != h.new:
        raise PatchRefused(f"refused patch near {where}: '+++ {value[:100]}' names another file than the header")
    h.new = name


def _dash_name(value: str, prefix: str, where: str) -> str:
    end = _closing_quote(value) if value.startswith('"') else None
    name = _unquote(value[: end + 1]) if end is not None else value.split("\t")[0]
    if name == "/dev/null" or not name.startswith(prefix):
        raise PatchRefused(f"malformed patch: cannot read the path from {value[:200]!r} near {where}")
    return name[len(prefix) :]


def _set_old_mode(h: _Header, value: str, where: str) -> None:
    h.old_mode = _mode(value, where)


def _set_new_mode(h: _Header, value: str, where: str) -> None:
    h.new_mode = _mode(value, where)


def _deleted(h: _Header, value: str, where: str) -> None:
    h.is_deleted = True
    h.old = h.def_name  # as git: the name comes from the `diff --git` line
    h.old_mode = _mode(value, where)


def _created(h: _Header, value: str, where: str) -> None:
    h.is_new = True
    h.new = h.def_name
    h.new_mode = _mode(value, where)


def _copy_from(h: _Header, value: str, where: str) -> None:
    h.is_copy = True
    h.old = _whole_name(value, where)


def _copy_to(h: _Header, value: str, where: str) -> None:
    h.is_copy = True
    h.new = _whole_name(value, where)


def _rename_from(h: _Header, value: str, where: str) -> None:
    h.is_rename = True
    h.old = _whole_name(value, where)


def _rename_to(h: _Header, value: str, where: str) -> None:
    h.is_rename = True
    h.new = _whole_name(value, where)


def _whole_name(value: str, where: str) -> str:
    name = _unquote(value)
    if not name:
        raise PatchRefused(f"malformed patch near {where}: an empty file name")
    return name


def _similarity(h: _Header, value: str, where: str) -> None:
    if not re.fullmatch(r"\d{1,3}%", value):
        raise PatchRefused(f"malformed patch near {where}: bad similarity line {value[:40]!r}")


def _index(h: _Header, value: str, where: str) -> None:
    match = re.fullmatch(r"[0-9a-f]{4,64}\.\.[0-9a-f]{4,64}(?: (\S+))?", value)
    if match is None:
        raise PatchRefused(f"malformed patch near {where}: bad index line {value[:80]!r}")
    if match[1]:
        h.old_mode = _mode(match[1], where)  # git: the mode of an unchanged-mode file


_HEADER_LINES: list[tuple[str, Callable[[_Header, str, str], None]]] = [
    ("--- ", _old_name),
    ("+++ ", _new_name),
    ("old mode ", _set_old_mode),
    ("new mode ", _set_new_mode),
    ("deleted file mode ", _deleted),
    ("new file mode ", _created),
    ("copy from ", _copy_from),
    ("copy to ", _copy_to),
    # git reads "rename old/new" exactly like "rename from/to".
    ("rename old ", _rename_from),
    ("rename new ", _rename_to),
    ("rename from ", _rename_from),
    ("rename to ", _rename_to),
    ("similarity index ", _similarity),
    ("dissimilarity index ", _similarity),
    ("index ", _index),
]


def _git_header_name(rest: str) -> str | None:
    """The name on a `diff --git a/X b/X` line when both halves name the same file (git's
    git_header_name), else None: renames and copies name their files in their own lines."""
    if rest.startswith('"'):
        end = _closing_quote(rest)
        if end is None:
            return None
        first, second = _unquote(rest[: end + 1]), rest[end + 1 :]
        if not second.startswith(" "):
            return None
        second = second[1:]
        second = _unquote(second) if second.startswith('"') else second
        a, b = _strip_component(first), _strip_component(second)
        return a if a is not None and a == b else None
    if rest.endswith('"'):
        at = rest.find(' "')
        if at < 0:
            return None
        a, b = _strip_component(rest[:at]), _strip_component(_unquote(rest[at + 1 :]))
        return a if a is not None and a == b else None
    for at, ch in enumerate(rest):
        if ch in " \t":
            a, b = _strip_component(rest[:at]), _strip_component(rest[at + 1 :])
            if a is not None and a == b:
                return a
    return None


def _closing_quote(text: str) -> int | None:
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return None


def _strip_component(name: str) -> str | None:
    slash = name.find("/")
    return name[slash + 1 :] if slash > 0 else None


def _unquote(name: str) -> str:
    """Undo git's C-style path quoting ("a/\\303\\251.txt")."""
    if not (len(name) >= 2 and name.startswith('"') and name.endswith('"')):
        return name
    body = name[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8", errors="surrogateescape")
            i += 1
            continue
        nxt = body[i + 1 : i + 2]
        if nxt in _C_ESCAPES:
            out.append(_C_ESCAPES[nxt])
            i += 2
        elif re.fullmatch(r"[0-7]{3}", body[i + 1 : i + 4]):
            out.append(int(body[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        else:
            raise PatchRefused(f"malformed quoted path {name!r}")
    return out.decode("utf-8", errors="surrogateescape")


# Code points HFS+ ignores in names, so ".g\u200cit" is ".git" there (git's is_hfs_dotgit).
_HFS_IGNORABLE = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
# NTFS 8.3 short names of .git, .gitmodules, .gitattributes, .gitignore and .mailmap (git's
# is_ntfs_dotgit / is_ntfs_dot_generic: the truncated name and the hashed one).
_SHORT_NAME = re.compile(r"(?:git|gitmod|gi7eba|gitatt|gi7d29|gitign|gi250a|mailma|maba30)~[0-9]+")
_GIT_FILES = {".gitmodules", ".gitattributes", ".gitignore", ".mailmap"}


def _refuse_unsafe(path: str) -> None:
    """Refuse names git refuses on any platform (core.protectNTFS and core.protectHFS)."""
    if "\0" in path:
        raise PatchRefused(f"refused path {path!r}: contains a NUL byte")
    if not path or path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        raise PatchRefused(f"refused path {path!r}: absolute path")
    if "\\" in path:
        raise PatchRefused(f"refused path {path!r}: a backslash is a directory separator on Windows")
    for part in path.split("/"):
        if part == "..":
            raise PatchRefused(f"refused path {path!r}: '..' segment leaves the workspace")
        if part in ("", "."):
            raise PatchRefused(f"refused path {path!r}: empty or '.' segment")
        plain = _HFS_IGNORABLE.sub("", part).split(":")[0].rstrip(". ").lower()
        if plain == ".git" or _SHORT_NAME.fullmatch(plain):
            raise PatchRefused(f"refused path {path!r}: writes inside a .git directory (or a name NTFS/HFS reads as .git)")
        if plain in _GIT_FILES and part != plain:
            raise PatchRefused(f"refused path {path!r}: a name NTFS/HFS reads as {plain}")
        if part[-1] in ". ":
            raise PatchRefused(f"refused path {path!r}: ends in a dot or space (Windows drops them)")
        if _HFS_IGNORABLE.search(part):
            raise PatchRefused(f"refused path {path!r}: holds characters HFS+ ignores in names")


def check_paths(
    changes: list[FileChange],
    workspace: Path,
    runs_root: Path | None = None,
) -> list[Conflict]:
    """Refuse a patch that would write, delete or rename anything that resolves outside the
    workspace, inside .git or under the runs root, through symlinks already in the workspace
    or ones the patch itself creates. Returns the symlinks the patch creates whose target
    leaves the workspace: allowed only when the user says so for that apply."""
    root = workspace.resolve()
    view = _AfterPatch(root, changes)
    forbidden = [root / ".git"]
    if runs_root is not None:
        forbidden.append(runs_root.resolve() if runs_root.exists() else runs_root.absolute())
    external: list[Conflict] = []

    def inside(path: str, where: Path, what: str) -> None:
        if not where.is_relative_to(root):
            raise PatchRefused(
                f"refused path {path!r}: {what} outside the workspace through a symlink (to {str(where)!r})"
            )
        for bad in forbidden:
            if where.is_relative_to(bad):
                raise PatchRefused(f"refused path {path!r}: {what} inside {str(bad)!r} (via a symlink)")
        rel = where.relative_to(root).parts
        if any(_HFS_IGNORABLE.sub("", p).rstrip(". ").lower() == ".git" for p in rel):
            raise PatchRefused(f"refused path {path!r}: {what} inside a .git directory (via a symlink)")

    for change in changes:
        is_link = change.new_mode == "120000"
        for path in (change.path, change.old_path):
            if path is None:
                continue
            operates_on_link = "120000" in (change.old_mode, change.new_mode) or change.is_deleted
            # Where git writes or removes it: its directory as it is now and as the patch leaves
            # it, and (for a regular file) the file itself through a symlink it may be now.
            for before in (True, False):
                where = view.resolve(path, follow_last=not operates_on_link, before=before)
                inside(path, where, "resolves")
        if is_link and not change.is_deleted:
            name = change.path.rsplit("/", 1)[-1].lower()
            if name in _GIT_FILES:
                raise PatchRefused(f"refused path {change.path!r}: {name} as a symbolic link")
            target = view.resolve(change.path, follow_last=True, before=False)
            try:
                inside(change.path, target, "is a symlink that points")
            except PatchRefused as exc:
                if target.is_relative_to(root):
                    raise  # into .git or the runs root: never
                external.append(Conflict(path=change.path, reason=f"symlink to {str(target)!r}, outside the workspace ({exc.message})"))
    return external


class _AfterPatch:
    """The workspace as the patch leaves it, for resolving paths: the files and symlinks the
    patch creates, renames or deletes over what is on disk."""

    def __init__(self, root: Path, changes: list[FileChange]):
        self.root = root
        self.entries: dict[str, str | None] = {}  # path -> symlink target, or None (no link)
        self._dirs: dict[tuple[str, bool], Path] = {}  # resolved directories: patches share them
        self._prefix = str(root).rstrip("/") + "/"
        for change in changes:
            if change.is_deleted or (change.old_path and not change.is_copy):
                self.entries[change.old_path or change.path] = None
            if not change.is_deleted:
                self.entries[change.path] = _link_target(change, root) if change.new_mode == "120000" else None

    def readlink(self, path: Path, before: bool) -> str | None:
        if not before:
            text = str(path)
            if text.startswith(self._prefix) and text[len(self._prefix) :] in self.entries:
                return self.entries[text[len(self._prefix) :]]
        try:
            return os.readlink(path)
        except OSError:  # not a symlink, or missing
            return None

    def resolve(self, rel: str, *, follow_last: bool, before: bool) -> Path:
        """`root/rel` with every symlink on the way followed (like realpath); the last component
        too with `follow_last`. `before`: as the workspace is now, else as the patch leaves it."""
        parent, _, name = rel.rpartition("/")
        return self._walk(self._dir(parent, before) if parent else self.root, [name], rel, follow_last, before)

    def _dir(self, rel: str, before: bool) -> Path:
        key = (rel, before)
        found = self._dirs.get(key)
        if found is None:
            parent, _, name = rel.rpartition("/")
            base = self._dir(parent, before) if parent else self.root
            found = self._dirs[key] = self._walk(base, [name], rel, True, before)
        return found

    def _walk(self, current: Path, todo: list[str], rel: str, follow_last: bool, before: bool) -> Path:
        hops = 0
        while todo:
            name = todo.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                current = current.parent
                continue
            candidate = current / name
            if not todo and not follow_last:
                return candidate
            target = self.readlink(candidate, before)
            if target is None:
                current = candidate
                continue
            hops += 1
            if hops > 40:
                raise PatchRefused(f"refused path {rel!r}: too many levels of symbolic links")
            if target.startswith("/"):
                current = Path("/")
            todo = target.split("/") + todo
        return current


def _link_target(change: FileChange, root: Path) -> str:
    """The target a symlink has after the patch: its hunks applied to its current target."""
    old = ""
    if not change.is_new:
        source = root / (change.old_path or change.path)
        try:
            old = os.readlink(source) if source.is_symlink() else source.read_text("utf-8", "surrogateescape")
        except OSError:
            old = ""
    if not change.hunks:
        return old
    try:
        lines = split_lines(old)
        return apply_replacements(lines, locate(change.hunks, lines))
    except _Conflict:
        return "".join(h.target_text for h in change.hunks)


def file_stats(changes: Iterable[FileChange]) -> list[FileStat]:
    return [
        FileStat(
            path=c.path,
            old_path=c.old_path,
            status=c.status,
            additions=c.additions,
            deletions=c.deletions,
        )
        for c in changes
    ]


def totals(changes: Iterable[FileChange]) -> tuple[int, int]:
    additions = deletions = 0
    for change in changes:
        additions += change.additions
        deletions += change.deletions
    return additions, deletions


# --------------------------------------------------------------------------- locating hunks


class _Conflict(Exception):
    """Internal: this file cannot be edited; the message is the Conflict reason."""


def split_lines(text: str) -> list[str]:
    """Split like git does: on "\\n" only, keeping endings (a lone "\\r" is not a break)."""
    lines = text.split("\n")
    last = lines.pop()
    out = [line + "\n" for line in lines]
    if last:
        out.append(last)
    return out


def locate(hunks: list[Hunk], lines: list[str]) -> list[tuple[int, int, str]]:
    """Replacements (start line, end line, new text) against `lines`, in order.

    Each hunk is tried at its stated line (shifted by the offset found for the hunk
    before it, as `patch` does), then at the unique exact match of its source lines.
    """
    index: dict[str, list[int]] | None = None
    replacements: list[tuple[int, int, str]] = []
    carry = 0
    floor = 0  # hunks apply in order and must not overlap
    for number, hunk in enumerate(hunks, 1):
        size = len(hunk.source)
        stated = hunk.source_start - 1 if size else hunk.source_start
        at: int | None = None
        if size == 0:
            # Pure insertion (empty base or -U0): nothing to verify against but the position.
            if stated == 0 and len(hunks) == 1 and lines:
                raise _Conflict("the patch expects an empty file, but it has content now")
            at = stated + carry
            if not floor <= at <= len(lines):
                raise _Conflict(
                    f"hunk {number} (line {hunk.source_start}) is past the end of the file"
                )
        else:
            for guess in dict.fromkeys((stated + carry, stated)):
                if floor <= guess and lines[guess : guess + size] == hunk.source:
                    at = guess
                    break
            if at is None:
                if index is None:
                    index = {}
                    for i, line in enumerate(lines):
                        index.setdefault(line, []).append(i)
                at = _unique_match(hunk.source, lines, index, floor)
                if at is None:
                    raise _Conflict(
                        f"hunk {number} (line {hunk.source_start}) does not match the current text "
                        "exactly at one place"
                    )
        carry = at - stated
        floor = at + size
        for block in hunk.blocks:
            start = at + block.offset
            replacements.append((start, start + block.removed, "".join(block.added)))
    return replacements


def _unique_match(
    source: list[str], lines: list[str], index: dict[str, list[int]], floor: int
) -> int | None:
    # Anchor on the rarest source line so repeated lines (blank, "}") don't make this quadratic.
    anchor = min(range(len(source)), key=lambda k: len(index.get(source[k], ())))
    found: int | None = None
    for i in index.get(source[anchor], ()):
        start = i - anchor
        if start >= floor and lines[start : start + len(source)] == source:
            if found is not None:
                return None  # ambiguous
            found = start
    return found


def apply_replacements(lines: list[str], replacements: list[tuple[int, int, str]]) -> str:
    out: list[str] = []
    pos = 0
    for start, end, new_text in replacements:
        out.extend(lines[pos:start])
        out.append(new_text)
        pos = end
    out.extend(lines[pos:])
    return "".join(out)


# --------------------------------------------------------------------------- positions


def utf16_len(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


class _Positions:
    """Git line index → LSP Position. LSP also breaks lines at a lone "\\r"; git does not."""

    def __init__(self, text: str, lines: list[str]):
        self.text = text
        self.count = len(lines)
        self.shift: list[int] | None = None
        if _LONE_CR.search(text):
            shift, total = [], 0
            for line in lines:
                shift.append(total)
                total += len(_LONE_CR.findall(line))
            shift.append(total)
            self.shift = shift

    def at(self, line: int) -> dict[str, int]:
        if line < self.count and self.shift is None:
            return {"line": line, "character": 0}
        if line >= self.count and self.text and not self.text.endswith("\n"):
            # End of a file without a final newline: the end of its last LSP line.
            last_break = max(self.text.rfind("\n"), self.text.rfind("\r"))
            lsp_line = self.text.count("\n") + len(_LONE_CR.findall(self.text))
            return {"line": lsp_line, "character": utf16_len(self.text[last_break + 1 :])}
        return {"line": line + (self.shift[line] if self.shift else 0), "character": 0}


# --------------------------------------------------------------------------- WorkspaceEdit


def _canonical_uri(uri: str) -> str:
    try:
        path = uris.to_fs_path(uri)
    except Exception:  # noqa: BLE001 - an odd client URI just won't match anything
        return uri
    return Path(os.path.normpath(path)).as_uri() if path else uri


def build_workspace_edit(
    changes: list[FileChange],
    workspace: Path,
    open_documents: Mapping[str, OpenDocument],
    label: str,
) -> tuple[dict[str, Any], list[Conflict]]:
    """The WorkspaceEdit (LSP wire shape) that makes `changes`, and the files it could not edit.

    Call `parse_patch` and `check_paths` first. Every change carries the one
    confirmation-requiring annotation so the client shows a preview.
    """
    root = workspace.absolute()
    docs: dict[str, OpenDocument] = {}
    for key, doc in open_documents.items():
        docs[_canonical_uri(key)] = doc
        docs.setdefault(_canonical_uri(doc.uri), doc)
    builder = _EditBuilder(root, docs)
    document_changes: list[dict[str, Any]] = []
    conflicts: list[Conflict] = []
    with _gc_paused():
        for change in changes:
            try:
                document_changes.extend(builder.file_edits(change))
            except _Conflict as exc:
                conflicts.append(Conflict(path=change.path, reason=str(exc)))
    additions, deletions = totals(changes)
    edit = {
        "documentChanges": document_changes,
        "changeAnnotations": {
            ANNOTATION_ID: {
                "label": label,
                "needsConfirmation": True,
                "description": f"{len(changes)} file(s), +{additions} -{deletions}",
            }
        },
    }
    return edit, conflicts


class _EditBuilder:
    def __init__(self, root: Path, docs: Mapping[str, OpenDocument]):
        self.root = root
        self.docs = docs

    def uri(self, path: str) -> str:
        return (self.root / path).as_uri()

    def base(self, path: str) -> tuple[str, int | None]:
        """The text the client will edit (its open buffer, else disk) and that buffer's version."""
        doc = self.docs.get(self.uri(path))
        if doc is not None:
            return doc.text, doc.version
        file = self.root / path
        if not file.is_file():
            raise _Conflict(f"{path} does not exist in the workspace")
        try:
            return file.read_bytes().decode("utf-8"), None
        except UnicodeDecodeError:
            raise _Conflict(f"{path} is not UTF-8 text; {GIT_STRATEGY_HINT}") from None

    def exists(self, path: str) -> bool:
        return self.uri(path) in self.docs or os.path.lexists(self.root / path)

    def file_edits(self, change: FileChange) -> list[dict[str, Any]]:
        if change.is_binary:
            raise _Conflict(f"binary file cannot be applied as a text edit; {GIT_STRATEGY_HINT}")
        if change.unsupported:
            raise _Conflict(change.unsupported)
        if change.is_new or change.is_copy:
            return self.added(change)
        if change.is_deleted:
            return self.deleted(change)
        if change.old_path is not None:
            return self.renamed(change)
        if not change.hunks:
            return []
        text, version = self.base(change.path)
        return [self.text_edit(change.path, version, text, change.hunks)]

    def text_edit(
        self, path: str, version: int | None, text: str, hunks: list[Hunk]
    ) -> dict[str, Any]:
        lines = split_lines(text)
        positions = _Positions(text, lines)
        edits = [
            {
                "range": {"start": positions.at(start), "end": positions.at(end)},
                "newText": new_text,
                "annotationId": ANNOTATION_ID,
            }
            for start, end, new_text in locate(hunks, lines)
        ]
        return {"textDocument": {"uri": self.uri(path), "version": version}, "edits": edits}

    def added(self, change: FileChange) -> list[dict[str, Any]]:
        if change.is_copy:
            assert change.old_path is not None
            source, _ = self.base(change.old_path)
            content = apply_replacements(
                split_lines(source), locate(change.hunks, split_lines(source))
            )
        else:
            content = "".join(h.target_text for h in change.hunks)
        if self.exists(change.path):
            try:
                current, _ = self.base(change.path)
            except _Conflict:
                current = None
            if current == content:
                return []  # already there: creating it again would only fail
            raise _Conflict(f"{change.path} already exists with different content")
        uri = self.uri(change.path)
        ops: list[dict[str, Any]] = [
            {
                "kind": "create",
                "uri": uri,
                "options": {"overwrite": False, "ignoreIfExists": False},
                "annotationId": ANNOTATION_ID,
            }
        ]
        if content:
            ops.append(
                {
                    "textDocument": {"uri": uri, "version": None},
                    "edits": [
                        {
                            "range": {
                                "start": {"line": 0, "character": 0},
                                "end": {"line": 0, "character": 0},
                            },
                            "newText": content,
                            "annotationId": ANNOTATION_ID,
                        }
                    ],
                }
            )
        return ops

    def deleted(self, change: FileChange) -> list[dict[str, Any]]:
        text, _ = self.base(change.path)
        expected = "".join(line for h in change.hunks for line in h.source)
        if text != expected:
            raise _Conflict(f"{change.path} changed since the patch was made; not deleting it")
        return [
            {
                "kind": "delete",
                "uri": self.uri(change.path),
                "options": {"recursive": False, "ignoreIfNotExists": False},
                "annotationId": ANNOTATION_ID,
            }
        ]

    def renamed(self, change: FileChange) -> list[dict[str, Any]]:
        assert change.old_path is not None
        if not self.exists(change.old_path):
            raise _Conflict(f"rename source {change.old_path} does not exist in the workspace")
        if self.exists(change.path):
            raise _Conflict(f"rename target {change.path} already exists")
        ops: list[dict[str, Any]] = [
            {
                "kind": "rename",
                "oldUri": self.uri(change.old_path),
                "newUri": self.uri(change.path),
                "options": {"overwrite": False, "ignoreIfExists": False},
                "annotationId": ANNOTATION_ID,
            }
        ]
        if change.hunks:
            # Computed from the old file's text; after the rename it lives at the new uri.
            text, _ = self.base(change.old_path)
            ops.append(self.text_edit(change.path, None, text, change.hunks))
        return ops
