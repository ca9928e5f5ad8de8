"""4. Diff → WorkspaceEdit at three sizes, against `git apply --check` of the same patch.

A real repository of `files` files is modified and `git diff --binary -M` gives the
patch; the files are then restored so the patch applies. Timed: what co/diff does with
a patch (parse, path checks, locating every hunk in the text on disk, building the edit).
"""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from co_sidecar import diffs

from .rpc import median

TARGET_S = 1.0
LINES_PER_FILE = 176


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@b", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout


def make_case(root: Path, files: int, seed: int = 4) -> tuple[Path, bytes]:
    """A repo of `files` ~10 kB Python-ish files and a patch touching all of them (~10 kB each)."""
    rng = random.Random(seed)
    repo = root / f"repo-{files}"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    texts: dict[Path, list[str]] = {}
    for n in range(files):
        path = repo / f"pkg{n % 50}" / f"module_{n}.py"
        path.parent.mkdir(exist_ok=True)
        lines = [
            f"def function_{n}_{i}(value):  # {rng.getrandbits(48):012x}\n"
            if i % 10 == 0
            else f"    value = value * {i} + {rng.randint(0, 10**6)}  # step {i}\n"
            for i in range(LINES_PER_FILE)
        ]
        texts[path] = lines
        path.write_text("".join(lines))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    for path, lines in texts.items():
        changed = list(lines)
        for i in range(3, len(changed), 4):  # every 4th line: dense hunks, ~10 kB of patch a file
            changed[i] = changed[i].replace("value", "result", 1)
        path.write_text("".join(changed))
    patch = _git(repo, "diff", "--binary", "-M")
    _git(repo, "checkout", "--", ".")
    return repo, patch


def convert(patch: bytes, repo: Path) -> tuple[dict[str, Any], int]:
    changes = diffs.parse_patch(patch)
    diffs.check_paths(changes, repo)
    edit, conflicts = diffs.build_workspace_edit(changes, repo, {}, label="bench")
    assert not conflicts, conflicts[:3]
    return edit, len(changes)


def run(sizes: list[int], reps: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="co-bench-diff-") as tmp:
        for files in sizes:
            repo, patch = make_case(Path(tmp), files)
            patch_file = Path(tmp) / f"{files}.diff"
            patch_file.write_bytes(patch)
            ours: list[float] = []
            parse: list[float] = []
            git: list[float] = []
            edit: dict[str, Any] = {}
            for _ in range(reps):
                start = time.perf_counter()
                diffs.parse_patch(patch)
                parse.append(time.perf_counter() - start)
                start = time.perf_counter()
                edit, count = convert(patch, repo)
                ours.append(time.perf_counter() - start)
                start = time.perf_counter()
                subprocess.run(["git", "apply", "--check", str(patch_file)], cwd=repo, check=True)
                git.append(time.perf_counter() - start)
            assert count == files
            mb = len(patch) / 1e6
            rows.append(
                {
                    "files": files,
                    "patch_mb": mb,
                    "edits": sum(len(d.get("edits", [])) for d in edit["documentChanges"]),
                    "edit_json_mb": len(json.dumps(edit)) / 1e6,
                    "parse_s": median(parse),
                    "convert_s": median(ours),
                    "git_check_s": median(git),
                    "ratio_to_git": median(ours) / median(git),
                    "s_per_mb": median(ours) / mb,
                }
            )
    largest = rows[-1]
    per_mb = [r["s_per_mb"] for r in rows]
    return {
        "reps": reps,
        "rows": rows,
        # Linear: time per MB at the largest size within 1.5x of the smallest's.
        "linear": per_mb[-1] <= 1.5 * per_mb[0],
        "met": largest["convert_s"] <= TARGET_S,
    }


if __name__ == "__main__":
    print(json.dumps(run([20, 200, 2000], 3), indent=1))
