"""`co-sidecar runs …`, `apply`, `reject`: the runs already in `.runs/`, from the shell.

Each command starts a server over stdio on the workspace (like every other client), asks it,
and prints for people, or one JSON document with `--json` (the server's own result object,
as docs/protocol.md describes it). Errors go to stderr. Exit codes are the EXIT_* constants
below, documented in docs/cli.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from pygls.exceptions import JsonRpcException

from . import apply_report
from .client_session import ServerDied, Session, open_session
from .invocation import run_arg, self_command

# Exit codes, the same for every command (docs/cli.md).
EXIT_OK = 0
EXIT_NOT_DONE = 1  # the run or the operation did not succeed (failed run, not applied, wait timed out)
EXIT_USAGE = 2  # argparse's own
EXIT_NO_RUN = 3  # no run matches the id, or more than one does
EXIT_REFUSED = 4  # the server refused: wrong state, no accept, over budget, unsafe patch, bad params
EXIT_SERVER = 5  # the server could not start, or died

ACTIVE = {"queued", "routing", "launching", "running"}
GOOD_END = {"succeeded", "applied", "partially_applied"}


class CliError(Exception):
    def __init__(self, message: str, code: int, data: object = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data  # a JSON-RPC error's data


def _common(*, suppress: bool) -> argparse.ArgumentParser:
    """The options every command takes. Under `runs <verb>` they default to SUPPRESS, so a
    value given before the verb (`runs --workspace W show X`) is not reset by the verb's default."""
    common = argparse.ArgumentParser(add_help=False)

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    common.add_argument("--workspace", default=default("."), help="workspace folder (default: .)")
    common.add_argument("--json", action="store_true", default=default(False), help="print the server's result as JSON")
    common.add_argument("--server", default=default(None), help="server command (default: this Python with -m co_sidecar serve)")
    return common


def _list_filters(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--state", default=default(None), help="only runs in this state")
    parser.add_argument("--task-id", default=default(None), help="only runs of this task id")
    parser.add_argument("--limit", type=int, default=default(50), help="at most this many rows (default 50)")


def _add_apply_reject(parent: Any, common: argparse.ArgumentParser) -> None:
    run_arg = {"help": "a run id, a unique prefix or suffix of one, or 'last'"}
    apply = parent.add_parser("apply", help="apply a succeeded run's diff with git (all of it, or --files)", parents=[common])
    apply.add_argument("run", **run_arg)
    apply.add_argument("--attempt", type=int, help="a cloud run's attempt (1-4)")
    apply.add_argument("--force", action="store_true", help="apply a diff over the diff budget")
    apply.add_argument("--files", nargs="+", metavar="PATH", help="only these files of the diff (the rest stays for later)")
    apply.add_argument("--hunk", action="append", metavar="PATH:N", help="only hunk N of PATH (repeatable; numbers from `runs diff`)")
    apply.add_argument("--dry-run", action="store_true", help="show per file what would happen; write nothing")
    apply.add_argument(
        "--on-conflict", choices=["refuse", "skip", "markers"], default="refuse",
        help="refuse (default): apply nothing if a file conflicts; skip: apply the others; markers: write git's conflict markers",
    )  # fmt: skip
    reject = parent.add_parser("reject", help="decline a succeeded run's diff", parents=[common])
    reject.add_argument("run", **run_arg)


def add_parsers(sub: Any) -> None:
    """`runs` (list, show, diff, wait, cancel, prune, apply, reject) and top-level `apply`, `reject`."""
    leaf = _common(suppress=True)
    runs = sub.add_parser("runs", help="the runs in .runs/: list, show, diff, wait, cancel, follow-up, prune", parents=[_common(suppress=False)])
    _list_filters(runs, suppress=False)
    verbs = runs.add_subparsers(dest="runs_command", metavar="{list,show,diff,wait,cancel,follow-up,prune,apply,reject}")
    run_arg = {"help": "a run id, a unique prefix or suffix of one, or 'last'"}
    _list_filters(verbs.add_parser("list", help="runs, newest first (the default)", parents=[leaf]), suppress=True)
    show = verbs.add_parser("show", help="one run's record", parents=[leaf])
    show.add_argument("run", **run_arg)
    diff = verbs.add_parser("diff", help="a run's patch and per-file stats", parents=[leaf])
    diff.add_argument("run", **run_arg)
    diff.add_argument("--attempt", type=int, help="a cloud run's attempt (1-4)")
    diff.add_argument("--stat", action="store_true", help="only the per-file stats")
    diff.add_argument("--step", action="store_true", help="a follow-up's step (what it changed), not the cumulative change")
    wait = verbs.add_parser("wait", help="wait until a run finishes; exit 0 if it succeeded", parents=[leaf])
    wait.add_argument("run", **run_arg)
    wait.add_argument("--timeout", type=float, help="give up after this many seconds (exit 1)")
    cancel = verbs.add_parser("cancel", help="cancel a queued or running run", parents=[leaf])
    cancel.add_argument("run", **run_arg)
    follow_up = verbs.add_parser(
        "follow-up", help="continue a succeeded, applied or partially applied run from its result; waits for it (exit 0 if it succeeded)",
        parents=[leaf],
    )  # fmt: skip
    follow_up.add_argument("run", **run_arg)
    follow_up.add_argument("prompt", help="what the follow-up should do")
    prune = verbs.add_parser("prune", help="remove finished runs by age or count", parents=[leaf])
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="finished runs not updated for DAYS days")
    prune.add_argument("--keep", type=int, metavar="N", help="keep the N newest finished runs")
    prune.add_argument("--dry-run", action="store_true", help="list what would be removed")
    _add_apply_reject(verbs, leaf)
    _add_apply_reject(sub, _common(suppress=False))


