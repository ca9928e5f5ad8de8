"""Shutdown closes what was opened: the HTTP pool registers its own close when it opens, and
the run manager's shutdown runs every hook without knowing what they close."""

from __future__ import annotations

from co_sidecar import shutdown
from co_sidecar.cloud import http as cloud_http
from co_sidecar.config import Config
from co_sidecar.local import LocalExecutor
from co_sidecar.runs import RunManager


async def test_run_manager_shutdown_closes_the_pool_a_cloud_client_opened() -> None:
    client = cloud_http.pooled_client("http://127.0.0.1:9/backend-api")
    assert cloud_http.aclose_all in shutdown._HOOKS and not client.is_closed
    manager = RunManager(lambda u: None, lambda ws: Config(), lambda mode: LocalExecutor())
    await manager.shutdown()
    assert client.is_closed
    assert cloud_http.pooled_client("http://127.0.0.1:9/backend-api") is not client  # a fresh one next time
    await manager.shutdown()


async def test_a_failing_hook_does_not_keep_the_others_from_running() -> None:
    ran: list[str] = []

    async def broken() -> None:
        ran.append("broken")
        raise RuntimeError("close failed")

    async def fine() -> None:
        ran.append("fine")

    try:
        shutdown.on_shutdown(broken)
        shutdown.on_shutdown(fine)
        shutdown.on_shutdown(fine)  # registering twice runs it once
        await shutdown.run_shutdown_hooks()
    finally:
        shutdown._HOOKS.remove(broken)
        shutdown._HOOKS.remove(fine)
    assert ran == ["broken", "fine"]
