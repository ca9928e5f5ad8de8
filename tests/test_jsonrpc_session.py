"""The scripted stdio session in docs/jsonrpc-session.md stays true to the real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_checked_in_transcript_matches_a_fresh_session() -> None:
    fresh = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "jsonrpc_session.py"), "--markdown"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    expected = (ROOT / "docs" / "jsonrpc-session.md").read_text()
    assert fresh.stdout == expected, "regenerate: python examples/jsonrpc_session.py --markdown > docs/jsonrpc-session.md"
