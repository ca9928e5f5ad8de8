"""`co-sidecar run`: a scripted JSON-RPC client that drives the real server over stdio.

It starts the server, launches one task, shows live progress, prints the diff
stats and the diff, and applies it with the git strategy only on `--apply`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from . import __version__, apply_report
from .config import parse_argv
from .invocation import run_arg, self_command
from .jsonrpc import plain_converter
from .run_clock import RunClock

T = TypeVar("T")
TICK_S = 1.0  # the status line's clock advances this often while the run is quiet
FINISHED = {"succeeded", "failed", "cancelled", "timed_out", "applied", "rejected"}


def run_task(args: argparse.Namespace) -> int:
    try:
        # With --json, stdout holds only the final document: progress goes to stderr.
        return asyncio.run(_run(args, _console(stderr=bool(getattr(args, "json", False)))))
    except KeyboardInterrupt:  # Ctrl-C before the handler below was in place
        print("co-sidecar run: interrupted", file=sys.stderr)
        return 130


class ServerGone(Exception):
    pass


class Interrupted(Exception):
    pass


class Watch:
    """Every wait of the client also ends when the server process exits (it says so and the
    command exits non-zero) or on Ctrl-C/SIGTERM (it cancels the run and exits 130)."""

    def __init__(self, server: asyncio.subprocess.Process, interrupted: asyncio.Event):
        self.server = server
        self.died = asyncio.ensure_future(server.wait())
        self._interrupt = asyncio.ensure_future(interrupted.wait())
        self.run_id: str | None = None

    async def __call__(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({task, self.died, self._interrupt}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            try:
                return task.result()
            except RuntimeError as exc:  # pygls fails pending requests when the server exits
                if self.server.returncode is not None:
                    raise ServerGone() from exc
                raise
        task.cancel()
        if self._interrupt in done:
            raise Interrupted()
        raise ServerGone()

    def close(self) -> None:
        self.died.cancel()
        self._interrupt.cancel()


def _console(stderr: bool) -> Console:
    """Lines are not wrapped when the output is not a terminal: a run id split over two lines
    cannot be pasted, and scripts read whole lines."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=not stream.isatty())


async def _run(args: argparse.Namespace, console: Console) -> int:
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    workspace = Path(args.workspace).resolve()
    server_cmd = shlex.split(args.server) if args.server else [sys.executable, "-m", "co_sidecar", "serve"]
    options: dict[str, Any] = {}
    if args.agent:
        options["local"] = {"agentCommand": parse_argv(args.agent)}
    if getattr(args, "trust_workspace", False):
        options["workspaceTrusted"] = True

    client = LanguageClient("co-sidecar-run", __version__, converter_factory=plain_converter)
    updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @client.feature("co/runUpdate")
    def on_update(params: Any) -> None:
        updates.put_nowait(params)

    # Its own session: Ctrl-C in the terminal reaches this client only, which cancels the run.
    await client.start_io(*server_cmd, start_new_session=True)
    assert client._server is not None
    watch = Watch(client._server, interrupted)
    try:
        await watch(
            client.initialize_async(
                types.InitializeParams(
                    capabilities=types.ClientCapabilities(),
                    root_uri=workspace.as_uri(),
                    workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)],
                    initialization_options=options,
                )
            )
        )
        client.initialized(types.InitializedParams())
        return await _launch_and_follow(client, args, workspace, updates, console, watch)
    except JsonRpcException as exc:
        console.print(f"[red]co-sidecar: {escape(exc.message)}[/red]")
        return 1
    except ServerGone:
        code = client._server.returncode
        where = f"; run {watch.run_id} is recorded under the workspace's runs root" if watch.run_id else ""
        console.print(f"[red]co-sidecar: the server exited unexpectedly (exit code {code}){where}[/red]")
        return 1
    except Interrupted:
        await _cancel_on_interrupt(client, watch, console)
        return 130
    finally:
        watch.close()
        if client._server.returncode is None:
            try:
                await asyncio.wait_for(client.shutdown_async(None), 10)
                client.exit(None)
            except Exception:  # the server may already be gone; nothing left to save
                pass
        await client.stop()


