"""The cloud CLI adapter with the REAL Codex CLI (tests/codex, pinned): the sign-in preflight
end to end over stdio, how the CLI's own texts are classified, and where it runs.

A fresh CODEX_HOME (conftest gives each test its own) means signed out: `codex login status`
says "Not logged in" and `codex cloud ...` "Not signed in". The namespace test runs the real
`codex cloud` against the emulator as https://chatgpt.com (tests/codex_cloud_namespace.py).

Skipped only when node or npm is absent; fails when npm exists but the CLI is not installed
(`./dev test` installs it, conftest.codex_bin_dir).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from co_sidecar.cloud.cli_adapter import CliCloudClient
from co_sidecar.cloud.client import CloudAuthError, CloudUnavailable
from conftest import SessionFactory, agent_command, codex_bin_dir, git

if shutil.which("node") is None or shutil.which("npm") is None:
    pytest.skip(
        "node and npm are needed to run the real Codex CLI (tests/codex)", allow_module_level=True
    )

import test_codex_cli as real  # noqa: E402 - after the skip: it needs the CLI too

# The pinned CLI (fails the test when it is not installed) and the emulator namespace.
codex_bin = real.codex_bin
cloud_namespace = real.cloud_namespace

CODEX_BIN = codex_bin_dir()
SIGNED_OUT_CLOUD = (
    "Not signed in. Please run 'codex login' to sign in with ChatGPT, then re-run 'codex cloud'."
)


def real_codex_env() -> dict[str, str]:
    return {"PATH": f"{CODEX_BIN}{os.pathsep}{os.environ['PATH']}"}


def cli_options(fallback: str) -> dict[str, Any]:
    return {
        "local": {"agentCommand": agent_command(), "envAllow": ["DEMO_AGENT_*"]},
        "cloud": {"adapter": "cli", "envId": "env-x", "fallback": fallback},
    }


def fresh_codex_home() -> Path:
    home = Path(os.environ["CODEX_HOME"])  # per test (conftest), empty: signed out
    home.mkdir(parents=True, exist_ok=True)
    return home


@pytest.mark.parametrize("home", ["empty", "missing"])
async def test_signed_out_real_cli_falls_back_to_local_under_allow(
    repo: Path, start_server: SessionFactory, codex_bin: Path, home: str
) -> None:
    if home == "empty":
        fresh_codex_home()
    s = await start_server(repo, cli_options("allow"), env=real_codex_env())
    launched = await s.request("co/launch", {"prompt": "add notes", "mode": "cloud"})
    assert launched["mode"] == "local", launched
    assert "cloud preflight failed (cloud_auth); falling back to local" in launched["reason"]
    [issue] = launched["fallback"]["issues"]
    assert issue["code"] == "cloud_auth" and "codex login" in issue["fix"]
    # codex's own words: "Not logged in", or why it cannot read a CODEX_HOME that is missing.
    assert ("Not logged in" if home == "empty" else "does not exist") in issue["message"]
    assert await s.wait_state(launched["runId"]) == "succeeded"
    m = real.manifest_of(repo, launched["runId"])
    assert m["selectedMode"] == "local" and m["fallback"]["issues"][0]["code"] == "cloud_auth"
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


async def test_signed_out_real_cli_fails_fast_under_deny_and_doctor_says_why(
    repo: Path, start_server: SessionFactory, codex_bin: Path
) -> None:
    fresh_codex_home()
    s = await start_server(repo, cli_options("deny"), env=real_codex_env())
    launched = await s.request("co/launch", {"prompt": "add notes", "mode": "cloud"})
    assert launched["mode"] == "cloud" and launched["state"] == "failed", launched
    reason = launched["reason"]
    assert "cloud preflight failed (cloud_auth) and the fallback policy is deny" in reason
    m = real.manifest_of(repo, launched["runId"])
    assert m["state"] == "failed" and "cloud_auth" in m["failureReason"]
    assert not (m.get("cloud") or {}).get("taskId")  # no `codex cloud exec` was tried

    doctor = await s.request("co/doctor", {})
    assert [i["code"] for i in doctor["cloud"]["issues"]] == ["cloud_auth"]
    assert doctor["codex"] == {
        "path": str(codex_bin),
        "version": f"codex-cli {real.CODEX_VERSION}",
        "signedIn": False,
        "signInDetail": "Not logged in",
        "localDefault": False,  # local.agentCommand is set
        "execArgs": ["exec", "--json", "--sandbox", "workspace-write"],
    }
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


async def test_real_cli_texts_are_classified(codex_bin: Path, tmp_path: Path) -> None:
    home = fresh_codex_home()
    client = CliCloudClient([str(codex_bin)], timeout=30)
    with pytest.raises(CloudAuthError) as signed_out:
        await client.create_task("p", "env-x", "main")
    assert signed_out.value.message == f"codex cloud exec: {SIGNED_OUT_CLOUD}"
    # The CLI's error.log went to the client's own temporary directory, removed on close.
    private = client._own_cwd
    assert private is not None and (Path(private) / "error.log").exists()
    await client.aclose()
    assert not Path(private).exists()

    # Signed in (a fake ChatGPT auth.json) with no network: a network namespace with no
    # interface up, where chatgpt.com is 127.0.0.1 (so no DNS timeout: the connect fails at
    # once). The environment lookup fails before any task exists, so it is retryable.
    isolate = ["unshare", "--user", "--map-root-user", "--mount", "--net"]
    probe = subprocess.run([*isolate, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user/mount/network namespaces unavailable: {probe.stderr.decode().strip()}")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost chatgpt.com\n")
    real.fake_chatgpt_auth(home)
    offline = CliCloudClient(
        [*isolate, "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts),
         str(codex_bin)],
        timeout=60,
        environ={**os.environ, "RUST_BACKTRACE": "1"},
    )  # fmt: skip
    try:
        with pytest.raises(CloudUnavailable) as unavailable:
            await offline.create_task("p", "env-x", "main")
    finally:
        await offline.aclose()
    error = unavailable.value
    assert error.message.startswith(
        "codex cloud exec: Error: error sending request for url "
        "(https://chatgpt.com/backend-api/wham/environments)"
    ), error.message
    assert error.transient and error.data.get("connect") is True
    assert error.message.endswith("(caused by: Network unreachable (os error 101))")
    assert "<unknown>" not in error.message and "backtrace" not in error.message.lower()


WRAPPER = """#!{python}
import json, os, sys
with open({log!r}, "a") as log:
    log.write(json.dumps({{"cwd": os.getcwd(), "argv": sys.argv[1:]}}) + "\\n")
