"""The cloud client factory: the adapter `cloud.adapter` names, built from the configuration.

The HTTP adapter is imported only when chosen: it pulls in httpx, which a CLI-only or
preflight-only process never needs.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import CloudConfig
from .cli_adapter import CliCloudClient
from .client import CloudClient


def make_client(
    cloud: CloudConfig, environ: Mapping[str, str] | None = None, cwd: str | None = None
) -> CloudClient:
    """The adapter chosen by `cloud.adapter`; `cwd` is where the CLI adapter runs `codex cloud`."""
    if cloud.adapter == "cli":
        return CliCloudClient.from_config(cloud, environ, cwd)
    from .http import HttpCloudClient  # deferred: httpx, only when the HTTP adapter is chosen

    return HttpCloudClient.from_config(cloud, environ)
