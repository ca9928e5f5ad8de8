"""Preflight report for both modes: what works, what does not, and how to fix it."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from .config import Config
from .errors import IssueCode
from .guard import cloud_disabled_issue
from .protocol import CodexCliInfo, DoctorCheck, DoctorResult, Issue, LaunchParams, ModeReadiness
from .router import cloud_route_check


def codex_info(config: Config, environ: Mapping[str, str]) -> CodexCliInfo | None:
    """The Codex CLI: `cloud.codexCommand` when the cloud adapter is the CLI (and it is a bare
    program), else `codex` on PATH; its version, sign-in state, and whether local runs use it
    by default. None when it is not installed."""
    from .codex_cli import cli_version, exec_form, login_status
    from .local.agent import codex_exec_argv

    command = ["codex"]
    if config.cloud.adapter == "cli" and config.cloud.codex_command:
        command = list(config.cloud.codex_command)
    program = command[0] if len(command) == 1 else "codex"  # a wrapper (nsenter ...): codex
    found = cli_version(program, environ)
    if found is None:
        return None
    status = login_status(command, environ)
    # The default agent's argv for this version, up to its per-run part (-C {workdir} ...).
    argv = codex_exec_argv(config.local.codex, exec_form(found.version))
    exec_args = argv[1 : argv.index("-C")]
    local_default = config.local.agent_command is None and cli_version("codex", environ) is not None
    return CodexCliInfo(
        path=found.path,
        version=found.text or None,
        signed_in=status.signed_in,
        sign_in_detail=status.detail,
        local_default=local_default,
        exec_args=exec_args,
    )


def local_issues(config: Config, workspace: Path | None) -> list[Issue]:
    from .local.agent import local_preflight

    if workspace is None:
        return [Issue(code=IssueCode.WORKSPACE_MISSING, message="no workspace folder", fix="open a folder")]
    return local_preflight(config, workspace)


async def doctor(
    config: Config, workspace: Path | None, environ: Mapping[str, str] | None = None
) -> DoctorResult:
    """Local and cloud preflight; when cloud passes it, one cheap list call proves reachability."""
    environ = os.environ if environ is None else environ
    checks: list[DoctorCheck] = [
        DoctorCheck(
            name="git",
            ok=shutil.which("git") is not None,
            message="git found" if shutil.which("git") else "git is not on PATH",
            fix=None if shutil.which("git") else "install git",
        )
    ]
    # Before the cloud preflight: its `codex login status` is then answered from the cache.
    codex = await asyncio.to_thread(codex_info, config, environ)
    local = local_issues(config, workspace)
    probe = LaunchParams(prompt="doctor", mode="cloud")
    cloud = [cloud_disabled_issue()] if workspace and not config.cloud.enabled else []
    if workspace and config.cloud.enabled:
        # Off the event loop: choosing the environment may list them (cached).
        check = await asyncio.to_thread(cloud_route_check, probe, config, workspace, environ)
        cloud = check.issues
        if check.env is not None:
            label = f" ({check.env.label})" if check.env.label else ""
            checks.append(
                DoctorCheck(
                    name="cloud_env",
                    ok=True,
                    message=f"environment {check.env.id}{label}: {check.env.reason} [{check.env.source}]",
                )
            )
        for warning in check.warnings:
            checks.append(
                DoctorCheck(name="cloud_warning", ok=True, message=warning.message, fix=warning.fix, code=warning.code)
            )
    if workspace and not cloud:
        from .cloud.preflight import cloud_reachability

        unreachable = await cloud_reachability(config, environ)
        if unreachable is not None:
            cloud.append(unreachable)
    for scope, issues in (("local", local), ("cloud", cloud)):
        if not issues:
            checks.append(DoctorCheck(name=scope, ok=True, message=f"{scope} mode ready"))
        for issue in issues:
            checks.append(
                DoctorCheck(name=scope, ok=False, message=issue.message, fix=issue.fix, code=issue.code)
            )
    return DoctorResult(
        checks=checks,
        fallback_policy=config.cloud.fallback,
        default_mode=config.mode,
        local=ModeReadiness(ok=not local, issues=local),
        cloud=ModeReadiness(ok=not cloud, issues=cloud),
        codex=codex,
    )
