"""Which parts of a run's patch an apply takes, and what would happen to each file.

Pure of the run manager: the patch text is split into files and hunks (aligned with
`diffs.parse_patch`), a selection (files, hunks) minus what earlier applies already wrote
becomes a sub-patch git and our edit builder read like any patch, and each file of it is
classified before anything is written: clean, merged (3-way, no conflict), conflict (with its
hunks and why: edited, deleted, moved), skipped (binary for the client strategy, an edit the
client cannot take, a path refused) or already applied. The names follow the official Codex
client's apply preflight (success | partial | error, skipped_paths, conflict_paths).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from . import diffs
from .diffs import GIT_STRATEGY_HINT, FileChange, Hunk, OpenDocument
from .errors import InvalidParams
from .git_apply import _repo_prefix, _run, parse_checked, stage_temp_index
from .manifest import AppliedView, parse_utc
from .protocol import (
    ApplyFile,
    ApplyOutcomeKind,
    ApplyResult,
    ApplyStrategy,
    Conflict,
    HunkOutcome,
    HunkStat,
    WorkspaceDrift,
)

_HUNK_HEAD = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)", re.S)
_INDEX = re.compile(r"index ([0-9a-f]{4,64})\.\.([0-9a-f]{4,64})")
_GIT = "git"


# --------------------------------------------------------------------------- patch as parts


@dataclass
class RawHunk:
    lines: list[str]  # body lines, exact, "\\ No newline" lines included
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    rest: str  # what follows the second "@@" (a function name) and the line's end
    additions: int
    deletions: int

    @property
    def delta(self) -> int:
        return self.new_len - self.old_len


@dataclass
class RawFile:
    header: list[str]  # the `diff --git` line and extended headers (and binary data)
    hunks: list[RawHunk]
    old_blob: str | None  # abbreviated pre-image object id from the `index` line


def split_patch(text: str) -> list[RawFile]:
    """The patch's files as text, in `diffs.parse_patch` order (run that first: it refuses
    anything irregular, so this reads only well-formed input)."""
    files: list[RawFile] = []
    for chunk in re.split(r"(?m)^(?=diff --git )", text):
        if not chunk.startswith("diff --git "):
            continue
        lines = list(io.StringIO(chunk, newline="\n"))
        i = 0
        binary = False
        while i < len(lines) and not lines[i].startswith("@@ -"):
            binary = binary or lines[i].startswith(("GIT binary patch", "Binary files "))
            i += 1
        if binary:
            files.append(RawFile(header=lines, hunks=[], old_blob=_old_blob(lines)))
            continue
        header, hunks = lines[:i], []
        while i < len(lines) and lines[i].startswith("@@ -"):
            match = _HUNK_HEAD.match(lines[i])
            assert match is not None  # parse_patch accepted it
            old_len = 1 if match[2] is None else int(match[2])
            new_len = 1 if match[4] is None else int(match[4])
            body: list[str] = []
            i += 1
            seen_old = seen_new = adds = dels = 0
            while i < len(lines) and (seen_old < old_len or seen_new < new_len or lines[i].startswith("\\")):
                line = lines[i]
                kind = line[:1]
                if kind == "-":
                    seen_old += 1
                    dels += 1
                elif kind == "+":
                    seen_new += 1
                    adds += 1
                elif kind != "\\":
                    seen_old += 1
                    seen_new += 1
                body.append(line)
                i += 1
            hunks.append(RawHunk(body, int(match[1]), old_len, int(match[3]), new_len, match[5], adds, dels))
        files.append(RawFile(header=header, hunks=hunks, old_blob=_old_blob(header)))
    return files


def _old_blob(header: list[str]) -> str | None:
    for line in header:
        if m := _INDEX.match(line):
            return None if set(m[1]) == {"0"} else m[1]
    return None


def hunk_stats(changes: list[FileChange], raws: list[RawFile], applied: Mapping[str, list[int]]) -> list[HunkStat]:
    out: list[HunkStat] = []
    for change, raw in zip(changes, raws, strict=True):
        done = set(applied.get(change.path, []))
        for number, h in enumerate(raw.hunks, 1):
            head = f"@@ -{h.old_start},{h.old_len} +{h.new_start},{h.new_len} @@{h.rest}".rstrip("\r\n")
            out.append(HunkStat(path=change.path, number=number, header=head, additions=h.additions, deletions=h.deletions, applied=number in done))
    return out


# --------------------------------------------------------------------------- selection

# file index -> hunk numbers to take ([] for a file without hunks)
Chosen = dict[int, list[int]]


def pending(changes: list[FileChange], raws: list[RawFile], applied: Mapping[str, list[int]]) -> Chosen:
    """Every part not applied yet."""
    out: Chosen = {}
    for index, (change, raw) in enumerate(zip(changes, raws, strict=True)):
        done = applied.get(change.path)
        if not raw.hunks:
            if done is None:
                out[index] = []
            continue
        left = [n for n in range(1, len(raw.hunks) + 1) if n not in set(done or [])]
        if left:
            out[index] = left
    return out


def select(
    changes: list[FileChange],
    raws: list[RawFile],
    applied: Mapping[str, list[int]],
    files: list[str] | None,
    hunks: Mapping[str, list[int]] | None,
) -> tuple[Chosen, list[str]]:
    """The pending parts the caller asked for, and the asked parts already applied (named, so
    nothing is applied twice). Unknown paths and hunk numbers are bad params."""
    by_path = {c.path: i for i, c in enumerate(changes)}
    by_path.update({c.old_path: i for i, c in enumerate(changes) if c.old_path and c.old_path not in by_path})
    left = pending(changes, raws, applied)
    if files is None and hunks is None:
        return left, []
    wanted: dict[int, set[int] | None] = {}  # None: every hunk of the file
    for path in files or []:
        if path not in by_path:
            raise InvalidParams(f"invalid params: files: {path!r} is not a file of the run's patch", data={"field": "files"})
        wanted[by_path[path]] = None
    for path, numbers in (hunks or {}).items():
        if path not in by_path:
            raise InvalidParams(f"invalid params: hunks: {path!r} is not a file of the run's patch", data={"field": "hunks"})
        index = by_path[path]
        count = len(raws[index].hunks)
        bad = [n for n in numbers if not 1 <= n <= max(count, 0)]
        if bad:
            raise InvalidParams(
                f"invalid params: hunks: {path} has {count} hunk(s); no hunk {bad[0]}", data={"field": "hunks"}
            )
        if wanted.get(index, set()) is not None:
            wanted[index] = (wanted.get(index) or set()) | set(numbers)
    chosen: Chosen = {}
    already: list[str] = []
    for index, asked in wanted.items():
        path = changes[index].path
        if index not in left:
            already.append(path)
            continue
        take = left[index] if asked is None else [n for n in left[index] if n in asked]
        if asked is not None and len(take) < len(asked):
            already.append(path)
        if take or not raws[index].hunks:
            chosen[index] = take
    return dict(sorted(chosen.items())), already


# --------------------------------------------------------------------------- sub-patch


def _quote(path: str) -> str:
    """A path as git writes it in a header: C-quoted when it holds special bytes."""
    raw = path.encode("utf-8", "surrogateescape")
    if not any(b < 0x20 or b >= 0x7F or b in b'"\\' for b in raw):
        return path
    escapes = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 34: '\\"', 92: "\\\\"}
    body = "".join(escapes.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}") for b in raw)
    return f'"{body}"'


def _name(prefix: str, path: str) -> str:
    quoted = _quote(path)
    return f'"{prefix}{quoted[1:]}' if quoted.startswith('"') else f"{prefix}{path}"


def render(changes: list[FileChange], raws: list[RawFile], chosen: Chosen, applied: Mapping[str, list[int]]) -> str:
    """The patch of exactly the chosen parts, against the workspace as earlier applies left it:
    a file already touched (renamed, mode set) gets a plain header on its new path, and each
    hunk's line numbers are shifted by the hunks applied before it."""
    out: list[str] = []
    for index, numbers in chosen.items():
        change, raw = changes[index], raws[index]
        done = applied.get(change.path)
        if done is None:
            out.extend(raw.header)
        else:
            a, b = _name("a/", change.path), _name("b/", change.path)
            out.append(f"diff --git {a} {b}\n--- {a}\n+++ {b}\n")
        before = set(done or [])
        for number in numbers:
            h = raw.hunks[number - 1]
            earlier = raw.hunks[: number - 1]
            correction = h.new_start - h.old_start - sum(e.delta for e in earlier)
            old = h.old_start + sum(e.delta for n, e in enumerate(earlier, 1) if n in before)
            new = old + sum(e.delta for n, e in enumerate(earlier, 1) if n in numbers) + correction
            out.append(f"@@ -{old},{h.old_len} +{new},{h.new_len} @@{h.rest}")
            out.extend(h.lines)
    return "".join(out)


