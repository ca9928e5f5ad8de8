#!/usr/bin/env python3
"""A tiny deterministic stand-in for a coding agent (stdlib only).

co-sidecar runs it in a scratch copy of the workspace, e.g. with
`local.agentCommand = ["python3", "examples/demo_agent.py", "{prompt}"]`.

The prompt is argv[1], else $CO_PROMPT. The agent prints a few progress lines
on stdout (and one note on stderr), pausing $DEMO_AGENT_DELAY seconds (default
0.3) between steps, then edits the repository in its working directory. Each
edit happens only when its file is there, so it works on any small repo:

- modify: appends a line quoting the prompt to README.md (if present);
- modify: appends a comment to the first Python file found (top level, then
  src/, then any directory), so a code change shows up in the diff;
- create: writes NOTES.md describing the task (always);
- delete: removes TODO.md or TODO.txt (if present);
- rename: moves CHANGES.md to CHANGELOG.md (if present and the target isn't).

Test modes, via environment:
- DEMO_AGENT_SLEEP=N: sleep N seconds before editing (cancel/timeout tests);
- DEMO_AGENT_FAIL=1: print an error on stderr and exit 3 without editing.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".runs"}


def say(message: str, delay: float) -> None:
    print(f"[demo-agent] {message}", flush=True)
    time.sleep(delay)


def first_python_file(root: Path) -> Path | None:
    for pattern in ("*.py", "src/*.py", "src/*/*.py", "**/*.py"):
        for path in sorted(root.glob(pattern)):
            if path.is_file() and not SKIP_DIRS.intersection(path.relative_to(root).parts):
                return path
    return None


def append(path: Path, text: str) -> None:
    data = path.read_text(encoding="utf-8", errors="surrogateescape")
    if data and not data.endswith("\n"):
        data += "\n"
    path.write_text(data + text, encoding="utf-8", errors="surrogateescape")


def main() -> int:
    prompt = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CO_PROMPT", "")
    summary = prompt.strip().splitlines()[0] if prompt.strip() else "(no prompt)"
    delay = float(os.environ.get("DEMO_AGENT_DELAY", "0.3"))
    root = Path.cwd()

    say(f"task: {summary}", delay)
    print("[demo-agent] note: this is a demo agent, not a real one", file=sys.stderr, flush=True)
    if sleep := float(os.environ.get("DEMO_AGENT_SLEEP", "0") or 0):
        say(f"thinking for {sleep:g}s", 0)
        time.sleep(sleep)
    if os.environ.get("DEMO_AGENT_FAIL", "") not in ("", "0"):
        print(
            "[demo-agent] error: failing on purpose (DEMO_AGENT_FAIL)", file=sys.stderr, flush=True
        )
        return 3

    say("reading the repository", delay)
    readme = root / "README.md"
    if readme.is_file():
        append(readme, f"\nDemo agent was asked: {summary}\n")
        say("updated README.md", delay)

    code = first_python_file(root)
    if code is not None:
        append(code, f"# demo-agent: {summary}\n")
        say(f"annotated {code.relative_to(root)}", delay)

    notes = root / "NOTES.md"
    notes.write_text(
        f"# Notes\n\nTask handled by the demo agent:\n\n> {summary}\n", encoding="utf-8"
    )
    say("wrote NOTES.md", delay)

    for name in ("TODO.md", "TODO.txt"):
        if (root / name).is_file():
            (root / name).unlink()
            say(f"deleted {name}", delay)
            break

    old, new = root / "CHANGES.md", root / "CHANGELOG.md"
    if old.is_file() and not new.exists():
        old.rename(new)
        say("renamed CHANGES.md -> CHANGELOG.md", delay)

    say("done", 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
