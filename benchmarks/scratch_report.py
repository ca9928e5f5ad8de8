"""Render section 6 (scratch copies) of docs/benchmarks.md, with its own before/after table."""

from __future__ import annotations

from typing import Any

HEADING = "## 7. Scratch copies"
INTRO = (
    "Local runs on generated repositories (`benchmarks/bench_repos.py`: files of ~0.1–4 kB, 50 "
    "a directory, a few executable, one symlink; cached under `~/.cache/co-sidecar/bench-repos/`) "
    "and on a clone of this project, each with uncommitted changes (one staged, two unstaged, "
    "one deletion) and untracked files (one in a new directory). One server per repository; "
    "the agent (`python agent.py`) writes a timestamp first, appends to one file, creates one, "
    "writes a timestamp last. **launch → agent started**: `co/launch` sent → the agent's first "
    "timestamp. **exit → diff ready**: the agent's last timestamp → the `succeeded` update at "
    "the client. **disk**: unique inodes under the scratch root while the run's agent runs "
    "(objects borrowed from the user's store not counted). **4 at once**: four `co/launch` → "
    "the last `succeeded`. **Cold** is a new server's first run with an empty scratch root; "
    "**warm** the median of the next {reps}, each launched 1 s after the previous one "
    "succeeded (a user reads the diff; a pooled scratch is reset after its run is reported), "
    "and **back to back** one launched the moment the previous one succeeded. Floors, same run: `git worktree add` of the same "
    "repository (first and last of the run), the same agent spawned directly in the workspace, "
    "`git status` in the workspace (warm cache)."
)


def _s(v: float) -> str:
    return f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _rows(res: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            r["name"],
            f"{r['files']:,}",
            f"{_s(r['floor_worktree_s'])} / {_s(r['floor_worktree_warm_s'])}",
            _s(r["floor_direct_s"]),
            _s(r["floor_status_s"]) if "floor_status_s" in r else "—",
            _s(r["cold"]["launch_s"]),
            _s(r["warm"]["launch_s"]),
            _s(r["warm"]["back_to_back_launch_s"]) if "back_to_back_launch_s" in r["warm"] else "—",
            _s(r["cold"]["exit_s"]),
            _s(r["warm"]["exit_s"]),
            f"{r['warm']['disk_mb']:.1f} MB",
            f"{r['concurrent']['runs']}: {_s(r['concurrent']['wall_s'])} (launch ≤ {_s(r['concurrent']['launch_max_s'])})",
        ]
        for r in res["rows"]
    ]


HEADER = [
    "repository", "files", "`git worktree add` (first / last)", "agent direct", "`git status`",
    "launch → started, cold", "warm", "back to back", "exit → diff ready, cold", "warm",
    "disk per run", "runs at once: all done",
]  # fmt: skip


def goals(res: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(goal, figure, met) read from the rows; met is None when the size was not measured."""
    by = {r["files"] // 1000: r for r in res["rows"] if r["name"].startswith("generated")}
    r50, r5, r200 = by.get(50), by.get(5), by.get(200)
    out: list[tuple[str, str, bool | None]] = []
    if r50:
        w = r50["warm"]["launch_s"]
        out.append(("warm launch → started at 50k ≤ 0.5 s", _s(w), w <= 0.5))
        e = r50["warm"]["exit_s"]
        out.append(("exit → diff ready at 50k ≤ 0.5 s", _s(e), e <= 0.5))
    if r5 and r200:
        g = r200["warm"]["launch_s"] / r5["warm"]["launch_s"]
        out.append(("warm launch growth 5k → 200k ≤ 2×", f"{g:.1f}×", g <= 2))
    for r in res["rows"]:
        # The floor of a cold start: a worktree made, then the agent started in it.
        floor = min(r["floor_worktree_s"], r["floor_worktree_warm_s"]) + r["floor_direct_s"]
        c = r["cold"]["launch_s"] / floor
        out.append((f"cold ≤ 1.2 × (`git worktree add` + agent start), {r['name']}", f"{c:.2f}×", c <= 1.2))
    return out


def render(res: dict[str, Any], before: dict[str, Any] | None, notes: str = "") -> list[str]:
    out = [HEADING, "", INTRO.format(reps=res["warm_reps"]), "", *_table(HEADER, _rows(res)), ""]
    now = goals(res)
    out += ["Goals (this run):", ""]
    out += [f"- {g}: {fig} — {'**met**' if met else '**not met**'}" for g, fig, met in now]
    out.append("")
    if before is not None:
        out += [
            f"Before the scratch pool ({before.get('started', '?')}, same machine; "
            "`benchmarks/scratch_baseline.json`):",
            "",
            *_table(HEADER, _rows(before)),
            "",
        ]
        prev = {g: fig for g, fig, _ in goals(before)}
        out += _table(["goal", "before", "after"], [[g, prev.get(g, "—"), fig] for g, fig, _ in now])
        out.append("")
    if notes:
        out += [fill(notes, res), ""]
    return out


def fill(notes: str, res: dict[str, Any]) -> str:
    """The notes' figures from this run (@WARM@, @COLD@, @FLOORS@), not a past one's."""
    gen = sorted((r for r in res["rows"] if r["name"].startswith("generated")), key=lambda r: r["files"])
    warm = ", ".join(
        f"{_s(r['warm']['launch_s'])} at {r['files'] // 1000}k"
        + (f" (`git status` {_s(r['floor_status_s'])})" if "floor_status_s" in r else "")
        for r in gen
    )
    big = [r for r in gen if r["files"] >= 50_000]
    cold = ", ".join(
        f"{_s(r['cold']['launch_s'])} at {r['files'] // 1000}k against {_s(min(r['floor_worktree_s'], r['floor_worktree_warm_s']))}"
        for r in big
    )
    floors = ", ".join(
        f"{_s(r['floor_worktree_s'])} / {_s(r['floor_worktree_warm_s'])} at {r['files'] // 1000}k" for r in big
    )
    for key, value in (("@WARM@", warm), ("@COLD@", cold), ("@FLOORS@", floors)):
        notes = notes.replace(key, value or "not measured")
    return notes


def splice(document: str, section: list[str]) -> str:
    """Replace section 6 in an existing docs/benchmarks.md (or add it before "Before and after")."""
    text = "\n".join(section).rstrip() + "\n\n"
    if HEADING in document:
        head, rest = document.split(HEADING, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        return head + text + tail
    marker = "## Before and after"
    if marker in document:
        head, tail = document.split(marker, 1)
        return head + text + marker + tail
    return document.rstrip() + "\n\n" + text