def sub_changes(text: str) -> list[FileChange]:
    return parse_checked(text.encode("utf-8", "surrogateescape")) if text else []


# --------------------------------------------------------------------------- client capabilities


@dataclass(frozen=True)
class ClientEditCaps:
    """What the client said it takes in a WorkspaceEdit (`workspace.workspaceEdit`)."""

    apply_edit: bool = True
    document_changes: bool = True
    resource_operations: frozenset[str] = frozenset({"create", "rename", "delete"})
    change_annotations: bool = True

    @classmethod
    def from_lsp(cls, workspace: Any) -> ClientEditCaps:
        """From lsprotocol's `WorkspaceClientCapabilities` (or None)."""
        edit = getattr(workspace, "workspace_edit", None) if workspace is not None else None
        ops = frozenset(str(getattr(op, "value", op)) for op in (getattr(edit, "resource_operations", None) or []))
        # Resource operations exist only in documentChanges: a client naming them takes those
        # (Neovim names them and leaves documentChanges out).
        doc_changes = bool(getattr(edit, "document_changes", False)) or bool(ops)
        return cls(
            apply_edit=bool(getattr(workspace, "apply_edit", False)),
            document_changes=doc_changes,
            resource_operations=ops,
            change_annotations=getattr(edit, "change_annotation_support", None) is not None,
        )

    def refusal(self, edit: Mapping[str, Any]) -> str | None:
        """Why the client cannot take this edit, naming the capability; None if it can."""
        kinds = sorted({op["kind"] for op in edit.get("documentChanges", []) if "kind" in op})
        missing = [k for k in kinds if k not in self.resource_operations]
        if missing:
            verbs = {"create": "create", "rename": "rename", "delete": "delete"}
            return (
                f"the client cannot {'/'.join(verbs[k] for k in missing)} files through an edit (it does not "
                f"advertise workspace.workspaceEdit.resourceOperations {', '.join(repr(k) for k in missing)}); "
                'apply with strategy "git"'
            )
        return None

    def shape(self, edit: dict[str, Any]) -> dict[str, Any]:
        """The edit in the form the client takes: `changes` without documentChanges, no
        annotations without changeAnnotationSupport. Call `refusal` first."""
        ops = edit["documentChanges"]
        if not self.change_annotations:
            ops = [
                {**op, "edits": [{k: v for k, v in e.items() if k != "annotationId"} for e in op["edits"]]}
                if "edits" in op
                else {k: v for k, v in op.items() if k != "annotationId"}
                for op in ops
            ]
        shaped: dict[str, Any] = {}
        if self.document_changes:
            shaped["documentChanges"] = ops
        else:
            changes: dict[str, list[dict[str, Any]]] = {}
            for op in ops:
                changes.setdefault(op["textDocument"]["uri"], []).extend(op["edits"])
            shaped["changes"] = changes
        if self.change_annotations:
            shaped["changeAnnotations"] = edit["changeAnnotations"]
        return shaped


