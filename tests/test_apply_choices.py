"""Apply you can trust, through the real server over stdio: a dry run, every conflict kind with
both strategies (nothing written unless the caller chose it), partial acceptance (files and
hunks, recorded, the rest applied later and never twice, or rejected), and a client's
workspaceEdit capabilities honoured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from conftest import ROOT, SessionFactory

sys.path.insert(0, str(ROOT / "scripts"))
from apply_faults import manifest_of, seed_run, snapshot  # noqa: E402

OLD = "2020-01-01T00:00:00Z"  # the base commit's date: HEAD moves after the run began
CALC = "".join(f"line {n}\n" for n in range(1, 21))
BINARY = bytes(range(256)) * 4


def git(repo: Path, *args: str, when: str | None = None) -> str:
    env = {**os.environ, **({"GIT_COMMITTER_DATE": when, "GIT_AUTHOR_DATE": when} if when else {})}
    return subprocess.run(  # noqa: S603 - fixed git argv
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],  # noqa: S607
        cwd=repo, check=True, capture_output=True, text=True, env=env,
    ).stdout  # fmt: skip


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "calc.py").write_text(CALC)
    (path / "other.py").write_text("a = 1\n")
    (path / "img.bin").write_bytes(BINARY)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "base", when=OLD)
    return path


def patch_of(repo: Path, change: dict[str, str | bytes | None]) -> bytes:
    for name, data in change.items():
        if data is None:
            (repo / name).unlink()
        else:
            (repo / name).write_bytes(data.encode() if isinstance(data, str) else data)
    git(repo, "add", "-A")
    patch = subprocess.run(["git", "diff", "--cached", "--binary", "HEAD"], cwd=repo, check=True, capture_output=True).stdout  # noqa: S603, S607
    git(repo, "reset", "-q", "--hard", "HEAD")
    return patch


EDIT_8 = CALC.replace("line 8\n", "line eight\n")
EDIT_8_AND_18 = EDIT_8.replace("line 18\n", "line eighteen\n")


def apply_to_disk(edit: dict[str, Any]) -> None:
    """What an editor does with a WorkspaceEdit, on disk (the test client's buffers are the files)."""

    def path(uri: str) -> Path:
        return Path(unquote(urlparse(uri).path))

    for op in edit.get("documentChanges", []):
        kind = op.get("kind")
        if kind == "create":
            path(op["uri"]).write_text("")
        elif kind == "delete":
            path(op["uri"]).unlink()
        elif kind == "rename":
            path(op["oldUri"]).rename(path(op["newUri"]))
        else:
            target = path(op["textDocument"]["uri"])
            lines = target.read_text().splitlines(keepends=True)
            for e in sorted(op["edits"], key=lambda e: (e["range"]["start"]["line"], e["range"]["start"]["character"]), reverse=True):
                start, end = e["range"]["start"], e["range"]["end"]
                assert start["character"] == 0 and end["character"] == 0
                lines[start["line"] : end["line"]] = [e["newText"]]
            target.write_text("".join(lines))


async def apply(session: Any, run_id: str, **params: Any) -> dict[str, Any]:
    return dict(await session.request("co/apply", {"runId": run_id, "accept": True, **params}))


# -- the conflict kinds -------------------------------------------------------------------------


def same_lines_edited(repo: Path) -> tuple[bytes, str]:
    patch = patch_of(repo, {"calc.py": EDIT_8, "other.py": "a = 2\n"})
    (repo / "calc.py").write_text(CALC.replace("line 8\n", "line 8 (mine)\n"))
    return patch, "calc.py"


def file_deleted(repo: Path) -> tuple[bytes, str]:
    patch = patch_of(repo, {"calc.py": EDIT_8, "other.py": "a = 2\n"})
    (repo / "calc.py").unlink()
    return patch, "calc.py"


def file_renamed(repo: Path) -> tuple[bytes, str]:
    patch = patch_of(repo, {"calc.py": EDIT_8, "other.py": "a = 2\n"})
    git(repo, "mv", "calc.py", "calculator.py")
    return patch, "calc.py"


@pytest.mark.parametrize("strategy", ["git", "client"])
@pytest.mark.parametrize(
    ("kind", "why"),
    [
        (same_lines_edited, "line"),
        (file_deleted, "deleted since the run's base"),
        (file_renamed, "moved to calculator.py"),
    ],
    ids=["same-lines", "deleted", "renamed"],
)
async def test_a_conflict_writes_nothing_unless_asked_and_skip_takes_the_clean_files(
    tmp_path: Path, start_server: SessionFactory, strategy: str, kind: Any, why: str
) -> None:
    repo = make_repo(tmp_path / "ws")
    patch, conflicted = kind(repo)
    run_id = seed_run(repo, patch)
    session = await start_server(repo)
    before = snapshot(repo)

    dry = await apply(session, run_id, strategy=strategy, dryRun=True, accept=False)
    outcomes = {f["path"]: f["outcome"] for f in dry["files"]}
    assert dry["dryRun"] is True and dry["outcome"] == "dry_run" and dry["applied"] is False
    assert outcomes == {conflicted: "conflict", "other.py": "clean"}, dry["files"]
    assert why in next(f["reason"] for f in dry["files"] if f["path"] == conflicted)

    refused = await apply(session, run_id, strategy=strategy)
    assert refused["applied"] is False and refused["outcome"] == "conflicts"
    assert refused["conflictPaths"] == [conflicted] and why in refused["failureReason"]
    assert '"skip"' in refused["failureReason"]
    assert snapshot(repo) == before and session.apply_requests == []
    m = manifest_of(repo / ".runs", run_id)
    assert m["state"] == "succeeded" and m["apply"]["outcome"] == "conflicts" and m["apply"]["conflictPaths"] == [conflicted]

    skipped = await apply(session, run_id, strategy=strategy, onConflict="skip")
    if strategy == "client":
        apply_to_disk(session.apply_requests[-1]["edit"])
    assert skipped["applied"] is True and skipped["outcome"] == "partial"
    assert skipped["skippedPaths"] == [conflicted] and skipped["remaining"] == [conflicted]
    assert (repo / "other.py").read_text() == "a = 2\n"
    assert "<<<<<<<" not in "".join(p.read_text() for p in repo.glob("*.py"))
    m = manifest_of(repo / ".runs", run_id)
    assert m["state"] == "partially_applied" and m["appliedParts"] == {"other.py": [1]}
    assert m["apply"]["outcome"] == "partial" and m["apply"]["remaining"] == [conflicted]


async def test_markers_only_when_chosen_and_recorded_as_conflicts(tmp_path: Path, start_server: SessionFactory) -> None:
    repo = make_repo(tmp_path / "ws")
    patch, _ = same_lines_edited(repo)
    run_id = seed_run(repo, patch)
    session = await start_server(repo)
    with pytest.raises(JsonRpcException, match='strategy "git" with onConflict "markers"'):
        await apply(session, run_id, onConflict="markers")
    result = await apply(session, run_id, strategy="git", onConflict="markers")
    assert result["applied"] is True and result["outcome"] == "conflicts" and result["conflictPaths"] == ["calc.py"]
    assert "<<<<<<<" in (repo / "calc.py").read_text() and (repo / "other.py").read_text() == "a = 2\n"
    m = manifest_of(repo / ".runs", run_id)
    assert m["state"] == "applied" and m["apply"]["outcome"] == "conflicts" and m["apply"]["onConflict"] == "markers"


@pytest.mark.parametrize("strategy", ["git", "client"])
async def test_head_moved_with_the_change_already_in_is_not_applied_twice(
    tmp_path: Path, start_server: SessionFactory, strategy: str
) -> None:
    repo = make_repo(tmp_path / "ws")
    patch = patch_of(repo, {"calc.py": EDIT_8, "other.py": "a = 2\n"})
    run_id = seed_run(repo, patch)
    (repo / "calc.py").write_text(EDIT_8)  # someone committed the same change meanwhile
    git(repo, "commit", "-qam", "same change")
    session = await start_server(repo)
    dry = await apply(session, run_id, strategy=strategy, dryRun=True, accept=False)
    assert {f["path"]: f["outcome"] for f in dry["files"]} == {"calc.py": "already_applied", "other.py": "clean"}
    assert dry["workspace"]["headMoved"] is True and dry["workspace"]["commitsSince"] == 1
    assert dry["workspace"]["edited"] == ["calc.py"]
    result = await apply(session, run_id, strategy=strategy)
    if strategy == "client":
        apply_to_disk(session.apply_requests[-1]["edit"])
        assert [op["textDocument"]["uri"].rsplit("/", 1)[1] for op in session.apply_requests[-1]["edit"]["documentChanges"]] == ["other.py"]
    assert result["applied"] is True and result["outcome"] == "applied", result
    assert (repo / "calc.py").read_text() == EDIT_8 and (repo / "other.py").read_text() == "a = 2\n"
    assert manifest_of(repo / ".runs", run_id)["state"] == "applied"


@pytest.mark.parametrize("strategy", ["git", "client"])
async def test_a_binary_file_needs_the_git_strategy(tmp_path: Path, start_server: SessionFactory, strategy: str) -> None:
    repo = make_repo(tmp_path / "ws")
    patch = patch_of(repo, {"img.bin": BINARY[::-1], "other.py": "a = 2\n"})
    run_id = seed_run(repo, patch)
    session = await start_server(repo)
    dry = await apply(session, run_id, strategy=strategy, dryRun=True, accept=False)
    outcome = {f["path"]: (f["outcome"], f["reason"]) for f in dry["files"]}
    if strategy == "git":
        assert outcome["img.bin"] == ("clean", None)
        result = await apply(session, run_id, strategy="git")
        assert result["outcome"] == "applied" and (repo / "img.bin").read_bytes() == BINARY[::-1]
        return
    assert outcome["img.bin"][0] == "skipped" and 'strategy "git"' in outcome["img.bin"][1]
    refused = await apply(session, run_id)
    assert refused["outcome"] == "refused" and refused["skippedPaths"] == ["img.bin"] and session.apply_requests == []
    partial = await apply(session, run_id, onConflict="skip")
    assert partial["outcome"] == "partial" and partial["remaining"] == ["img.bin"]
    rest = await apply(session, run_id, strategy="git")  # the rest, with the strategy that can
    assert rest["outcome"] == "applied" and (repo / "img.bin").read_bytes() == BINARY[::-1]
    assert manifest_of(repo / ".runs", run_id)["state"] == "applied"


@pytest.mark.parametrize("strategy", ["git", "client"])
async def test_over_budget_is_skipped_in_a_dry_run_and_refused_without_force(
    tmp_path: Path, start_server: SessionFactory, strategy: str
) -> None:
    repo = make_repo(tmp_path / "ws")
    patch = patch_of(repo, {"calc.py": EDIT_8, "other.py": "a = 2\n"})
    run_id = seed_run(repo, patch)
    session = await start_server(repo, {"diff": {"maxFiles": 1}})
    dry = await apply(session, run_id, strategy=strategy, dryRun=True, accept=False)
    assert dry["overBudget"] is True and {f["outcome"] for f in dry["files"]} == {"skipped"}
    assert "diff.maxFiles=1" in dry["files"][0]["reason"]
    with pytest.raises(JsonRpcException, match="over budget") as refused:
        await apply(session, run_id, strategy=strategy)
    assert refused.value.code == -32003
    # Taking one file is within the budget.
    one = await apply(session, run_id, strategy=strategy, files=["other.py"])
    assert one["outcome"] == "partial" and one["remaining"] == ["calc.py"]
    forced = await apply(session, run_id, strategy="git", force=True)
    assert forced["outcome"] == "applied"


# -- partial acceptance ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["git", "client"])
async def test_hunks_then_the_rest_never_twice(tmp_path: Path, start_server: SessionFactory, strategy: str) -> None:
    repo = make_repo(tmp_path / "ws")
    patch = patch_of(repo, {"calc.py": EDIT_8_AND_18, "other.py": "a = 2\n", "new.txt": "new\n"})
    run_id = seed_run(repo, patch)
    session = await start_server(repo)
    diff = await session.request("co/diff", {"runId": run_id})
    assert [(h["path"], h["number"], h["applied"]) for h in diff["hunks"]] == [
        ("calc.py", 1, False), ("calc.py", 2, False), ("new.txt", 1, False), ("other.py", 1, False),
    ]  # fmt: skip
    picked = await session.request("co/diff", {"runId": run_id, "hunks": {"calc.py": [2]}})
    assert [f["path"] for f in picked["files"]] == ["calc.py"] and "+line eighteen" in picked["patch"]
    assert "line eight\n" not in picked["patch"]

    first = await apply(session, run_id, strategy=strategy, hunks={"calc.py": [2]}, files=["new.txt"])
    if strategy == "client":
        apply_to_disk(session.apply_requests[-1]["edit"])
    assert first["outcome"] == "partial" and first["skippedPaths"] == []
    assert sorted(first["remaining"]) == ["calc.py", "other.py"]
    assert (repo / "calc.py").read_text() == CALC.replace("line 18\n", "line eighteen\n")
    assert (repo / "new.txt").read_text() == "new\n"
    m = manifest_of(repo / ".runs", run_id)
    assert m["state"] == "partially_applied" and m["appliedParts"] == {"calc.py": [2], "new.txt": [1]}

    rest_diff = await session.request("co/diff", {"runId": run_id})
    assert sorted(f["path"] for f in rest_diff["files"]) == ["calc.py", "other.py"]
    assert [h["number"] for h in rest_diff["hunks"] if h["applied"]] == [2, 1]
    with pytest.raises(JsonRpcException, match="already applied"):
        await apply(session, run_id, strategy=strategy, files=["new.txt"])

    rest = await apply(session, run_id, strategy=strategy)
    if strategy == "client":
        apply_to_disk(session.apply_requests[-1]["edit"])
    assert rest["outcome"] == "applied" and rest["remaining"] == []
    assert (repo / "calc.py").read_text() == EDIT_8_AND_18 and (repo / "other.py").read_text() == "a = 2\n"
    m = manifest_of(repo / ".runs", run_id)
    assert m["state"] == "applied" and m["appliedParts"] == {"calc.py": [1, 2], "new.txt": [1], "other.py": [1]}
    with pytest.raises(JsonRpcException, match="already applied"):
        await apply(session, run_id, strategy=strategy)


async def test_the_rest_of_a_partly_applied_run_can_be_rejected(tmp_path: Path, start_server: SessionFactory) -> None:
    repo = make_repo(tmp_path / "ws")
    run_id = seed_run(repo, patch_of(repo, {"calc.py": EDIT_8, "other.py": "a = 2\n"}))
    session = await start_server(repo)
    await apply(session, run_id, strategy="git", files=["other.py"])
    assert (await session.request("co/reject", {"runId": run_id}))["state"] == "rejected"
    m = manifest_of(repo / ".runs", run_id)
    assert m["apply"]["rejected"] is True and m["appliedParts"] == {"other.py": [1]}
    assert (repo / "calc.py").read_text() == CALC and (repo / "other.py").read_text() == "a = 2\n"


async def test_a_selection_naming_no_file_of_the_patch_is_a_bad_param(tmp_path: Path, start_server: SessionFactory) -> None:
    repo = make_repo(tmp_path / "ws")
    run_id = seed_run(repo, patch_of(repo, {"calc.py": EDIT_8}))
    session = await start_server(repo)
    with pytest.raises(JsonRpcException, match="'nope.py' is not a file of the run's patch") as bad:
        await apply(session, run_id, files=["nope.py"])
    assert bad.value.code == -32602
    with pytest.raises(JsonRpcException, match="calc.py has 1 hunk"):
        await session.request("co/diff", {"runId": run_id, "hunks": {"calc.py": [3]}})


# -- a generic client's capabilities ---------------------------------------------------------------


def _caps(document_changes: bool | None, operations: list[str] | None, annotations: bool) -> types.ClientCapabilities:
    edit = types.WorkspaceEditClientCapabilities(
        document_changes=document_changes,
        resource_operations=[types.ResourceOperationKind(op) for op in operations] if operations is not None else None,
        change_annotation_support=types.ChangeAnnotationsSupportOptions(groups_on_label=False) if annotations else None,
    )
    return types.ClientCapabilities(workspace=types.WorkspaceClientCapabilities(apply_edit=True, workspace_edit=edit))


async def test_a_client_without_resource_operations_gets_none_and_is_told_which_capability(
    tmp_path: Path, start_server: SessionFactory
) -> None:
    repo = make_repo(tmp_path / "ws")
    run_id = seed_run(repo, patch_of(repo, {"calc.py": EDIT_8, "new.txt": "new\n"}))
    session = await start_server(repo, capabilities=_caps(True, None, annotations=False))
    refused = await apply(session, run_id)
    assert refused["applied"] is False and refused["skippedPaths"] == ["new.txt"]
    assert "resourceOperations" in refused["failureReason"] and 'strategy "git"' in refused["failureReason"]
    assert session.apply_requests == []
    taken = await apply(session, run_id, onConflict="skip")
    sent = session.apply_requests[-1]["edit"]
    assert taken["outcome"] == "partial" and taken["remaining"] == ["new.txt"]
    assert "changeAnnotations" not in sent and all("annotationId" not in e for op in sent["documentChanges"] for e in op["edits"])


async def test_a_client_without_document_changes_gets_a_changes_map(tmp_path: Path, start_server: SessionFactory) -> None:
    repo = make_repo(tmp_path / "ws")
    run_id = seed_run(repo, patch_of(repo, {"calc.py": EDIT_8}))
    session = await start_server(repo, capabilities=_caps(None, None, annotations=False))
    result = await apply(session, run_id)
    sent = session.apply_requests[-1]["edit"]
    assert result["applied"] is True and "documentChanges" not in sent
    assert list(sent["changes"]) == [(repo / "calc.py").as_uri()]


async def test_a_declined_edit_is_recorded_with_the_clients_words(tmp_path: Path, start_server: SessionFactory) -> None:
    repo = make_repo(tmp_path / "ws")
    run_id = seed_run(repo, patch_of(repo, {"calc.py": EDIT_8}))
    session = await start_server(repo)
    session.apply_answer = {"applied": False, "failure_reason": "the user said no"}
    result = await apply(session, run_id)
    assert result["applied"] is False and result["outcome"] == "declined" and "the user said no" in result["failureReason"]
    m = manifest_of(repo / ".runs", run_id)
    assert m["state"] == "succeeded" and m["apply"]["outcome"] == "declined" and "the user said no" in m["apply"]["reason"]


async def test_a_client_that_applied_part_of_the_edit_gets_exactly_that_recorded(
    tmp_path: Path, start_server: SessionFactory
) -> None:
    """VS Code's refactor preview with an item unticked: the extension answers applied: false with
    the URIs it did apply (apply_plan.APPLIED_ONLY); the run records those, the rest stays."""
    repo = make_repo(tmp_path / "ws")
    run_id = seed_run(repo, patch_of(repo, {"calc.py": EDIT_8, "other.py": "a = 2\n"}))
    session = await start_server(repo)
    uri = (repo / "calc.py").as_uri()
    session.apply_answer = {"applied": False, "failure_reason": f'co-sidecar: applied only: ["{uri}"]'}
    result = await apply(session, run_id)
    assert result["applied"] is True and result["outcome"] == "partial"
    assert result["remaining"] == ["other.py"] and result["skippedPaths"] == ["other.py"]
    assert {f["path"]: f["written"] for f in result["files"]} == {"calc.py": True, "other.py": False}
    m = manifest_of(repo / ".runs", run_id)
    assert m["state"] == "partially_applied" and m["appliedParts"] == {"calc.py": [1]}
    assert "preview" in next(f["reason"] for f in result["files"] if f["path"] == "other.py")


async def test_a_client_that_applied_some_hunks_of_a_file_gets_exactly_those_recorded(
    tmp_path: Path, start_server: SessionFactory
) -> None:
    """The refactor preview with one edit of a file unticked: the extension names the edits it
    applied ({"uri", "edits"}); the run records those hunks only, and the other one is still
    offered: a later apply takes it, once."""
    repo = make_repo(tmp_path / "ws")
    run_id = seed_run(repo, patch_of(repo, {"calc.py": EDIT_8_AND_18}))
    session = await start_server(repo)
    uri = (repo / "calc.py").as_uri()
    taken = json.dumps([{"uri": uri, "edits": [1]}])
    session.apply_answer = {"applied": False, "failure_reason": f"co-sidecar: applied only: {taken}"}
    result = await apply(session, run_id)
    assert result["applied"] is True and result["outcome"] == "partial" and result["remaining"] == ["calc.py"]
    m = manifest_of(repo / ".runs", run_id)
    assert m["state"] == "partially_applied" and m["appliedParts"] == {"calc.py": [2]}
    (repo / "calc.py").write_text(CALC.replace("line 18\n", "line eighteen\n"))  # what the editor wrote

    rest = await apply(session, run_id, strategy="git")
    assert rest["applied"] is True and rest["outcome"] == "applied" and rest["remaining"] == []
    assert (repo / "calc.py").read_text() == EDIT_8_AND_18
    m = manifest_of(repo / ".runs", run_id)
    assert m["state"] == "applied" and m["appliedParts"] == {"calc.py": [1, 2]}


async def test_an_unknown_command_is_method_not_found(tmp_path: Path, start_server: SessionFactory) -> None:
    session = await start_server(make_repo(tmp_path / "ws"))
    with pytest.raises(JsonRpcException) as unknown:
        await session.request("workspace/executeCommand", types.ExecuteCommandParams(command="co.nope", arguments=[{}]))
    assert unknown.value.code == -32601 and "co.nope" in unknown.value.message



async def test_head_moved_is_measured_from_the_head_at_launch(tmp_path: Path, start_server: SessionFactory) -> None:
    """The base HEAD is recorded when the run is created: a commit made in the same second as
    the launch (which the reflog's whole seconds cannot tell apart) still counts as a move."""
    repo = tmp_path / "ws"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "calc.py").write_text(CALC)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")  # now: the same second as the launch below
    base = git(repo, "rev-parse", "HEAD").strip()
    session = await start_server(repo)
    run_id, state = await session.run_to_end()
    assert state == "succeeded"
    assert manifest_of(repo / ".runs", run_id)["workspaceHead"] == base
    unmoved = await apply(session, run_id, strategy="git", dryRun=True, accept=False)
    assert unmoved["workspace"]["headMoved"] is False and unmoved["workspace"]["baseHead"] == base
    (repo / "later.txt").write_text("later\n")
    git(repo, "add", "later.txt")
    git(repo, "commit", "-qm", "later")
    moved = await apply(session, run_id, strategy="git", dryRun=True, accept=False)
    assert moved["workspace"]["headMoved"] is True and moved["workspace"]["commitsSince"] == 1
    assert moved["workspace"]["baseHead"] == base


