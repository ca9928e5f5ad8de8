"""`co-sidecar runs …`, `apply`, `reject`: the runs already in `.runs/`, from the shell, each
command a real process driving a real server over stdio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEMO_AGENT, SessionFactory, git

CLI = [sys.executable, "-m", "co_sidecar"]
AGENT = json.dumps([sys.executable, str(DEMO_AGENT), "{prompt}"])
# Each command here is two Python processes (the CLI and its server); a test runs up to a dozen.
pytestmark = pytest.mark.timeout(300)


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})}, check=False,
    )


def make_runs(repo: Path, prompts: list[str]) -> list[str]:
    for prompt in prompts:
        done = cli("run", prompt, "--agent", AGENT, "--mode", "local", cwd=repo)
        assert done.returncode == 0, done.stderr
    listed = json.loads(cli("runs", "--json", cwd=repo).stdout)
    return [r["runId"] for r in listed["runs"]]


def test_list_show_diff_apply_reject_and_their_exit_codes(repo: Path) -> None:
    newest, older = make_runs(repo, ["first", "second"])[:2]

    table = cli("runs", cwd=repo)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["RUN", "STATE", "MODE", "UPDATED", "DIFF", "FOLLOWS", "PROMPT"]
    assert lines[1].startswith(newest) and lines[1].endswith("second")  # whole ids, newest first

    shown = json.loads(cli("runs", "show", "last", "--json", cwd=repo).stdout)
    assert shown["runId"] == newest and shown["state"] == "succeeded" and shown["prompt"] == "second"
    suffix = older.rsplit("-", 1)[1]
    assert f"run:        {older}" in cli("runs", "show", suffix, cwd=repo).stdout  # a unique suffix will do

    stat = cli("runs", "diff", newest[:22], "--stat", cwd=repo)
    assert stat.returncode == 0 and "NOTES.md" in stat.stdout and "diff --git" not in stat.stdout
    assert "+++ b/NOTES.md" in cli("runs", "diff", "last", cwd=repo).stdout
    assert git(repo, "status", "--porcelain") == ""  # looking writes nothing

    applied = cli("apply", newest, cwd=repo)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith(f"applied {newest}: ") and "NOTES.md" in applied.stdout
    assert (repo / "NOTES.md").is_file()
    again = cli("apply", newest, cwd=repo)
    assert again.returncode == 4 and "already applied" in again.stderr and again.stdout == ""

    rejected = cli("runs", "reject", older, "--json", cwd=repo)
    assert rejected.returncode == 0 and json.loads(rejected.stdout) == {"runId": older, "state": "rejected"}

    missing = cli("runs", "show", "zzzz", cwd=repo)
    assert missing.returncode == 3 and "no run matches 'zzzz'" in missing.stderr
    ambiguous = cli("runs", "show", "2", cwd=repo)  # every id starts with the year
    assert ambiguous.returncode == 3 and "matches 2 runs" in ambiguous.stderr


def test_prune_by_count_and_age_with_a_dry_run_first(repo: Path) -> None:
    ids = make_runs(repo, ["a", "b", "c"])
    runs_root = repo / ".runs" / "adhoc"
    assert cli("runs", "prune", cwd=repo).returncode == 2  # says what is missing instead of guessing

    dry = json.loads(cli("runs", "prune", "--keep", "1", "--dry-run", "--json", cwd=repo).stdout)
    assert [r["runId"] for r in dry["removed"]] == ids[1:] and dry["dryRun"] is True and dry["kept"] == 1
    assert sorted(p.name for p in runs_root.iterdir()) == sorted(ids)  # nothing removed

    done = cli("runs", "prune", "--keep", "1", cwd=repo)
    assert done.returncode == 0 and "removed 2 run(s)" in done.stdout
    assert [p.name for p in runs_root.iterdir()] == [ids[0]]
    assert cli("runs", "prune", "--older-than", "1", "--json", cwd=repo).stdout.count('"runId"') == 0
    everything = json.loads(cli("runs", "prune", "--older-than", "0", "--json", cwd=repo).stdout)
    assert [r["runId"] for r in everything["removed"]] == [ids[0]]
    assert json.loads(cli("runs", "--json", cwd=repo).stdout)["runs"] == []


HELD_AGENT = """
import pathlib, sys, time
pathlib.Path("NOTES.md").write_text("held\\n")
release = pathlib.Path(sys.argv[1])
deadline = time.time() + 90
while not release.exists() and time.time() < deadline:
    time.sleep(0.05)
