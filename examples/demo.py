#!/usr/bin/env python3
"""The README's main job: a real local run, end to end, on a demo git repository.

Creates a small git repository (./demo/repo by default, recreated each time),
then runs `co-sidecar run` on it with examples/demo_agent.py as the agent: the
server starts over stdio, launches the task in a scratch worktree, streams the
agent's progress, and prints the resulting diff. Nothing is applied unless you
pass --apply (then `git apply` runs in the demo repository).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FILES = {
    "README.md": "# greeter\n\nA tiny project for the co-sidecar demo.\n",
    "greeter.py": 'def greet(name: str) -> str:\n    return f"Hello, {name}!"\n',
    "TODO.md": "- write docs\n",
    "CHANGES.md": "0.1.0: first release\n",
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=demo", "-c", "user.email=demo@localhost", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def make_repo(repo: Path) -> None:
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for name, text in FILES.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial commit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="Document the greeter and tidy the changelog")
    parser.add_argument("--dir", default=str(ROOT / "demo" / "repo"), help="where to create the demo repository")
    parser.add_argument("--apply", action="store_true", help="apply the diff to the demo repository")
    args = parser.parse_args(argv)

    repo = Path(args.dir).resolve()
    make_repo(repo)
    print(f"demo repository: {repo}")
    agent = [sys.executable, str(HERE / "demo_agent.py"), "{prompt}"]
    command = [
        sys.executable, "-m", "co_sidecar", "run", args.prompt,
        "--mode", "local", "--workspace", str(repo), "--agent", json.dumps(agent),
    ]  # fmt: skip
    if args.apply:
        command.append("--apply")
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
