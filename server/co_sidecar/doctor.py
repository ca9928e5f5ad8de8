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
from .invocation import self_command
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


def codex_agent_issue(config: Config, environ: Mapping[str, str]) -> Issue | None:
    """When local runs would use the Codex CLI: an issue unless it can authenticate, i.e. it is
    signed in (`codex login status`) or an API key it reads is set (CODEX_API_KEY, or the
    `env_key` of a model provider in the user's Codex config)."""
    from .codex_cli import login_status
    from .errors import PreflightFailed
    from .local.agent import codex_provider_keys, is_codex, plan_agent

    try:
        program = plan_agent(config.local, environ).template[0]
    except PreflightFailed:
        return None  # local_preflight reports the missing agent
    if not is_codex(program):
        return None
    if any(environ.get(key) for key in ("CODEX_API_KEY", *codex_provider_keys(environ))):
        return None
    status = login_status([program], environ)
    if status.signed_in:
        return None
    low = status.detail.lower()
    if status.signed_in is False or ("codex_home" in low and "does not exist" in low):
        message = (
            f"the local agent is the Codex CLI, which is not signed in (`codex login status`: "
            f"{status.detail}) and has no API key set"
        )
    else:
        message = (
            f"cannot tell whether the Codex CLI (the local agent) is signed in: {status.detail}"
        )
    return Issue(
        code=IssueCode.LOCAL_AGENT_SIGNED_OUT,
        message=message,
        fix="run `codex login` (or set CODEX_API_KEY), or set local.agentCommand to another agent",
    )


def ready_message(
    scope: str, config: Config, environ: Mapping[str, str], env_id: str | None = None
) -> str:
    """What a "ready" line checked: the agent for local; adapter, URL and environment for cloud."""
    if scope == "local":
        from .errors import PreflightFailed
        from .local.agent import plan_agent

        try:
            plan = plan_agent(config.local, environ)
        except PreflightFailed:
            return "local mode ready"
        version = f" ({plan.codex_version})" if plan.codex_version else ""
        return f"local mode ready: agent `{plan.template[0]}`{version}"
    cloud = config.cloud
    env_id = env_id or cloud.env_id
    env = f"environment {env_id}" if env_id else "no default environment"
    if cloud.adapter == "cli":
        command = " ".join(cloud.codex_command or ["codex"])
        return f"cloud mode ready: adapter cli (`{command} cloud`), {env}"
    return f"cloud mode ready: adapter http, {cloud.base_url}, {env}"


def with_fix(issue: Issue, config: Config) -> Issue:
    """Every finding says what to do; reachability failures come without one."""
    if issue.fix:
        return issue
    where = (
        f"cloud.baseUrl ({config.cloud.base_url})"
        if config.cloud.adapter == "http"
        else "the Codex CLI"
    )
    fix = f"check {where}, your network and credentials, then run `{self_command()} doctor --cloud` again"
    return issue.model_copy(update={"fix": fix})


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
    from .local.pool import doctor_line

    pool_text = await asyncio.to_thread(doctor_line, config.local.scratch_pool.size)
    checks.append(DoctorCheck(name="scratch", ok=True, message=pool_text))
    # Before the cloud preflight: its `codex login status` is then answered from the cache.
    codex = await asyncio.to_thread(codex_info, config, environ)
    local = local_issues(config, workspace)
    signed_out = await asyncio.to_thread(codex_agent_issue, config, environ)
    if signed_out is not None:
        local.append(signed_out)
    probe = LaunchParams(prompt="doctor", mode="cloud")
    cloud = [cloud_disabled_issue()] if workspace and not config.cloud.enabled else []
    env_id: str | None = None  # the environment the cloud check chose, for the ready line
    if workspace and config.cloud.enabled:
        # Off the event loop: choosing the environment may list them (cached).
        check = await asyncio.to_thread(cloud_route_check, probe, config, workspace, environ)
        cloud = check.issues
        if check.env is not None:
            env_id = check.env.id
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
    cloud = [with_fix(issue, config) for issue in cloud]
    for scope, issues in (("local", local), ("cloud", cloud)):
        if not issues:
            checks.append(
                DoctorCheck(name=scope, ok=True, message=ready_message(scope, config, environ, env_id))
            )
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
