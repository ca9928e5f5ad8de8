"""Generated git repositories for the scratch benchmark, cached by their parameters.

`git fast-import` writes the objects in one stream (no per-file `git add`), then one
`git reset --hard` checks the tree out. A repository is reused while its parameters (and this
generator's version) are the same: `~/.cache/co-sidecar/bench-repos/files-<n>-v<V>/`.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

VERSION = 1
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "commit.gpgsign=false"]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "co-sidecar" / "bench-repos"


def _content(rng: random.Random, path: str) -> bytes:
    # Sizes between ~100 B and ~4 KB (mean ~1.5 KB), like source files; unique per path.
    lines = [f"// {path}\n"]
    for i in range(int(rng.expovariate(1 / 30)) + 2):
        lines.append(f"line {i}: {rng.getrandbits(64):016x} {'x' * rng.randint(0, 60)}\n")
    return "".join(lines).encode()


def _paths(files: int) -> list[str]:
    # ~50 files a directory, two levels: like a source tree, and no directory of 10^5 entries.
    out = []
    for i in range(files):
        d = i // 50
        out.append(f"pkg{d // 40:03d}/mod{d % 40:02d}/file{i % 50:02d}.txt")
    return out


def generate(files: int, dest: Path) -> None:
    """A one-commit repository of `files` files (a few executable, one symlink) at `dest`."""
    rng = random.Random(files)
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True)
    importer = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"], cwd=dest, stdin=subprocess.PIPE
    )
    assert importer.stdin is not None
    write = importer.stdin.write
    paths = _paths(files)
    for mark, path in enumerate(paths, start=1):
        data = _content(rng, path)
        write(b"blob\nmark :%d\ndata %d\n%s\n" % (mark, len(data), data))
    write(
        b"commit refs/heads/main\ncommitter bench <bench@localhost> 1700000000 +0000\n"
        b"data 5\nbase\n\n"
    )
    for mark, path in enumerate(paths, start=1):
        mode = b"100755" if mark % 97 == 0 else b"100644"
        write(b"M %s :%d %s\n" % (mode, mark, path.encode()))
    write(b"M 120000 inline link-to-readme\ndata 9\nREADME.md\n")
    readme = b"# generated bench repository\n"
    write(b"M 100644 inline README.md\ndata %d\n%s\n" % (len(readme), readme))
    write(b"\ndone\n")
    importer.stdin.close()
    if importer.wait() != 0:
        raise RuntimeError("git fast-import failed")
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=dest, check=True)
    subprocess.run(["git", "gc", "-q", "--auto"], cwd=dest, check=False)


def bench_repo(files: int) -> Path:
    """The cached repository of `files` files, generated on first use."""
    root = cache_root() / f"files-{files}-v{VERSION}"
    repo = root / "repo"
    if not (root / "complete").is_file():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        generate(files, repo)
        (root / "complete").write_text("ok\n")
    return repo


def user_changes(repo: Path) -> None:
    """Reset `repo` to its commit, then make a few uncommitted and untracked changes."""
    subprocess.run(["git", "reset", "-q", "--hard", "HEAD"], cwd=repo, check=True)
    subprocess.run(["git", "clean", "-qfdx"], cwd=repo, check=True)
    subprocess.run(["git", "worktree", "prune"], cwd=repo, check=True)
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=repo, check=True, capture_output=True
    ).stdout.split(b"\0")
    tracked = [os.fsdecode(p) for p in tracked if p and not p.endswith(b"link-to-readme")]
    picks = tracked[:: max(1, len(tracked) // 5)][:4]
    for path in picks[:3]:
        with open(repo / path, "a") as handle:
            handle.write("uncommitted change\n")
    subprocess.run(["git", "add", "--", picks[0]], cwd=repo, check=True)  # one staged
    if len(picks) > 3:
        (repo / picks[3]).unlink()  # one deleted, unstaged
    (repo / "UNTRACKED.md").write_text("an untracked file\n")
    (repo / "new-dir").mkdir(exist_ok=True)
    (repo / "new-dir" / "notes.txt").write_text("an untracked directory\n")


def project_clone(dest: Path, source: Path) -> Path:
    """A clone of this project's repository at `dest` (the user's own repo, as it is)."""
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(source), str(dest)], check=True)
    return dest
