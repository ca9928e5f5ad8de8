"""diffs.py: real git patches → FileChange, stats, and exact WorkspaceEdits."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from co_sidecar.diffs import (
    ANNOTATION_ID,
    OpenDocument,
    apply_replacements,
    build_workspace_edit,
    check_paths,
    file_stats,
    locate,
    parse_patch,
    split_lines,
    totals,
)
from co_sidecar.errors import PatchRefused

# ----------------------------------------------------------------------------- helpers


def git(repo: Path, *args: str) -> bytes:
    return subprocess.run(  # noqa: S603 - fixed git argv, no shell
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "core.autocrlf=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout


class Repo:
    """A git repo where we write a base tree, edit it to a target, and take the patch."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        git(root, "init", "-q", ".")

    def write(self, files: dict[str, bytes | str | None]) -> None:
        for name, content in files.items():
            path = self.root / name
            if content is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)

    def commit(self, files: dict[str, bytes | str | None]) -> None:
        self.write(files)
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "--allow-empty", "-m", "base")

    def patch(self, target: dict[str, bytes | str | None], *, reset: bool = True) -> bytes:
        """Edit to `target`, return `git diff --cached --binary -M`, then restore the base tree."""
        self.write(target)
        git(self.root, "add", "-A")
        patch = git(self.root, "diff", "--cached", "--binary", "-M")
        if reset:
            git(self.root, "reset", "-q", "--hard", "HEAD")
            git(self.root, "clean", "-fdq")
        return patch

    def mv_patch(self, old: str, new: str, content: str | None = None) -> bytes:
        git(self.root, "mv", old, new)
        if content is not None:
            (self.root / new).write_text(content)
        patch = self.patch({})
        return patch

    def tree(self) -> dict[str, str]:
        out = {}
        for path in sorted(self.root.rglob("*")):
            if ".git" in path.relative_to(self.root).parts or not path.is_file():
                continue
            out[path.relative_to(self.root).as_posix()] = path.read_text(encoding="utf-8")
        return out


def lsp_line_starts(text: str) -> list[int]:
    starts = [0]
    for match in re.finditer(r"\r\n|\n|\r", text):
        starts.append(match.end())
    return starts


def offset_of(text: str, starts: list[int], pos: dict[str, int]) -> int:
    """LSP Position (UTF-16 character) → str index."""
    line = pos["line"]
    assert 0 <= line < len(starts), pos
    start = starts[line]
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    body = text[start:end].rstrip("\r\n") if line + 1 < len(starts) else text[start:end]
    units = 0
    for i, ch in enumerate(body):
        if units >= pos["character"]:
            assert units == pos["character"], "position inside a surrogate pair"
            return start + i
        units += 2 if ord(ch) > 0xFFFF else 1
    assert units == pos["character"], f"character past line end: {pos}"
    return start + len(body)


def apply_text_edits(text: str, edits: list[dict[str, Any]]) -> str:
    """Apply LSP TextEdits (all relative to the original text) like a client does."""
    starts = lsp_line_starts(text)
    spans = []
    for order, edit in enumerate(edits):
        a = offset_of(text, starts, edit["range"]["start"])
        b = offset_of(text, starts, edit["range"]["end"])
        assert a <= b
        spans.append((a, b, order, edit["newText"]))
    spans.sort()
    for (_, b1, _, _), (a2, _, _, _) in zip(spans, spans[1:], strict=False):
        assert b1 <= a2, "overlapping edits"
    for a, b, _, new in reversed(spans):
        text = text[:a] + new + text[b:]
    return text