# A client that applied only part of the edit (VS Code's refactor preview with items unticked)
# answers workspace/applyEdit {applied: false, failureReason: APPLIED_ONLY + a JSON list of what
# it did apply: a file's URI (all of it), or {"uri", "edits": [indices of its text edits]} (some
# hunks of it: a file's text edits are its hunks, in order)}: the server records exactly those
# (docs/protocol.md, co/apply).
APPLIED_ONLY = "co-sidecar: applied only: "


def applied_only(reason: str | None, workspace: Path) -> dict[str, list[int] | None] | None:
    """Workspace path -> the edit indices a client says it applied (None: the whole file), or
    None when the reason is not an APPLIED_ONLY answer."""
    if not reason or APPLIED_ONLY not in reason:
        return None
    try:
        items = json.loads(reason.split(APPLIED_ONLY, 1)[1])
    except ValueError:
        return None
    if not isinstance(items, list):
        return None
    root = workspace.resolve()
    out: dict[str, list[int] | None] = {}
    for item in items:
        edits: list[int] | None = None
        if isinstance(item, dict):
            uri, edits = item.get("uri"), item.get("edits")
            if not isinstance(edits, list) or not all(type(e) is int and e >= 0 for e in edits):
                return None
        else:
            uri = item
        if not isinstance(uri, str):
            return None
        path = Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else None
        if path is not None and path.absolute().is_relative_to(root):
            out[path.absolute().relative_to(root).as_posix()] = edits
    return out


