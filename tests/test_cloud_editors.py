"""A cloud task's answer where the editors show a finished run: headless Neovim (the plugin's
notification and :CoStatus) against the real server and the loopback emulator. The VS Code
side is covered by its end-to-end suite (editor-clients/vscode/test)."""

from __future__ import annotations

import sys
from pathlib import Path

from co_sidecar.testing.emulator import Emulator
from test_nvim_plugin import notes, repo, run_nvim  # noqa: F401 - the fixture is used by name

ANSWER_AGENT = [sys.executable, "-c", "print('It counts lines: src.txt has 20.')"]


def test_neovim_shows_a_cloud_answer_without_a_diff(repo: Path) -> None:  # noqa: F811
    with Emulator(repo, agent=ANSWER_AGENT).start() as emu:
        result = run_nvim(
            repo,
            """
            local id = T.start('mode=cloud how many lines are in src.txt?')
            T.wait_state(id, 'succeeded', 30000)
            vim.cmd('CoStatus')
            T.wait_note('answer 1')
            """,
            setup={
                "settings": {
                    "cloud": {
                        "envId": "env-test",
                        "baseUrl": emu.base_url,
                        "poll": {"intervalSeconds": 0.05, "maxIntervalSeconds": 0.2},
                    }
                }
            },
        )
    msgs = notes(result)
    done = next(m for m in msgs if " succeeded" in m)
    assert "no changes to apply" in done and ":CoDiff" not in done
    assert "attempt 1: It counts lines: src.txt has 20." in done
    status = next(m for m in msgs if "answer 1:" in m)
    assert "It counts lines: src.txt has 20." in status and "env-test (configured)" in status