def main(args: argparse.Namespace) -> int:
    command = args.command if args.command in ("apply", "reject") else (getattr(args, "runs_command", None) or "list")
    action = COMMANDS[command]
    out = sys.stdout
    try:
        return asyncio.run(_with_session(args, lambda s: action(s, args, out)))
    except CliError as exc:
        print(f"co-sidecar: {exc.message}", file=sys.stderr)
        return exc.code
    except ServerDied as exc:
        print(f"co-sidecar: {exc}", file=sys.stderr)
        return EXIT_SERVER
    except KeyboardInterrupt:
        print("co-sidecar: interrupted", file=sys.stderr)
        return 130


async def _with_session(args: argparse.Namespace, body: Callable[[Session], Awaitable[int]]) -> int:
    workspace = Path(args.workspace).resolve()
    if not workspace.is_dir():
        raise CliError(f"{args.workspace} is not a directory", EXIT_USAGE)
    async with open_session(workspace, server=args.server) as session:
        return await body(session)


async def _request(session: Session, method: str, params: dict[str, Any]) -> Any:
    try:
        return await session.request(method, params)
    except JsonRpcException as exc:
        code = EXIT_NO_RUN if exc.code == -32001 else EXIT_REFUSED
        raise CliError(exc.message, code, exc.data) from exc


async def resolve_run(session: Session, given: str) -> str:
    """A run id from what the user typed: exact, 'last', or a unique prefix or suffix."""
    rows = (await _request(session, "co/list", {"limit": 10_000}))["runs"]
    ids = [r["runId"] for r in rows]  # newest first
    if given == "last":
        if not ids:
            raise CliError("there are no runs in this workspace", EXIT_NO_RUN)
        return str(ids[0])
    if given in ids:
        return given
    matches = [i for i in ids if i.startswith(given) or i.endswith(given)]
    if len(matches) == 1:
        return str(matches[0])
    if not matches:
        listing = " ".join([self_command(), "runs", run_arg("", session.workspace)]).strip()
        raise CliError(f"no run matches {given!r} ({listing} lists them)", EXIT_NO_RUN)
    raise CliError(f"{given!r} matches {len(matches)} runs: {', '.join(matches[:5])}; give more of the id", EXIT_NO_RUN)