# --------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    files: list[ApplyFile] = field(default_factory=list)
    drift: WorkspaceDrift | None = None

    def take(self) -> list[str]:
        """Paths an apply may write (clean or merged)."""
        return [f.path for f in self.files if f.outcome in ("clean", "merged")]

    def blocked(self) -> list[ApplyFile]:
        return [f for f in self.files if f.outcome in ("conflict", "skipped")]


def _stat(change: FileChange, outcome: str, reason: str | None = None, hunks: list[HunkOutcome] | None = None) -> ApplyFile:
    return ApplyFile(
        path=change.path, old_path=change.old_path, status=change.status, outcome=outcome,  # type: ignore[arg-type]
        reason=reason, hunks=hunks or [],
    )


def _clean(change: FileChange, nums: list[int]) -> ApplyFile:
    hunks = [HunkOutcome(number=n, line=h.source_start, outcome="clean") for n, h in zip(nums, change.hunks, strict=False)]
    return _stat(change, "clean", hunks=hunks)


def skipped(change: FileChange, reason: str) -> ApplyFile:
    return _stat(change, "skipped", reason)


def _target(hunk: Hunk) -> list[str]:
    out: list[str] = []
    pos = 0
    for block in hunk.blocks:
        out.extend(hunk.source[pos : block.offset])
        out.extend(block.added)
        pos = block.offset + block.removed
    out.extend(hunk.source[pos:])
    return out


def hunk_outcomes(hunks: list[Hunk], numbers: list[int], text: str) -> list[HunkOutcome]:
    """Each hunk against `text` on its own: it applies, it is already there, or it conflicts."""
    lines = diffs.split_lines(text)
    out: list[HunkOutcome] = []
    for hunk, number in zip(hunks, numbers, strict=False):
        try:
            diffs.locate([hunk], lines)
            out.append(HunkOutcome(number=number, line=hunk.source_start, outcome="clean"))
            continue
        except diffs._Conflict:
            pass
        target = "".join(_target(hunk))
        if target and target in text and "".join(hunk.source) not in text:
            out.append(HunkOutcome(number=number, line=hunk.source_start, outcome="already_applied"))
        else:
            out.append(
                HunkOutcome(
                    number=number, line=hunk.source_start, outcome="conflict",
                    reason=f"the lines hunk {number} changes (from line {hunk.source_start}) were edited since the run's base",
                )
            )
    return out


def _missing_reason(path: str, drift: WorkspaceDrift | None) -> str:
    if drift is not None and path in drift.moved:
        return f"{path} was moved to {drift.moved[path]} since the run's base; the patch changes {path}"
    return f"{path} was deleted since the run's base"


def _read(workspace: Path, path: str, docs: Mapping[str, OpenDocument]) -> str | None:
    uri = (workspace.absolute() / path).as_uri()
    for key, doc in docs.items():
        if key == uri or doc.uri == uri:
            return doc.text
    try:
        return (workspace / path).read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        return None