"""


async def test_wait_and_prune_follow_a_run_another_server_drives(
    repo: Path, tmp_path: Path, start_server: SessionFactory
) -> None:
    """An editor's server drives a run that holds until released; the shell waits for it and
    prunes around it."""
    script, release = tmp_path / "held_agent.py", tmp_path / "release"
    script.write_text(HELD_AGENT)
    editor = await start_server(repo, {"local": {"agentCommand": [sys.executable, str(script), str(release)]}})
    run_id = (await editor.request("co/launch", {"prompt": "held", "mode": "local"}))["runId"]
    await editor.wait_state(run_id, {"running"})

    early = cli("runs", "wait", run_id, "--timeout", "0.5", "--json", cwd=repo)
    assert early.returncode == 1 and json.loads(early.stdout) == {"runId": run_id, "state": "running", "timedOut": True}
    pruned = json.loads(cli("runs", "prune", "--keep", "0", "--older-than", "0", "--json", cwd=repo).stdout)
    assert pruned["removed"] == [] and pruned["kept"] == 0  # never a run in progress
    waiting = subprocess.Popen(
        [*CLI, "runs", "wait", run_id, "--json"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    release.touch()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert json.loads(out) == {"runId": run_id, "state": "succeeded", "timedOut": False}
    assert await editor.wait_state(run_id) == "succeeded"


def test_a_server_that_dies_is_reported_not_waited_for(repo: Path, tmp_path: Path) -> None:
    dying = tmp_path / "dying_server.py"
    dying.write_text("import sys\nsys.stdin.readline()\nsys.exit(7)\n")
    result = cli("runs", "--server", f"{sys.executable} {dying}", cwd=repo)
    assert result.returncode == 5
    assert "server exited (status 7)" in result.stderr and "Traceback" not in result.stderr


def test_follow_up_from_the_shell_and_the_chain_in_the_list(repo: Path) -> None:
    env = {"CO_AGENT_COMMAND": AGENT}
    (first,) = make_runs(repo, ["first"])
    done = cli("runs", "follow-up", "last", "now the second", "--json", cwd=repo, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    second = result["runId"]
    assert result == {"runId": second, "state": "succeeded", "timedOut": False, "parentRunId": first}
    (third,) = make_runs(repo, ["unrelated"])[:1]

    # Chains newest first, each from its root down; the follow-up names its parent.
    lines = cli("runs", cwd=repo).stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [third, first, second]
    assert lines[3].split()[7] == first and lines[2].split()[7] == "-"
    shown = cli("runs", "show", second, cwd=repo).stdout
    assert f"follows:    {first} (chain {first})" in shown and "(what apply applies)" in shown

    # The step is this follow-up's change; the default diff is the chain's.
    step = cli("runs", "diff", second, "--step", cwd=repo).stdout
    assert "+# demo-agent: now the second" in step and "+# demo-agent: first" not in step
    assert "+# demo-agent: first" in cli("runs", "diff", second, cwd=repo).stdout
    applied = cli("apply", second, cwd=repo)
    assert applied.returncode == 0, applied.stderr
    refused = cli("apply", first, cwd=repo)
    assert refused.returncode == 4 and f"already applied as part of its follow-up {second}" in refused.stderr

    # A run that cannot be followed up: refused, exit 4, the reason on stderr.
    assert cli("runs", "reject", third, cwd=repo).returncode == 0
    refused = cli("runs", "follow-up", third, "more", cwd=repo, env=env)
    assert refused.returncode == 4 and "only a succeeded, applied or partially applied run can be followed up" in refused.stderr
