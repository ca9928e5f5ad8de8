"""The `co-sidecar` command line: doctor, run (a scripted stdio client), serve --tcp."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from co_sidecar.jsonrpc import plain_converter
from conftest import DEMO_AGENT, git

CLI = [sys.executable, "-m", "co_sidecar"]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}, check=False)


def test_doctor_json_and_exit_codes(repo: Path) -> None:
    agent = json.dumps([sys.executable, str(DEMO_AGENT), "{prompt}"])
    ok = run_cli("doctor", "--workspace", str(repo), "--format", "json", env={"CO_AGENT_COMMAND": agent})
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["local"]["ok"] is True and report["cloud"]["ok"] is False
    cloud = run_cli("doctor", "--workspace", str(repo), "--cloud", env={"CO_AGENT_COMMAND": agent})
    assert cloud.returncode == 1
    assert "FAIL" in cloud.stdout and "fix:" in cloud.stdout and "fallback policy: allow" in cloud.stdout
    # Signed out, nothing configured: the environment line says it would be detected, and how.
    assert "no Codex Cloud environment id (detected from the repository's origin once signed in)" in cloud.stdout
    assert "run `codex login` (it is then detected), or set cloud.envId (an id or a label" in cloud.stdout


def test_run_shows_progress_and_diff_then_applies_with_git(repo: Path) -> None:
    agent = json.dumps([sys.executable, str(DEMO_AGENT), "{prompt}"])
    result = run_cli("run", "tidy up", "--workspace", str(repo), "--agent", agent, "--mode", "local")
    assert result.returncode == 0, result.stderr
    assert "[demo-agent] done" in result.stdout and "succeeded" in result.stdout
    assert "+++ b/NOTES.md" in result.stdout and "not applied" in result.stdout
    assert git(repo, "status", "--porcelain") == ""

    applied = run_cli("run", "tidy up", "--workspace", str(repo), "--agent", agent, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "applied" in applied.stdout
    assert (repo / "NOTES.md").is_file() and not (repo / "TODO.md").exists()


def test_run_advice_is_one_line_that_applies_as_printed_from_elsewhere(repo: Path) -> None:
    """Piped output is not wrapped (an id split over two lines cannot be pasted), and the
    advice, given from outside the workspace, names it."""
    agent = json.dumps([sys.executable, str(DEMO_AGENT), "{prompt}"])
    result = run_cli("run", "tidy up", "--workspace", str(repo), "--agent", agent, cwd=repo.parent)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("not applied. To apply: "))
    advice = line.removeprefix("not applied. To apply: ").split(" (or reject: ")[0]
    assert line.endswith(")") and f"--workspace {repo.name} " in advice, line
    applied = subprocess.run(shlex.split(advice), cwd=repo.parent, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert (repo / "NOTES.md").is_file() and not (repo / "TODO.md").exists()


def test_run_json_is_one_document_on_stdout_with_progress_on_stderr(repo: Path) -> None:
    agent = json.dumps([sys.executable, str(DEMO_AGENT), "{prompt}"])
    done = run_cli("run", "tidy up", "--workspace", str(repo), "--agent", agent, "--apply", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # nothing else on stdout
    assert "[demo-agent] done" in done.stderr  # the progress a person watches
    assert document["run"]["state"] == "applied" and document["run"]["runId"]
    assert "NOTES.md" in {f["path"] for f in document["diff"]["files"]}
    assert document["apply"]["applied"] is True and (repo / "NOTES.md").is_file()

    failing = run_cli("run", "x", "--workspace", str(repo), "--json", "--agent", json.dumps([sys.executable, "-c", "import sys; sys.exit('boom')"]))
    assert failing.returncode == 1
    failed = json.loads(failing.stdout)
    assert failed["run"]["state"] == "failed" and "boom" in failed["run"]["failureReason"]
    assert failed["diff"] is None and failed["apply"] is None


def test_run_reports_a_failed_agent_with_non_zero_exit(repo: Path) -> None:
    agent = json.dumps([sys.executable, "-c", "import sys; sys.exit('boom')"])
    failing = run_cli("run", "x", "--workspace", str(repo), "--agent", agent)
    assert failing.returncode == 1
    assert "run failed" in failing.stdout and "boom" in failing.stdout


async def test_serve_over_tcp(repo: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token_file = tmp_path / "tcp.token"
    server = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--tcp", f"127.0.0.1:{port}", "--token-file", str(token_file), stderr=asyncio.subprocess.PIPE
    )
    assert server.stderr is not None
    await server.stderr.readline()  # the banner: the token file is written
    try:
        client = LanguageClient("t", "0", converter_factory=plain_converter)
        for _ in range(100):
            try:
                await client.start_tcp("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        result = await client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                root_uri=repo.as_uri(),
                initialization_options={"authToken": token_file.read_text().strip()},
            )
        )
        assert result.server_info is not None and result.server_info.name == "co-sidecar"
        assert "co.launch" in (result.capabilities.execute_command_provider.commands or [])
        runs = await client.protocol.send_request_async("co/list", {})
        assert runs == {"runs": [], "total": 0}
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    finally:
        server.kill()
        await server.wait()
