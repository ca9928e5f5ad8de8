"""The local agent path with the REAL Codex CLI (tests/codex, pinned), offline.

`codex` from tools/codex/node_modules is put first on PATH and `local.agentCommand` is left
unset, so co-sidecar runs its default argv. $CODEX_HOME/config.toml points codex at a scripted
model on loopback (tests/codex_model_server.py) that answers each model turn from a script:
edit with apply_patch, run a shell command, fail, or stall. See docs/codex.md.

Skipped only when node or npm is absent; `./dev test` installs tests/codex (npm ci) into
~/.cache/co-sidecar/codex-<lockfile hash>/ (conftest.codex_bin_dir).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from co_sidecar.cloud.cli_adapter import CliCloudClient
from co_sidecar.cloud.client import CloudNotFound
from codex_model_server import MODEL, ModelServer, Turn, write_codex_config
from conftest import CODEX_PACKAGE, Session, SessionFactory, codex_bin_dir, git

CODEX_BIN = codex_bin_dir()
CODEX_VERSION = json.loads((CODEX_PACKAGE / "package.json").read_text())["dependencies"][
    "@openai/codex"
]
API_KEY = "sk-scripted-dummy"
SIDECAR_SECRET = "sidecar-cloud-token-must-not-leak"

if shutil.which("node") is None or shutil.which("npm") is None:
    pytest.skip(
        "node and npm are needed to run the real Codex CLI (tests/codex)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def codex_bin() -> Path:
    codex = CODEX_BIN / "codex"
    if not codex.exists():
        pytest.fail(
            f"the pinned Codex CLI is not installed: {codex} is missing. "
            "Run ./dev test (it installs it into that cache)"
        )
    out = subprocess.run([str(codex), "--version"], capture_output=True, text=True, timeout=30)
    if out.stdout.strip() != f"codex-cli {CODEX_VERSION}":
        pytest.fail(
            f"{codex} is {out.stdout.strip() or out.stderr.strip()!r}, not the pinned "
            f"{CODEX_VERSION}: remove {CODEX_BIN.parent.parent} and run ./dev test"
        )
    return codex


@pytest.fixture
def model_server(request: pytest.FixtureRequest) -> Iterator[ModelServer]:
    turns: list[Turn] = request.param
    with ModelServer(turns) as model:
        write_codex_config(Path(os.environ["CODEX_HOME"]), model)
        yield model


def server_env() -> dict[str, str]:
    """The sidecar's environment: real codex first on PATH, codex's key, and a cloud token the
    sidecar holds but must never hand to the agent."""
    return {
        "PATH": f"{CODEX_BIN}{os.pathsep}{os.environ['PATH']}",
        "CODEX_API_KEY": API_KEY,
        "CODEX_CLOUD_TOKEN": SIDECAR_SECRET,
    }


def manifest_of(workspace: Path, run_id: str) -> dict[str, Any]:
    return json.loads((workspace / ".runs" / "adhoc" / run_id / "manifest.json").read_text())


def output_lines(updates: list[dict[str, Any]], stream: str) -> list[str]:
    """The agent's output lines on `stream` (a runUpdate may carry several lines)."""
    return [line for u in updates if u.get("stream") == stream for line in u["message"].split("\n")]


PATCH = """*** Begin Patch
*** Update File: app.py
@@
 def main():
-    return 1
+    return 2
*** End Patch
"""
# Starts with "--" and holds shell metacharacters: must reach the model as typed.
PROMPT = "--fix: make main() return 2; don't touch $(anything) else `really`"