def _emit_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, indent=2) + "\n")


def _table(out: TextIO, rows: list[list[str]]) -> None:
    """Plain columns, never wrapped: ids stay whole in pipes and narrow terminals."""
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
        out.write("  ".join(cells).rstrip() + "\n")


def _one_line(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- commands -------------------------------------------------------------------------------


async def cmd_list(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.state:
        params["state"] = args.state
    if args.task_id:
        params["taskId"] = args.task_id
    result = await _request(session, "co/list", params)
    if args.json:
        _emit_json(out, result)
        return EXIT_OK
    rows = [["RUN", "STATE", "MODE", "UPDATED", "DIFF", "FOLLOWS", "PROMPT"]]
    for r in lineage_order(result["runs"]):
        stats = r.get("diffStats")
        diff = f"+{stats['additions']} -{stats['deletions']}" if stats else "-"
        rows.append([
            r["runId"], r["state"], r["mode"], r["updatedAt"][:19].replace("T", " "), diff,
            r.get("parentRunId") or "-", _one_line(r["prompt"]),
        ])  # fmt: skip
    _table(out, rows)
    shown, total = len(result["runs"]), result.get("total", len(result["runs"]))
    if total > shown:
        out.write(f"({shown} of {total}; --limit {total} shows all)\n")
    elif not shown:
        out.write("no runs\n")
    return EXIT_OK


def lineage_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows grouped by chain: chains newest first (by their newest run), each chain in the
    order its runs were made (the root, then its follow-ups)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:  # newest first: a chain's first row seen is its newest
        groups.setdefault(row.get("rootRunId") or row["runId"], []).append(row)
    return [row for group in groups.values() for row in sorted(group, key=lambda r: str(r["runId"]))]


async def cmd_show(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    run_id = await resolve_run(session, args.run)
    m = await _request(session, "co/status", {"runId": run_id})
    if args.json:
        _emit_json(out, m)
        return EXIT_OK
    lines = [
        ("run", m["runId"]),
        ("task", m["taskId"]),
        ("state", m["state"] + (f" ({m['errorCode']})" if m.get("errorCode") else "")),
        ("mode", f"{m['selectedMode']} (asked {m['requestedMode']}: {m['routingReason']})"),
        ("prompt", _one_line(m["prompt"], 200)),
        ("created", m["createdAt"]),
        ("updated", m["updatedAt"]),
    ]
    if m.get("failureReason"):
        lines.append(("reason", m["failureReason"]))
    if m.get("parentRunId"):
        lines.append(("follows", f"{m['parentRunId']} (chain {m.get('rootRunId')})"))
    diff = m.get("diff")
    if diff:
        step = " (this step)" if m.get("followUp") else ""
        lines.append(("diff", f"{len(diff['files'])} files, +{diff['additions']} -{diff['deletions']}{step}"))
    cumulative = (m.get("followUp") or {}).get("cumulative")
    if cumulative:
        lines.append(("cumulative", f"{len(cumulative['files'])} files, +{cumulative['additions']} -{cumulative['deletions']} (what apply applies)"))
    if m.get("apply"):
        a = m["apply"]
        how = a.get("outcome") or ("applied" if a.get("applied") else "not applied")
        lines.append(("apply", "rejected" if a.get("rejected") else f"{how} ({a.get('strategy')})"))
        if a.get("remaining"):
            lines.append(("left", ", ".join(a["remaining"])))
    if m.get("cloud") and m["cloud"].get("taskUrl"):
        lines.append(("cloud task", m["cloud"]["taskUrl"]))
    for name, value in lines:
        out.write(f"{name + ':':<11} {value}\n")
    for t in m.get("transitions", []):
        out.write(f"  {t['at'][11:19]}  {t['state']:<10} {_one_line(t.get('message') or '', 100)}\n")
    return EXIT_OK


async def cmd_diff(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    run_id = await resolve_run(session, args.run)
    params: dict[str, Any] = {"runId": run_id}
    if args.attempt is not None:
        params["attempt"] = args.attempt
    if args.step:
        params["view"] = "step"
    result = await _request(session, "co/diff", params)
    if args.json:
        _emit_json(out, result)
        return EXIT_OK
    rows = [["STATUS", "+", "-", "PATH"]]
    for f in result["files"]:
        path = f"{f['oldPath']} → {f['path']}" if f.get("oldPath") else f["path"]
        rows.append([f["status"], f"+{f['additions']}", f"-{f['deletions']}", path])
    _table(out, rows)
    for conflict in result.get("conflicts", []):
        out.write(f"conflict: {conflict['path']}: {conflict['reason']}\n")
    hunks = result.get("hunks") or []
    if len(hunks) > len(result["files"]) or any(h.get("applied") for h in hunks):
        out.write(f"hunks ({self_command()} apply RUN --hunk PATH:N takes one):\n")
        for h in hunks:
            done = "  (applied)" if h.get("applied") else ""
            out.write(f"  {h['path']}:{h['number']}  {h['header']}  +{h['additions']} -{h['deletions']}{done}\n")
    if result.get("partial"):
        out.write("(the run is still going: its diff so far)\n")
    if not args.stat and result["patch"]:
        out.write("\n" + result["patch"])
        if not result["patch"].endswith("\n"):
            out.write("\n")
    return EXIT_OK


async def cmd_wait(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    """Polls co/status: the run may be driven by another server (an editor), which re-reads it."""
    return await _wait(session, await resolve_run(session, args.run), args, out, {})


async def _wait(session: Session, run_id: str, args: argparse.Namespace, out: TextIO, extra: dict[str, Any]) -> int:
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    shown = ""
    while True:
        m = await _request(session, "co/status", {"runId": run_id})
        state = m["state"]
        if not args.json and sys.stderr.isatty() and state != shown:
            print(f"{run_id}: {state}", file=sys.stderr)
            shown = state
        if state not in ACTIVE:
            break
        if deadline is not None and time.monotonic() >= deadline:
            if args.json:
                _emit_json(out, {"runId": run_id, "state": state, "timedOut": True, **extra})
            else:
                print(f"co-sidecar: run {run_id} still {state} after {args.timeout:g} s", file=sys.stderr)
            return EXIT_NOT_DONE
        await asyncio.sleep(0.5)
    if args.json:
        _emit_json(out, {"runId": run_id, "state": state, "timedOut": False, **extra})
    else:
        reason = f": {m['failureReason']}" if m.get("failureReason") else ""
        out.write(f"{run_id} {state}{reason}\n")
    return EXIT_OK if state in GOOD_END else EXIT_NOT_DONE


async def _change_state(session: Session, args: argparse.Namespace, out: TextIO, method: str) -> str:
    """co/cancel or co/reject on the run the user named; prints and returns its new state."""
    run_id = await resolve_run(session, args.run)
    result = await _request(session, method, {"runId": run_id})
    if args.json:
        _emit_json(out, result)
    else:
        out.write(f"{run_id} {result['state']}\n")
    return str(result["state"])


async def cmd_cancel(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    state = await _change_state(session, args, out, "co/cancel")
    return EXIT_OK if state == "cancelled" else EXIT_NOT_DONE


async def cmd_follow_up(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    """The follow-up runs in this command's server, so the command waits for its end (as
    `co-sidecar run` does): leaving earlier would stop it."""
    parent = await resolve_run(session, args.run)
    result = await _request(session, "co/followUp", {"runId": parent, "prompt": args.prompt})
    if not args.json and sys.stderr.isatty():
        print(f"{result['runId']}: follow-up of {parent}", file=sys.stderr)
    args.timeout = None
    return await _wait(session, result["runId"], args, out, {"parentRunId": parent})


async def cmd_prune(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    if args.older_than is None and args.keep is None:
        raise CliError("say what to prune: --older-than DAYS and/or --keep N (add --dry-run to look first)", EXIT_USAGE)
    params: dict[str, Any] = {"dryRun": args.dry_run}
    if args.older_than is not None:
        params["olderThanDays"] = args.older_than
    if args.keep is not None:
        params["keep"] = args.keep
    result = await _request(session, "co/prune", params)
    if args.json:
        _emit_json(out, result)
        return EXIT_OK
    verb = "would remove" if result["dryRun"] else "removed"
    for r in result["removed"]:
        out.write(f"{verb} {r['runId']}  {r['state']:<10} {_one_line(r['prompt'])}\n")
    for why in result.get("skipped", []):
        out.write(f"skipped {why}\n")
    out.write(f"{verb} {len(result['removed'])} run(s), {result['bytesFreed']} bytes; {result['kept']} finished run(s) kept\n")
    return EXIT_OK


def _hunks(given: list[str] | None) -> dict[str, list[int]] | None:
    if not given:
        return None
    out: dict[str, list[int]] = {}
    for item in given:
        path, _, number = item.rpartition(":")
        if not path or not number.isdigit():
            raise CliError(f"--hunk {item!r}: give PATH:N, N a hunk number from `{self_command()} runs diff`", EXIT_USAGE)
        out.setdefault(path, []).append(int(number))
    return out


async def cmd_apply(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    run_id = await resolve_run(session, args.run)
    params: dict[str, Any] = {
        "runId": run_id, "accept": not args.dry_run, "strategy": "git", "force": args.force,
        "dryRun": args.dry_run, "onConflict": args.on_conflict,
    }  # fmt: skip
    if args.attempt is not None:
        params["attempt"] = args.attempt
    if args.files:
        params["files"] = args.files
    if (hunks := _hunks(args.hunk)) is not None:
        params["hunks"] = hunks
    try:
        result = await _request(session, "co/apply", params)
    except CliError as exc:
        if (budget := apply_report.budget_of_error(exc.data)) is not None:
            exc.message = apply_report.over_budget(budget, run_arg(run_id, session.workspace))
        raise
    if args.json:
        _emit_json(out, result)
    else:
        if args.dry_run:
            out.write(f"dry run of {run_id}: nothing written\n")
        elif result["applied"]:
            written = [f["path"] for f in result.get("files", []) if f.get("written")]
            out.write(f"applied {run_id}: {', '.join(written or result['paths']) or 'nothing new (already there)'}\n")
        else:
            print(f"co-sidecar: not applied ({result.get('outcome')}): run {run_id}", file=sys.stderr)
        _table(out, apply_report.table(result))
        if line := apply_report.drift_line(result):
            out.write(line + "\n")
        for step in apply_report.next_steps(result, run_arg(run_id, session.workspace)):
            out.write(step + "\n")
    if args.dry_run:
        return EXIT_OK if not result.get("skippedPaths") and not result.get("conflictPaths") else EXIT_NOT_DONE
    return EXIT_OK if apply_report.clean(result) else EXIT_NOT_DONE


async def cmd_reject(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    await _change_state(session, args, out, "co/reject")
    return EXIT_OK


COMMANDS: dict[str, Callable[[Session, argparse.Namespace, TextIO], Awaitable[int]]] = {
    "list": cmd_list,
    "show": cmd_show,
    "diff": cmd_diff,
    "wait": cmd_wait,
    "cancel": cmd_cancel,
    "follow-up": cmd_follow_up,
    "prune": cmd_prune,
    "apply": cmd_apply,
    "reject": cmd_reject,
}
