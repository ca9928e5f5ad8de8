"""The CLI adapter against a fake `codex` on PATH that prints what the real `codex cloud` prints."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from co_sidecar.cloud.cli_adapter import CliCloudClient, classify_stderr, parse_exec_output
from co_sidecar.cloud.client import CloudAuthError, CloudNotFound, CloudPreflightError
from co_sidecar.cloud.executor import CloudExecutor
from co_sidecar.cloud.preflight import cloud_check, workspace_branch
from co_sidecar.config import Config
from co_sidecar.manifest import CloudInfo
from co_sidecar.protocol import RunState
from test_cloud_support import FakeContext, git, make_repo

FAKE_CODEX = r"""#!PYTHON
import json, os, sys
from pathlib import Path

state = Path(os.environ["FAKE_CODEX_DIR"])
with open(state / "argv.log", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
with open(state / "calls.log", "a") as log:
    log.write(json.dumps({"cwd": os.getcwd(), "argv": sys.argv[1:],
        "starting_diff": os.environ.get("CODEX_STARTING_DIFF")}) + "\n")
mode = os.environ.get("FAKE_CODEX_MODE", "")
if sys.argv[1:] == ["--version"]:
    print("codex-cli 0.169.0")
    sys.exit(0)
if sys.argv[1:3] == ["login", "status"] and mode == "api_key":  # what 0.169 says for a key
    print("API key configured - ***\nAuthentication is checked when you send a request.", file=sys.stderr)
    sys.exit(0)
if sys.argv[1:3] == ["login", "status"]:
    print("Not logged in" if mode == "signed_out" else "Logged in using ChatGPT", file=sys.stderr)
    sys.exit(1 if mode == "signed_out" else 0)
# Like the real CLI: every `codex cloud` call appends to error.log in its working directory.
with open("error.log", "a") as log:
    log.write("startup: base_url=https://chatgpt.com/backend-api\nauth: account_id=acct-fake\n")
if mode == "signed_out":
    print("Not signed in. Please run 'codex login' to sign in with ChatGPT, then re-run 'codex cloud'.", file=sys.stderr)
    sys.exit(1)
offline = state / "offline.count"  # FAKE_CODEX_OFFLINE=N: the first N calls find no network
n_offline = int(offline.read_text()) if offline.exists() else 0
if n_offline < int(os.environ.get("FAKE_CODEX_OFFLINE", "0")):
    offline.write_text(str(n_offline + 1))
    sys.stderr.write(os.environ["FAKE_CODEX_OFFLINE_TEXT"])
    sys.exit(1)
args = sys.argv[1:]
assert args[0] == "cloud", args
cmd = args[1]
if cmd == "exec":
    env = args[args.index("--env") + 1]
    if env == "nope":
        print("Error: environment 'nope' not found; run `codex cloud` to list available environments", file=sys.stderr)
        sys.exit(1)
    print("https://chatgpt.com/codex/tasks/task_e_fake123")
elif cmd == "status":
    counter = state / "status.count"
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    final = os.environ.get("FAKE_CODEX_FINAL", "READY")
    label = "PENDING" if n < 2 else final
    print(f"[{label}] Fake task")
    print("env_test  \u2022  3s ago")
    print("+1/-0 \u2022 1 file" if label == "READY" else "no diff")
    sys.exit(0 if label == "READY" else 1)
elif cmd == "diff":
    attempt = int(args[args.index("--attempt") + 1]) if "--attempt" in args else 1
    if attempt > 2:
        print(f"Error: Attempt {attempt} not available; only 2 attempt(s) found", file=sys.stderr)
        sys.exit(1)
    sys.stdout.write(f"diff --git a/f{attempt}.txt b/f{attempt}.txt\nnew file mode 100644\n--- /dev/null\n+++ b/f{attempt}.txt\n@@ -0,0 +1 @@\n+attempt {attempt}\n")
elif cmd == "list":
    print(json.dumps({"tasks": [{"id": "task_e_fake123", "url": "https://chatgpt.com/codex/tasks/task_e_fake123",
        "title": "Fake task", "status": "ready", "updated_at": "2025-01-01T00:00:00Z", "environment_id": None,
        "environment_label": "env_test", "summary": {"files_changed": 1, "lines_added": 1, "lines_removed": 0},
        "is_review": False, "attempt_total": 2}], "cursor": None}, indent=2))
else:
    sys.exit(2)
"""


@pytest.fixture
def fake_codex(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "codex"
    script.write_text(FAKE_CODEX.replace("PYTHON", sys.executable, 1))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CODEX_DIR", str(tmp_path))
    return tmp_path


def argv_log(root: Path) -> list[list[str]]:
    return [json.loads(line) for line in (root / "argv.log").read_text().splitlines()]


async def test_exec_status_diff_list(fake_codex):
    client = CliCloudClient(["codex"], timeout=10)
    ref = await client.create_task("fix it", "env_test", "main", 2, False)
    assert (
        ref.id == "task_e_fake123" and ref.url == "https://chatgpt.com/codex/tasks/task_e_fake123"
    )
    assert argv_log(fake_codex)[0] == [
        "cloud", "exec", "--env", "env_test", "--branch", "main", "--attempts", "2", "--", "fix it",
    ]  # fmt: skip
    first = await client.get_task(ref.id)
    assert first.state == RunState.RUNNING and first.status == "pending"
    await client.get_task(ref.id)
    ready = await client.get_task(ref.id)
    assert ready.state == RunState.SUCCEEDED and ready.status == "ready"
    assert b"+attempt 2" in (await client.get_diff(ref.id, 2) or b"")
    with pytest.raises(CloudNotFound):
        await client.get_diff(ref.id, 3)
    [item] = await client.list_tasks(limit=5)
    assert item.id == "task_e_fake123" and item.state == RunState.SUCCEEDED
    assert argv_log(fake_codex)[-1] == ["cloud", "list", "--json", "--limit", "5"]


async def test_clear_errors_from_stderr(fake_codex, monkeypatch):
    client = CliCloudClient(["codex"], timeout=10)
    with pytest.raises(CloudPreflightError, match="environment 'nope' not found"):
        await client.create_task("x", "nope", None, 1, False)
    monkeypatch.setenv("FAKE_CODEX_MODE", "signed_out")
    signed_out = CliCloudClient(["codex"], timeout=10)  # the environment is read at construction
    with pytest.raises(CloudAuthError, match="Not signed in"):
        await signed_out.get_task("task_e_fake123")
    missing = CliCloudClient(["definitely-not-codex-xyz"])
    with pytest.raises(CloudPreflightError, match="not found on PATH"):
        await missing.list_tasks()


def test_exec_output_parsing():
    assert parse_exec_output("https://chatgpt.com/codex/tasks/task_e_1\n").id == "task_e_1"
    noisy = "Reading query from stdin...\n\x1b[32mhttps://chatgpt.com/codex/tasks/task_e_2?tab=diff\x1b[0m\n"
    ref = parse_exec_output(noisy)
    assert ref.id == "task_e_2" and ref.url == "https://chatgpt.com/codex/tasks/task_e_2?tab=diff"
    assert parse_exec_output("Submitted as task_e_3 — refreshing").id == "task_e_3"
    assert classify_stderr("GET /wham/tasks failed: 429 Too Many Requests", 1, "x").category == (
        "cloud_rate_limited"
    )
    assert classify_stderr("error sending request: connection reset", 1, "x").category == (
        "cloud_unavailable"
    )


def test_stderr_of_the_real_cli_with_warnings_and_a_backtrace():
    # What codex 0.169 prints (tests/test_codex_cli.py): a WARNING first when CODEX_HOME is
    # under /tmp, the anyhow error, and with RUST_BACKTRACE=1 a backtrace of <unknown> frames.
    stderr = (
        "WARNING: proceeding, even though we could not create PATH aliases: Refusing to create "
        'helper binaries under temporary dir "/tmp"\n'
        "Error: http error: get_task_details failed: GET https://chatgpt.com/backend-api/wham/"
        'tasks/task_e_x failed: 404 Not Found; body={"detail": "task not found"}\n\n'
        "Stack backtrace:\n   0: <unknown>\n   1: <unknown>\n  10: <unknown>\n"
    )
    error = classify_stderr(stderr, 1, "codex cloud status")
    assert isinstance(error, CloudNotFound)
    assert error.message.startswith("codex cloud status: Error: http error: get_task_details")
    assert "<unknown>" not in error.message and "WARNING" not in error.message
    caused = (
        "Error: error sending request for url (https://chatgpt.com/backend-api/wham/environments)"
        "\n\nCaused by:\n    0: client error (Connect)\n    1: invalid peer certificate: Other\n"
    )
    error = classify_stderr(caused, 1, "codex cloud exec")
    assert error.category == "cloud_unavailable"
    assert error.message.endswith("(caused by: invalid peer certificate: Other)")


async def test_executor_with_cli_adapter_best_of_two(fake_codex):
    make_repo(fake_codex)
    config = Config.model_validate(
        {
            "cloud": {
                "adapter": "cli",
                "envId": "env_test",
                "poll": {
                    "intervalSeconds": 0.02,
                    "maxIntervalSeconds": 0.05,
                    "requestTimeoutSeconds": 5,
                },
            }
        }
    )
    ctx = FakeContext(fake_codex, config)
    ctx.manifest.cloud = CloudInfo(attempts=2)
    outcome = await CloudExecutor().execute(ctx)
    assert outcome.state == RunState.SUCCEEDED, outcome
    info = ctx.manifest.cloud
    assert info.adapter == "cli" and info.task_id == "task_e_fake123" and info.poll_count == 3
    assert [a.attempt for a in info.attempt_status] == [1, 2]
    assert b"+attempt 1" in ctx.patches[1] and b"+attempt 2" in ctx.patches[2]


async def test_applied_is_finished_and_pending_exit_1_is_pending(fake_codex, monkeypatch):
    client = CliCloudClient(["codex"], timeout=10)
    first = await client.get_task("task_e_fake123")  # "[PENDING] Fake task", exit status 1
    assert first.state == RunState.RUNNING and first.status == "pending"
    monkeypatch.setenv("FAKE_CODEX_FINAL", "APPLIED")
    applied_client = CliCloudClient(["codex"], timeout=10)
    await applied_client.get_task("task_e_fake123")
    applied = await applied_client.get_task("task_e_fake123")  # "[APPLIED] Fake task", exit 1
    assert applied.state == RunState.SUCCEEDED and applied.status == "applied"


async def test_starting_diff_goes_in_codex_starting_diff_only_when_asked(fake_codex, monkeypatch):
    monkeypatch.setenv("CODEX_STARTING_DIFF", "inherited from the server's environment")
    client = CliCloudClient(["codex"], timeout=10)
    await client.create_task("p", "env_test", "main", 1, False, starting_diff="diff --git a/x b/x\n")
    await client.create_task("p", "env_test", "main", 1, False)
    calls = [json.loads(line) for line in (fake_codex / "calls.log").read_text().splitlines()]
    assert [c["starting_diff"] for c in calls] == ["diff --git a/x b/x\n", ""]


async def test_executor_cli_task_error(fake_codex, monkeypatch):
    make_repo(fake_codex)
    monkeypatch.setenv("FAKE_CODEX_FINAL", "ERROR")
    config = Config.model_validate(
        {"cloud": {"adapter": "cli", "envId": "env_test", "poll": {"intervalSeconds": 0.02}}}
    )
    ctx = FakeContext(fake_codex, config)
    outcome = await CloudExecutor().execute(ctx)
    assert outcome.state == RunState.FAILED and outcome.error_code == "cloud_task_failed"
    # "[ERROR] Fake task": the title is not the reason.
    assert "Fake task" not in outcome.message and "ended in ERROR" in outcome.message


# --- what the real codex 0.169 prints (probed with the pinned CLI, tests/codex) ----------------

WARNING = (
    "WARNING: proceeding, even though we could not create PATH aliases: Refusing to create "
    'helper binaries under temporary dir "/tmp" (codex_home: AbsolutePathBuf("/tmp/h"))\n'
)
BACKTRACE = "\nStack backtrace:\n" + "".join(f"  {i:2}: <unknown>\n" for i in range(14))
SIGNED_OUT = (
    WARNING + "Not signed in. Please run 'codex login' to sign in with ChatGPT, then re-run "
    "'codex cloud'.\n"
)
# `codex cloud exec` with no network: the environment lookup is its first request.
NO_NETWORK_EXEC = (
    WARNING + "Error: error sending request for url (https://chatgpt.com/backend-api/wham/"
    "environments)\n\nCaused by:\n    0: client error (Connect)\n    1: dns error\n"
    "    2: failed to lookup address information: Try again\n" + BACKTRACE
)
NO_NETWORK_STATUS = (
    WARNING + "Error: http error: get_task_details failed: error sending request for url "
    "(https://chatgpt.com/backend-api/wham/tasks/task_e_x)\n" + BACKTRACE
)
# The create itself lost mid-request: the task may exist, so it must not be created again.
LOST_CREATE = (
    "Error: error sending request for url (https://chatgpt.com/backend-api/wham/tasks)\n\n"
    "Caused by:\n    0: connection closed before message completed\n"
)
UNKNOWN_ENV = (
    WARNING + "Error: environment 'nope' not found; run `codex cloud` to list available "
    "environments\n" + BACKTRACE
)


@pytest.mark.parametrize(
    ("stderr", "what", "category", "message", "connect"),
    [
        (
            SIGNED_OUT,
            "codex cloud exec",
            "cloud_auth",
            "codex cloud exec: Not signed in. Please run 'codex login' to sign in with ChatGPT, "
            "then re-run 'codex cloud'.",
            False,
        ),
        (
            NO_NETWORK_EXEC,
            "codex cloud exec",
            "cloud_unavailable",
            "codex cloud exec: Error: error sending request for url (https://chatgpt.com/"
            "backend-api/wham/environments) (caused by: failed to lookup address information: "
            "Try again)",
            True,
        ),
        (
            NO_NETWORK_STATUS,
            "codex cloud status",
            "cloud_unavailable",
            "codex cloud status: Error: http error: get_task_details failed: error sending "
            "request for url (https://chatgpt.com/backend-api/wham/tasks/task_e_x)",
            False,
        ),
        (
            LOST_CREATE,
            "codex cloud exec",
            "cloud_unavailable",
            "codex cloud exec: Error: error sending request for url (https://chatgpt.com/"
            "backend-api/wham/tasks) (caused by: connection closed before message completed)",
            False,
        ),
        (
            UNKNOWN_ENV,
            "codex cloud exec",
            "cloud_preflight",
            "codex cloud exec: Error: environment 'nope' not found; run `codex cloud` to list "
            "available environments",
            False,
        ),
    ],
    ids=["signed-out", "no-network-exec", "no-network-status", "lost-create", "unknown-env"],
)
def test_classify_the_real_cli_texts(stderr, what, category, message, connect):
    error = classify_stderr(stderr, 1, what)
    assert error.category == category
    assert error.message == message  # one line: no WARNING, no backtrace
    assert bool(error.data.get("connect")) is connect
    assert error.transient is (category == "cloud_unavailable")


def test_a_panic_backtrace_is_trimmed_too():
    stderr = "thread 'main' panicked at src/lib.rs:1:1:\nboom\nstack backtrace:\n   0: foo\n"
    assert classify_stderr(stderr, 101, "codex cloud list").message == "codex cloud list: boom"


def cli_config(**cloud: object) -> Config:
    return Config.model_validate(
        {
            "cloud": {
                "adapter": "cli",
                "envId": "env_test",
                "poll": {"intervalSeconds": 0.02, "maxIntervalSeconds": 0.05, "jitter": 0},
                **cloud,
            }
        }
    )


def calls_log(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "calls.log").read_text().splitlines()]


async def test_every_cli_call_runs_in_the_run_dir_with_the_workspace_branch(fake_codex):
    repo = make_repo(fake_codex)
    git(["checkout", "-q", "-b", "feature/x"], repo)
    ctx = FakeContext(fake_codex, cli_config())
    outcome = await CloudExecutor().execute(ctx)
    assert outcome.state == RunState.SUCCEEDED, outcome
    private = ctx.run_dir / "cli"
    calls = [c for c in calls_log(fake_codex) if c["argv"][0] == "cloud"]
    assert [c["argv"][1] for c in calls] == ["exec", "status", "status", "status", "diff"]
    assert {c["cwd"] for c in calls} == {str(private)}
    # The branch is named, as the workspace has it (the CLI would read its own cwd's).
    assert calls[0]["argv"][:6] == ["cloud", "exec", "--env", "env_test", "--branch", "feature/x"]
    assert ctx.manifest.cloud is not None and ctx.manifest.cloud.branch == "feature/x"
    # The CLI's error.log (with the account id) stays in the run's directory.
    assert "acct-fake" in (private / "error.log").read_text()
    assert git(["status", "--porcelain", "--untracked-files=all"], repo) == ""


async def test_a_configured_branch_wins_over_the_workspace_branch(fake_codex):
    make_repo(fake_codex)
    ctx = FakeContext(fake_codex, cli_config(branch="release"))
    assert (await CloudExecutor().execute(ctx)).state == RunState.SUCCEEDED
    exec_call = next(c for c in calls_log(fake_codex) if c["argv"][:2] == ["cloud", "exec"])
    assert exec_call["argv"][4:6] == ["--branch", "release"]


async def test_no_network_before_create_is_retried(fake_codex, monkeypatch):
    make_repo(fake_codex)
    monkeypatch.setenv("FAKE_CODEX_OFFLINE", "2")
    monkeypatch.setenv("FAKE_CODEX_OFFLINE_TEXT", NO_NETWORK_EXEC)
    ctx = FakeContext(fake_codex, cli_config())
    outcome = await CloudExecutor().execute(ctx)
    assert outcome.state == RunState.SUCCEEDED, outcome
    assert ctx.manifest.cloud is not None and ctx.manifest.cloud.retries == 2
    assert any("cloud_unavailable, retrying" in m for m in ctx.messages)


async def test_a_create_lost_mid_request_is_not_repeated(fake_codex, monkeypatch):
    make_repo(fake_codex)
    monkeypatch.setenv("FAKE_CODEX_OFFLINE", "1")
    monkeypatch.setenv("FAKE_CODEX_OFFLINE_TEXT", LOST_CREATE)
    ctx = FakeContext(fake_codex, cli_config())
    outcome = await CloudExecutor().execute(ctx)
    assert outcome.state == RunState.FAILED and outcome.error_code == "cloud_unavailable"
    assert [c["argv"][1] for c in calls_log(fake_codex) if c["argv"][0] == "cloud"] == ["exec"]


async def test_signed_out_at_create_fails_fast_with_cloud_auth(fake_codex, monkeypatch):
    make_repo(fake_codex)
    monkeypatch.setenv("FAKE_CODEX_MODE", "signed_out")
    ctx = FakeContext(fake_codex, cli_config())
    outcome = await CloudExecutor().execute(ctx)
    assert outcome.state == RunState.FAILED and outcome.error_code == "cloud_auth"
    assert "codex login" in outcome.message and "WARNING" not in outcome.message


def test_workspace_branch_resolves_as_the_cli_does(tmp_path):
    origin = make_repo(tmp_path)
    git(["branch", "-m", "main", "trunk"], origin)
    assert workspace_branch(origin) == "trunk"
    clone = tmp_path / "clone"
    git(["clone", "-q", str(origin), str(clone)], tmp_path)
    git(["checkout", "-q", "--detach"], clone)
    assert workspace_branch(clone) == "trunk"  # detached: origin's default branch
    git(["checkout", "-q", "--detach"], origin)
    assert workspace_branch(origin) == "main"  # no origin, no main or master
    assert workspace_branch(tmp_path / "not-a-repo-dir") == "main"


@pytest.mark.parametrize(
    ("mode", "codes"),
    [("", []), ("signed_out", ["cloud_auth"]), ("api_key", ["cloud_auth"])],
)
def test_preflight_asks_codex_login_status(fake_codex, monkeypatch, repo, mode, codes):
    monkeypatch.setenv("FAKE_CODEX_MODE", mode)
    environ = {**os.environ, "CODEX_HOME": str(fake_codex / f"home-{mode}")}
    issues = cloud_check(cli_config(), repo, environ=environ).issues
    assert [i.code for i in issues] == codes
    if codes:
        assert "codex login" in (issues[0].fix or "")
        expected = "API key" if mode == "api_key" else "Not logged in"
        assert expected in issues[0].message, issues[0].message
    assert [c["argv"] for c in calls_log(fake_codex)] == [["login", "status"]]
    assert calls_log(fake_codex)[0]["cwd"] != str(repo)
