"""Local execution: the agent runs in a sealed scratch checkout from a pool; its diff is captured there."""

from .agent import (
    AGENT_ENV_ALLOW,
    AGENT_ENV_DENY,
    AgentPlan,
    agent_env,
    codex_exec_argv,
    local_preflight,
    plan_agent,
)
from .executor import LocalExecutor
from .pool import capture_patch, sweep_scratch
from .scratch import Scratch, create_scratch, remove_scratch, scratch_root

__all__ = [
    "AGENT_ENV_ALLOW",
    "AGENT_ENV_DENY",
    "AgentPlan",
    "LocalExecutor",
    "Scratch",
    "agent_env",
    "codex_exec_argv",
    "capture_patch",
    "create_scratch",
    "local_preflight",
    "remove_scratch",
    "plan_agent",
    "scratch_root",
    "sweep_scratch",
]