# The namespace's own wrapper (tests/test_codex_cli.py) takes codex there, in this directory.
os.execv({inner!r}, [{inner!r}, *sys.argv[1:]])
"""


async def test_real_cli_runs_in_the_run_dir_with_an_explicit_branch(
    repo: Path, start_server: SessionFactory, cloud_namespace: Any, tmp_path: Path
) -> None:
    ns = cloud_namespace
    log = tmp_path / "codex-calls.log"
    wrapper = tmp_path / "codex-in-namespace"
    (inner,) = ns.codex_command
    wrapper.write_text(WRAPPER.format(python=sys.executable, log=str(log), inner=inner))
    wrapper.chmod(0o755)
    options = {
        "cloud": {
            "adapter": "cli",
            "codexCommand": [str(wrapper)],
            "envId": real.ENV_ID,
            "poll": {"intervalSeconds": 0.2, "maxIntervalSeconds": 0.5, "jitter": 0},
        }
    }
    s = await start_server(repo, options=options, env={"CODEX_CA_CERTIFICATE": str(ns.ca)})
    run_id, state = await s.run_to_end("add notes", mode="cloud")
    m = real.manifest_of(repo, run_id)
    assert state == "succeeded", m
    private = repo / ".runs" / "adhoc" / run_id / "cli"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    cloud_calls = [c for c in calls if c["argv"][:1] == ["cloud"]]
    assert [c["argv"][1] for c in cloud_calls][:1] == ["exec"] and len(cloud_calls) >= 3
    assert {c["cwd"] for c in cloud_calls} == {str(private)}
    # The workspace's branch, named: the CLI would have read the branch of its own cwd.
    assert cloud_calls[0]["argv"][2:6] == ["--env", real.ENV_ID, "--branch", "main"]
    assert m["cloud"]["branch"] == "main"
    # The sign-in preflight ran too, never in the workspace.
    [login] = [c for c in calls if c["argv"] == ["login", "status"]]
    assert not login["cwd"].startswith(str(repo))
    # The real CLI's error.log, with the account id, is in the run's directory only.
    assert "acct-emulated" in (private / "error.log").read_text()
    assert not (repo / "error.log").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""

    # An unknown environment: the CLI's text, as cloud_preflight, without its backtrace.
    launched = await s.request(
        "co/launch", {"prompt": "p", "mode": "cloud", "cloud": {"envId": "nope"}}
    )
    assert await s.wait_state(launched["runId"]) == "failed"
    failed = real.manifest_of(repo, launched["runId"])
    assert failed["errorCode"] == "cloud_preflight", failed
    assert failed["failureReason"] == (
        "creating the cloud task failed: codex cloud exec: Error: environment 'nope' not found; "
        "run `codex cloud` to list available environments"
    )
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def namespace_options(ns: Any, **cloud: Any) -> dict[str, Any]:
    return {
        "cloud": {
            "adapter": "cli",
            "codexCommand": ns.codex_command,
            "envId": real.ENV_ID,
            "poll": {"intervalSeconds": 0.2, "maxIntervalSeconds": 0.5, "jitter": 0},
            **cloud,
        }
    }


@pytest.mark.parametrize("cloud_namespace", ["task:fail=BOOM:attempt=1"], indirect=True)
async def test_real_cli_and_http_number_attempts_alike(
    repo: Path, start_server: SessionFactory, cloud_namespace: Any
) -> None:
    """A best-of-2 task whose first attempt fails: `codex cloud diff --attempt 1` is the
    second attempt's diff, and the HTTP adapter calls that same diff attempt 1."""
    from co_sidecar.testing.emulator import Emulator

    ns = cloud_namespace
    s = await start_server(repo, namespace_options(ns), env={"CODEX_CA_CERTIFICATE": str(ns.ca)})
    cli_run, cli_state = await s.run_to_end("two ways", mode="cloud", cloud={"attempts": 2})
    cli = real.manifest_of(repo, cli_run)
    assert cli_state == "succeeded", cli
    with Emulator(repo, faults="task:fail=BOOM:attempt=1").start() as emu:
        options = {"cloud": {"envId": "env-demo", "baseUrl": emu.base_url,
                             "poll": {"intervalSeconds": 0.05, "maxIntervalSeconds": 0.2, "jitter": 0}}}  # fmt: skip
        h = await start_server(repo, options)
        http_run, http_state = await h.run_to_end("two ways", mode="cloud", cloud={"attempts": 2})
    http = real.manifest_of(repo, http_run)
    assert http_state == "succeeded", http
    cli_attempts = {a["attempt"]: a for a in cli["cloud"]["attemptStatus"]}
    http_attempts = {a["attempt"]: a for a in http["cloud"]["attemptStatus"]}
    assert cli_attempts[1]["diff"]["sha256"] == http_attempts[1]["diff"]["sha256"]
    assert list(cli_attempts) == [1] and http_attempts[2]["diff"] is None
    assert http_attempts[2]["error"] == "BOOM: injected task failure"
    # What the real CLI prints for attempt 2: not available (only one attempt has a diff).
    client = CliCloudClient(ns.codex_command, environ={**os.environ, "CODEX_CA_CERTIFICATE": str(ns.ca)})
    try:
        assert await client.get_diff(cli["cloud"]["taskId"], 1)
        with pytest.raises(Exception, match="attempt 2 not available"):
            await client.get_diff(cli["cloud"]["taskId"], 2)
    finally:
        await client.aclose()


