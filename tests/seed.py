"""A finished run with a given patch, written straight into a runs root: what a compromised
cloud (or a hostile agent) could have produced, without running an agent to get there."""

from __future__ import annotations

import hashlib
from pathlib import Path

from co_sidecar.manifest import DiffEvidence, ManifestStore, RunManifest, new_run_id, utc_now
from co_sidecar.protocol import RunState


def seed_run(repo: Path, patch: bytes | str, runs_root: Path | None = None, task_id: str = "adhoc") -> str:
    data = patch.encode() if isinstance(patch, str) else patch
    store = ManifestStore(runs_root or repo / ".runs")
    run_id, now = new_run_id(), utc_now()
    run_dir = store.run_dir(task_id, run_id)
    run_dir.mkdir(parents=True)
    (run_dir / "patch.diff").write_bytes(data)
    manifest = RunManifest(
        run_id=run_id,
        task_id=task_id,
        prompt="seeded run",
        workspace=str(repo),
        requested_mode="local",
        selected_mode="local",
        routing_reason="seeded by the test",
        state=RunState.SUCCEEDED,
        created_at=now,
        updated_at=now,
        diff=DiffEvidence(
            patch_path=f"{task_id}/{run_id}/patch.diff", sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)
        ),
    )
    store.save(manifest)
    return run_id
