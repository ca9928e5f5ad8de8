"""1. Start-up: process start → `initialize` result, and import time, against a bare pygls server."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .rpc import PYTHON, Client, median, server_argv, server_env

BARE = [PYTHON, str(Path(__file__).with_name("bare_server.py"))]
IMPORTS = {
    "bare": "import pygls.lsp.server",
    "sidecar": "import co_sidecar.cli, co_sidecar.server",
}
TARGET_RATIO = 1.15


async def _initialize_once(argv: list[str], workspace: Path) -> float:
    client = Client()
    start = time.perf_counter()
    await client.start(argv, env=server_env(), cwd=str(workspace))
    await client.initialize(workspace)
    elapsed = time.perf_counter() - start
    await client.stop()
    return elapsed


def _import_once(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, check=True, env=server_env()
    )
    return float(out.stdout.strip())


async def run(reps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="co-bench-start-") as tmp:
        workspace = Path(tmp)
        init: dict[str, list[float]] = {"bare": [], "sidecar": []}
        imports: dict[str, list[float]] = {"bare": [], "sidecar": []}
        # Warm the page cache, then alternate so background load hits both alike.
        await _initialize_once(BARE, workspace)
        await _initialize_once(server_argv(), workspace)
        for _ in range(reps):
            init["bare"].append(await _initialize_once(BARE, workspace))
            init["sidecar"].append(await _initialize_once(server_argv(), workspace))
            for name, statement in IMPORTS.items():
                imports[name].append(_import_once(statement))
    result: dict[str, Any] = {"reps": reps}
    for kind, samples in (("initialize", init), ("import", imports)):
        bare, ours = median(samples["bare"]), median(samples["sidecar"])
        result[kind] = {
            "bare_ms": bare * 1000,
            "sidecar_ms": ours * 1000,
            "ratio": ours / bare,
            "bare_min_ms": min(samples["bare"]) * 1000,
            "sidecar_min_ms": min(samples["sidecar"]) * 1000,
        }
    result["met"] = result["initialize"]["ratio"] <= TARGET_RATIO
    return result


if __name__ == "__main__":
    print(asyncio.run(run(10)))
