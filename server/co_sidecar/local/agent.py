"""The agent command: argv resolution, its environment, and the local preflight for co/doctor."""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..config import Config
from ..errors import PreflightFailed, WorkspaceError
from ..protocol import Issue
from .scratch import NO_COMMITS, has_commit, repo_toplevel

PROMPT_PLACEHOLDER = "{prompt}"
# Codex CLI 0.169 (tests/codex, tests/test_codex_cli.py) rejects the `--full-auto` of older
# releases ("unexpected argument"), and a bare `codex exec` runs read-only: apply_patch is
# refused, codex still exits 0, and the run "succeeds" with no changes. `--sandbox
# workspace-write` is what `--full-auto` meant (exec never asks for approval) and older CLIs
# accept it too. `--` keeps a prompt that starts with "-" or names a subcommand ("resume",
# "review") the prompt.
DEFAULT_CODEX_ARGV = ["codex", "exec", "--sandbox", "workspace-write", "--", PROMPT_PLACEHOLDER]
AGENT_MISSING = (
    'no local agent: set `local.agentCommand` (e.g. ["my-agent", "{prompt}"]) '
    "or install the Codex CLI (`codex` on PATH)"
)

# Variables the agent inherits from the sidecar. Everything else is dropped, so
# the sidecar's own secrets (CODEX_CLOUD_TOKEN) and GIT_DIR-style redirections
# never reach it. The agent keeps what it needs to run and to authenticate
# itself: HOME/CODEX_HOME (codex's auth.json), CODEX_API_KEY (the API key `codex exec`
# reads; it ignores OPENAI_API_KEY for its own auth, but a custom provider's `env_key` may
# name it), OPENAI_BASE_URL, proxies and CA bundles. Patterns use fnmatch; add more with
# `local.envAllow`.
AGENT_ENV_ALLOW: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ",
    "LANG", "LANGUAGE", "LC_*",
    "TMPDIR", "TMP", "TEMP",
    "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
    "CODEX_HOME", "CODEX_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
)  # fmt: skip
# Never passed, even when `local.envAllow` names them: the sidecar's cloud credential.
AGENT_ENV_DENY = frozenset({"CODEX_CLOUD_TOKEN"})


def agent_template(configured: list[str] | None) -> list[str]:
    """The configured argv, or codex's default when unset and `codex` is on PATH."""
    if configured is None:
        if shutil.which("codex") is None:
            raise PreflightFailed(AGENT_MISSING, category="local_agent_missing")
        return list(DEFAULT_CODEX_ARGV)
    if not configured or not configured[0]:
        raise PreflightFailed(
            '`local.agentCommand` is empty: give the agent\'s argv, e.g. ["my-agent", "{prompt}"]',
            category="local_agent_missing",
        )
    return list(configured)


def resolve_agent_argv(configured: list[str] | None, prompt: str) -> list[str]:
    """The argv to run: `configured` (or codex's default) with each exact "{prompt}" element
    replaced by the prompt as one argument. Never a shell string. Without a "{prompt}" element
    the agent still gets the prompt in $CO_PROMPT."""
    return [prompt if arg == PROMPT_PLACEHOLDER else arg for arg in agent_template(configured)]


def agent_env(
    environ: Mapping[str, str], extra_allow: Iterable[str], extra: Mapping[str, str]
) -> dict[str, str]:
    """The agent's environment: allowlisted names from `environ`, then `extra` (CO_* values)."""
    patterns = [*AGENT_ENV_ALLOW, *extra_allow]
    env = {
        name: value
        for name, value in environ.items()
        if name not in AGENT_ENV_DENY and any(fnmatch.fnmatchcase(name, p) for p in patterns)
    }
    env.update(extra)
    return env


def find_executable(program: str, workspace: Path) -> str | None:
    """argv[0] as something runnable: a PATH lookup for bare names, else a path (relative to the
    workspace) that is an executable file."""
    if os.sep not in program:
        return shutil.which(program)
    path = Path(program) if os.path.isabs(program) else workspace / program
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def local_preflight(config: Config, workspace: Path) -> list[Issue]:
    """Why local mode cannot run here (empty when it can): git, a repo with a commit, the agent."""
    issues: list[Issue] = []
    if shutil.which("git") is None:
        issues.append(
            Issue(code="local_git_missing", message="git not found on PATH", fix="install git")
        )
    else:
        try:
            top = repo_toplevel(workspace)
            if not has_commit(top):
                issues.append(
                    Issue(
                        code="local_no_commits",
                        message=NO_COMMITS,
                        fix="git commit --allow-empty -m init",
                    )
                )
        except WorkspaceError as exc:
            issues.append(
                Issue(code=exc.category, message=exc.message, fix="run `git init` and commit once")
            )
    try:
        argv = resolve_agent_argv(config.local.agent_command, "")
    except PreflightFailed as exc:
        issues.append(
            Issue(code="local_agent_missing", message=exc.message, fix="set local.agentCommand")
        )
    else:
        if find_executable(argv[0], workspace) is None:
            issues.append(
                Issue(
                    code="local_agent_missing",
                    message=f"agent command not found or not executable: {argv[0]}",
                    fix="fix local.agentCommand or put the program on PATH",
                )
            )
    return issues