def plan_client(
    changes: list[FileChange],
    numbers: list[list[int]],
    workspace: Path,
    docs: Mapping[str, OpenDocument],
    caps: ClientEditCaps,
    label: str,
    drift: WorkspaceDrift | None,
) -> Plan:
    """Each file of the sub-patch as a WorkspaceEdit for this client."""
    plan = Plan(drift=drift)
    for change, nums in zip(changes, numbers, strict=True):
        edit, conflicts = diffs.build_workspace_edit([change], workspace, docs, label)
        if change.is_binary or change.unsupported:
            why = change.unsupported or f"binary file: the client strategy edits text; {GIT_STRATEGY_HINT}"
            plan.files.append(_stat(change, "skipped", why))
            continue
        if conflicts:
            plan.files.append(_client_conflict(change, nums, workspace, docs, conflicts[0].reason, drift))
            continue
        if not edit["documentChanges"]:
            plan.files.append(_stat(change, "already_applied", f"{change.path} already has this content"))
            continue
        refusal = caps.refusal(edit)
        if refusal:
            plan.files.append(_stat(change, "skipped", refusal))
            continue
        plan.files.append(_clean(change, nums))
    return plan


def _client_conflict(
    change: FileChange, nums: list[int], workspace: Path, docs: Mapping[str, OpenDocument], reason: str, drift: WorkspaceDrift | None
) -> ApplyFile:
    source = change.old_path or change.path
    if change.is_new:
        return _stat(change, "conflict", reason)
    text = _read(workspace, source, docs)
    if text is None:
        return _stat(change, "conflict", _missing_reason(source, drift))
    hunks = hunk_outcomes(change.hunks, nums, text)
    if hunks and all(h.outcome == "already_applied" for h in hunks):
        return _stat(change, "already_applied", "the workspace already has this change", hunks)
    bad = [h for h in hunks if h.outcome == "conflict"]
    if bad and change.is_deleted:
        reason = f"{change.path} was edited since the run's base; the run deletes it"
    elif bad:
        reason = "; ".join(h.reason or "" for h in bad)
    return _stat(change, "conflict", reason, hunks)


def plan_git(
    changes: list[FileChange],
    numbers: list[list[int]],
    texts: list[str],
    workspace: Path,
    drift: WorkspaceDrift | None,
) -> Plan:
    """Each file of the sub-patch (`texts`: its patch text) through git: `apply --check`, a
    reverse check (already applied), a 3-way check on a throwaway index."""
    plan = Plan(drift=drift)
    git = _git()
    prefix = _repo_prefix(git, workspace) if git else None
    with tempfile.TemporaryDirectory(prefix="co-sidecar-plan-") as tmp:
        if git is not None and texts:
            whole = Path(tmp) / "all.diff"
            whole.write_bytes("".join(texts).encode("utf-8", "surrogateescape"))
            base = [git, "apply", "--whitespace=nowarn"] + ([f"--directory={prefix}"] if prefix else [])
            if _run([*base, "--check", str(whole)], workspace).returncode == 0:  # the usual case: one git call
                plan.files = [_clean(c, n) for c, n in zip(changes, numbers, strict=True)]
                return plan
        for number, (change, nums, text) in enumerate(zip(changes, numbers, texts, strict=True)):
            patch = Path(tmp) / f"{number}.diff"
            patch.write_bytes(text.encode("utf-8", "surrogateescape"))
            plan.files.append(_git_file(git, prefix, workspace, change, nums, patch, Path(tmp), drift))
    return plan


def _git() -> str | None:
    import shutil

    return shutil.which(_GIT)


