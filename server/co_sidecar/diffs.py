"""Unified git patches → per-file changes, stats, safety checks and an LSP WorkspaceEdit.

Each file's header is parsed by `unidiff`; its hunks by a small one-pass parser here
(unidiff's per-line objects made a 20 MB patch take seconds), falling back to unidiff
for the whole file on anything irregular so that errors stay the same. This module
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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pygls import uris
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from .errors import PatchRefused
from .protocol import Conflict, FileStat

ANNOTATION_ID = "co-sidecar"
GIT_STRATEGY_HINT = 'apply it with strategy "git"'

_FILE_START = re.compile(r"(?m)^(?=diff --git )")
_HUNK_HEADER = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_NO_NEWLINE = "\\ No newline at end of file"
_LONE_CR = re.compile(r"\r(?!\n)")
_SURROGATE = re.compile("[\udc80-\udcff]")
_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
_PLAIN_MODES = {"100644", None}


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
    """Parse `git diff --binary -M` output. Raises PatchRefused for unsafe paths or bad text."""
    # surrogateescape keeps non-UTF-8 content lines lossless; such files become conflicts.
    text = patch.decode("utf-8", "surrogateescape") if isinstance(patch, bytes) else patch
    changes: list[FileChange] = []
    with _gc_paused():
        for chunk in _FILE_START.split(text):
            if not chunk.strip():
                continue
            change = _parse_chunk(chunk)
            if change is not None:
                changes.append(change)
    return changes


def _parse_chunk(chunk: str) -> FileChange | None:
    header = chunk.split("\n", 1)[0]
    non_utf8 = _SURROGATE.search(chunk) is not None
    hunks: list[Hunk] | None = None
    source = chunk
    if chunk.startswith("diff --git "):
        lines = list(io.StringIO(chunk, newline="\n"))  # split on "\n" only, like unidiff
        first = next((i for i, line in enumerate(lines) if line.startswith("@@ ")), len(lines))
        hunks = _fast_hunks(lines, first)
        if hunks is not None:
            source = "".join(lines[:first])  # unidiff reads only the header
    try:
        patch_set = PatchSet(source)
    except (UnidiffParseError, ValueError) as exc:
        raise PatchRefused(f"malformed patch near {header[:200]!r}: {exc}") from exc
    if not chunk.startswith("diff --git ") and not patch_set:
        return None  # preamble such as a format-patch mail header
    if not chunk.startswith("diff --git "):
        raise PatchRefused(f"malformed patch: expected a 'diff --git' header, got {header[:200]!r}")
    if len(patch_set) != 1:
        raise PatchRefused(f"malformed patch near {header[:200]!r}: expected one file")
    return _file_change(patch_set[0], header, non_utf8, hunks)


def _fast_hunks(lines: list[str], start: int) -> list[Hunk] | None:
    """The hunks of one file from `lines[start:]`, or None if anything is irregular.

    Mirrors what unidiff + `_convert_hunk` produce for well-formed input; on any line
    it would treat specially (or reject), returns None and the caller uses unidiff.
    """
    hunks: list[Hunk] = []
    last: list[str] | None = None  # the list holding the previous line, for "\ No newline"
    i, n = start, len(lines)
    while i < n:
        line = lines[i]
        i += 1
        if line.startswith("@@ "):
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
            hunks.append(Hunk(source_start=int(match[1]), source=source, blocks=blocks))
        elif line.startswith(_NO_NEWLINE) and hunks:
            if last and last[-1].endswith("\n"):
                last[-1] = last[-1][:-1]
        elif line == "\n" and hunks:
            continue  # a blank line after the last hunk
        else:
            return None
    return hunks


def _file_change(
    patched: Any, header: str, non_utf8: bool, parsed: list[Hunk] | None = None
) -> FileChange:
    info = list(patched.patch_info or [])
    mode_changed = any(line.startswith("old mode ") for line in info)
    old = _info_path(info, "rename from ") or _info_path(info, "copy from ")
    new = _info_path(info, "rename to ") or _info_path(info, "copy to ")
    is_copy = any(line.startswith("copy from ") for line in info)
    source = patched.source_file
    target = patched.target_file
    is_new = source == "/dev/null"
    is_deleted = target == "/dev/null"
    if old is None:
        old = None if is_new else _header_path(source, header)
    if new is None:
        new = old if is_deleted else _header_path(target, header)
    assert new is not None
    for candidate in {new, old} - {None}:
        _refuse_unsafe(str(candidate))

    hunks = parsed if parsed is not None else [_convert_hunk(h) for h in patched]
    additions = deletions = 0
    for hunk in hunks:
        for block in hunk.blocks:
            additions += len(block.added)
            deletions += block.removed

    renamed = old is not None and old != new and not is_copy
    is_binary = bool(patched.is_binary_file)
    status: Literal["added", "modified", "deleted", "renamed", "binary"]
    if is_binary:
        status = "binary"
    elif is_new or is_copy:
        status = "added"
    elif is_deleted:
        status = "deleted"
    elif renamed:
        status = "renamed"
    else:
        status = "modified"

    old_mode, new_mode = patched.source_mode, patched.target_mode
    unsupported = None
    if non_utf8:
        unsupported = f"content is not UTF-8 text; {GIT_STRATEGY_HINT}"
    elif "120000" in (old_mode, new_mode):
        unsupported = f"symbolic link; {GIT_STRATEGY_HINT}"
    elif "160000" in (old_mode, new_mode):
        unsupported = f"submodule; {GIT_STRATEGY_HINT}"
    elif is_new and new_mode not in _PLAIN_MODES:
        unsupported = f"new file mode {new_mode} cannot be set by a text edit; {GIT_STRATEGY_HINT}"
    elif not is_new and not is_deleted and mode_changed and old_mode != new_mode:
        unsupported = (
            f"file mode change {old_mode} -> {new_mode} cannot be made by a text edit; "
            f"{GIT_STRATEGY_HINT}"
        )
    return FileChange(
        path=new,
        old_path=old if (renamed or is_copy) else None,
        status=status,
        additions=0 if is_binary else additions,
        deletions=0 if is_binary else deletions,
        is_binary=is_binary,
        hunks=hunks,
        old_mode=old_mode,
        new_mode=new_mode,
        is_copy=is_copy,
        is_new=is_new,
        is_deleted=is_deleted,
        unsupported=unsupported,
    )


def _convert_hunk(unidiff_hunk: Any) -> Hunk:
    # One pass: this runs once per patch line, so it stays small and local.
    source: list[str] = []
    blocks: list[Block] = []
    current: Block | None = None
    last: list[str] | None = None  # the list holding the previous line, for "\ No newline"
    for line in unidiff_hunk:
        kind = line.line_type
        if kind == " ":
            current = None
            source.append(line.value)
            last = source
        elif kind == "-" or kind == "+":
            if current is None:
                current = Block(offset=len(source), removed=0, added=[])
                blocks.append(current)
            if kind == "-":
                source.append(line.value)
                current.removed += 1
                last = source
            else:
                current.added.append(line.value)
                last = current.added
        elif kind == "\\" and last and last[-1].endswith("\n"):
            last[-1] = last[-1][:-1]  # the previous line has no final newline
    return Hunk(source_start=unidiff_hunk.source_start, source=source, blocks=blocks)


def _info_path(info: Iterable[str], prefix: str) -> str | None:
    for line in info:
        if line.startswith(prefix):
            return _unquote(line[len(prefix) :].rstrip("\n"))
    return None


def _header_path(name: str, header: str) -> str:
    path = _unquote(name.rstrip("\t"))
    if path[:2] in ("a/", "b/"):
        return path[2:]
    raise PatchRefused(f"malformed patch: cannot read the path from {header[:200]!r}")


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


def _refuse_unsafe(path: str) -> None:
    if "\0" in path:
        raise PatchRefused(f"refused path {path!r}: contains a NUL byte")
    if not path or path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        raise PatchRefused(f"refused path {path!r}: absolute path")
    parts = path.split("/")
    if ".." in parts:
        raise PatchRefused(f"refused path {path!r}: '..' segment leaves the workspace")
    if any(part.lower() == ".git" for part in parts):
        raise PatchRefused(f"refused path {path!r}: writes inside a .git directory")


def check_paths(changes: list[FileChange], workspace: Path) -> None:
    """Refuse targets (and rename sources) that resolve outside the workspace via a symlink."""
    root = workspace.resolve()
    for change in changes:
        for path in (change.path, change.old_path):
            if path is None:
                continue
            resolved = (root / path).resolve()  # follows every existing symlink on the way
            if not resolved.is_relative_to(root):
                raise PatchRefused(
                    f"refused path {path!r}: resolves outside the workspace through a symlink "
                    f"(to {str(resolved)!r})"
                )


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
