"""A local follow-up with the REAL pinned Codex CLI (tests/codex), offline: Codex resumes the
parent's thread (`codex exec … resume <thread id> -- <prompt>`), so the model sees the first
conversation, and edits a scratch that starts from the parent's result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codex_model_server import ModelServer, Turn
from conftest import SessionFactory, git
from test_codex_cli import codex_bin, manifest_of, model_server, server_env  # noqa: F401 - fixtures

FIRST = """*** Begin Patch
*** Update File: app.py
@@
 def main():
-    return 1
+    return 2
*** End Patch
"""
# Applies only where main() already returns 2: in a scratch that starts from the parent's result.
SECOND = """*** Begin Patch
*** Update File: app.py
@@
 def main():
-    return 2
+    return 3
*** End Patch
"""


@pytest.mark.parametrize(
    "model_server",
    [[Turn.apply_patch(FIRST), Turn.message("main() returns 2."), Turn.apply_patch(SECOND), Turn.message("Now 3.")]],
    indirect=True,
)
async def test_codex_follow_up_resumes_the_thread_in_the_parents_result(
    repo: Path, start_server: SessionFactory, codex_bin: Path, model_server: ModelServer  # noqa: F811
) -> None:
    s = await start_server(repo, options={}, env=server_env())
    first, state = await s.run_to_end("make main() return 2", mode="local")
    parent = manifest_of(repo, first)
    assert state == "succeeded", parent.get("failureReason")
    thread = parent["codex"]["threadId"]
    assert thread

    started = await s.request("co/followUp", {"runId": first, "prompt": "now make it return 3"})
    follow = started["runId"]
    state = await s.wait_state(follow, timeout=30)
    child = manifest_of(repo, follow)
    assert state == "succeeded", (child.get("failureReason"), child["executor"].get("stderrTail"))

    # The pinned CLI's resume form, with the exec options before the subcommand.
    assert child["executor"]["argv"] == [
        "codex", "exec", "--json", "--sandbox", "workspace-write", "-C", "{workdir}",
        "resume", thread, "--", "{prompt}",
    ]  # fmt: skip
    assert child["followUp"]["resumedThreadId"] == thread
    assert child["codex"]["threadId"] == thread

    # The model saw the first conversation (Codex kept its context) and the new prompt.
    turns = model_server.model_requests
    assert len(turns) == 4
    resumed = turns[2]
    assert "make main() return 2" in resumed.texts("user") and "now make it return 3" in resumed.texts("user")
    assert "main() returns 2." in json.dumps(resumed.input_items())

    # The step is 2 → 3; the cumulative change 1 → 3, and applying it applies the chain.
    step = await s.request("co/diff", {"runId": follow, "view": "step"})
    assert "-    return 2\n+    return 3" in step["patch"]
    cumulative = await s.request("co/diff", {"runId": follow})
    assert "-    return 1\n+    return 3" in cumulative["patch"]
    assert git(repo, "status", "--porcelain") == ""
    applied = await s.request("co/apply", {"runId": follow, "accept": True, "strategy": "git"})
    assert applied["applied"] is True, applied
    assert (repo / "app.py").read_text() == "def main():\n    return 3\n"