async def test_the_dry_run_says_merged_and_path_refused(tmp_path: Path, start_server: SessionFactory) -> None:
    """Two outcomes of the dry run: `merged` (the user edited a context line: the patch no longer
    applies as it is, git's 3-way merge takes it cleanly) and `skipped` for a path refused (a
    symlink out of the workspace, without allowExternalSymlinks), beside a clean file."""
    repo = make_repo(tmp_path / "ws")
    patch = patch_of(repo, {"calc.py": EDIT_8, "other.py": "a = 2\n"})
    (repo / "out").symlink_to(tmp_path)
    git(repo, "add", "-A")
    link = subprocess.run(["git", "diff", "--cached", "HEAD"], cwd=repo, check=True, capture_output=True).stdout  # noqa: S603, S607
    git(repo, "reset", "-q", "--hard", "HEAD")
    run_id = seed_run(repo, patch + link)
    (repo / "calc.py").write_text(CALC.replace("line 6\n", "line six (mine)\n"))
    session = await start_server(repo)
    dry = await apply(session, run_id, strategy="git", dryRun=True)
    files = {f["path"]: f for f in dry["files"]}
    assert files["calc.py"]["outcome"] == "merged", files["calc.py"]
    assert files["other.py"]["outcome"] == "clean"
    assert files["out"]["outcome"] == "skipped" and files["out"]["reason"].startswith("path refused: ")
    assert "allowExternalSymlinks" in files["out"]["reason"]
    assert (repo / "calc.py").read_text() == CALC.replace("line 6\n", "line six (mine)\n") and not (repo / "out").exists()
