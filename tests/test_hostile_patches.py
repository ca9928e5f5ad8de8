"""Hostile patches end to end: a malicious diff (a run's patch file and its sha256 rewritten in
the manifest, as a compromised cloud could serve) goes through co/diff and co/apply (client and
git strategies) of the real server. Unsafe ones are refused and `git apply` never sees them; odd
but legitimate ones (CRLF, no final newline, non-UTF-8, big hunks) are applied byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, git, make_repo

sys.path.insert(0, str(ROOT / "scripts"))
from rpc import RpcError, RpcProcess  # noqa: E402

PATCH_REFUSED = -32005
BASE = {
    "README.md": "# demo\n",
    "app.py": "def main():\n    return 1\n",
    "crlf.txt": "one\r\ntwo\r\n",
    "noeol.txt": "last line",
}
LATIN1 = "caf\xe9\n".encode("latin-1")
HARD_LIMIT = 300_000


def new_file(path: str, body: str = "x\n") -> str:
    lines = body.splitlines(keepends=True)
    return (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n"
        f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n" + "".join("+" + ln for ln in lines)
    )


REFUSED: dict[str, tuple[bytes, str]] = {
    "dotdot": (new_file("../escaped.txt").encode(), "'..' segment"),
    "nested-dotdot": (new_file("src/../../escaped.txt").encode(), "'..' segment"),
    "absolute": (new_file("/tmp/co-sidecar-absolute.txt").encode(), "absolute"),
    "git-dir": (new_file(".git/hooks/post-checkout", "#!/bin/sh\necho pwned\n").encode(), ".git"),
    "git-dir-case": (new_file("sub/.GIT/config").encode(), ".git"),
    "nul-byte": (new_file("x").encode().replace(b"a/x b/x", b'"a/x\\000y" "b/x\\000y"').replace(b"+++ b/x", b'+++ "b/x\\000y"'), "NUL"),
    "symlink-escape": (new_file("out/pwned.txt").encode(), "symlink"),
    "over-hard-limit": (new_file("big.txt", ("z" * 99 + "\n") * 4000).encode(), "hardMaxPatchBytes"),
    "not-a-patch": (b"this is not a diff at all\n", "not a git diff"),
    "nul-in-hunk": (new_file("nul.txt", "a\0b\n").encode(), "NUL"),
}


def wrapper_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A `git` on PATH that logs its argv, so the test sees every `git apply`."""
    bin_dir, log = tmp_path / "bin", tmp_path / "git-calls.log"
    bin_dir.mkdir()
    real = next(p for p in os.environ["PATH"].split(os.pathsep) if (Path(p) / "git").is_file())
    script = bin_dir / "git"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real}/git "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir, log


