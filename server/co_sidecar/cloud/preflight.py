"""Cloud preflight for routing and doctor: cheap local checks, plus an optional reachability call.

Local checks, plus the environment lists when an environment must be chosen (cached for a
minute, cloud/environments.py); with `cloud.adapter = "cli"` it runs `codex login status` (a
node start, ~0.15 s, cached for 30 s by codex_cli) since `codex cloud` refuses everything when
signed out. Blocking: the server calls it off the event loop."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..codex_cli import login_status
from ..config import CloudConfig, Config
from ..errors import IssueCode, RunErrorCode
from ..gitcmd import git_output
from ..guard import cloud_disabled_issue
from ..protocol import CloudEnv, Issue
from . import environments as envs
from .auth import is_loopback, load_credentials
from .client import CloudClientError
from .factory import make_client


def _cloud(config: Config | CloudConfig) -> CloudConfig:
    return config.cloud if isinstance(config, Config) else config


def branch_on_origin(workspace: Path, branch: str) -> bool | None:
    """Whether refs/remotes/origin/<branch> exists locally (no network); None when unknown."""
    if git_output(["rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}"], workspace):
        return True
    # Not a repository, or no origin remote at all: not this check's business.
    return False if git_output(["remote", "get-url", "origin"], workspace) else None


def workspace_branch(workspace: Path) -> str:
    """The branch a cloud task starts from when none is configured, resolved in the workspace
    as `codex cloud exec` resolves it in its working directory: the current branch, else the
    default branch (origin's HEAD, else a local main or master), else "main"."""
    current = git_output(["symbolic-ref", "--quiet", "--short", "HEAD"], workspace)
    if current:
        return current
    remote_head = git_output(["symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"], workspace)
    if remote_head and "/" in remote_head:
        return remote_head.split("/", 1)[1]
    for name in ("main", "master"):
        if git_output(["rev-parse", "--verify", "--quiet", f"refs/heads/{name}"], workspace):
            return name
    return "main"


def cli_sign_in_issue(command: list[str], environ: Mapping[str, str] | None) -> Issue | None:
    """`codex login status` (cached for codex_cli.LOGIN_CACHE_S): `codex cloud` needs a
    ChatGPT sign-in. None when signed in, or when the CLI's answer tells nothing."""
    status = login_status(command, environ)
    detail = status.detail.strip()
    low = detail.lower()
    fix = "run `codex login` and sign in with ChatGPT (codex cloud does not take an API key)"
    if "api key" in low:
        return Issue(
            code=IssueCode.CLOUD_AUTH,
            message=f"the Codex CLI is signed in with an API key ({detail}); codex cloud "
            "needs a ChatGPT sign-in",
            fix=fix,
        )
    if status.signed_in is False or ("codex_home" in low and "does not exist" in low):
        return Issue(
            code=IssueCode.CLOUD_AUTH,
            message=f"the Codex CLI is not signed in (`codex login status`: {detail})",
            fix=fix,
        )
    return None


@dataclass
class CloudCheck:
    """What routing learns about a cloud run before it starts: the problems that stop it, the
    warnings that do not, and the environment and branch it will use."""

    issues: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    env: CloudEnv | None = None
    branch: str | None = None


def unpushed_commits(workspace: Path, branch: str) -> int | None:
    """Commits on the local `branch` that origin/<branch> lacks; None when unknown."""
    if git_output(["rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}"], workspace) is None:
        return None
    if git_output(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], workspace) is None:
        return None
    count = git_output(["rev-list", "--count", f"refs/remotes/origin/{branch}..refs/heads/{branch}"], workspace)
    return int(count) if count and count.isdigit() else None


def _env_missing() -> Issue:
    """Signed out and nothing configured: the environment can be neither checked nor detected."""
    return Issue(
        code=IssueCode.CLOUD_ENV_MISSING,
        message="no Codex Cloud environment id (detected from the repository's origin once signed in)",
        fix="run `codex login` (it is then detected), or set cloud.envId (an id or a label; or "
        "CODEX_CLOUD_ENV_ID), or pass cloud.envId in co/launch",
    )


def _choose_env(
    cloud: CloudConfig, workspace: Path | None, requested: str | None, environ: Mapping[str, str] | None
) -> CloudEnv | Issue:
    """The environment, or the issue that stops the run (network: cached, see environments)."""
    if cloud.adapter == "cli" and requested:
        # `codex cloud exec --env` resolves an id or a label itself, as it always does.
        return CloudEnv(
            id=requested,
            source="configured",
            reason=f"{requested!r} passed to `codex cloud exec --env`, which takes an id or a label",
        )
    credentials = load_credentials(environ)
    if credentials is None and not is_loopback(cloud.base_url):
        if requested:
            return CloudEnv(id=requested, source="configured", reason=f"{requested!r} as configured (not verified: no credentials)")
        return _env_missing()
    timeout = min(10.0, cloud.poll.request_timeout_seconds)
    try:
        choice = envs.resolve(requested, cloud.base_url, credentials, workspace, timeout)
    except envs.EnvironmentProblem as problem:
        return Issue(code=problem.code, message=problem.message, fix=problem.fix)
    return CloudEnv(id=choice.id, label=choice.label, source=choice.source, reason=choice.reason)  # type: ignore[arg-type]


