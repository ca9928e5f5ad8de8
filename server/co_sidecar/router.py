"""Mode policy, cloud preflight and fallback.

Policy: explicit `mode` > task `metadata.parallel == true` (cloud) > configured
default. A cloud choice must pass a cheap, network-free preflight; on failure
the run falls back to local, unless the fallback policy is deny.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .config import Config
from .errors import WorkspaceError
from .manifest import utc_now
from .protocol import Fallback, Issue, LaunchParams, Mode, RouteResult


def in_git_work_tree(workspace: Path) -> bool:
    """Whether `workspace` is inside a git work tree (a `.git` directory or file in it or a
    parent): a cheap check so a local launch can be refused before anything is written."""
    return any((folder / ".git").exists() for folder in (workspace, *workspace.parents))


def not_a_repository(workspace: Path) -> WorkspaceError:
    return WorkspaceError(
        f"workspace is not a git repository: {workspace} (local mode needs git to make a scratch "
        "copy; run `git init` and commit once); nothing was written",
        category="local_not_git_repo",
    )


def requested_cloud_env(params: LaunchParams, config: Config) -> str | None:
    """The env id, highest first: params.cloud.envId, task metadata.cloudEnvId (CO's name), config."""
    meta_env = params.metadata.get("cloudEnvId")
    return params.cloud.env_id or (meta_env if isinstance(meta_env, str) and meta_env else None) or config.cloud.env_id


def requested_cloud_branch(params: LaunchParams, config: Config) -> str | None:
    return params.cloud.branch or config.cloud.branch


def cloud_disabled_issue() -> Issue:
    return Issue(
        code="cloud_disabled",
        message="cloud execution is turned off (cloud.enabled = false / CO_CLOUD_ENABLED=0)",
        fix="set cloud.enabled = true to allow cloud runs",
    )


def cloud_preflight(
    params: LaunchParams, config: Config, workspace: Path, environ: Mapping[str, str]
) -> list[Issue]:
    """Every reason a cloud run cannot start now; empty means ready. Cheap and network-free."""
    if not config.cloud.enabled:
        # The feature guard: answer without importing anything cloud-related.
        return [cloud_disabled_issue()]
    from .cloud.preflight import cloud_preflight as check

    return check(
        config,
        workspace,
        requested_cloud_env(params, config),
        requested_cloud_branch(params, config),
        environ,
    )


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