def legit_patches(repo: Path, tmp_path: Path) -> dict[str, tuple[bytes, dict[str, bytes]]]:
    """Real `git diff` output for odd-but-valid changes, with the bytes each file must end up as."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    cases: dict[str, dict[str, bytes]] = {
        "crlf": {"crlf.txt": b"one\r\nTWO\r\nthree\r\n"},
        "no-final-newline": {"noeol.txt": b"last line, edited"},
        "non-utf8": {"latin1.txt": "caf\xe9 cr\xe8me\n".encode("latin-1")},
        "big-hunk": {"big.txt": b"".join(b"line %d\n" % i for i in range(20_000))},
        "add-final-newline": {"noeol.txt": b"last line\n"},
    }
    out: dict[str, tuple[bytes, dict[str, bytes]]] = {}
    for name, files in cases.items():
        git(clone, "checkout", "-q", ".")
        git(clone, "clean", "-qfd")
        for path, data in files.items():
            (clone / path).write_bytes(data)
        git(clone, "add", "-A")
        patch = git_bytes(clone, "diff", "--cached", "--binary", "HEAD")
        git(clone, "reset", "-q")
        out[name] = (patch, files)
    return out


def git_bytes(repo: Path, *args: str) -> bytes:
    import subprocess

    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True).stdout


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    repo = make_repo(tmp_path / "ws", BASE)
    (repo / "latin1.txt").write_bytes(LATIN1)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "latin1")
    (tmp_path / "outside").mkdir()
    (repo / "out").symlink_to(tmp_path / "outside")  # untracked symlink leaving the workspace
    yield repo


def plant(repo: Path, run_id: str, patch: bytes) -> None:
    """Replace a finished run's patch and its recorded sha256/size (a malicious diff source)."""
    run_dir = repo / ".runs" / "adhoc" / run_id
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "patch.diff").write_bytes(patch)
    manifest["diff"].update(
        sha256=hashlib.sha256(patch).hexdigest(), bytes=len(patch), problem=None, files=[], overBudget=False
    )
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def test_hostile_and_odd_patches_through_diff_and_apply(workspace: Path, tmp_path: Path) -> None:
    legit = legit_patches(workspace, tmp_path)
    names = [*REFUSED, *legit]
    options: dict[str, Any] = {
        "local": {"agentCommand": [sys.executable, "-c", "open('agent.txt', 'w').write('hi\\n')"]},
        "diff": {"hardMaxPatchBytes": HARD_LIMIT},
    }
    first = RpcProcess(cwd=workspace)
    first.initialize(workspace, options)
    runs = {name: first.request("co/launch", {"prompt": name, "mode": "local"})["runId"] for name in names}
    for run_id in runs.values():
        assert first.wait_state(run_id, {"succeeded", "failed"}) == "succeeded"
    first.close()
    for name, (patch, _) in REFUSED.items():
        plant(workspace, runs[name], patch)
    for name, (patch, _) in legit.items():
        plant(workspace, runs[name], patch)
    assert len(legit["big-hunk"][0]) < HARD_LIMIT < len(REFUSED["over-hard-limit"][0])

    bin_dir, log = wrapper_dir(tmp_path)
    server = RpcProcess(cwd=workspace, env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    server.initialize(workspace, options)
    try:
        before = {p: p.read_bytes() for p in workspace.rglob("*") if p.is_file() and ".git" not in p.parts and ".runs" not in p.parts}
        for name, (_, words) in REFUSED.items():
            run_id = runs[name]
            for method, params in [
                ("co/diff", {"runId": run_id}),
                ("co/apply", {"runId": run_id, "accept": True, "strategy": "client"}),
                ("co/apply", {"runId": run_id, "accept": True, "strategy": "git", "force": True}),
            ]:
                with pytest.raises(RpcError) as caught:
                    server.request(method, params)
                assert caught.value.code == PATCH_REFUSED, (name, method, caught.value.error)
                assert words in caught.value.message, (name, caught.value.message)
        assert not server.server_requests  # no workspace/applyEdit was ever sent for them
        calls = log.read_text().splitlines() if log.exists() else []
        assert not [c for c in calls if c.startswith("apply")], calls  # git apply never saw one
        after = {p: p.read_bytes() for p in workspace.rglob("*") if p.is_file() and ".git" not in p.parts and ".runs" not in p.parts}
        assert after == before and not list((tmp_path / "outside").iterdir())
        assert not (tmp_path / "escaped.txt").exists()

        # Odd but valid: the preview is exact, and git applies them byte for byte.
        crlf = server.request("co/diff", {"runId": runs["crlf"]})
        new_texts = [e["newText"] for dc in crlf["edit"]["documentChanges"] for e in dc.get("edits", [])]
        assert new_texts == ["TWO\r\nthree\r\n"] and crlf["conflicts"] == []
        noeol = server.request("co/diff", {"runId": runs["no-final-newline"]})
        assert [e["newText"] for dc in noeol["edit"]["documentChanges"] for e in dc["edits"]] == ["last line, edited"]
        latin = server.request("co/diff", {"runId": runs["non-utf8"]})
        assert latin["conflicts"][0]["path"] == "latin1.txt" and 'strategy "git"' in latin["conflicts"][0]["reason"]
        refused_client = server.request("co/apply", {"runId": runs["non-utf8"], "accept": True})
        assert refused_client["applied"] is False and "latin1.txt" in refused_client["failureReason"]
        for name in ["crlf", "no-final-newline", "non-utf8", "big-hunk"]:
            result = server.request("co/apply", {"runId": runs[name], "accept": True, "strategy": "git"})
            assert result["applied"] is True, (name, result)
            for path, data in legit[name][1].items():
                assert (workspace / path).read_bytes() == data, name
        # The client strategy carries the exact text too (the edit adds the final newline).
        client = server.request("co/apply", {"runId": runs["add-final-newline"], "accept": True, "strategy": "client"})
        assert client["applied"] is False  # noeol.txt changed on disk by the git apply above: conflict
        assert "noeol.txt" in client["failureReason"]
    finally:
        server.close()


# ----------------------------------------------------------------------------- what git would do

RENAME_OLD_NEW = (
    "diff --git a/a.txt b/a.txt\nsimilarity index 100%\nrename old a.txt\nrename new out/evil.desktop\n"
)
RENAME_OLD_NEW_EDIT = (
    "diff --git a/a.txt b/a.txt\nsimilarity index 90%\nrename old a.txt\nrename new out/evil.desktop\n"
    "--- a/a.txt\n+++ b/out/evil.desktop\n@@ -1 +1 @@\n-keep\n+[Desktop Entry]\n"
)
LINK_THEN_WRITE = (
    "diff --git a/l b/l\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/l\n"
    "@@ -0,0 +1 @@\n+../outside\n\\ No newline at end of file\n"
    "diff --git a/l/evil.txt b/l/evil.txt\nnew file mode 100644\nindex 0000000..2222222\n--- /dev/null\n"
    "+++ b/l/evil.txt\n@@ -0,0 +1 @@\n+pwned\n"
)
RUNS_ROOT_WRITE = (
    "diff --git a/.runs/adhoc/x/manifest.json b/.runs/adhoc/x/manifest.json\nnew file mode 100644\n"
    "--- /dev/null\n+++ b/.runs/adhoc/x/manifest.json\n@@ -0,0 +1 @@\n+{}\n"
)
EXTERNAL_LINK = (
    "diff --git a/docs-link b/docs-link\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n"
    "+++ b/docs-link\n@@ -0,0 +1 @@\n+../outside\n\\ No newline at end of file\n"
)


def test_rename_old_new_through_an_outside_symlink_is_refused_by_both_strategies(tmp_path: Path) -> None:
    """The reported attack: git reads `rename old/new` as `rename from/to`; with `out` a symlink
    leaving the workspace, an accepted diff wrote outside it. Now co/diff shows the rename and
    refuses it, and neither strategy writes anything, nor does git ever get the patch."""
    from apply_faults import seed_run

    repo = make_repo(tmp_path / "ws", {"a.txt": "keep\n"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "out").symlink_to(outside)
    runs = {
        name: seed_run(repo, patch)
        for name, patch in {
            "rename-old-new": RENAME_OLD_NEW,
            "rename-old-new-edit": RENAME_OLD_NEW_EDIT,
            "link-then-write": LINK_THEN_WRITE,
            "runs-root": RUNS_ROOT_WRITE,
        }.items()
    }
    bin_dir, log = wrapper_dir(tmp_path)
    server = RpcProcess(cwd=repo, env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    server.initialize(repo, {})
    try:
        for name, run_id in runs.items():
            for method, params in [
                ("co/diff", {"runId": run_id}),
                ("co/apply", {"runId": run_id, "accept": True, "strategy": "client"}),
                ("co/apply", {"runId": run_id, "accept": True, "strategy": "git", "allowExternalSymlinks": True}),
            ]:
                with pytest.raises(RpcError) as caught:
                    server.request(method, params)
                assert caught.value.code == PATCH_REFUSED, (name, method, caught.value.error)
                expected = ".runs" if name == "runs-root" else "outside the workspace"
                assert expected in caught.value.message, (name, caught.value.message)
        assert not server.server_requests  # no workspace/applyEdit
        calls = log.read_text().splitlines() if log.exists() else []
        assert not [c for c in calls if c.startswith("apply")], calls
        assert list(outside.iterdir()) == [] and (repo / "a.txt").read_text() == "keep\n"
        assert not (repo / "l").exists() and not (repo / ".runs" / "adhoc" / "x").exists()
        for run_id in runs.values():
            assert server.request("co/status", {"runId": run_id})["state"] == "succeeded"
    finally:
        server.close()


def test_symlink_out_of_the_workspace_needs_allow_external_symlinks(tmp_path: Path) -> None:
    from apply_faults import seed_run

    repo = make_repo(tmp_path / "ws", {"a.txt": "keep\n"})
    (tmp_path / "outside").mkdir()
    run_id = seed_run(repo, EXTERNAL_LINK)
    server = RpcProcess(cwd=repo)
    server.initialize(repo, {})
    try:
        shown = server.request("co/diff", {"runId": run_id})
        assert [f["path"] for f in shown["files"]] == ["docs-link"]
        assert "outside the workspace" in shown["conflicts"][0]["reason"]
        for strategy in ("client", "git"):
            with pytest.raises(RpcError) as caught:
                server.request("co/apply", {"runId": run_id, "accept": True, "strategy": strategy})
            assert caught.value.code == PATCH_REFUSED and "allowExternalSymlinks" in caught.value.message
        with pytest.raises(RpcError) as caught:  # strictly a boolean
            server.request("co/apply", {"runId": run_id, "accept": True, "strategy": "git", "allowExternalSymlinks": "yes"})
        assert caught.value.code == -32602 and "allowExternalSymlinks" in caught.value.message
        assert not os.path.lexists(repo / "docs-link")
        done = server.request("co/apply", {"runId": run_id, "accept": True, "strategy": "git", "allowExternalSymlinks": True})
        assert done["applied"] is True
        assert os.readlink(repo / "docs-link") == "../outside"
    finally:
        server.close()


def big_new_files_patch(files: int, lines: int = 100) -> bytes:
    body = "".join(f"+line {n:04d} " + "x" * 48 + "\n" for n in range(lines))
    return "".join(
        f"diff --git a/big/f{i:05d}.txt b/big/f{i:05d}.txt\nnew file mode 100644\nindex 0000000..1111111\n"
        f"--- /dev/null\n+++ b/big/f{i:05d}.txt\n@@ -0,0 +1,{lines} @@\n{body}"
        for i in range(files)
    ).encode()


def test_co_status_is_answered_while_a_big_co_diff_is_built(tmp_path: Path) -> None:
    """An 18 MB co/diff is parsed and built off the event loop: a co/status sent after it is
    answered before it (order, not time)."""
    from apply_faults import seed_run

    repo = make_repo(tmp_path / "ws", {"a.txt": "a\n"})
    patch = big_new_files_patch(3000)
    assert len(patch) > 18_000_000
    run_id = seed_run(repo, patch)
    server = RpcProcess(cwd=repo)
    server.initialize(repo, {})
    try:
        server.request("co/list", {})
        server.send({"jsonrpc": "2.0", "id": "diff", "method": "co/diff", "params": {"runId": run_id}})
        server.send({"jsonrpc": "2.0", "id": "status", "method": "co/status", "params": {"runId": run_id}})
        assert server.wait_response("status")["result"]["state"] == "succeeded"
        diff = server.wait_response("diff", timeout=120)
        assert len(diff["result"]["files"]) == 3000
        assert server.answered.index("status") < server.answered.index("diff")
    finally:
        server.close()