async def _cancel_on_interrupt(client: LanguageClient, watch: Watch, console: Console) -> None:
    """One line: the run is cancelled (or there was none yet)."""
    if watch.run_id is None:
        console.print("co-sidecar run: interrupted")
        return
    try:
        result = await asyncio.wait_for(client.protocol.send_request_async("co/cancel", {"runId": watch.run_id}), 15)
        state = result["state"]
    except Exception as exc:  # finished meanwhile (nothing to cancel) or the server is gone
        state = getattr(exc, "message", None) or type(exc).__name__
    console.print(f"co-sidecar run: interrupted; run {watch.run_id}: {state}")


async def _launch_and_follow(
    client: LanguageClient,
    args: argparse.Namespace,
    workspace: Path,
    updates: asyncio.Queue[dict[str, Any]],
    console: Console,
    watch: Watch,
) -> int:
    params: dict[str, Any] = {"prompt": args.prompt, "mode": args.mode, "taskId": args.task_id}
    cloud = {k: v for k, v in {"envId": args.env_id, "branch": args.branch}.items() if v}
    if getattr(args, "start_from_local_changes", None):
        cloud["startFromLocalChanges"] = True
    if cloud or args.attempts != 1:
        params["cloud"] = {**cloud, "attempts": args.attempts}
    launched = await watch(client.protocol.send_request_async("co/launch", params))
    run_id = watch.run_id = launched["runId"]
    console.print(f"[bold]run[/bold] {run_id}  mode=[cyan]{launched['mode']}[/cyan]  {escape(launched['reason'])}")
    if launched.get("fallback"):
        console.print(f"[yellow]fallback:[/yellow] {escape(launched['fallback']['reason'])}")
    _print_cloud_launch(launched, console)

    state = launched["state"]
    shown_urls: set[str] = set()
    clock = RunClock()
    clock.state = state
    with console.status(f"{state}…", spinner="dots") as status:
        while state not in FINISHED:
            try:
                # A quiet agent sends nothing for a while: the clock still moves every second.
                update = await watch(asyncio.wait_for(updates.get(), TICK_S))
            except TimeoutError:
                status.update(escape(clock.line()))
                continue
            if update.get("runId") != run_id:
                continue
            state = update["state"]
            clock.update(update)
            polls = f" polls={update['pollCount']}" if update.get("pollCount") else ""
            status.update(escape(clock.line()) + polls)
            message = update.get("message") or ""
            if update.get("event"):
                console.print(f"  {_step_markup(update['event'], message)}")
            elif update.get("stream"):
                style = "dim" if update["stream"] == "stdout" else "yellow"
                for line in message.splitlines():
                    console.print(f"  [{style}]│ {escape(line)}[/{style}]")
            elif message and not message.startswith("warning: "):  # shown from the launch result
                console.print(f"[bold]{state}[/bold] {escape(message)}")
                url = update.get("cloudTaskUrl")
                if url and url not in shown_urls:
                    shown_urls.add(url)
                    console.print(f"  task: [link={url}]{url}[/link]")

    record = await watch(client.protocol.send_request_async("co/status", {"runId": run_id}))
    document: dict[str, Any] = {"run": record, "diff": None, "apply": None}
    code = await _finish(client, args, run_id, state, record, document, workspace, console, watch)
    if getattr(args, "json", False):
        if document["apply"] is not None:  # the run as the apply left it
            document["run"] = await watch(client.protocol.send_request_async("co/status", {"runId": run_id}))
        sys.stdout.write(json.dumps(document) + "\n")
    return code


async def _finish(
    client: LanguageClient,
    args: argparse.Namespace,
    run_id: str,
    state: str,
    record: dict[str, Any],
    document: dict[str, Any],
    workspace: Path,
    console: Console,
    watch: Watch,
) -> int:
    """The run's end for a person (answers, diff, apply) and, in `document`, for --json."""
    _print_answers(record, console)
    if state != "succeeded":
        console.print(f"[red]run {state}: {escape(record.get('failureReason') or '')}[/red]")
        return 1
    if record.get("diff") is None:
        console.print("no changes: nothing to apply")
        return 0
    diff = document["diff"] = await watch(client.protocol.send_request_async("co/diff", {"runId": run_id}))
    _print_diff(diff, console)
    if not args.apply:
        cli, run = self_command(), run_arg(run_id, workspace)
        console.print(escape(f"not applied. To apply: {cli} apply {run} (or reject: {cli} reject {run})"))
        return 0
    try:
        result = document["apply"] = await watch(
            client.protocol.send_request_async("co/apply", {"runId": run_id, "accept": True, "strategy": "git"})
        )
    except JsonRpcException as exc:
        if (budget := apply_report.budget_of_error(exc.data)) is not None:
            exc.message = apply_report.over_budget(budget, run_arg(run_id, workspace))
        raise
    return _report_apply(result, run_id, workspace, console)