def cloud_check(
    config: Config | CloudConfig,
    workspace: Path | None,
    env_id: str | None = None,
    branch: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> CloudCheck:
    """Problems that would stop a cloud run, warnings, and the environment and branch it
    would use. Local checks, plus the environment lists (cached) when they are needed."""
    cloud = _cloud(config)
    if not cloud.enabled:
        return CloudCheck(issues=[cloud_disabled_issue()])
    check = CloudCheck()
    adapter_issues: list[Issue] = []
    signed_in = True
    if cloud.adapter == "cli":
        command = list(cloud.codex_command) or ["codex"]
        if shutil.which(command[0], path=(environ or {}).get("PATH")) is None:
            signed_in = False
            adapter_issues.append(
                Issue(
                    code=IssueCode.CLOUD_CLI_MISSING,
                    message=f"`{command[0]}` not found on PATH (cloud.adapter = cli)",
                    fix="install the Codex CLI, set cloud.codexCommand, or use cloud.adapter = http",
                )
            )
        else:
            signed_out = cli_sign_in_issue(command, environ)
            if signed_out is not None:
                signed_in = False
                adapter_issues.append(signed_out)
    elif load_credentials(environ) is None and not is_loopback(cloud.base_url):
        adapter_issues.append(
            Issue(
                code=IssueCode.CLOUD_CREDENTIALS_MISSING,
                message="no Codex Cloud credentials (CODEX_CLOUD_TOKEN or $CODEX_HOME/auth.json)",
                fix="run `codex login`, or set CODEX_CLOUD_TOKEN and CODEX_CLOUD_ACCOUNT_ID",
            )
        )
    requested = env_id or cloud.env_id
    if signed_in or requested:
        chosen = _choose_env(cloud, workspace, requested, environ)
        if isinstance(chosen, Issue):
            check.issues.append(chosen)
        else:
            check.env = chosen
    else:
        check.issues.append(_env_missing())
    check.issues.extend(adapter_issues)
    wanted = branch or cloud.branch
    if workspace is not None:
        check.branch = wanted or workspace_branch(workspace)
    else:
        check.branch = wanted
    if check.branch and workspace is not None and branch_on_origin(workspace, check.branch) is False:
        check.issues.append(
            Issue(
                code=IssueCode.CLOUD_BRANCH_MISSING,
                message=f"branch {check.branch!r} is not on origin (no refs/remotes/origin/{check.branch})",
                fix=f"push it: git push -u origin {check.branch} (or git fetch origin if it was pushed elsewhere)",
            )
        )
    elif check.branch and workspace is not None:
        ahead = unpushed_commits(workspace, check.branch)
        if ahead:
            check.warnings.append(
                Issue(
                    code=IssueCode.CLOUD_BRANCH_UNPUSHED,
                    message=f"{ahead} commit{'s' if ahead != 1 else ''} on {check.branch} "
                    f"{'are' if ahead != 1 else 'is'} not on origin: the cloud task starts from "
                    f"origin/{check.branch} and will not see {'them' if ahead != 1 else 'it'}",
                    fix=f"git push origin {check.branch}, or launch with startFromLocalChanges",
                )
            )
    return check


async def cloud_reachability(
    config: Config | CloudConfig, environ: Mapping[str, str] | None = None, timeout: float = 10.0
) -> Issue | None:
    """A cheap list call (limit 1) for doctor; None when the service answered."""
    cloud = _cloud(config)
    client = make_client(cloud, environ)
    try:
        await asyncio.wait_for(
            client.list_tasks(limit=1), timeout=min(timeout, cloud.poll.request_timeout_seconds)
        )
    except TimeoutError:
        return Issue(
            code=RunErrorCode.CLOUD_UNAVAILABLE,
            message=f"Codex Cloud did not answer within {timeout:g}s",
        )
    except CloudClientError as exc:
        return Issue(code=exc.category, message=f"Codex Cloud not reachable: {exc.message}")
    except Exception as exc:  # any failure is a doctor finding, never a crash
        return Issue(
            code=RunErrorCode.CLOUD_UNAVAILABLE, message=f"Codex Cloud not reachable: {exc}"
        )
    finally:
        await client.aclose()
    return None