@pytest.mark.parametrize(
    "model_server",
    [
        [
            Turn.apply_patch(PATCH),
            Turn.shell("git status --short"),
            Turn.message("Done: main() returns 2."),
        ]
    ],
    indirect=True,
)
async def test_default_codex_exec_edits_streams_and_applies(
    repo: Path, start_server: SessionFactory, codex_bin: Path, model_server: ModelServer
) -> None:
    s = await start_server(repo, options={}, env=server_env())
    launched = await s.request(
        "co/launch", {"prompt": PROMPT, "mode": "local", "workDoneToken": "codex-run"}
    )
    run_id = launched["runId"]
    state = await s.wait_state(run_id, timeout=20)
    m = manifest_of(repo, run_id)
    assert state == "succeeded", (m.get("failureReason"), m["executor"].get("stderrTail"))

    # The default argv ran: codex exec --json in workspace-write, rooted in the scratch copy,
    # the prompt after "--".
    assert m["executor"]["argv"] == [
        "codex", "exec", "--json", "--sandbox", "workspace-write", "-C", "{workdir}", "--", "{prompt}",
    ]  # fmt: skip
    assert m["executor"]["exitCode"] == 0

    # codex talked to our model: turn 1 offered apply_patch and carried the prompt verbatim;
    # turns 2 and 3 carried the tool outputs back.
    turns = model_server.model_requests
    assert len(turns) == 3
    first = turns[0]
    assert first.body is not None and first.body["model"] == MODEL
    assert {"apply_patch", "exec_command"} <= set(first.tool_names())
    assert PROMPT in first.texts("user")
    assert all(t.headers.get("authorization") == f"Bearer {API_KEY}" for t in turns)
    patch_out = turns[1].call_output("call-patch-1")
    assert patch_out is not None and "app.py" in json.dumps(patch_out)
    shell_out = turns[2].call_output("call-shell-1")
    assert shell_out is not None and "M app.py" in str(shell_out["output"])
    # The sidecar's cloud token never reached codex (nor, through it, the model).
    everything = json.dumps([(r.path, r.headers, r.body) for r in model_server.requests])
    assert SIDECAR_SECRET not in everything

    # codex's steps, live and in order: the edit, the command, its output, its exit, the answer.
    updates = s.updates_for(run_id)
    seen = [
        (u["event"]["kind"], u["message"]) if u.get("event") else ("output", line)
        for u in updates
        if u.get("event") or u.get("stream") == "stdout"
        for line in ([u["message"]] if u.get("event") else u["message"].split("\n"))
    ]
    assert [s for s in seen if s[0] != "output" or "pyenv" not in s[1]] == [
        ("thread.started", f"codex session {m['codex']['threadId']}"),
        ("turn.started", "codex is working"),
        ("file_change", "editing app.py"),
        ("file_change", "edited 1 file: app.py"),
        ("command_execution", "$ git status --short"),
        ("output", " M app.py"),
        ("command_execution", "exit 0: git status --short"),
        ("agent_message", "Done: main() returns 2."),
        ("turn.completed", seen[-1][1]),
    ]
    command = next(u["event"] for u in updates if u.get("message") == "exit 0: git status --short")
    assert (command["command"], command["exitCode"], command["status"]) == (
        "git status --short", 0, "completed",
    )  # fmt: skip
    # $/progress shows the current step, in the same order.
    reports = [r.message for r in s.client.progress_reports["codex-run"] if getattr(r, "message", None)]
    assert "running: $ git status --short" in reports
    assert reports.index("running: edited 1 file: app.py") < reports.index("running: $ git status --short")
    # codex's stderr is still output (its banner-free stderr in --json mode: a stdin notice).
    assert any("Reading additional input from stdin" in line for line in output_lines(updates, "stderr"))
    states = [u["state"] for u in updates if not u.get("stream") and not u.get("event")]
    assert states[-1] == "succeeded" and "running" in states

    # The manifest keeps what codex reported, and the whole stream beside it.
    codex = m["codex"]
    assert codex["cliVersion"] == f"codex-cli {CODEX_VERSION}"
    assert codex["finalMessage"] == "Done: main() returns 2."
    assert (codex["commandsRun"], codex["filesChanged"]) == (1, 1)
    assert set(codex["usage"]) == {"inputTokens", "cachedInputTokens", "outputTokens", "reasoningOutputTokens"}
    events = (repo / ".runs" / codex["eventsPath"]).read_text().splitlines()
    assert json.loads(events[0]) == {"type": "thread.started", "thread_id": codex["threadId"]}
    assert json.loads(events[-1])["type"] == "turn.completed"

    # The diff is exactly the edit the model made.
    diff = await s.request("co/diff", {"runId": run_id})
    assert [(f["path"], f["status"], f["additions"], f["deletions"]) for f in diff["files"]] == [
        ("app.py", "modified", 1, 1)
    ]
    assert git(repo, "status", "--porcelain") == ""  # untouched until accepted
    applied = await s.request("co/apply", {"runId": run_id, "accept": True, "strategy": "git"})
    assert applied["applied"] is True, applied
    assert (repo / "app.py").read_text() == "def main():\n    return 2\n"
    assert git(repo, "status", "--porcelain").split() == ["M", "app.py"]