def apply_workspace_edit(
    root: Path, edit: dict[str, Any], buffers: dict[str, str] | None = None
) -> None:
    """A tiny client: applies documentChanges in order to files under root (or open buffers)."""
    buffers = buffers if buffers is not None else {}
    assert set(edit["changeAnnotations"]) == {ANNOTATION_ID}
    assert edit["changeAnnotations"][ANNOTATION_ID]["needsConfirmation"] is True

    def path(uri: str) -> Path:
        assert uri.startswith("file://")
        from pygls.uris import to_fs_path

        return Path(to_fs_path(uri) or "")

    for change in edit["documentChanges"]:
        kind = change.get("kind")
        if kind is not None:
            assert change["annotationId"] == ANNOTATION_ID
        if kind == "create":
            assert not path(change["uri"]).exists()
            path(change["uri"]).parent.mkdir(parents=True, exist_ok=True)
            path(change["uri"]).write_text("")
        elif kind == "delete":
            path(change["uri"]).unlink()
        elif kind == "rename":
            new = path(change["newUri"])
            assert not new.exists()
            new.parent.mkdir(parents=True, exist_ok=True)
            path(change["oldUri"]).rename(new)
        else:
            uri = change["textDocument"]["uri"]
            for e in change["edits"]:
                assert e["annotationId"] == ANNOTATION_ID
            if uri in buffers:
                buffers[uri] = apply_text_edits(buffers[uri], change["edits"])
            else:
                file = path(uri)
                text = file.read_bytes().decode("utf-8")
                file.write_bytes(apply_text_edits(text, change["edits"]).encode("utf-8"))


def roundtrip(
    tmp_path: Path, base: dict[str, str | bytes | None], target: dict[str, str | bytes | None]
):
    """Patch base→target with git, build the edit against base, apply it, compare with git's target."""
    repo = Repo(tmp_path / "repo")
    repo.commit(base)
    repo.write(target)
    expected = repo.tree()
    patch = repo.patch({})
    changes = parse_patch(patch)
    check_paths(changes, repo.root)
    edit, conflicts = build_workspace_edit(changes, repo.root, {}, "test")
    assert conflicts == []
    apply_workspace_edit(repo.root, edit)
    assert repo.tree() == expected
    return repo, changes, edit


def rng(line: int, char: int, line2: int, char2: int) -> dict[str, Any]:
    return {"start": {"line": line, "character": char}, "end": {"line": line2, "character": char2}}


def text_edit(r: dict[str, Any], new: str) -> dict[str, Any]:
    return {"range": r, "newText": new, "annotationId": ANNOTATION_ID}


def numbered(n: int, eol: str = "\n") -> str:
    return "".join(f"line {i}{eol}" for i in range(1, n + 1))


# ----------------------------------------------------------------------------- modify


def test_modify_multiple_hunks_first_and_last_line(tmp_path: Path) -> None:
    base = numbered(30)
    target = base.replace("line 1\n", "first\n").replace("line 15\n", "mid a\nmid b\n")
    target = target.replace("line 30\n", "")
    repo, changes, edit = roundtrip(tmp_path, {"f.txt": base}, {"f.txt": target})
    uri = (repo.root / "f.txt").as_uri()
    assert edit["documentChanges"] == [
        {
            "textDocument": {"uri": uri, "version": None},
            "edits": [
                text_edit(rng(0, 0, 1, 0), "first\n"),
                text_edit(rng(14, 0, 15, 0), "mid a\nmid b\n"),
                text_edit(rng(29, 0, 30, 0), ""),
            ],
        }
    ]
    assert edit["changeAnnotations"][ANNOTATION_ID]["label"] == "test"
    [stat] = file_stats(changes)
    assert stat.wire() == {
        "path": "f.txt",
        "oldPath": None,
        "status": "modified",
        "additions": 3,
        "deletions": 3,
    }
    assert totals(changes) == (3, 3)


def test_no_newline_at_eof_removed_and_added(tmp_path: Path) -> None:
    # base lacks the final newline, target adds one (and a line)
    repo, _, edit = roundtrip(tmp_path, {"a.txt": "x\ny"}, {"a.txt": "x\ny\nz\n"})
    assert edit["documentChanges"][0]["edits"] == [text_edit(rng(1, 0, 1, 1), "y\nz\n")]
    # base has it, target drops it
    _, _, edit = roundtrip(tmp_path / "2", {"a.txt": "x\ny\n"}, {"a.txt": "x\nY"})
    assert edit["documentChanges"][0]["edits"] == [text_edit(rng(1, 0, 2, 0), "Y")]