async def test_real_cli_takes_a_label_and_starts_from_local_changes(
    repo: Path, start_server: SessionFactory, cloud_namespace: Any
) -> None:
    """`--env emulated` names the environment labelled "Emulated" (the CLI resolves it), and
    CODEX_STARTING_DIFF carries the user's uncommitted work: the cloud diff then applies to
    the dirty workspace."""
    ns = cloud_namespace
    (repo / "app.py").write_text("def main():\n    return 2  # uncommitted\n")
    (repo / "draft.txt").write_text("an untracked draft\n")
    options = namespace_options(ns, envId="emulated", startFromLocalChanges=True)
    s = await start_server(repo, options, env={"CODEX_CA_CERTIFICATE": str(ns.ca)})
    launched = await s.request("co/launch", {"prompt": "add notes", "mode": "cloud"})
    assert launched["cloudEnv"]["id"] == "emulated" and launched["cloudEnv"]["source"] == "configured"
    assert "codex cloud exec --env" in launched["cloudEnv"]["reason"]
    assert await s.wait_state(launched["runId"]) == "succeeded"
    m = real.manifest_of(repo, launched["runId"])
    assert m["cloud"]["startingDiff"]["files"] == 2 and m["cloud"]["startingDiff"]["base"] == "HEAD"
    patch = repo / ".runs" / m["diff"]["patchPath"]
    check = subprocess.run(["git", "apply", "--check", str(patch)], cwd=repo, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "return 2  # uncommitted" in patch.read_text()  # the agent saw the user's change


@pytest.mark.parametrize("cloud_namespace", ["task:nostatus"], indirect=True)
async def test_real_cli_finishes_by_the_display_as_the_http_adapter(
    repo: Path, start_server: SessionFactory, cloud_namespace: Any
) -> None:
    """Turns without `turn_status`: `codex cloud status` reads task_status_display (READY),
    as the HTTP adapter does (test_cloud_truth.py), so the CLI run finishes too."""
    ns = cloud_namespace
    s = await start_server(repo, namespace_options(ns), env={"CODEX_CA_CERTIFICATE": str(ns.ca)})
    run_id, state = await s.run_to_end("add notes", mode="cloud")
    m = real.manifest_of(repo, run_id)
    assert state == "succeeded", m
    assert m["cloud"]["status"] == "ready" and m["cloud"]["attemptStatus"][0]["diff"]