@pytest.mark.parametrize(
    "model_server",
    [[Turn.apply_patch(PATCH), Turn.shell("git status --short"), Turn.message("Done: main() returns 2.")]],
    indirect=True,
)
def test_co_sidecar_run_prints_codex_steps_then_applies(
    repo: Path, codex_bin: Path, model_server: ModelServer
) -> None:
    env = {**os.environ, **server_env(), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "co_sidecar", "run", "make main return 2", "--workspace", str(repo), "--mode", "local", "--apply"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines()]
    order = ["edited 1 file: app.py", "$ git status --short", "exit 0: git status --short", "codex: Done: main() returns 2."]
    positions = [next(i for i, line in enumerate(lines) if line == want) for want in order]
    assert positions == sorted(positions), proc.stdout
    assert (repo / "app.py").read_text() == "def main():\n    return 2\n"


@pytest.mark.parametrize(
    ("model_server", "expected"),
    [
        (
            [Turn(failed="scripted model exploded")],
            "stream disconnected before completion: scripted model exploded",
        ),
        ([Turn.http_error(400, "scripted bad request")], "scripted bad request"),
        # codex's own words for a 500 (request_max_retries = 0: it gives up at once).
        ([Turn.http_error(500, "scripted internal error")], "high demand"),
    ],
    indirect=["model_server"],
)
async def test_failing_model_fails_the_run_with_codex_message(
    repo: Path,
    start_server: SessionFactory,
    codex_bin: Path,
    model_server: ModelServer,
    expected: str,
) -> None:
    s = await start_server(repo, options={}, env=server_env())
    started = time.monotonic()
    run_id, state = await s.run_to_end("this will fail", mode="local")
    m = manifest_of(repo, run_id)
    assert state == "failed", m
    assert time.monotonic() - started < 15  # no retries: codex gives up at once
    assert m["executor"]["exitCode"] == 1
    # Codex's message from its turn.failed event, not its stderr.
    assert m["failureReason"].startswith("codex: ") and expected in m["failureReason"], m
    assert m["errorCode"] == "local_agent_failed"
    final = s.updates_for(run_id)[-1]
    assert (final["state"], final["errorCode"]) == ("failed", "local_agent_failed")
    assert expected in final["message"]
    turn_failed = [u for u in s.updates_for(run_id) if (u.get("event") or {}).get("kind") == "turn.failed"]
    assert len(turn_failed) == 1 and expected in turn_failed[0]["event"]["text"]
    assert len(model_server.model_requests) == 1  # no retries configured
    assert "diff" not in m or not m["diff"]


