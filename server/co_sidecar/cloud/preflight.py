"""Cloud preflight for routing and doctor: cheap local checks, plus an optional reachability call.

Network-free, but with `cloud.adapter = "cli"` it runs `codex login status` (a node start,
~0.15 s, cached for 30 s by codex_cli) since `codex cloud` refuses everything when signed out."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ..config import CloudConfig, Config
from ..protocol import Issue
from .auth import is_loopback, load_credentials

CLOUD_ENV_MISSING = "cloud_env_missing"
CLOUD_CREDENTIALS_MISSING = "cloud_credentials_missing"
CLOUD_CLI_MISSING = "cloud_cli_missing"
CLOUD_BRANCH_MISSING = "cloud_branch_missing"
CLOUD_AUTH = "cloud_auth"  # also a run error code (cloud/client.py): the same meaning


def _cloud(config: Config | CloudConfig) -> CloudConfig:
    return config.cloud if isinstance(config, Config) else config


def branch_on_origin(workspace: Path, branch: str) -> bool | None:
    """Whether refs/remotes/origin/<branch> exists locally (no network); None when unknown."""
    try:
        proc = subprocess.run(  # noqa: S603 - fixed git argv, no shell
            ["git", "rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}"],
            cwd=workspace,
            capture_output=True,
            timeout=10,
            check=False,
        )
        if proc.returncode == 0:
            return True
        # Not a repository, or no origin remote at all: not this check's business.
        remote = subprocess.run(  # noqa: S603 - fixed git argv, no shell
            ["git", "remote", "get-url", "origin"],
            cwd=workspace,
            capture_output=True,
            timeout=10,
            check=False,
        )
        return False if remote.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _git(workspace: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(  # noqa: S603 - fixed git argv, no shell
            ["git", *args], cwd=workspace, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out else None


def workspace_branch(workspace: Path) -> str:
    """The branch a cloud task starts from when none is configured, resolved in the workspace
    as `codex cloud exec` resolves it in its working directory: the current branch, else the
    default branch (origin's HEAD, else a local main or master), else "main"."""
    current = _git(workspace, "symbolic-ref", "--quiet", "--short", "HEAD")
    if current:
        return current
    remote_head = _git(workspace, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
    if remote_head and "/" in remote_head:
        return remote_head.split("/", 1)[1]
    for name in ("main", "master"):
        if _git(workspace, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}"):
            return name
    return "main"


def cli_sign_in_issue(command: list[str], environ: Mapping[str, str] | None) -> Issue | None:
    """`codex login status` (cached for codex_cli.LOGIN_CACHE_S): `codex cloud` needs a
    ChatGPT sign-in. None when signed in, or when the CLI's answer tells nothing."""
    from ..codex_cli import login_status

    status = login_status(command, environ)
    detail = status.detail.strip()
    low = detail.lower()
    fix = "run `codex login` and sign in with ChatGPT (codex cloud does not take an API key)"
    if "api key" in low:
        return Issue(
            code=CLOUD_AUTH,
            message=f"the Codex CLI is signed in with an API key ({detail}); codex cloud "
            "needs a ChatGPT sign-in",
            fix=fix,
        )
    if status.signed_in is False or ("codex_home" in low and "does not exist" in low):
        return Issue(
            code=CLOUD_AUTH,
            message=f"the Codex CLI is not signed in (`codex login status`: {detail})",
            fix=fix,
        )
    return None


def cloud_preflight(
    config: Config | CloudConfig,
    workspace: Path | None,
    env_id: str | None = None,
    branch: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Issue]:
    """Problems that would stop a cloud run, found without network calls."""
    cloud = _cloud(config)
    if not cloud.enabled:
        from ..router import cloud_disabled_issue  # the router answers the guard the same way

        return [cloud_disabled_issue()]
    issues: list[Issue] = []
    if not (env_id or cloud.env_id):
        issues.append(
            Issue(
                code=CLOUD_ENV_MISSING,
                message="no Codex Cloud environment id",
                fix="set cloud.envId (or CODEX_CLOUD_ENV_ID), or pass cloud.envId in co/launch",
            )
        )
    if cloud.adapter == "cli":
        command = list(cloud.codex_command) or ["codex"]
        if shutil.which(command[0], path=(environ or {}).get("PATH")) is None:
            issues.append(
                Issue(
                    code=CLOUD_CLI_MISSING,
                    message=f"`{command[0]}` not found on PATH (cloud.adapter = cli)",
                    fix="install the Codex CLI, set cloud.codexCommand, or use cloud.adapter = http",
                )
            )
        else:
            signed_out = cli_sign_in_issue(command, environ)
            if signed_out is not None:
                issues.append(signed_out)
    elif load_credentials(environ) is None and not is_loopback(cloud.base_url):
        issues.append(
            Issue(
                code=CLOUD_CREDENTIALS_MISSING,
                message="no Codex Cloud credentials (CODEX_CLOUD_TOKEN or $CODEX_HOME/auth.json)",
                fix="run `codex login`, or set CODEX_CLOUD_TOKEN and CODEX_CLOUD_ACCOUNT_ID",
            )
        )
    wanted = branch or cloud.branch
    if wanted and workspace is not None and branch_on_origin(workspace, wanted) is False:
        issues.append(
            Issue(
                code=CLOUD_BRANCH_MISSING,
                message=f"branch {wanted!r} is not on origin (no refs/remotes/origin/{wanted})",
                fix=f"push it: git push -u origin {wanted} (or git fetch origin if it was pushed elsewhere)",
            )
        )
    return issues


async def cloud_reachability(
    config: Config | CloudConfig, environ: Mapping[str, str] | None = None, timeout: float = 10.0
) -> Issue | None:
    """A cheap list call (limit 1) for doctor; None when the service answered."""
    from .executor import make_client  # deferred: pulls in httpx

    cloud = _cloud(config)
    client = make_client(cloud, environ)
    try:
        await asyncio.wait_for(
            client.list_tasks(limit=1), timeout=min(timeout, cloud.poll.request_timeout_seconds)
        )
    except TimeoutError:
        return Issue(
            code="cloud_unavailable", message=f"Codex Cloud did not answer within {timeout:g}s"
        )
    except Exception as exc:  # any failure is a doctor finding, never a crash
        code = getattr(exc, "category", "cloud_unavailable")
        return Issue(
            code=str(code), message=f"Codex Cloud not reachable: {getattr(exc, 'message', exc)}"
        )
    finally:
        await client.aclose()
    return None