def _git_file(
    git: str | None, prefix: str | None, workspace: Path, change: FileChange, nums: list[int],
    patch: Path, tmp: Path, drift: WorkspaceDrift | None,
) -> ApplyFile:
    if git is None:
        return _stat(change, "skipped", "git is not installed")
    base = [git, "apply", "--whitespace=nowarn"] + ([f"--directory={prefix}"] if prefix else [])
    direct = _run([*base, "--check", str(patch)], workspace)
    if direct.returncode == 0:
        return _clean(change, nums)
    if _run([*base, "-R", "--check", str(patch)], workspace).returncode == 0:
        return _stat(change, "already_applied", "the workspace already has this change")
    source = change.old_path or change.path
    text = None if change.is_new else _read(workspace, source, {})
    if not change.is_new and text is None and not os.path.lexists(workspace / source):
        return _stat(change, "conflict", _missing_reason(source, drift))
    hunks = hunk_outcomes(change.hunks, nums, text) if text is not None and not change.is_binary else []
    if change.is_new and os.path.lexists(workspace / change.path):
        return _stat(change, "conflict", f"{change.path} already exists with different content")
    if prefix is not None:
        paths = [p for p in (change.old_path, change.path) if p]
        env, _ = stage_temp_index(git, workspace, paths, tmp / "index")
        merged = _run([*base, "--3way", "--check", str(patch)], workspace, env)
        if merged.returncode == 0:
            if "with conflicts" in merged.stderr or re.search(r"(?m)^U ", merged.stderr):
                where = ", ".join(f"hunk {h.number} from line {h.line}" for h in hunks if h.outcome == "conflict")
                return _stat(
                    change, "conflict",
                    f"you and the run changed the same lines{f' ({where})' if where else ''}: "
                    "a 3-way merge would leave conflict markers",
                    hunks,
                )
            return _stat(change, "merged", "the base moved; git merges it without conflicts (3-way)", hunks)
    bad = [h for h in hunks if h.outcome == "conflict"]
    if bad:
        return _stat(change, "conflict", "; ".join(h.reason or "" for h in bad), hunks)
    why = next((line.removeprefix("error: ") for line in direct.stderr.splitlines() if line.startswith("error: ")), "git apply --check failed")
    return _stat(change, "conflict", why, hunks)


# --------------------------------------------------------------------------- drift


def drift(
    workspace: Path, changes: list[FileChange], raws: list[RawFile], created_at: str, base_head: str | None = None
) -> WorkspaceDrift | None:
    """How the workspace moved since the run began: HEAD (against `base_head`, recorded at
    launch; from the reflog for older manifests), and the patch's files edited, deleted or
    moved (their content against the patch's pre-image ids)."""
    git = _git()
    if git is None or _repo_prefix(git, workspace) is None:
        return None
    out = WorkspaceDrift()
    head = _run([git, "rev-parse", "-q", "--verify", "HEAD"], workspace).stdout.strip() or None
    out.head = head
    try:
        since = parse_utc(created_at).timestamp()
    except ValueError:
        since = None
    base = base_head
    log = _run([git, "reflog", "show", "--date=unix", "--format=%H %gd", "HEAD"], workspace) if base is None else None
    if log is not None and since is not None and log.returncode == 0 and head:
        for line in log.stdout.splitlines():
            sha, _, when = line.partition(" ")
            m = re.search(r"@\{(\d+)\}", when)
            # The reflog counts whole seconds: a move within the run's first second counts as after it.
            if m and int(m[1]) < int(since):
                base = sha
                break
    if base and head:
        out.base_head = base
        out.head_moved = base != head
        if out.head_moved:
            count = _run([git, "rev-list", "--count", f"{base}..{head}"], workspace).stdout.strip()
            out.commits_since = int(count) if count.isdigit() else None
    index: list[tuple[str, str]] | None = None
    for change, raw in zip(changes, raws, strict=True):
        if change.is_new or raw.old_blob is None:
            continue
        source = change.old_path or change.path
        target = workspace / source
        if not os.path.lexists(target):
            if index is None:
                listed = _run([git, "ls-files", "-s", "-z"], workspace).stdout
                index = [(e.split("\t", 1)[1], e.split()[1]) for e in listed.split("\0") if "\t" in e]
            moved = next((p for p, sha in index if sha.startswith(raw.old_blob) and p != source), None)
            if moved:
                out.moved[source] = moved
            else:
                out.deleted.append(source)
            continue
        try:
            data = target.read_bytes() if target.is_file() else None
        except OSError:
            data = None
        if data is not None and not hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest().startswith(raw.old_blob):  # noqa: S324 - git's object id
            out.edited.append(source)
    return out


def describe_drift(d: WorkspaceDrift | None) -> str:
    if d is None:
        return "unknown (not a git repository)"
    parts = []
    if d.head_moved:
        parts.append(f"HEAD moved ({d.commits_since} commit(s) since the run began)" if d.commits_since is not None else "HEAD moved")
    parts += [f"{p} edited" for p in d.edited] + [f"{p} deleted" for p in d.deleted]
    parts += [f"{a} moved to {b}" for a, b in d.moved.items()]
    return "; ".join(parts) or "unchanged"