def live_processes() -> Iterator[tuple[int, list[str], str]]:
    """(pid, /proc/PID/stat fields after the name, command line) of every live process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            yield int(entry.name), fields, cmdline


def group_members(pgid: int) -> list[int]:
    """Live processes of the process group `pgid`."""
    return [pid for pid, fields, _ in live_processes() if int(fields[2]) == pgid]


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(
        item.split("=", 1) for item in raw.decode("utf-8", "replace").split("\0") if "=" in item
    )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("model_server", [[Turn.stall(60)]], indirect=True)
async def test_cancel_stops_a_long_codex_turn(
    repo: Path, start_server: SessionFactory, codex_bin: Path, model_server: ModelServer
) -> None:
    s = await start_server(repo, options={}, env=server_env())
    launched = await s.request("co/launch", {"prompt": "think for a long time", "mode": "local"})
    run_id = launched["runId"]
    await s.wait_state(run_id, {"running"}, timeout=15)
    for _ in range(200):  # codex is mid-turn once the model has the request
        if model_server.model_requests:
            break
        await asyncio.sleep(0.05)
    assert model_server.model_requests, "codex never called the model"
    pid = manifest_of(repo, run_id)["executor"]["pid"]
    members = group_members(pid)
    assert len(members) >= 2, members  # the node launcher and the codex binary

    # Every process of the agent got codex's key and none got the sidecar's cloud token.
    for member in members:
        env = environ_of(member)
        assert "CODEX_CLOUD_TOKEN" not in env and SIDECAR_SECRET not in env.values()
        assert env.get("CODEX_API_KEY") == API_KEY

    result = await s.request("co/cancel", {"runId": run_id})
    assert result["state"] == "cancelled"
    assert await s.wait_state(run_id, timeout=10) == "cancelled"
    for _ in range(40):
        if not group_members(pid):
            break
        await asyncio.sleep(0.05)
    assert group_members(pid) == [], "codex processes outlived the cancel"
    assert manifest_of(repo, run_id)["state"] == "cancelled"


def processes_running(marker: str) -> list[int]:
    """Pids of live processes whose command line contains `marker`, anywhere on the machine."""
    return [pid for pid, _, cmdline in live_processes() if marker in cmdline]


SLEEP = "sleep 37.25"  # an unusual duration: the marker of the command codex starts


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("model_server", [[Turn.shell(SLEEP)]], indirect=True)
async def test_cancel_mid_command_leaves_no_process(
    repo: Path, start_server: SessionFactory, codex_bin: Path, model_server: ModelServer
) -> None:
    s = await start_server(repo, options={}, env=server_env())
    launched = await s.request("co/launch", {"prompt": "sleep a while", "mode": "local"})
    run_id = launched["runId"]
    for _ in range(300):  # wait for the step that says codex started the command
        if any(u["message"] == f"$ {SLEEP}" for u in s.updates_for(run_id)):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail(f"no '$ {SLEEP}' step: {s.updates_for(run_id)}")
    for _ in range(100):
        if processes_running(SLEEP):
            break
        await asyncio.sleep(0.05)
    assert processes_running(SLEEP), "codex never started the command"

    result = await s.request("co/cancel", {"runId": run_id})
    assert result["state"] == "cancelled"
    assert await s.wait_state(run_id, timeout=10) == "cancelled"
    pid = manifest_of(repo, run_id)["executor"]["pid"]
    for _ in range(60):
        if not processes_running(SLEEP) and not group_members(pid):
            break
        await asyncio.sleep(0.05)
    assert processes_running(SLEEP) == [], "the command codex started outlived the cancel"
    assert group_members(pid) == [], "codex outlived the cancel"


# --- codex cloud: the real CLI against the emulator, as https://chatgpt.com in a namespace ---

NAMESPACE_HELPER = Path(__file__).with_name("codex_cloud_namespace.py")
ENV_ID = "env-emulated"


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def fake_chatgpt_auth(codex_home: Path) -> str:
    """A ChatGPT sign-in in $CODEX_HOME/auth.json (`codex cloud` refuses API keys): an unsigned
    JWT with the account claim, freshly "refreshed" so codex doesn't try to refresh it."""
    claims = {
        "email": "dev@example.com",
        "exp": int(time.time()) + 86400,
        "https://api.openai.com/auth": {
            "chatgpt_account_id": "acct-emulated",
            "chatgpt_plan_type": "pro",
            "chatgpt_user_id": "user-emulated",
        },
    }
    token = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}.c2lnbmF0dXJl"
    codex_home.mkdir(parents=True, exist_ok=True)
    auth = {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": token,
            "access_token": token,
            "refresh_token": "refresh-emulated",
            "account_id": "acct-emulated",
        },
        "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (codex_home / "auth.json").write_text(json.dumps(auth))
    return token


