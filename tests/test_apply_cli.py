"""`co-sidecar apply RUN [--files …] [--hunk P:N] [--dry-run] [--on-conflict …] [--force]`,
`reject`, and `run --apply`, as real processes: the dry-run table, exit codes (0 only when
everything asked was applied cleanly), never a conflict marker unless asked."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from test_apply_choices import CALC, EDIT_8, EDIT_8_AND_18, git, make_repo, patch_of

sys.path.insert(0, str(ROOT / "scripts"))
from apply_faults import manifest_of, seed_run, snapshot  # noqa: E402

CLI = [sys.executable, "-m", "co_sidecar"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_a_conflict_from_the_shell_dry_run_refuse_skip_then_reject(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "ws")
    run_id = seed_run(repo, patch_of(repo, {"calc.py": EDIT_8, "other.py": "a = 2\n"}))
    (repo / "calc.py").write_text(CALC.replace("line 8\n", "line 8 (mine)\n"))
    before = snapshot(repo)

    dry = cli("apply", run_id, "--dry-run", cwd=repo)
    assert dry.returncode == 1, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == f"dry run of {run_id}: nothing written"
    assert lines[1].split() == ["FILE", "OUTCOME", "WRITTEN", "WHY"]
    assert lines[2].split()[:3] == ["calc.py", "conflict", "no"]
    assert "you and the run changed the same lines (hunk 1 from line 5)" in lines[2]
    assert lines[3].split() == ["other.py", "applies", "cleanly", "no"]
    assert "workspace since the run began: calc.py edited" in dry.stdout
    assert "--on-conflict skip" in dry.stdout and snapshot(repo) == before

    refused = cli("apply", run_id, cwd=repo)
    assert refused.returncode == 1 and "not applied (conflicts)" in refused.stderr
    assert snapshot(repo) == before
    advice = re.search(rf"nothing was written\. (.+) apply {run_id} --on-conflict skip applies the other files", refused.stdout)
    assert advice, refused.stdout

    # The advice names a command that works as printed (not `co-sidecar` when PATH has none).
    advised = [*shlex.split(advice[1]), "apply", "last", "--on-conflict", "skip"]
    skipped = subprocess.run(advised, cwd=repo, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    assert skipped.returncode == 1  # not everything asked was applied
    assert skipped.stdout.startswith(f"applied {run_id}: other.py\n")
    assert f"left for later: calc.py ({advice[1]} apply {run_id} applies the rest" in skipped.stdout
    assert (repo / "other.py").read_text() == "a = 2\n" and "<<<<<<<" not in (repo / "calc.py").read_text()
    shown = cli("runs", "show", run_id, cwd=repo).stdout
    assert "state:      partially_applied" in shown and "apply:      partial (git)" in shown and "left:       calc.py" in shown

    rejected = cli("reject", run_id, cwd=repo)
    assert rejected.returncode == 0 and rejected.stdout == f"{run_id} rejected\n"


def test_files_and_hunks_then_the_rest_and_never_twice(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "ws")
    run_id = seed_run(repo, patch_of(repo, {"calc.py": EDIT_8_AND_18, "other.py": "a = 2\n"}))
    diff = cli("runs", "diff", run_id, "--stat", cwd=repo)
    assert "  calc.py:2  @@ -15,6 +15,6 @@ line 14  +1 -1" in diff.stdout, diff.stdout

    first = cli("apply", run_id, "--hunk", "calc.py:2", "--files", "other.py", cwd=repo)
    assert first.returncode == 0, first.stdout + first.stderr  # all it was asked, cleanly
    assert (repo / "calc.py").read_text() == CALC.replace("line 18\n", "line eighteen\n")
    assert "left for later: calc.py" in first.stdout
    again = cli("apply", run_id, "--files", "other.py", cwd=repo)
    assert again.returncode == 4 and "already applied" in again.stderr
    bad = cli("apply", run_id, "--hunk", "calc.py", cwd=repo)
    assert bad.returncode == 2 and "give PATH:N" in bad.stderr

    rest = cli("apply", run_id, "--json", cwd=repo)
    assert rest.returncode == 0
    result = json.loads(rest.stdout)
    assert result["outcome"] == "applied" and [f["path"] for f in result["files"]] == ["calc.py"]
    assert (repo / "calc.py").read_text() == EDIT_8_AND_18
    assert manifest_of(repo / ".runs", run_id)["state"] == "applied"


def test_markers_only_on_request_and_the_over_budget_message_names_the_flag(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "ws")
    (repo / "co-sidecar.toml").write_text("[diff]\nmaxFiles = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "budget")
    run_id = seed_run(repo, patch_of(repo, {"calc.py": EDIT_8, "other.py": "a = 2\n"}))
    (repo / "calc.py").write_text(CALC.replace("line 8\n", "line 8 (mine)\n"))

    over = cli("apply", run_id, cwd=repo)
    assert over.returncode == 4 and "force: true" not in over.stderr
    assert "over budget (2 files, 4 lines, " in over.stderr and "limits diff.maxFiles=1," in over.stderr
    assert f"apply {run_id} --force applies it anyway" in over.stderr
    dry = cli("apply", run_id, "--dry-run", cwd=repo)
    assert dry.returncode == 1 and "over budget" in dry.stdout

    marked = cli("apply", run_id, "--force", "--on-conflict", "markers", cwd=repo)
    assert marked.returncode == 1
    assert "conflict markers written in calc.py: resolve them" in marked.stdout
    assert "<<<<<<<" in (repo / "calc.py").read_text()
    m = manifest_of(repo / ".runs", run_id)
    assert m["apply"]["outcome"] == "conflicts" and m["apply"]["forced"] is True


AGENT = """
import pathlib, sys
# The agent changes line 8; meanwhile the user edits the same line in the real workspace.
pathlib.Path("calc.py").write_text(pathlib.Path("calc.py").read_text().replace("line 8\\n", "line eight\\n"))
user = pathlib.Path(sys.argv[1]) / "calc.py"
user.write_text(user.read_text().replace("line 8\\n", "line 8 (mine)\\n"))
"""


def test_run_apply_on_a_workspace_edited_since_the_run_began_writes_no_marker(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "ws")
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    command = json.dumps([sys.executable, str(agent), str(repo)])
    done = subprocess.run(
        [*CLI, "run", "change line 8", "--agent", command, "--mode", "local", "--apply"],
        cwd=repo, capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not applied (conflicts)" in done.stdout and "conflict calc.py" in done.stdout
    assert "--on-conflict skip" in done.stdout
    assert (repo / "calc.py").read_text() == CALC.replace("line 8\n", "line 8 (mine)\n")
