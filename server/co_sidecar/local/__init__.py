"""Local execution: the agent runs in a scratch git worktree; its diff is captured there."""

from .agent import (
    AGENT_ENV_ALLOW,
    AGENT_ENV_DENY,
    DEFAULT_CODEX_ARGV,
    agent_env,
    agent_template,
    local_preflight,
    resolve_agent_argv,
)
from .executor import LocalExecutor
from .scratch import (
    Scratch,
    capture_patch,
    create_scratch,
    remove_scratch,
    scratch_root,
    sweep_scratch,
)

__all__ = [
    "AGENT_ENV_ALLOW",
    "AGENT_ENV_DENY",
    "DEFAULT_CODEX_ARGV",
    "LocalExecutor",
    "Scratch",
    "agent_env",
    "agent_template",
    "capture_patch",
    "create_scratch",
    "local_preflight",
    "remove_scratch",
    "resolve_agent_argv",
    "scratch_root",
    "sweep_scratch",
]
