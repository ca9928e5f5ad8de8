"""LocalExecutor end to end: real git repositories in tmp_path, real agent subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from co_sidecar.config import Config
from co_sidecar.errors import PreflightFailed, WorkspaceError
from co_sidecar.execution import Outcome, Stream
from co_sidecar.local import (
    LocalExecutor,
    capture_patch,
    create_scratch,
    local_preflight,
    plan_agent,
    remove_scratch,
    sweep_scratch,
)
from co_sidecar.local import agent as agent_mod
from co_sidecar.local import executor as executor_mod
from co_sidecar.local.processes import launcher_available
from co_sidecar.manifest import DiffEvidence, RunManifest, utc_now
from co_sidecar.protocol import RunState

DEMO_AGENT = Path(__file__).resolve().parents[1] / "examples" / "demo_agent.py"
PY = sys.executable


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # our own snapshots must not rewrite the index
    return env


def git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    done = subprocess.run(  # noqa: S603 - argv lists built by the tests
        ["git", "-c", "core.quotepath=off", *args],
        cwd=repo,
        input=input,
        capture_output=True,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under root except .git: content, or "-> target" for symlinks, plus the x bit."""
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ".git":
            continue
        if path.is_symlink():
            files[str(rel)] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            x = b"x" if path.stat().st_mode & stat.S_IXUSR else b"-"
            files[str(rel)] = x + path.read_bytes()
    return files


def snapshot(repo: Path) -> dict[str, Any]:
    return {
        "status": git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored"),
        "head": git(repo, "rev-parse", "HEAD"),
        "refs": git(repo, "for-each-ref"),
        "stash": git(repo, "stash", "list"),
        "index": (repo / ".git" / "index").read_bytes(),
        "files": tree_files(repo),
    }


