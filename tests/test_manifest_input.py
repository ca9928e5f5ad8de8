"""Manifest files are input: any bad one is skipped with a reason, never hides the others, and
fields written by a newer version survive a rewrite."""

from __future__ import annotations

import json
from pathlib import Path

from co_sidecar.manifest import (
    ManifestStore,
    RunManifest,
    load_manifest,
    skipped_manifests,
    utc_now,
)
from co_sidecar.protocol import RunState


def _manifest(run_id: str, task_id: str = "adhoc") -> RunManifest:
    now = utc_now()
    return RunManifest(
        run_id=run_id, task_id=task_id, prompt="p", workspace="/w", requested_mode="local",
        selected_mode="local", routing_reason="r", state="succeeded", created_at=now, updated_at=now,
    )  # fmt: skip


def test_bad_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path / ".runs")
    store.save(_manifest("good"))
    for name, body in {"a": "[]", "b": '"str"', "c": "null", "d": "{", "e": "{}", "f": "[" * 3000 + "]" * 3000}.items():
        path = tmp_path / ".runs" / "adhoc" / name / "manifest.json"
        path.parent.mkdir(parents=True)
        path.write_text(body)
    moved = tmp_path / ".runs" / "other" / "good" / "manifest.json"  # a copy under another task
    moved.parent.mkdir(parents=True)
    moved.write_text((tmp_path / ".runs" / "adhoc" / "good" / "manifest.json").read_text())
    loaded, skipped = store.load_all()
    assert [m.run_id for m in loaded] == ["good"]
    assert len(skipped) == 7 and all(why for _, why in skipped)
    assert skipped == skipped_manifests(tmp_path / ".runs")
    reasons = dict((p.parent.name, why) for p, why in skipped)
    assert "JSON list" in reasons["a"] and "JSON NoneType" in reasons["c"]
    assert any("not the directory" in why for why in reasons.values())


def test_a_newer_versions_fields_survive_a_rewrite(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path / ".runs")
    path = store.save(_manifest("r1"))
    data = json.loads(path.read_text())
    data["laterTopLevel"] = {"x": 1}
    data["executor"]["laterNested"] = [1, 2]
    path.write_text(json.dumps(data))
    manifest = load_manifest(path)
    manifest.state = RunState.REJECTED
    store.save(manifest)
    again = json.loads(path.read_text())
    assert again["state"] == "rejected"
    assert again["laterTopLevel"] == {"x": 1} and again["executor"]["laterNested"] == [1, 2]
