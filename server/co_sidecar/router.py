"""Mode policy, cloud preflight and fallback.

Policy: explicit `mode` > task `metadata.parallel == true` (cloud) > configured
default. A cloud choice must pass a cheap, network-free preflight; on failure
the run falls back to local, unless the fallback policy is deny.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config
from .errors import IssueCode, RunErrorCode, WorkspaceError
from .guard import cloud_disabled_issue
from .manifest import utc_now
from .protocol import Fallback, LaunchParams, Mode, RouteResult

if TYPE_CHECKING:
    from .cloud.preflight import CloudCheck


def in_git_work_tree(workspace: Path) -> bool:
    """Whether `workspace` is inside a git work tree: a `.git` directory with a HEAD, or a
    `.git` file pointing at one (`gitdir: ...`), in it or a parent, as git itself looks. A cheap
    check so a local launch can be refused before anything is written."""
    for folder in (workspace, *workspace.parents):
        dot_git = folder / ".git"
        if (dot_git / "HEAD").is_file():
            return True
        if dot_git.is_file():
            try:
                if dot_git.read_bytes()[:8] == b"gitdir: ":
                    return True
            except OSError:
                continue
    return False


def not_a_repository(workspace: Path) -> WorkspaceError:
    return WorkspaceError(
        f"workspace is not a git repository: {workspace} (local mode needs git to make a scratch "
        "copy; run `git init` and commit once); nothing was written",
        category=RunErrorCode.LOCAL_NOT_GIT_REPO,
    )


def requested_cloud_env(params: LaunchParams, config: Config) -> str | None:
    """The env id, highest first: params.cloud.envId, task metadata.cloudEnvId (CO's name), config."""
    meta_env = params.metadata.get("cloudEnvId")
    return params.cloud.env_id or (meta_env if isinstance(meta_env, str) and meta_env else None) or config.cloud.env_id


def requested_cloud_branch(params: LaunchParams, config: Config) -> str | None:
    return params.cloud.branch or config.cloud.branch


def cloud_route_check(
    params: LaunchParams, config: Config, workspace: Path, environ: Mapping[str, str]
) -> CloudCheck:
    """The cloud preflight (`cloud.preflight.cloud_check`) for this launch's environment and
    branch. The one import of the cloud package from routing, deferred so that local runs and
    the feature guard load nothing cloud-related (tests/test_co_parity.py holds it)."""
    from .cloud.preflight import cloud_check

    return cloud_check(
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

    check: CloudCheck | None = None
    if not config.cloud.enabled:
        issues = [cloud_disabled_issue()]  # without importing anything cloud-related
    else:
        check = cloud_route_check(params, config, workspace, environ)
        issues = check.issues
    if check is not None and not issues:
        return RouteResult(
            mode="cloud",
            requested_mode=params.mode,
            reason=why,
            cloud_env=check.env,
            cloud_branch=check.branch,
            warnings=check.warnings,
        )

    codes = ", ".join(i.code for i in issues)
    if issues[0].code == IssueCode.CLOUD_DISABLED:
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