@pytest.fixture(autouse=True)
def scratch_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "scratch"
    monkeypatch.setenv("CO_SCRATCH_ROOT", str(root))
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small committed Python project with a binary file and an ignore list."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Test")
    git(repo, "config", "user.email", "test@example.com")
    (repo / "README.md").write_text("# Project\n")
    (repo / "app.py").write_text("def main():\n    return 1\n")
    (repo / "TODO.md").write_text("- nothing\n")
    (repo / "CHANGES.md").write_text("## 0.1\n- first\n")
    (repo / "logo.bin").write_bytes(bytes(range(256)) * 4)
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def dirty(repo: Path) -> None:
    """Staged, unstaged, untracked (incl. executable and symlink) and ignored changes."""
    (repo / "README.md").write_text("# Project\n\nstaged line\n")
    git(repo, "add", "README.md")
    (repo / "app.py").write_text("def main():\n    return 2  # unstaged\n")
    (repo / "new_untracked.txt").write_text("untracked\n")
    (repo / "tools").mkdir()
    (repo / "tools" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (repo / "tools" / "run.sh").chmod(0o755)
    (repo / "link.txt").symlink_to("new_untracked.txt")
    (repo / "debug.log").write_text("ignored\n")


@dataclass
class FakeContext:
    run_id: str
    task_id: str
    prompt: str
    workspace: Path
    run_dir: Path
    config: Config
    manifest: RunManifest
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    states: list[tuple[RunState, str]] = field(default_factory=list)
    outputs: list[tuple[Stream, str]] = field(default_factory=list)
    # Output lines and steps in the order they were reported: ("out", line) / ("step", message).
    reports: list[tuple[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    saves: int = 0
    patch: bytes | None = None
    diff_stats_reported: list[dict[str, int]] = field(default_factory=list)

    def set_state(self, state: RunState, message: str = "") -> None:
        self.manifest.state = state
        self.states.append((state, message))

    def save(self, message: str = "") -> None:
        self.saves += 1

    def output(self, stream: Stream, line: str) -> None:
        self.outputs.append((stream, line))
        if stream == "stdout":
            self.reports.append(("out", line))

    def step(self, message: str, event: dict[str, Any]) -> None:
        self.reports.append(("step", message))
        self.events.append(event)

    def report_diff_stats(self, stats: dict[str, int]) -> None:
        self.diff_stats_reported.append(stats)

    def record_patch(self, patch: bytes, attempt: int | None = None, *, name: str | None = None) -> DiffEvidence:
        self.patch = patch
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "patch.diff"
        path.write_bytes(patch)
        lines = patch.split(b"\n")
        return DiffEvidence(
            patch_path=str(path),
            sha256=hashlib.sha256(patch).hexdigest(),
            bytes=len(patch),
            additions=sum(1 for ln in lines if ln.startswith(b"+") and not ln.startswith(b"+++")),
            deletions=sum(1 for ln in lines if ln.startswith(b"-") and not ln.startswith(b"---")),
        )

    def lines(self, stream: Stream) -> list[str]:
        return [line for s, line in self.outputs if s == stream]


_counter = 0


def make_ctx(
    workspace: Path, tmp_path: Path, argv: list[str] | None, prompt: str = "add notes", **local: Any
) -> FakeContext:
    global _counter
    _counter += 1
    run_id = f"run-{_counter}"
    config = Config.model_validate(
        {"local": {"agentCommand": argv, **local}, "runs": {"root": str(tmp_path / "runs")}}
    )
    now = utc_now()
    manifest = RunManifest(
        run_id=run_id,
        task_id="task-1",
        prompt=prompt,
        workspace=str(workspace),
        requested_mode="local",
        selected_mode="local",
        routing_reason="test",
        state=RunState.LAUNCHING,
        created_at=now,
        updated_at=now,
    )
    return FakeContext(
        run_id=run_id,
        task_id="task-1",
        prompt=prompt,
        workspace=workspace,
        run_dir=tmp_path / "runs" / "task-1" / run_id,
        config=config,
        manifest=manifest,
    )


def py_agent(tmp_path: Path, name: str, code: str) -> list[str]:
    """An agent written as a Python script outside the repo; argv ends with the prompt."""
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(code))
    return [PY, str(script), "{prompt}"]


def worktrees(repo: Path) -> list[str]:
    out = git(repo, "worktree", "list", "--porcelain").decode()
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def assert_dead(pid: int, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):  # exited; only waiting for a reaper
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive")


# --- scratch ---------------------------------------------------------------


def test_scratch_carries_uncommitted_changes_not_ignored(repo: Path, scratch_root: Path) -> None:
    dirty(repo)
    (repo / ".runs" / "t" / "r").mkdir(parents=True)
    (repo / ".runs" / "t" / "r" / "manifest.json").write_text("{}")
    before = snapshot(repo)

    scratch = create_scratch(repo, "r1", exclude=[repo / ".runs"])
    assert scratch_root in scratch.path.parents and scratch.path.name == "r1"
    s = scratch.path
    assert (s / "README.md").read_text() == "# Project\n\nstaged line\n"
    assert (s / "app.py").read_text() == "def main():\n    return 2  # unstaged\n"
    assert (s / "new_untracked.txt").read_text() == "untracked\n"
    assert os.access(s / "tools" / "run.sh", os.X_OK)
    assert (s / "link.txt").is_symlink() and os.readlink(s / "link.txt") == "new_untracked.txt"
    assert not (s / "debug.log").exists()
    assert not (s / ".runs").exists()
    # The base commit holds that state: nothing to report before the agent runs.
    assert capture_patch(scratch) == b""
    assert git(s, "status", "--porcelain") == b""
    # Registered in the user's repository: locked, saying whose it is (`git worktree prune`
    # leaves it alone).
    assert b"locked co-sidecar scratch copy" in git(repo, "worktree", "list", "--porcelain")

    remove_scratch(scratch.path)
    assert not s.exists()
    assert worktrees(repo) == [str(repo)]
    assert snapshot(repo) == before


def test_a_pooled_scratch_holds_the_same_state_as_a_worktree_copy(repo: Path, scratch_root: Path) -> None:
    from co_sidecar.local.pool import acquire

    dirty(repo)
    before = snapshot(repo)
    legacy = create_scratch(repo, "r1", exclude=[repo / ".runs"])
    lease = acquire(repo, "r2", exclude=[repo / ".runs"])
    pooled = lease.scratch.path
    assert tree_files(pooled) == tree_files(legacy.path)
    assert os.access(pooled / "tools" / "run.sh", os.X_OK) and (pooled / "link.txt").is_symlink()
    assert capture_patch(lease.scratch) == b"" and git(pooled, "status", "--porcelain") == b""
    assert worktrees(repo) == [str(repo), str(legacy.path)]  # the pool registers nothing
    lease.release()
    remove_scratch(legacy.path)
    assert snapshot(repo) == before


def test_not_a_repo_and_no_commits(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(WorkspaceError, match="not a git repository"):
        create_scratch(plain, "r1")
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(WorkspaceError, match="workspace has no commits: commit once"):
        create_scratch(empty, "r1")


def test_sweep_removes_stale_scratches(repo: Path, scratch_root: Path) -> None:
    keep = create_scratch(repo, "active-run")
    stale = create_scratch(repo, "stale-run")
    stray = keep.path.parent / "half-made"
    stray.mkdir()
    (stray / "junk").write_text("x")
    removed = sweep_scratch(repo, {"active-run"})
    assert sorted(p.name for p in removed) == ["half-made", "stale-run"]
    assert keep.path.is_dir() and not stale.path.exists() and not stray.exists()
    assert sorted(worktrees(repo)) == sorted([str(repo), str(keep.path)])
    assert sweep_scratch(repo / "..", set()) == []  # not a repo: nothing to do


# --- agent argv and preflight ------------------------------------------------


def fake_codex(bindir: Path, version: str, body: str = "") -> Path:
    """A `codex` on PATH that answers --version with `version` and runs `body` for exec
    (Python; `args` is its argv after the program)."""
    bindir.mkdir(exist_ok=True)
    fake = bindir / "codex"
    fake.write_text(
        f"#!{PY}\nimport json, sys, time\nargs = sys.argv[1:]\n"
        f"if args == ['--version']:\n    print({version!r}); sys.exit(0)\n" + textwrap.dedent(body)
    )
    fake.chmod(0o755)
    return fake


def test_plan_agent_argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    prompt = "fix it; rm -rf ~"
    plan = plan_agent(Config.model_validate({"local": {"agentCommand": ["a", "--p", "{prompt}", "x{prompt}", "{workdir}"]}}).local)
    assert plan.argv(prompt, "/scratch") == ["a", "--p", prompt, "x{prompt}", "/scratch"]
    assert plan.output == "text" and plan.codex_version is None
    assert plan_agent(Config.model_validate({"local": {"agentCommand": ["a"]}}).local).argv(prompt, "/s") == ["a"]  # prompt still in $CO_PROMPT
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PreflightFailed) as info:
        plan_agent(Config().local)
    assert info.value.category == "local_agent_missing"
    assert "local.agentCommand" in info.value.message and "Codex CLI" in info.value.message
    with pytest.raises(PreflightFailed):
        plan_agent(Config.model_validate({"local": {"agentCommand": []}}).local)


@pytest.mark.parametrize(
    ("version", "flags", "output"),
    [
        ("codex-cli 0.169.0", ["--json"], "codex-json"),  # the pinned CLI (tests/codex)
        ("codex-cli 0.200.1", ["--json"], "codex-json"),  # newer than the table: current form
        ("codex-cli 0.46.0", ["--json"], "codex-json"),
        ("codex-cli 0.42.3", ["--experimental-json"], "codex-json"),
        ("codex-cli 0.30.0", [], "text"),  # no event stream yet: lines stay output
        ("something odd", ["--json"], "codex-json"),  # unparsable: current form
    ],
)
def test_default_codex_form_follows_the_version_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str, flags: list[str], output: str
) -> None:
    fake_codex(tmp_path / "bin", version)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    plan = plan_agent(Config().local)
    assert plan.template == [
        "codex", "exec", *flags, "--sandbox", "workspace-write", "-C", "{workdir}", "--", "{prompt}",
    ]  # fmt: skip
    assert plan.output == output
    assert plan.codex_version == (version if version[0] == "c" else version)
    # local.codex shapes the default; local.output overrides the choice.
    shaped = Config.model_validate(
        {"local": {"output": "text", "codex": {"model": "gpt-x", "profile": "fast", "sandbox": "read-only", "extraArgs": ["-c", "k=v"]}}}
    ).local
    plan = plan_agent(shaped)
    assert plan.template == [
        "codex", "exec", *flags, "--sandbox", "read-only", "-C", "{workdir}",
        "--model", "gpt-x", "--profile", "fast", "-c", "k=v", "--", "{prompt}",
    ]  # fmt: skip
    assert plan.output == "text"


def test_configured_codex_with_json_is_read_as_events(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_codex(tmp_path / "bin", "codex-cli 0.169.0")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    local = Config.model_validate({"local": {"agentCommand": ["codex", "exec", "--json", "{prompt}"]}}).local
    plan = plan_agent(local)
    assert (plan.output, plan.codex_version) == ("codex-json", "codex-cli 0.169.0")
    local = Config.model_validate({"local": {"agentCommand": ["codex", "exec", "{prompt}"]}}).local
    assert plan_agent(local).output == "text"
    local = Config.model_validate({"local": {"agentCommand": ["my-agent"], "output": "codex-json"}}).local
    assert plan_agent(local).output == "codex-json"


def test_local_preflight(repo: Path, tmp_path: Path) -> None:
    ok = Config.model_validate({"local": {"agentCommand": [PY, "{prompt}"]}})
    assert local_preflight(ok, repo) == []
    plain = tmp_path / "plain"
    plain.mkdir()
    assert [i.code for i in local_preflight(ok, plain)] == ["local_not_git_repo"]
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    assert [i.code for i in local_preflight(ok, empty)] == ["local_no_commits"]
    missing = Config.model_validate({"local": {"agentCommand": ["no-such-agent-xyz"]}})
    issues = local_preflight(missing, repo)
    assert [i.code for i in issues] == ["local_agent_missing"]
    assert "no-such-agent-xyz" in issues[0].message


# --- executor ----------------------------------------------------------------

EDIT_AGENT = """
    import os, subprocess, sys
    # The demo agent's modify/create/delete/rename, then binary and non-UTF-8 edits.
    subprocess.run([sys.executable, {demo!r}, sys.argv[1]], check=True)
    with open("logo.bin", "r+b") as f:
        f.seek(100)
        f.write(b"\\x00\\xff\\xfe")
    with open("blob.bin", "wb") as f:
        f.write(bytes(range(256)))
    with open("latin1.txt", "wb") as f:
        f.write(b"caf\\xe9 cr\\xe8me\\n")
    os.chmod("tools/run.sh", 0o644)
"""


async def test_run_captures_patch_and_leaves_user_tree_alone(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_AGENT_DELAY", "0")
    dirty(repo)
    before = snapshot(repo)
    argv = py_agent(tmp_path, "edit", EDIT_AGENT.format(demo=str(DEMO_AGENT)))
    ctx = make_ctx(repo, tmp_path, argv, keep_scratch=True, env_allow=["DEMO_AGENT_*"])

    outcome = await LocalExecutor().execute(ctx)

    assert outcome.state == RunState.SUCCEEDED, outcome
    assert outcome.message.startswith("agent finished: 9 files changed")
    assert snapshot(repo) == before
    assert ctx.states[0][0] == RunState.RUNNING and "pid" in ctx.states[0][1]
    info = ctx.manifest.executor
    assert info.kind == "local" and info.exit_code == 0 and info.pid
    assert info.argv == argv  # the template, with "{prompt}"
    assert info.started_at and info.finished_at and info.duration_ms is not None
    assert "[demo-agent] done" in info.stdout_tail
    scratch = Path(info.scratch_path or "")
    assert scratch.is_dir()  # keep_scratch

    patch = ctx.patch
    assert patch is not None
    assert b"rename from CHANGES.md\nrename to CHANGELOG.md" in patch
    assert b"deleted file mode" in patch and b"GIT binary patch" in patch
    assert b"old mode 100755\nnew mode 100644" in patch
    assert b"+caf\xe9 cr\xe8me" in patch  # non-UTF-8 bytes survive verbatim
    # Only the agent's change: the user's pre-existing edits are context, not additions.
    assert b"+staged line" not in patch and b"+    return 2" not in patch

    git(repo, "apply", "--check", "--binary", "-", input=patch)
    git(repo, "apply", "--binary", "-", input=patch)
    # The user's tree now matches the agent's result (plus the ignored file, never copied).
    assert tree_files(repo) == tree_files(scratch) | {"debug.log": b"-ignored\n"}

    remove_scratch(scratch)
    assert worktrees(repo) == [str(repo)]


async def test_output_streamed_in_order(repo: Path, tmp_path: Path) -> None:
    code = """
        import sys, time
        for i in range(5):
            print(f"out {i}", flush=True)
            print(f"err {i}", file=sys.stderr, flush=True)
            time.sleep(0.01)
        sys.stdout.buffer.write(b"bad \\xff byte\\r\\n" + b"x" * 200_000)
    """
    ctx = make_ctx(repo, tmp_path, py_agent(tmp_path, "chatty", code), max_output_bytes=4096)
    outcome = await LocalExecutor().execute(ctx)
    assert outcome.state == RunState.SUCCEEDED
    assert outcome.message == "agent finished: no changes"
    out = ctx.lines("stdout")
    assert out[:6] == [*(f"out {i}" for i in range(5)), "bad \ufffd byte"]
    assert "".join(out[6:]) == "x" * 200_000 and max(map(len, out)) <= 64 * 1024
    assert ctx.lines("stderr") == [f"err {i}" for i in range(5)]
    assert len(ctx.manifest.executor.stdout_tail.encode()) <= 4096
    assert ctx.patch == b""


async def test_agent_failure(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_AGENT_FAIL", "1")
    monkeypatch.setenv("DEMO_AGENT_DELAY", "0")
    ctx = make_ctx(repo, tmp_path, [PY, str(DEMO_AGENT), "{prompt}"], env_allow=["DEMO_AGENT_*"])
    outcome = await LocalExecutor().execute(ctx)
    assert outcome.state == RunState.FAILED and outcome.error_code == "local_agent_failed"
    assert outcome.message.startswith("agent exited with code 3: ")
    assert "failing on purpose" in outcome.message
    assert ctx.manifest.executor.exit_code == 3
    assert ctx.patch is None
    assert worktrees(repo) == [str(repo)] and ctx.manifest.executor.scratch_path is None


async def test_agent_missing_and_bad_workspace(repo: Path, tmp_path: Path) -> None:
    ctx = make_ctx(repo, tmp_path, ["/nonexistent/agent", "{prompt}"])
    outcome = await LocalExecutor().execute(ctx)
    assert outcome.state == RunState.FAILED and outcome.error_code == "local_agent_missing"
    assert worktrees(repo) == [str(repo)]

    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    outcome = await LocalExecutor().execute(make_ctx(empty, tmp_path, [PY]))
    assert outcome == Outcome(
        RunState.FAILED,
        "workspace has no commits: commit once so a scratch worktree can be made",
        "local_no_commits",
    )


HANG_AGENT = """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # force the SIGKILL path
    child = subprocess.Popen(["sleep", "300"])
    open({pidfile!r}, "w").write(str(child.pid))
    print("working", flush=True)
    time.sleep(300)
"""


async def test_timeout_kills_process_group(repo: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    argv = py_agent(tmp_path, "hang", HANG_AGENT.format(pidfile=str(pidfile)))
    ctx = make_ctx(repo, tmp_path, argv, timeout_seconds=1.0)
    start = time.monotonic()
    outcome = await LocalExecutor().execute(ctx)
    assert outcome.state == RunState.TIMED_OUT and outcome.error_code == "local_timeout"
    assert time.monotonic() - start < 10
    assert_dead(int(pidfile.read_text()))
    assert_dead(ctx.manifest.executor.pid or 0)
    assert ctx.lines("stdout") == ["working"]
    assert worktrees(repo) == [str(repo)]


async def test_cancel_is_prompt_and_kills_children(repo: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    argv = py_agent(tmp_path, "hang", HANG_AGENT.format(pidfile=str(pidfile)))
    ctx = make_ctx(repo, tmp_path, argv, keep_scratch=False)
    task = asyncio.create_task(LocalExecutor().execute(ctx))
    for _ in range(200):  # wait until the agent has spawned its child
        if pidfile.exists() and pidfile.read_text():
            break
        await asyncio.sleep(0.05)
    cancelled_at = time.monotonic()
    ctx.cancel_event.set()
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.state == RunState.CANCELLED
    assert time.monotonic() - cancelled_at < 2.0
    assert_dead(int(pidfile.read_text()))
    assert ctx.manifest.executor.exit_code is not None
    assert worktrees(repo) == [str(repo)]


def test_agent_env_passes_codex_api_key_not_the_cloud_token() -> None:
    # `codex exec` authenticates with CODEX_API_KEY (it ignores OPENAI_API_KEY for its own
    # auth); tests/test_codex_cli.py runs the real CLI with it.
    environ = {"CODEX_API_KEY": "k", "OPENAI_API_KEY": "o", "CODEX_CLOUD_TOKEN": "t", "X": "x"}
    assert agent_mod.agent_env(environ, [], {}) == {"CODEX_API_KEY": "k", "OPENAI_API_KEY": "o"}
    assert "CODEX_CLOUD_TOKEN" not in agent_mod.agent_env(environ, ["CODEX_*"], {})


def test_agent_env_passes_the_provider_keys_of_the_users_codex_config(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'model_provider = "corp"\n'
        '[model_providers.corp]\nbase_url = "https://llm.corp/v1"\nenv_key = "CORP_LLM_KEY"\n'
        '[model_providers.other]\nenv_key = "OTHER_KEY"\n'
        '[model_providers.broken]\nenv_key = 3\n'
    )
    environ = {
        "CODEX_HOME": str(tmp_path), "CORP_LLM_KEY": "c", "OTHER_KEY": "o",
        "UNRELATED_SECRET": "u", "CODEX_CLOUD_TOKEN": "t",
    }  # fmt: skip
    env = agent_mod.agent_env(environ, [], {})
    assert env == {"CODEX_HOME": str(tmp_path), "CORP_LLM_KEY": "c", "OTHER_KEY": "o"}
    # A provider naming the sidecar's cloud token still does not get it.
    (tmp_path / "config.toml").write_text('[model_providers.x]\nenv_key = "CODEX_CLOUD_TOKEN"\n')
    assert "CODEX_CLOUD_TOKEN" not in agent_mod.agent_env(environ, [], {})
    (tmp_path / "config.toml").write_text("not toml [")
    assert agent_mod.agent_env(environ, [], {}) == {"CODEX_HOME": str(tmp_path)}


async def test_env_allowlist_and_prompt_verbatim(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CODEX_CLOUD_TOKEN", "sekrit-token")
    monkeypatch.setenv("UNRELATED_SECRET", "nope")
    monkeypatch.setenv("EXTRA_ALLOWED", "yes")
    # Would redirect git to another repository if the sidecar passed it on.
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    dump = tmp_path / "seen.json"
    code = f"""
        import json, os, sys
        json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}},
                  open({str(dump)!r}, "w"))
    """
    prompt = "$(touch pwned); rm -rf ~ `touch pwned2` && echo hi > out.txt | cat; 'q\" \\n"
    argv = py_agent(tmp_path, "dump", code)
    ctx = make_ctx(repo, tmp_path, argv, prompt=prompt, env_allow=["EXTRA_*", "CODEX_*"])
    outcome = await LocalExecutor().execute(ctx)
    assert outcome.state == RunState.SUCCEEDED, outcome

    seen = json.loads(dump.read_text())
    assert seen["argv"] == [prompt]
    env = seen["env"]
    assert "CODEX_CLOUD_TOKEN" not in env and "UNRELATED_SECRET" not in env
    assert "GIT_DIR" not in env
    assert env["EXTRA_ALLOWED"] == "yes" and env["HOME"] == str(home)
    assert env["CO_PROMPT"] == prompt and env["CO_RUN_ID"] == ctx.run_id
    assert env["CO_TASK_ID"] == "task-1" and env["CO_WORKSPACE"] == str(repo)
    assert Path(seen["cwd"]) != repo
    for where in (repo, home, tmp_path, Path(seen["cwd"])):
        assert not list(where.glob("pwned*")) and not (where / "out.txt").exists()
    assert any(home.iterdir()) is False


async def test_workspace_subdirectory(repo: Path, tmp_path: Path) -> None:
    sub = repo / "pkg"
    sub.mkdir()
    (sub / "mod.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pkg")
    code = """
        import os
        assert os.path.basename(os.getcwd()) == "pkg"
        open("mod.py", "a").write("y = 2\\n")
        open("../README.md", "a").write("outside the workspace\\n")
    """
    ctx = make_ctx(sub, tmp_path, py_agent(tmp_path, "sub", code))
    outcome = await LocalExecutor().execute(ctx)
    assert outcome.state == RunState.SUCCEEDED, outcome
    assert ctx.patch is not None
    assert b"diff --git a/mod.py b/mod.py" in ctx.patch and b"README" not in ctx.patch
    subprocess.run(
        ["git", "apply", "--check", "-"], cwd=sub, input=ctx.patch, check=True, env=clean_env()
    )


def test_demo_agent_on_plain_dir(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    (tmp_path / "TODO.txt").write_text("x")
    done = subprocess.run(  # noqa: S603 - argv lists built by the tests
        [PY, str(DEMO_AGENT), "tidy up"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "DEMO_AGENT_DELAY": "0"},
    )
    assert done.returncode == 0, done.stderr
    assert "tidy up" in (tmp_path / "README.md").read_text()
    assert (tmp_path / "NOTES.md").is_file() and not (tmp_path / "TODO.txt").exists()
    assert shutil.which("git")  # the rest of this module needs git


LEAVER_AGENT = """
    import subprocess
    # A background child that keeps our stdout open after we exit.
    child = subprocess.Popen(["sleep", "300"], start_new_session={escape})
    open({pidfile!r}, "w").write(str(child.pid))
    open("made.txt", "w").write("done\\n")
    print("bye", flush=True)
"""


async def test_exit_is_seen_despite_leftover_child(repo: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    code = LEAVER_AGENT.format(escape=False, pidfile=str(pidfile))
    ctx = make_ctx(repo, tmp_path, py_agent(tmp_path, "leaver", code), timeout_seconds=30)
    start = time.monotonic()
    outcome = await LocalExecutor().execute(ctx)
    assert outcome.state == RunState.SUCCEEDED, outcome
    assert time.monotonic() - start < 5
    assert_dead(int(pidfile.read_text()))  # the group is killed once the agent is done
    assert ctx.lines("stdout") == ["bye"] and b"made.txt" in (ctx.patch or b"")


async def test_escaped_daemon_holding_pipes_does_not_hang(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor_mod, "DRAIN_SECONDS", 0.3)
    pidfile = tmp_path / "daemon.pid"
    code = LEAVER_AGENT.format(escape=True, pidfile=str(pidfile))
    ctx = make_ctx(repo, tmp_path, py_agent(tmp_path, "daemon", code), timeout_seconds=30)
    try:
        start = time.monotonic()
        outcome = await LocalExecutor().execute(ctx)
        assert outcome.state == RunState.SUCCEEDED, outcome
        assert time.monotonic() - start < 5
        if launcher_available():  # the setsid daemon is ended with the run too
            assert_dead(int(pidfile.read_text()))
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), 9)


CODEX_EVENTS_BODY = """
import json, pathlib, sys, os
json.dump(args, open(os.environ["SEEN"], "w"))
def emit(**event): print(json.dumps(event), flush=True)
workdir = args[args.index("-C") + 1]
emit(type="thread.started", thread_id="th-1")
emit(type="turn.started")
print("a line that is not an event", flush=True)
emit(type="item.started", item={"id": "i0", "type": "command_execution", "command": "/bin/bash -lc 'ls -1'", "aggregated_output": "", "exit_code": None, "status": "in_progress"})
emit(type="item.completed", item={"id": "i0", "type": "command_execution", "command": "/bin/bash -lc 'ls -1'", "aggregated_output": "README.md\\nsrc\\n", "exit_code": 0, "status": "completed"})
emit(type="item.completed", item={"id": "i1", "type": "error", "message": "Model metadata for `x` not found"})
pathlib.Path(workdir, "NEW.md").write_text("new\\n")
emit(type="item.completed", item={"id": "i2", "type": "file_change", "changes": [{"path": workdir + "/NEW.md", "kind": "add"}], "status": "completed"})
emit(type="item.completed", item={"id": "i3", "type": "hologram", "status": "completed"})
emit(type="surprise.event", detail=1)
emit(type="item.completed", item={"id": "i4", "type": "agent_message", "text": "Added NEW.md."})
if "fail" in args[-1]:
    emit(type="error", message="stream disconnected")
    emit(type="turn.failed", error={"message": "the model is unavailable"})
    sys.exit(1)
emit(type="turn.completed", usage={"input_tokens": 120, "cached_input_tokens": 20, "output_tokens": 30, "reasoning_output_tokens": 5})
"""


async def test_default_codex_events_become_steps(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "codex-argv.json"
    fake_codex(tmp_path / "bin", "codex-cli 0.169.0", CODEX_EVENTS_BODY)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SEEN", str(seen))
    monkeypatch.setattr(agent_mod, "AGENT_ENV_ALLOW", (*agent_mod.AGENT_ENV_ALLOW, "SEEN"))
    ctx = make_ctx(repo, tmp_path, None, prompt="-h; long prompt")
    outcome = await LocalExecutor().execute(ctx)
    assert outcome.state == RunState.SUCCEEDED, outcome
    argv = json.loads(seen.read_text())
    assert argv[:5] == ["exec", "--json", "--sandbox", "workspace-write", "-C"]
    assert argv[6:] == ["--", "-h; long prompt"]
    assert os.path.isabs(argv[5]) and argv[5] != str(repo)  # -C: the scratch copy
    assert ctx.manifest.executor.argv[:7] == [
        "codex", "exec", "--json", "--sandbox", "workspace-write", "-C", "{workdir}",
    ]  # fmt: skip  (the template, not the prompt or the scratch path)

    # Steps and output in the order codex printed them; unknown types shown, not fatal.
    assert ctx.reports == [
        ("step", "codex session th-1"),
        ("step", "codex is working"),
        ("out", "a line that is not an event"),
        ("step", "$ ls -1"),
        ("out", "README.md"),
        ("out", "src"),
        ("step", "exit 0: ls -1"),
        ("step", "warning: Model metadata for `x` not found"),
        ("step", "edited 1 file: NEW.md"),
        ("step", "hologram completed"),
        ('step', 'surprise.event: {"type": "surprise.event", "detail": 1}'),
        ("step", "Added NEW.md."),
        ("step", "turn completed: 120 tokens in, 30 out"),
    ]
    command = ctx.events[2]
    assert command == {
        "kind": "command_execution", "type": "item.started", "itemId": "i0", "status": "in_progress",
        "command": "ls -1", "exitCode": None, "files": None, "text": None,
    }  # fmt: skip
    assert ctx.events[3]["exitCode"] == 0
    assert ctx.events[5]["files"] == [{"path": "NEW.md", "kind": "add"}]

    codex = ctx.manifest.codex
    assert codex is not None
    assert (codex.cli_version, codex.thread_id, codex.final_message) == ("codex-cli 0.169.0", "th-1", "Added NEW.md.")
    assert (codex.commands_run, codex.files_changed) == (1, 1)
    assert codex.usage.model_dump() == {"input_tokens": 120, "cached_input_tokens": 20, "output_tokens": 30, "reasoning_output_tokens": 5}
    assert codex.warnings == ["Model metadata for `x` not found"]  # a warning, not a failure
    events = (tmp_path / "runs" / codex.events_path).read_text().splitlines()
    assert [json.loads(e)["type"] for e in events][:3] == ["thread.started", "turn.started", "item.started"]
    assert len(events) == 10 and not codex.events_truncated
    assert b"NEW.md" in (ctx.patch or b"")


async def test_a_flood_of_item_updates_is_coalesced(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flood = """
import json
def emit(**e): print(json.dumps(e), flush=True)
item = {"id": "t1", "type": "todo_list", "items": []}
emit(type="item.started", item=item)
for i in range(3000):
    item["items"] = [{"text": f"step {i}", "completed": False}]
    emit(type="item.updated", item=item)
emit(type="item.completed", item=item)
emit(type="turn.completed", usage={})
"""
    fake_codex(tmp_path / "bin", "codex-cli 0.169.0", flood)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    ctx = make_ctx(repo, tmp_path, None)
    outcome = await LocalExecutor().execute(ctx)
    assert outcome.state == RunState.SUCCEEDED, outcome
    types = [e["type"] for e in ctx.events]
    assert types[0] == "item.started" and types[-2:] == ["item.completed", "turn.completed"]
    assert 1 <= types.count("item.updated") < 300, types.count("item.updated")
    codex = ctx.manifest.codex
    assert codex is not None  # every event is still on disk
    assert len((tmp_path / "runs" / codex.events_path).read_text().splitlines()) == 3003


async def test_a_long_event_line_is_still_one_event(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = """
import json
out = "".join(f"line {i:06d} " + "x" * 90 + "\\n" for i in range(3000))  # ~300 kB
item = {"id": "c1", "type": "command_execution", "command": "make", "aggregated_output": out, "exit_code": 0, "status": "completed"}
print(json.dumps({"type": "item.completed", "item": item}), flush=True)
"""
    fake_codex(tmp_path / "bin", "codex-cli 0.169.0", big)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    ctx = make_ctx(repo, tmp_path, None, maxOutputBytes=10_000_000)
    outcome = await LocalExecutor().execute(ctx)
    assert outcome.state == RunState.SUCCEEDED, outcome
    assert [m for kind, m in ctx.reports if kind == "step"] == ["exit 0: make"]
    lines = ctx.lines("stdout")
    assert len(lines) == 3000 and lines[0].startswith("line 000000 ") and lines[-1].startswith("line 002999 ")


async def test_codex_turn_failed_fails_with_codex_message(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_codex(tmp_path / "bin", "codex-cli 0.169.0", CODEX_EVENTS_BODY)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SEEN", str(tmp_path / "seen.json"))
    monkeypatch.setattr(agent_mod, "AGENT_ENV_ALLOW", (*agent_mod.AGENT_ENV_ALLOW, "SEEN"))
    ctx = make_ctx(repo, tmp_path, None, prompt="please fail", maxOutputBytes=1024)
    outcome = await LocalExecutor().execute(ctx)
    assert outcome == Outcome(RunState.FAILED, "codex: the model is unavailable", "local_agent_failed")
    assert ctx.reports[-2:] == [("step", "error: stream disconnected"), ("step", "turn failed: the model is unavailable")]
    codex = ctx.manifest.codex
    assert codex is not None and codex.events_truncated  # 1 KiB of events: the rest counted
    lines = (tmp_path / "runs" / codex.events_path).read_text().splitlines()
    assert json.loads(lines[-1])["type"] == "co.truncated"
    assert sum(len(line) + 1 for line in lines[:-1]) <= 1024


async def test_concurrent_runs_on_one_repo(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_AGENT_DELAY", "0.02")
    dirty(repo)
    before = snapshot(repo)
    ctxs = [
        make_ctx(repo, tmp_path, [PY, str(DEMO_AGENT), "{prompt}"], prompt=f"task {i}")
        for i in range(4)
    ]
    outcomes = await asyncio.gather(*(LocalExecutor().execute(c) for c in ctxs))
    assert [o.state for o in outcomes] == [RunState.SUCCEEDED] * 4, outcomes
    for i, c in enumerate(ctxs):
        assert f"+Demo agent was asked: task {i}".encode() in (c.patch or b"")
    assert snapshot(repo) == before and worktrees(repo) == [str(repo)]


async def test_cancel_before_start(repo: Path, tmp_path: Path) -> None:
    ctx = make_ctx(repo, tmp_path, [PY, "{prompt}"])
    ctx.cancel_event.set()
    outcome = await LocalExecutor().execute(ctx)
    assert outcome.state == RunState.CANCELLED and ctx.states == []
    assert worktrees(repo) == [str(repo)]
