"""Mode policy, cloud preflight and fallback.

Policy: explicit `mode` > task `metadata.parallel == true` (cloud) > configured
default. A cloud choice must pass a cheap, network-free preflight; on failure
the run falls back to local, unless the fallback policy is deny.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from .config import Config
from .manifest import utc_now
from .protocol import Fallback, Issue, LaunchParams, Mode, RouteResult


def requested_cloud_env(params: LaunchParams, config: Config) -> str | None:
    """The env id, highest first: params.cloud.envId, task metadata.cloudEnvId (CO's name), config."""
    meta_env = params.metadata.get("cloudEnvId")
    return params.cloud.env_id or (meta_env if isinstance(meta_env, str) and meta_env else None) or config.cloud.env_id


def requested_cloud_branch(params: LaunchParams, config: Config) -> str | None:
    return params.cloud.branch or config.cloud.branch


def codex_home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("CODEX_HOME") or Path.home() / ".codex")


def has_cloud_credentials(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("CODEX_CLOUD_TOKEN")) or (codex_home(environ) / "auth.json").is_file()


def branch_on_origin(workspace: Path, branch: str) -> bool:
    """True when origin/<branch> is known locally (no network: the launch must answer at once)."""
    result = subprocess.run(  # noqa: S603 - argv list, branch passed as one argument after --verify
        ["git", "rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}"],
        cwd=workspace,
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def cloud_preflight(
    params: LaunchParams, config: Config, workspace: Path, environ: Mapping[str, str]
) -> list[Issue]:
    """Every reason a cloud run cannot start now; empty means ready."""
    issues: list[Issue] = []
    if not config.cloud.enabled:
        return [
            Issue(
                code="cloud_disabled",
                message="cloud execution is turned off (cloud.enabled = false / CO_CLOUD_ENABLED=0)",
                fix="set cloud.enabled = true to allow cloud runs",
            )
        ]
    if not requested_cloud_env(params, config):
        issues.append(
            Issue(
                code="cloud_env_missing",
                message="no Codex Cloud environment id",
                fix="set cloud.envId, CODEX_CLOUD_ENV_ID, or pass cloud.envId in the request",
            )
        )
    if config.cloud.adapter == "cli":
        if shutil.which(config.cloud.codex_command[0]) is None:
            issues.append(
                Issue(
                    code="cloud_cli_missing",
                    message=f"the Codex CLI ({config.cloud.codex_command[0]!r}) is not on PATH",
                    fix="install @openai/codex or set cloud.codexCommand",
                )
            )
    elif not has_cloud_credentials(environ):
        issues.append(
            Issue(
                code="cloud_credentials_missing",
                message="no Codex Cloud credentials (CODEX_CLOUD_TOKEN or $CODEX_HOME/auth.json)",
                fix="run `codex login` or set CODEX_CLOUD_TOKEN",
            )
        )
    branch = requested_cloud_branch(params, config)
    if branch and not branch_on_origin(workspace, branch):
        issues.append(
            Issue(
                code="cloud_branch_missing",
                message=f"branch {branch!r} is not on origin",
                fix=f"push it (git push origin {branch}) or fetch (git fetch origin)",
            )
        )
    return issues


def preferred_mode(params: LaunchParams, config: Config) -> tuple[Mode, str]:
    if params.mode != "auto":
        return params.mode, f"explicit mode {params.mode!r}"
    if params.metadata.get("parallel") is True:
        return "cloud", "task metadata parallel=true asks for cloud"
    return config.mode, f"configured default mode {config.mode!r}"


def route(
    params: LaunchParams,
    config: Config,
    workspace: Path,
    environ: Mapping[str, str] | None = None,
) -> RouteResult:
    environ = os.environ if environ is None else environ
    mode, why = preferred_mode(params, config)
    if mode == "local":
        return RouteResult(mode="local", requested_mode=params.mode, reason=why)

    issues = cloud_preflight(params, config, workspace, environ)
    if not issues:
        return RouteResult(mode="cloud", requested_mode=params.mode, reason=why)

    codes = ", ".join(i.code for i in issues)
    if issues[0].code == "cloud_disabled":
        # The feature guard is a rollback switch: it always routes local, whatever the fallback policy.
        reason = f"{why}, but cloud is disabled by the feature guard; running locally"
    elif config.cloud.fallback == "deny":
        reason = f"{why}, but cloud preflight failed ({codes}) and the fallback policy is deny"
        return RouteResult(
            mode="cloud", requested_mode=params.mode, reason=reason, issues=issues, denied=True
        )
    else:
        reason = f"{why}, but cloud preflight failed ({codes}); falling back to local"
    fallback = Fallback(reason=reason, issues=issues, at=utc_now())
    return RouteResult(
        mode="local", requested_mode=params.mode, reason=reason, issues=issues, fallback=fallback
    )
