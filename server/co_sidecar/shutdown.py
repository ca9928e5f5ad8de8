"""Shutdown hooks: whatever opens a process-wide resource (a connection pool) registers how to
close it, and the server's shutdown runs them. Nothing here knows what the resources are."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]

_HOOKS: list[Hook] = []


def on_shutdown(hook: Hook) -> None:
    """Run `hook` at server shutdown (once per registration; registering it again is a no-op)."""
    if hook not in _HOOKS:
        _HOOKS.append(hook)


async def run_shutdown_hooks() -> None:
    """Run every hook in registration order; one that fails is logged, the others still run."""
    for hook in list(_HOOKS):
        try:
            await hook()
        except Exception:  # a failing close must not keep the others open
            log.exception("shutdown hook %r failed", hook)
