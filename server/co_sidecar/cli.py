"""`co-sidecar` entry points: serve (default), doctor, run, runs, apply, reject, scratch, canary, emulator."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .protocol import CodexCliInfo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="co-sidecar",
        description="Hand coding tasks to local or Codex Cloud execution; apply diffs only on acceptance.",
    )
    parser.add_argument("--version", action="version", version=f"co-sidecar {__version__}")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the JSON-RPC server (stdio by default)")
    serve.add_argument(
        "--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio (clients prove a token: see --token-file)"
    )
    serve.add_argument(
        "--token-file", help="with --tcp: where to write the token (default: $XDG_RUNTIME_DIR/co-sidecar/tcp-PORT.token)"
    )
    # Many LSP clients (vscode-languageclient among them) append --stdio for stdio transport.
    serve.add_argument("--stdio", action="store_true", help="use stdio (the default)")
    serve.add_argument("--log-file", help="write the server log here (default: stderr)")
    serve.add_argument("--log-level", default="WARNING")

    doctor = sub.add_parser("doctor", help="preflight report for local and cloud modes")
    doctor.add_argument("--workspace", default=".", help="workspace folder (default: .)")
    doctor.add_argument("--cloud", action="store_true", help="exit non-zero unless cloud mode can run")
    doctor.add_argument("--format", choices=["text", "json"], default="text")
    doctor.add_argument(
        "--trust-workspace", action="store_true", help="take agent/credential settings from the workspace's file"
    )

    run = sub.add_parser("run", help="run one task through the server and show its progress and diff")
    run.add_argument("prompt")
    run.add_argument("--mode", choices=["auto", "local", "cloud"], default="auto")
    run.add_argument("--workspace", default=".", help="workspace folder (default: .)")
    run.add_argument("--task-id", default="adhoc")
    run.add_argument("--env-id")
    run.add_argument("--branch")
    run.add_argument("--attempts", type=int, default=1)
    run.add_argument(
        "--start-from-local-changes",
        action="store_true",
        default=None,
        help="cloud: start the task from your uncommitted changes and unpushed commits",
    )
    run.add_argument("--apply", action="store_true", help="apply the diff with git when the run succeeds")
    run.add_argument(
        "--json",
        action="store_true",
        help="progress on stderr; on stdout one JSON document: {run: the manifest, diff: DiffResult, apply: ApplyResult}",
    )
    run.add_argument("--agent", help="local agent command (JSON list or shell-style words)")
    run.add_argument("--server", help="server command (default: this Python with -m co_sidecar serve)")
    run.add_argument(
        "--trust-workspace",
        action="store_true",
        help="trust this workspace: its co-sidecar.toml may choose the agent, codex flags and cloud host",
    )

    canary = sub.add_parser("canary", help="one minimal task through the whole cloud path, phase by phase")
    canary.add_argument("--workspace", default=".", help="workspace folder (default: .)")
    canary.add_argument("--emulator", action="store_true", help="run against a loopback emulator of the task API")
    canary.add_argument("--format", choices=["text", "json"], default="text")

    from .runs_cli import add_parsers as add_runs_parsers

    add_runs_parsers(sub)

    scratch = sub.add_parser("scratch", help="the pool of reused scratch checkouts: show or prune it")
    scratch.add_argument("action", choices=["show", "prune"], help="prune removes every slot not in use")

    emulator = sub.add_parser("emulator", help="serve a loopback emulator of the Codex Cloud task API")
    emulator.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "emulator":
        from .testing.emulator import main as emulator_main

        return emulator_main(argv[1:])
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    if command == "serve":
        return serve(
            getattr(args, "tcp", None),
            getattr(args, "log_file", None),
            getattr(args, "log_level", "WARNING"),
            getattr(args, "token_file", None),
        )
    if command == "doctor":
        return doctor(args)
    if command == "canary":
        from .canary import main as canary_main

        return canary_main(args)
    if command == "run":
        from .run_client import run_task

        return run_task(args)
    if command in ("runs", "apply", "reject"):
        from .runs_cli import main as runs_main

        return runs_main(args)
    if command == "scratch":
        from .local.pool import scratch_command

        return scratch_command(args.action)
    return 2


def serve(tcp: str | None, log_file: str | None, log_level: str, token_file: str | None = None) -> int:
    logging.basicConfig(
        filename=log_file,
        level=getattr(logging, log_level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pygls.protocol.json_rpc").addFilter(_expected_errors_filter)
    from .server import create_server

    server = create_server()
    if tcp:
        from .tcp import serve_tcp

        host, _, port = tcp.rpartition(":")
        return serve_tcp(server, host or "127.0.0.1", int(port), Path(token_file) if token_file else None)
    else:
        server.start_io()
    return 0


def _expected_errors_filter(record: logging.LogRecord) -> bool:
    """Drop pygls's tracebacks for errors we answer on purpose (bad params, unknown run, ...):
    the client gets them as JSON-RPC errors; only internal errors (-32603) stay in the log."""
    exc = record.exc_info[1] if record.exc_info else None
    code = getattr(exc, "code", None)
    return not (isinstance(code, int) and code != -32603)


def doctor(args: argparse.Namespace) -> int:
    from .config import load_config
    from .doctor import doctor as run_doctor
    from .errors import CoError, IssueCode
    from .handlers import config_checks

    logging.getLogger("co_sidecar.config").setLevel(logging.ERROR)  # shown below as checks instead
    workspace = Path(args.workspace).resolve()
    warnings: list[str] = []
    options = {"workspaceTrusted": True} if args.trust_workspace else None
    try:
        config = load_config(workspace, client_options=options, warnings=warnings)
    except CoError as exc:  # a bad co-sidecar.toml, env value or user config: no traceback
        print(f"co-sidecar doctor: config error: {exc.message}", file=sys.stderr)
        return 2
    result = asyncio.run(run_doctor(config, workspace))
    result.checks += config_checks(warnings)
    if args.format == "json":
        print(json.dumps(result.wire(), indent=2))
    else:
        for check in result.checks:
            warning = check.code == IssueCode.CONFIG_WARNING or check.name == "cloud_warning"  # does not stop a run
            mark = "warn" if warning else "ok  " if check.ok else "FAIL"
            print(f"[{mark}] {check.name}: {check.message}")
            if check.fix and (warning or not check.ok):
                print(f"       fix: {check.fix}")
        print(f"default mode: {result.default_mode}; cloud fallback policy: {result.fallback_policy}")
        print(_codex_lines(result.codex))
    wanted = result.cloud if args.cloud else result.local
    return 0 if wanted.ok else 1


def _codex_lines(codex: CodexCliInfo | None) -> str:
    if codex is None:
        return "codex: not found on PATH (the default local agent and cloud.adapter = cli use it)"
    signed = {True: "signed in", False: "not signed in", None: "sign-in unknown"}[codex.signed_in]
    detail = f" ({codex.sign_in_detail})" if codex.sign_in_detail else ""
    local = (
        f"yes: codex {' '.join(codex.exec_args)} ..."
        if codex.local_default
        else "no (local.agentCommand is set, or this codex is not the one on PATH)"
    )
    return "\n".join(
        [
            f"codex: {codex.version or 'version unknown'} at {codex.path}",
            f"  sign-in: {signed}{detail}",
            f"  local default agent: {local}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