# --------------------------------------------------------------------------- results


@dataclass
class Prepared:
    """One co/apply, worked out before anything is written (RunManager._prepare)."""

    changes: list[FileChange]  # the whole patch
    raws: list[RawFile]
    chosen: Chosen  # the parts asked for that are not applied yet
    subs: list[FileChange]  # the chosen parts as a patch, parsed
    plan: Plan
    attempt: int | None
    budget: Any  # runs.BudgetCheck of the chosen parts
    external: list[Conflict]
    already_asked: list[str]
    strategy: ApplyStrategy
    applied_before: dict[str, list[int]]
    documents: Mapping[str, OpenDocument]
    view: AppliedView | None = None  # a follow-up: its step, or the chain's cumulative change
    recorded: list[str] = field(default_factory=list)

    def conflicts(self) -> list[ApplyFile]:
        return [f for f in self.plan.files if f.outcome == "conflict"]

    def blocked_reason(self) -> str:
        blocked = self.plan.blocked()
        text = "nothing was applied: " + "; ".join(f"{f.path}: {f.reason}" for f in blocked)
        if self.conflicts():
            text += ' (onConflict "skip" applies the other files; "markers" with strategy "git" writes git\'s conflict markers)'
        return text

    def result(
        self,
        applied: bool,
        outcome: ApplyOutcomeKind | None,
        reason: str | None,
        *,
        taken: list[str] | None = None,
        recorded: list[str] | None = None,
        marked: list[Conflict] | None = None,
        left_out: list[str] | None = None,
    ) -> ApplyResult:
        self.recorded = list(recorded or [])
        marked_paths = {c.path for c in marked or []}
        files = [f.model_copy() for f in self.plan.files]
        for f in files:
            f.written = f.path in (taken or [])
            if f.path in marked_paths:
                f.outcome, f.reason = "conflict", "conflict markers written: resolve them, then save"
            if f.path in (left_out or []):
                f.reason = "left out in the editor's preview; it stays for a later apply"
        skipped = [f.path for f in files if (f.outcome in ("conflict", "skipped") or f.path in (left_out or [])) and not f.written]
        conflicts = [f for f in files if f.outcome == "conflict"]
        if applied and outcome is None:
            outcome = "partial" if skipped else "applied"
        if applied and skipped and reason is None:
            reason = "not applied: " + "; ".join(f"{f.path}: {f.reason}" for f in files if f.path in skipped)
        return ApplyResult(
            applied=applied,
            strategy=self.strategy,
            failure_reason=reason,
            conflicts=[Conflict(path=f.path, reason=f.reason or "conflict") for f in conflicts],
            outcome=outcome,
            files=files,
            skipped_paths=skipped,
            conflict_paths=[f.path for f in conflicts],
            workspace=self.plan.drift,
            over_budget=bool(self.budget.over_limit),
        )

    def narrow(self, taken: Mapping[str, list[int] | None]) -> None:
        """Keep, of a file's chosen hunks, only those whose edits the client says it applied
        (edit k of a file is its k-th chosen hunk: diffs.text_edit makes one edit per hunk)."""
        for i, numbers in self.chosen.items():
            edits = taken.get(self.changes[i].path)
            if edits is not None:
                self.chosen[i] = [n for k, n in enumerate(numbers) if k in set(edits)]

    def recorded_parts(self) -> dict[str, list[int]]:
        """path -> hunk numbers of the parts this apply wrote or found already there."""
        return {self.changes[i].path: n for i, n in self.chosen.items() if self.changes[i].path in self.recorded}

    def dry_run_result(self) -> ApplyResult:
        result = self.result(False, "dry_run", None)
        result.dry_run = True
        left = pending(self.changes, self.raws, self.applied_before)
        result.remaining = [self.changes[i].path for i in left]
        blocked = self.plan.blocked()
        if blocked:
            result.failure_reason = "would not apply: " + "; ".join(f"{f.path}: {f.reason}" for f in blocked)
        return result