def test_crlf_file_keeps_crlf(tmp_path: Path) -> None:
    base = numbered(5, "\r\n")
    target = base.replace("line 3\r\n", "three\r\nand more\r\n")
    _, _, edit = roundtrip(tmp_path, {"w.txt": base}, {"w.txt": target})
    assert edit["documentChanges"][0]["edits"] == [
        text_edit(rng(2, 0, 3, 0), "three\r\nand more\r\n")
    ]


def test_lone_cr_counts_as_lsp_line_break(tmp_path: Path) -> None:
    base = "a\rb\nc\nd\n"
    _, _, edit = roundtrip(tmp_path, {"m.txt": base}, {"m.txt": "a\rb\nC\nd\n"})
    # git sees "a\rb" as one line; LSP clients see two, so "c" is LSP line 2.
    assert edit["documentChanges"][0]["edits"] == [text_edit(rng(2, 0, 3, 0), "C\n")]


def test_astral_unicode_uses_utf16_offsets(tmp_path: Path) -> None:
    base = "héllo\n😀😀 end"
    _, _, edit = roundtrip(tmp_path, {"u.txt": base}, {"u.txt": "héllo\n😀 done\n"})
    # "😀😀 end" is 8 UTF-16 code units (each emoji is a surrogate pair)
    assert edit["documentChanges"][0]["edits"] == [text_edit(rng(1, 0, 1, 8), "😀 done\n")]


# ----------------------------------------------------------------------------- create/delete/rename


def test_create_file_and_empty_file(tmp_path: Path) -> None:
    repo, changes, edit = roundtrip(
        tmp_path, {"keep.txt": "k\n"}, {"new/dir/n.py": "print(1)\n", "empty.txt": ""}
    )
    root = repo.root
    create = {"overwrite": False, "ignoreIfExists": False}
    assert edit["documentChanges"] == [
        {
            "kind": "create",
            "uri": (root / "empty.txt").as_uri(),
            "options": create,
            "annotationId": ANNOTATION_ID,
        },
        {
            "kind": "create",
            "uri": (root / "new/dir/n.py").as_uri(),
            "options": create,
            "annotationId": ANNOTATION_ID,
        },
        {
            "textDocument": {"uri": (root / "new/dir/n.py").as_uri(), "version": None},
            "edits": [text_edit(rng(0, 0, 0, 0), "print(1)\n")],
        },
    ]
    assert [(s.path, s.status, s.additions) for s in file_stats(changes)] == [
        ("empty.txt", "added", 0),
        ("new/dir/n.py", "added", 1),
    ]


