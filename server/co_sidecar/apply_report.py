"""A co/apply result (ApplyResult wire JSON) as text for people: the per-file table of a dry run
or an apply, how the workspace moved, and the next step in the command line's own words.
Shared by `co-sidecar apply` and `co-sidecar run --apply`."""

from __future__ import annotations

from typing import Any

from .invocation import self_command

OUTCOME_WORDS = {
    "clean": "applies cleanly",
    "merged": "3-way merge",
    "conflict": "conflict",
    "skipped": "skipped",
    "already_applied": "already applied",
}


def clean(result: dict[str, Any]) -> bool:
    """Everything asked was applied, without conflicts or skipped files."""
    return bool(result.get("applied")) and not result.get("skippedPaths") and not result.get("conflictPaths")


def table(result: dict[str, Any]) -> list[list[str]]:
    rows = [["FILE", "OUTCOME", "WRITTEN", "WHY"]]
    for f in result.get("files", []):
        name = f"{f['oldPath']} → {f['path']}" if f.get("oldPath") else f["path"]
        why = f.get("reason") or ""
        hunks = [h for h in f.get("hunks", []) if h.get("outcome") == "conflict"]
        if hunks and not why:
            why = "; ".join(f"hunk {h['number']} (line {h['line']})" for h in hunks)
        written = "yes" if f.get("written") else "no"
        rows.append([name, OUTCOME_WORDS.get(f["outcome"], f["outcome"]), written, why])
    return rows


def drift_line(result: dict[str, Any]) -> str | None:
    d = result.get("workspace")
    if not d:
        return None
    parts = []
    if d.get("headMoved"):
        n = d.get("commitsSince")
        parts.append(f"HEAD moved ({n} commit(s) since the run began)" if n is not None else "HEAD moved")
    parts += [f"{p} edited" for p in d.get("edited", [])] + [f"{p} deleted" for p in d.get("deleted", [])]
    parts += [f"{a} moved to {b}" for a, b in (d.get("moved") or {}).items()]
    return "workspace since the run began: " + ("; ".join(parts) if parts else "unchanged")


def next_steps(result: dict[str, Any], run_id: str) -> list[str]:
    """What to do now, with flags that exist (`co-sidecar apply --help`); `run_id` as the
    command takes it (`invocation.run_arg`: with `--workspace` when the shell is elsewhere)."""
    cli = self_command()
    out: list[str] = []
    conflicts = result.get("conflictPaths") or []
    skipped = [p for p in result.get("skippedPaths") or [] if p not in conflicts]
    written = bool(result.get("applied"))
    if result.get("dryRun"):
        if conflicts or skipped:
            out.append(
                f"{cli} apply {run_id} --on-conflict skip applies the other files; "
                "--on-conflict markers writes git's conflict markers into the conflicting ones"
            )
        return out
    if result.get("outcome") == "conflicts" and written:
        out.append(f"conflict markers written in {', '.join(conflicts)}: resolve them, then commit")
    elif not written and conflicts:
        out.append(
            f"nothing was written. {cli} apply {run_id} --on-conflict skip applies the other files; --on-conflict "
            f"markers writes git's conflict markers; or update the files and run {cli} apply {run_id} again"
        )
    if result.get("remaining"):
        out.append(
            f"left for later: {', '.join(result['remaining'])} ({cli} apply {run_id} applies the rest, "
            f"{cli} reject {run_id} declines it)"
        )
    return out


def over_budget(budget: dict[str, Any], run_id: str) -> str:
    """The over-budget refusal in the shell's words (the server's names the protocol's `force`)."""
    b = budget
    return (
        f"the diff is over budget ({b['files']} files, {b['lines']} lines, {b['bytes']} bytes; limits "
        f"diff.maxFiles={b['maxFiles']}, diff.maxLines={b['maxLines']}, diff.maxPatchBytes={b['maxBytes']}); "
        f"nothing was changed. {self_command()} apply {run_id} --force applies it anyway"
    )


def budget_of_error(data: object) -> dict[str, Any] | None:
    """The `budget` of an over-budget JSON-RPC error's data, if that is what it is."""
    if isinstance(data, dict) and data.get("category") == "over_budget" and isinstance(data.get("budget"), dict):
        return data["budget"]
    return None