def make_certificates(workdir: Path) -> Path:
    """A throwaway CA and a chatgpt.com leaf it signed (rustls refuses a self-signed leaf)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=workdir, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=co-sidecar test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "leaf.csr",
            "-subj", "/CN=chatgpt.com")  # fmt: skip
    (workdir / "leaf.ext").write_text(
        "subjectAltName=DNS:chatgpt.com\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "cert.pem", "-days", "2", "-extfile", "leaf.ext")  # fmt: skip
    return workdir / "ca.pem"


class CloudNamespace:
    def __init__(self, proc: subprocess.Popen[str], workdir: Path, ca: Path, codex: Path):
        self.proc = proc
        self.workdir = workdir
        self.ca = ca
        # `cloud.codexCommand`: codex, run inside the namespace by a wrapper. nsenter into a
        # mount namespace starts in its root directory (codex would leave its error.log in /),
        # and its --wd leaves a cwd codex cannot resolve: cd to the caller's directory inside.
        wrapper = workdir / "codex-in-namespace"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"exec nsenter --target {proc.pid} --user --mount --net --preserve-credentials "
            f"""sh -c 'cd "$0" && exec "$@"' "$(pwd)" {shlex.quote(str(codex))} "$@"\n"""
        )
        wrapper.chmod(0o755)
        self.codex_command = [str(wrapper)]
        self.requests: list[dict[str, Any]] = []


@pytest.fixture
def cloud_namespace(
    tmp_path: Path, repo: Path, codex_bin: Path, request: pytest.FixtureRequest
) -> Iterator[CloudNamespace]:
    faults: str = getattr(request, "param", "")
    missing = [
        tool for tool in ("unshare", "nsenter", "openssl", "ip", "mount") if not shutil.which(tool)
    ]
    if missing:
        pytest.skip(f"the codex cloud test needs {', '.join(missing)}")
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "--net", "true"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"user/mount/network namespaces unavailable: {probe.stderr.decode().strip()}")
    workdir = tmp_path / "cloud-ns"
    workdir.mkdir()
    ca = make_certificates(workdir)
    (workdir / "hosts").write_text("127.0.0.1 localhost chatgpt.com\n")
    token = fake_chatgpt_auth(Path(os.environ["CODEX_HOME"]))
    proc = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--mount", "--net",
         sys.executable, str(NAMESPACE_HELPER), str(workdir), str(repo), token, faults],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    try:
        ready = proc.stdout.readline().strip()
        assert ready == "ready", f"emulator namespace did not start: {ready!r}"
        ns = CloudNamespace(proc, workdir, ca, codex_bin)
        yield ns
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log = workdir / "requests.json"
    if log.exists():
        ns.requests.extend(json.loads(log.read_text()))


async def start_cli_cloud_server(repo: Path, start_server: SessionFactory, ns: CloudNamespace) -> Session:
    """The sidecar with the CLI adapter running the real `codex` inside the namespace."""
    options = {
        "cloud": {
            "adapter": "cli",
            "codexCommand": ns.codex_command,
            "envId": ENV_ID,
            "poll": {"intervalSeconds": 0.2, "maxIntervalSeconds": 0.5, "jitter": 0},
        }
    }
    return await start_server(repo, options=options, env={"CODEX_CA_CERTIFICATE": str(ns.ca)})


async def test_real_codex_cloud_cli_against_the_emulator(
    repo: Path, start_server: SessionFactory, cloud_namespace: CloudNamespace
) -> None:
    ns = cloud_namespace
    s = await start_cli_cloud_server(repo, start_server, ns)
    prompt = "-add notes: from the real codex cloud CLI"
    launched = await s.request("co/launch", {"prompt": prompt, "mode": "cloud"})
    assert launched["mode"] == "cloud", launched
    run_id = launched["runId"]
    state = await s.wait_state(run_id, timeout=30)
    m = manifest_of(repo, run_id)
    assert state == "succeeded", m

    # `codex cloud exec` printed https://chatgpt.com/codex/tasks/<id>: the adapter took the id.
    task_id = m["cloud"]["taskId"]
    assert task_id.startswith("task_e_"), m["cloud"]
    diff = await s.request("co/diff", {"runId": run_id})
    # The emulator runs the demo agent: modify, add, delete and rename.
    assert {(f["path"], f["status"]) for f in diff["files"]} == {
        ("README.md", "modified"),
        ("app.py", "modified"),
        ("NOTES.md", "added"),
        ("TODO.md", "deleted"),
        ("CHANGELOG.md", "renamed"),
    }
    applied = await s.request("co/apply", {"runId": run_id, "accept": True, "strategy": "git"})
    assert applied["applied"] is True, applied
    assert prompt in (repo / "NOTES.md").read_text()

    # `codex cloud list --json`, through the same adapter and the same codex.
    client = CliCloudClient(
        ns.codex_command, environ={**os.environ, "CODEX_CA_CERTIFICATE": str(ns.ca)}, cwd=str(repo)
    )
    items = await client.list_tasks(limit=5)
    (item,) = [i for i in items if i.id == task_id]
    assert item.state is not None and item.state.value == "succeeded", item
    assert item.url == f"https://chatgpt.com/codex/tasks/{task_id}"
    assert item.title == prompt

    ns.proc.stdin.close()  # type: ignore[union-attr]
    ns.proc.wait(timeout=15)
    requests = json.loads((ns.workdir / "requests.json").read_text())
    paths = [(r["method"], r["path"].split("?")[0]) for r in requests]
    # The real CLI resolves the environment first, then creates, polls and reads the turn.
    assert ("GET", "/backend-api/wham/environments") in paths
    assert ("POST", "/backend-api/wham/tasks") in paths
    assert ("GET", f"/backend-api/wham/tasks/{task_id}") in paths
    assert ("GET", "/backend-api/wham/tasks/list") in paths
    headers = [{k.lower(): v for k, v in r["headers"].items()} for r in requests]
    assert all(h.get("chatgpt-account-id") == "acct-emulated" for h in headers)


@pytest.mark.parametrize("cloud_namespace", ["task:fail"], indirect=True)
async def test_real_codex_cloud_cli_failed_task(
    repo: Path, start_server: SessionFactory, cloud_namespace: CloudNamespace
) -> None:
    ns = cloud_namespace
    s = await start_cli_cloud_server(repo, start_server, ns)
    run_id, state = await s.run_to_end("this task fails", mode="cloud")
    m = manifest_of(repo, run_id)
    assert state == "failed", m
    environ = {**os.environ, "CODEX_CA_CERTIFICATE": str(ns.ca), "RUST_BACKTRACE": "1"}
    client = CliCloudClient(ns.codex_command, environ=environ, cwd=str(repo))
    task_id = m["cloud"]["taskId"]
    # `codex cloud status` prints "[ERROR] <title>": the title is the prompt, not a reason.
    assert m["failureReason"] == (
        "cloud task failed: the task ended in ERROR; `codex cloud status` gives no reason "
        "(open the task URL)"
    )
    # diff of a failed task: "Error: No diff available ..." then, with RUST_BACKTRACE set, a
    # stack backtrace; the adapter reads it as "no diff".
    assert await client.get_diff(task_id) is None
    # An unknown task: the error line is the message, not the backtrace's last frame.
    with pytest.raises(CloudNotFound) as info:
        await client.get_task("task_e_doesnotexist")
    assert info.value.message.startswith("codex cloud status: Error: http error: get_task_details")
    assert "404 Not Found" in info.value.message and "<unknown>" not in info.value.message