def test_added_file_already_exists_with_other_content_conflicts(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    repo.commit({"a": "a\n"})
    changes = parse_patch(repo.patch({"n.txt": "new\n"}))
    (repo.root / "n.txt").write_text("someone else's\n")
    edit, conflicts = build_workspace_edit(changes, repo.root, {}, "t")
    assert edit["documentChanges"] == []
    assert [c.path for c in conflicts] == ["n.txt"]
    assert "already exists" in conflicts[0].reason


def test_delete_file(tmp_path: Path) -> None:
    repo, changes, edit = roundtrip(
        tmp_path, {"gone.txt": "a\nb\n", "e": ""}, {"gone.txt": None, "e": None}
    )
    assert edit["documentChanges"] == [
        {
            "kind": "delete",
            "uri": (repo.root / name).as_uri(),
            "options": {"recursive": False, "ignoreIfNotExists": False},
            "annotationId": ANNOTATION_ID,
        }
        for name in ("e", "gone.txt")
    ]
    assert [(s.path, s.status, s.deletions) for s in file_stats(changes)] == [
        ("e", "deleted", 0),
        ("gone.txt", "deleted", 2),
    ]


def test_delete_conflicts_when_content_changed(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    repo.commit({"gone.txt": "a\n"})
    changes = parse_patch(repo.patch({"gone.txt": None}))
    (repo.root / "gone.txt").write_text("a\nlocal work\n")
    edit, conflicts = build_workspace_edit(changes, repo.root, {}, "t")
    assert edit["documentChanges"] == [] and [c.path for c in conflicts] == ["gone.txt"]


def test_rename_without_and_with_content_change(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    body = numbered(20)
    repo.commit({"old.txt": body, "o2.txt": body.replace("line", "row")})
    git(repo.root, "mv", "old.txt", "new.txt")
    git(repo.root, "mv", "o2.txt", "sub/n2.txt") if (repo.root / "sub").mkdir() is None else None
    (repo.root / "sub/n2.txt").write_text(
        body.replace("line", "row").replace("row 20\n", "row twenty\n")
    )
    repo.write({})
    expected = {**repo.tree()}
    patch = repo.patch({})
    changes = parse_patch(patch)
    assert [(c.path, c.old_path, c.status) for c in changes] == [
        ("new.txt", "old.txt", "renamed"),
        ("sub/n2.txt", "o2.txt", "renamed"),
    ]
    edit, conflicts = build_workspace_edit(changes, repo.root, {}, "t")
    assert conflicts == []
    root = repo.root
    opts = {"overwrite": False, "ignoreIfExists": False}
    assert edit["documentChanges"] == [
        {
            "kind": "rename",
            "oldUri": (root / "old.txt").as_uri(),
            "newUri": (root / "new.txt").as_uri(),
            "options": opts,
            "annotationId": ANNOTATION_ID,
        },
        {
            "kind": "rename",
            "oldUri": (root / "o2.txt").as_uri(),
            "newUri": (root / "sub/n2.txt").as_uri(),
            "options": opts,
            "annotationId": ANNOTATION_ID,
        },
        {
            "textDocument": {"uri": (root / "sub/n2.txt").as_uri(), "version": None},
            "edits": [text_edit(rng(19, 0, 20, 0), "row twenty\n")],
        },
    ]
    apply_workspace_edit(root, edit)
    assert repo.tree() == expected


# ----------------------------------------------------------------------------- binary, non-UTF-8, modes


def test_binary_file_is_a_conflict_with_stats(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    repo.commit({"img.bin": b"\x00\x01\x02", "t.txt": "a\n"})
    changes = parse_patch(repo.patch({"img.bin": b"\x00\x03\x04\x05", "t.txt": "b\n"}))
    assert [s.wire() for s in file_stats(changes)][0] == {
        "path": "img.bin",
        "oldPath": None,
        "status": "binary",
        "additions": 0,
        "deletions": 0,
    }
    assert changes[0].is_binary
    edit, conflicts = build_workspace_edit(changes, repo.root, {}, "t")
    assert [c.path for c in conflicts] == ["img.bin"]
    assert 'strategy "git"' in conflicts[0].reason
    assert [d["textDocument"]["uri"] for d in edit["documentChanges"]] == [
        (repo.root / "t.txt").as_uri()
    ]


def test_non_utf8_text_needs_git_strategy(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    repo.commit({"l1.txt": "caf\xe9\n".encode("latin-1")})
    changes = parse_patch(repo.patch({"l1.txt": "caf\xe9!\n".encode("latin-1")}))
    assert changes[0].status == "modified" and (changes[0].additions, changes[0].deletions) == (
        1,
        1,
    )
    edit, conflicts = build_workspace_edit(changes, repo.root, {}, "t")
    assert edit["documentChanges"] == []
    assert conflicts[0].path == "l1.txt" and "UTF-8" in conflicts[0].reason


def test_mode_change_needs_git_strategy(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    repo.commit({"s.sh": "echo\n"})
    (repo.root / "s.sh").chmod(0o755)
    changes = parse_patch(repo.patch({}))
    _, conflicts = build_workspace_edit(changes, repo.root, {}, "t")
    assert "100644 -> 100755" in conflicts[0].reason


# ----------------------------------------------------------------------------- open documents


def test_open_document_with_unsaved_edits_above_hunk(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    base = numbered(40)
    repo.commit({"f.txt": base})
    target = base.replace("line 20\n", "twenty\n").replace("line 35\n", "")
    changes = parse_patch(repo.patch({"f.txt": target}))
    uri = (repo.root / "f.txt").as_uri()
    buffer = "unsaved 1\nunsaved 2\n" + base
    # percent-encoding differences in the client's URI must not matter
    client_uri = uri.replace("/f.txt", "/%66.txt")
    docs = {client_uri: OpenDocument(client_uri, 7, buffer)}
    edit, conflicts = build_workspace_edit(changes, repo.root, docs, "t")
    assert conflicts == []
    assert edit["documentChanges"] == [
        {
            "textDocument": {"uri": uri, "version": 7},
            "edits": [text_edit(rng(21, 0, 22, 0), "twenty\n"), text_edit(rng(36, 0, 37, 0), "")],
        }
    ]
    buffers = {uri: buffer}
    apply_workspace_edit(repo.root, edit, buffers)
    assert buffers[uri] == "unsaved 1\nunsaved 2\n" + target


def test_open_document_overlapping_edit_conflicts(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    base = numbered(40)
    repo.commit({"f.txt": base, "g.txt": "g\n"})
    changes = parse_patch(
        repo.patch({"f.txt": base.replace("line 20\n", "twenty\n"), "g.txt": "G\n"})
    )
    uri = (repo.root / "f.txt").as_uri()
    docs = {uri: OpenDocument(uri, 3, base.replace("line 21\n", "user typed\n"))}
    edit, conflicts = build_workspace_edit(changes, repo.root, docs, "t")
    assert [c.path for c in conflicts] == ["f.txt"]
    assert "does not match" in conflicts[0].reason
    assert [d["textDocument"]["uri"] for d in edit["documentChanges"]] == [
        (repo.root / "g.txt").as_uri()
    ]


def test_ambiguous_shifted_hunk_conflicts(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    base = "a\nb\nc\nd\ne\nf\ng\n"
    repo.commit({"f.txt": base})
    changes = parse_patch(repo.patch({"f.txt": base.replace("d\n", "D\n")}))
    # the source lines now occur twice and neither at the stated place
    (repo.root / "f.txt").write_text("x\n" + base + base)
    _, conflicts = build_workspace_edit(changes, repo.root, {}, "t")
    assert [c.path for c in conflicts] == ["f.txt"]


def test_disk_file_changed_since_base_conflicts(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    repo.commit({"f.txt": numbered(10)})
    changes = parse_patch(repo.patch({"f.txt": numbered(10).replace("line 5\n", "five\n")}))
    (repo.root / "f.txt").write_text(numbered(10).replace("line 5\n", "mine\n"))
    edit, conflicts = build_workspace_edit(changes, repo.root, {}, "t")
    assert edit["documentChanges"] == [] and [c.path for c in conflicts] == ["f.txt"]
    (repo.root / "f.txt").unlink()
    _, conflicts = build_workspace_edit(changes, repo.root, {}, "t")
    assert "does not exist" in conflicts[0].reason


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../evil.txt", "'..'"),
        ("a/../../evil.txt", "'..'"),
        (".git/config", ".git"),
        ("sub/.git/hooks/x", ".git"),
    ],
)
def test_refused_paths(path: str, why: str) -> None:
    patch = f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n"
    with pytest.raises(PatchRefused) as info:
        parse_patch(patch)
    assert path in info.value.message and why in info.value.message


def test_refused_absolute_and_nul_paths() -> None:
    absolute = "diff --git a//etc/passwd b//etc/passwd\n--- a//etc/passwd\n+++ b//etc/passwd\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(PatchRefused, match="/etc/passwd.*absolute"):
        parse_patch(absolute)
    nul = 'diff --git "a/x\\000y" "b/x\\000y"\nnew file mode 100644\n--- /dev/null\n+++ "b/x\\000y"\n@@ -0,0 +1 @@\n+x\n'
    with pytest.raises(PatchRefused, match="NUL"):
        parse_patch(nul)
    rename = "diff --git a/ok b/ok2\nsimilarity index 100%\nrename from ok\nrename to ../../out\n"
    with pytest.raises(PatchRefused, match=r"\.\./\.\./out"):
        parse_patch(rename)


def test_malformed_patch_refused() -> None:
    bad = "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n-a\n+b\n"
    with pytest.raises(PatchRefused, match="malformed patch.*a/f"):
        parse_patch(bad)


def test_symlink_escape_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s\n")
    ws = tmp_path / "ws"
    repo = Repo(ws)
    repo.commit({"x": "x\n"})
    (ws / "link").symlink_to(outside, target_is_directory=True)
    (ws / "filelink").symlink_to(outside / "secret.txt")
    (ws / "inner").symlink_to(ws / "x")
    for path in ("link/secret.txt", "link/deeper/new.txt", "filelink"):
        patch = (
            f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-s\n+pwned\n"
        )
        with pytest.raises(PatchRefused, match=re.escape(path)):
            check_paths(parse_patch(patch), ws)
    check_paths(
        parse_patch("diff --git a/inner b/inner\n--- a/inner\n+++ b/inner\n@@ -1 +1 @@\n-x\n+y\n"),
        ws,
    )
    assert (outside / "secret.txt").read_text() == "s\n"


def test_quoted_and_spaced_paths(tmp_path: Path) -> None:
    roundtrip(
        tmp_path,
        {"é dir/a b.txt": "1\n", "tab\there": "t\n"},
        {"é dir/a b.txt": "2\n", "tab\there": "T\n"},
    )


def test_empty_patch() -> None:
    assert parse_patch(b"") == []


# ----------------------------------------------------------------------------- property + scale

line_text = st.sampled_from(["", "a", "b", "x = 1", "}", "é", "😀", "\t  ", "a\r"])
line_lists = st.lists(line_text, max_size=25)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=line_lists,
    target=line_lists,
    base_eol=st.booleans(),
    target_eol=st.booleans(),
    crlf=st.booleans(),
)
def test_roundtrip_property(
    tmp_path_factory: pytest.TempPathFactory, base, target, base_eol, target_eol, crlf
) -> None:
    eol = "\r\n" if crlf else "\n"

    def render(lines: list[str], final: bool) -> str:
        text = eol.join(lines)
        return text + eol if final and lines else text

    tmp = tmp_path_factory.mktemp("prop")
    roundtrip(tmp, {"f.txt": render(base, base_eol)}, {"f.txt": render(target, target_eol)})


def test_large_patch_is_fast(tmp_path: Path) -> None:
    import time

    repo = Repo(tmp_path / "r")
    files = {f"d{i % 20}/f{i}.txt": numbered(200) for i in range(2000)}
    repo.commit(files)
    target = {
        name: text.replace("line 50\n", "L50\n").replace("line 150\n", "L150\n")
        for name, text in files.items()
    }
    patch = repo.patch(target)
    started = time.perf_counter()
    changes = parse_patch(patch)
    edit, conflicts = build_workspace_edit(changes, repo.root, {}, "t")
    elapsed = time.perf_counter() - started
    assert conflicts == [] and len(edit["documentChanges"]) == 2000
    assert elapsed < 3, elapsed


def test_hunk_parser_reproduces_git(tmp_path: Path) -> None:
    """Odd lines ("\\ x", "- y", CRLF, no final newline) under every context size: the parsed
    hunks turn the old text into exactly the new one."""
    repo = tmp_path / "r"
    repo.mkdir()

    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=repo, check=True, capture_output=True,
        ).stdout  # fmt: skip

    git("init", "-q")
    old = {"a.txt": "one\n\ntwo\r\nthree\n\\ x\n- y\n+ z\nlast", "b.txt": "keep\n" * 20}
    new = {"a.txt": "one\n\nTWO\r\nthree\n\\ x\n- y\n+ z\nlast\n", "c.txt": "keep\n" * 9 + "changed\n" + "keep\n" * 10 + "tail"}
    for name, text in old.items():
        (repo / name).write_bytes(text.encode())
    (repo / "gone.txt").write_text("bye\n")
    git("add", "-A")
    git("commit", "-qm", "base")
    (repo / "a.txt").write_bytes(new["a.txt"].encode())
    (repo / "b.txt").write_bytes(new["c.txt"].encode())
    (repo / "gone.txt").unlink()
    (repo / "b.txt").rename(repo / "c.txt")
    git("add", "-A")
    for context in ("-U3", "-U0", "-U1"):
        changes = {c.path: c for c in parse_patch(git("diff", "--cached", "--binary", "-M", context))}
        assert set(changes) == {"a.txt", "c.txt", "gone.txt"}
        assert changes["c.txt"].old_path == "b.txt" and changes["gone.txt"].is_deleted
        for path, base in (("a.txt", "a.txt"), ("c.txt", "b.txt")):
            lines = split_lines(old[base])
            assert apply_replacements(lines, locate(changes[path].hunks, lines)) == new[path], context


# ----------------------------------------------------------------------------- git's own reading


def _git_names(tmp_path: Path, patch: str) -> list[str]:
    from co_sidecar.git_apply import git_touched

    file = tmp_path / "p.diff"
    file.write_text(patch)
    names = git_touched(file)
    assert names is not None
    return sorted(names)


HEADER_CASES = {
    "rename from/to": ("diff --git a/a b/b\nsimilarity index 100%\nrename from a\nrename to b\n", "b", "a", "renamed"),
    "rename old/new": ("diff --git a/a b/b\nsimilarity index 100%\nrename old a\nrename new b\n", "b", "a", "renamed"),
    "copy": ("diff --git a/a b/c\nsimilarity index 100%\ncopy from a\ncopy to c\n", "c", "a", "added"),
    "dissimilarity": (
        "diff --git a/a b/a\ndeleted file mode 100644\ndissimilarity index 90%\nindex 1111111..0000000\n"
        "--- a/a\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
        "a", None, "deleted",
    ),
    "mode change": ("diff --git a/a b/a\nold mode 100644\nnew mode 100755\n", "a", None, "modified"),
    "index with mode": (
        "diff --git a/a b/a\nindex 1111111..2222222 100644\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-x\n+y\n",
        "a", None, "modified",
    ),
    "new symlink": (
        "diff --git a/l b/l\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/l\n"
        "@@ -0,0 +1 @@\n+a\n\\ No newline at end of file\n",
        "l", None, "added",
    ),
    "gitlink": (
        "diff --git a/sub b/sub\nnew file mode 160000\nindex 0000000..1111111\n--- /dev/null\n+++ b/sub\n"
        "@@ -0,0 +1 @@\n+Subproject commit 1111111111111111111111111111111111111111\n",
        "sub", None, "added",
    ),
}


@pytest.mark.parametrize("name", list(HEADER_CASES))
def test_every_header_git_knows_names_the_files_git_touches(tmp_path: Path, name: str) -> None:
    patch, path, old_path, status = HEADER_CASES[name]
    (change,) = parse_patch(patch)
    assert (change.path, change.old_path, change.status) == (path, old_path, status)
    assert _git_names(tmp_path, patch) == [path]  # git itself reads the same file


@pytest.mark.parametrize(
    ("patch", "why"),
    [
        ("diff --git a/a b/a\nrename frm a\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-x\n+y\n", "not one git"),
        ("diff --git a/a b/a\nX-Header: 1\nrename from a\nrename to ../../x\n", "not one git"),
        ("diff --git a/a b/b\nrename from a\nrename to b\n--- a/a\n+++ b/other\n@@ -1 +1 @@\n-x\n+y\n", "names another file"),
        ("diff --git a/a b/a\nnew file mode 100644\ndeleted file mode 100644\n", "inconsistent"),
        ("diff --git a/a b/a\nold mode 100600\nnew mode 104755\n", "unsupported file mode"),
        # A traditional patch hidden after a file's hunks: git would apply it too.
        ("diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-x\n+y\nnote\n--- a/b\n+++ b/c\n@@ -0,0 +1 @@\n+z\n", "outside any file"),
        ("Subject: x\n--- a/b\n+++ b/c\n@@ -0,0 +1 @@\n+z\n", "outside any file"),
    ],
)
def test_headers_git_reads_differently_are_refused(patch: str, why: str) -> None:
    with pytest.raises(PatchRefused, match=why):
        parse_patch(patch)


@pytest.mark.parametrize(
    "path",
    [
        "GIT~1/config", "x/git~2/hooks", ".git./config", ".git /config", ".GiT/config",
        ".g\u200cit/config", "\ufeff.git/config", ".git::$INDEX_ALLOCATION/config",
        "gitmod~1", "GI7EBA~1", ".gitmodules.", ".gitmodules ", ".gitmodul\u200des",
        "a\\..\\b", "name.", "dir /x", "a//b", "./a",
    ],
)
def test_names_git_refuses_on_any_platform_are_refused(path: str) -> None:
    q = path.replace("\\", "\\\\")  # C-quoted, as git writes it
    patch = f'diff --git "a/{q}" "b/{q}"\nnew file mode 100644\n--- /dev/null\n+++ "b/{q}"\n@@ -0,0 +1 @@\n+x\n'
    with pytest.raises(PatchRefused, match="refused path"):
        parse_patch(patch)


def test_paths_are_checked_where_they_resolve_after_the_patch(tmp_path: Path) -> None:
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    outside.mkdir()
    Repo(ws).commit({"x": "x\n", "sub/y": "y\n"})
    (ws / "tolink").symlink_to(ws / "sub")
    (ws / "togit").symlink_to(ws / ".git")
    link = "diff --git a/{0} b/{0}\nnew file mode 120000\n--- /dev/null\n+++ b/{0}\n@@ -0,0 +1 @@\n+{1}\n\\ No newline at end of file\n"
    new = "diff --git a/{0} b/{0}\nnew file mode 100644\n--- /dev/null\n+++ b/{0}\n@@ -0,0 +1 @@\n+z\n"
    # Through a symlink the patch creates, into .git through an existing one, a rename whose source
    # leaves, and a link whose target resolves through another link the patch makes.
    for patch, why in [
        (link.format("l", "../outside") + new.format("l/evil"), "outside the workspace"),
        (link.format("l", "sub") + link.format("sub2", "l/../..") + new.format("sub2/ws2"), "outside the workspace"),
        (new.format("togit/hooks/post-checkout"), ".git"),
        (link.format("g", ".git") , ".git"),
        (new.format(".runs/adhoc/r/manifest.json"), ".runs"),
    ]:
        with pytest.raises(PatchRefused, match=why):
            check_paths(parse_patch(patch), ws, ws / ".runs")
    # Inside stays fine: a link to a sibling, a file written through an inner link.
    assert check_paths(parse_patch(link.format("l", "sub") + new.format("tolink/new")), ws, ws / ".runs") == []
    external = check_paths(parse_patch(link.format("l", "../outside")), ws, ws / ".runs")
    assert [c.path for c in external] == ["l"] and "outside the workspace" in external[0].reason