def _report_apply(result: dict[str, Any], run_id: str, workspace: Path, console: Console) -> int:
    """0 only when everything was applied cleanly; conflicts are named with the next step."""
    written = [f["path"] for f in result.get("files", []) if f.get("written")] or result.get("paths", [])
    if apply_report.clean(result):
        console.print(f"[green]applied[/green] to {workspace}: {', '.join(written)}")
        return 0
    if result["applied"]:
        console.print(f"[yellow]applied in part[/yellow] to {workspace}: {', '.join(written)}")
    else:
        console.print(f"[red]not applied ({escape(str(result.get('outcome')))}):[/red] nothing was written")
    for f in result.get("files", []):
        if f["outcome"] in ("conflict", "skipped"):
            console.print(f"  [yellow]{f['outcome']}[/yellow] {escape(f['path'])}: {escape(f.get('reason') or '')}")
    if not result.get("files") and result.get("failureReason"):
        console.print(f"  {escape(result['failureReason'])}")
    for step in apply_report.next_steps(result, run_arg(run_id, workspace)):
        console.print(escape(step))
    return 1


def _step_markup(event: dict[str, Any], message: str) -> str:
    """One agent step (co/runUpdate.event) as a styled line."""
    kind = event.get("kind")
    text = escape(message)
    if kind == "command_execution":
        if event.get("type") != "item.completed":
            return f"[cyan]{text}[/cyan]"
        return f"[green]{text}[/green]" if event.get("exitCode") == 0 else f"[red]{text}[/red]"
    if kind == "file_change":
        return f"[magenta]{text}[/magenta]"
    if kind == "agent_message":
        return f"[bold]codex:[/bold] {text}"
    if kind in ("error", "turn.failed") or event.get("status") == "failed":
        return f"[yellow]{text}[/yellow]"
    return f"[dim]{text}[/dim]"


def _print_diff(diff: dict[str, Any], console: Console) -> None:
    table = Table(title="changes", show_edge=False)
    for column in ("status", "path", "+", "-"):
        table.add_column(column)
    for f in diff["files"]:
        path = f"{f['oldPath']} → {f['path']}" if f.get("oldPath") else f["path"]
        table.add_row(f["status"], path, f"[green]+{f['additions']}[/green]", f"[red]-{f['deletions']}[/red]")
    console.print(table)
    for conflict in diff.get("conflicts", []):
        console.print(f"[yellow]conflict[/yellow] {conflict['path']}: {escape(conflict['reason'])}")
    if diff["patch"]:
        console.print(Syntax(diff["patch"], "diff", theme="ansi_dark", background_color="default"))


def _print_cloud_launch(launched: dict[str, Any], console: Console) -> None:
    """The cloud environment chosen and why, and the preflight's warnings."""
    env = launched.get("cloudEnv")
    if env:
        label = f" ({env['label']})" if env.get("label") else ""
        console.print(f"environment [cyan]{escape(env['id'])}[/cyan]{escape(label)}: {escape(env.get('reason') or env['source'])}")
    for warning in launched.get("warnings") or []:
        fix = f" — {warning['fix']}" if warning.get("fix") else ""
        console.print(f"[yellow]warning:[/yellow] {escape(warning['message'] + fix)}")


def _print_answers(record: dict[str, Any], console: Console) -> None:
    """Each cloud attempt's answer: the assistant's messages and its worklog summary."""
    for attempt in (record.get("cloud") or {}).get("attemptStatus") or []:
        messages = attempt.get("messages") or []
        if not messages and not attempt.get("worklog") and not attempt.get("error"):
            continue
        console.print(f"[bold]attempt {attempt['attempt']}[/bold] ({attempt.get('status') or 'unknown'}):")
        for text in messages:
            for line in text.splitlines() or [""]:
                console.print(f"  {escape(line)}")
        if attempt.get("error"):
            console.print(f"  [red]{escape(attempt['error'])}[/red]")
        if attempt.get("worklog"):
            console.print(f"  [dim]{escape(attempt['worklog'])}[/dim]")

