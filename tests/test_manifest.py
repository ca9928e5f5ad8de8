"""Manifest model and store: atomic writes, loading, schema, compatibility."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from co_sidecar import docgen
from co_sidecar.manifest import (
    SCHEMA_VERSION,
    ManifestStore,
    RunManifest,
    load_manifest,
    new_run_id,
    utc_now,
)
from co_sidecar.protocol import RunState


def manifest(run_id: str | None = None, task_id: str = "T") -> RunManifest:
    now = utc_now()
    return RunManifest(
        run_id=run_id or new_run_id(),
        task_id=task_id,
        prompt="p",
        workspace="/w",
        requested_mode="auto",
        selected_mode="local",
        routing_reason="r",
        state=RunState.ROUTING,
        created_at=now,
        updated_at=now,
    )


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path / ".runs")
    m = manifest()
    path = store.save(m)
    assert path == tmp_path / ".runs" / "T" / m.run_id / "manifest.json"
    data = json.loads(path.read_text())
    assert data["schemaVersion"] == SCHEMA_VERSION and data["runId"] == m.run_id
    assert load_manifest(path) == m
    # The runs root ignores itself, so records never show in `git status`.
    assert (tmp_path / ".runs" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_write_is_atomic_no_temp_files_left(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    m = manifest()
    for state in (RunState.LAUNCHING, RunState.RUNNING, RunState.SUCCEEDED):
        m.state = state
        store.save(m)
    run_dir = tmp_path / "T" / m.run_id
    assert [p.name for p in run_dir.iterdir()] == ["manifest.json"]
    assert load_manifest(run_dir / "manifest.json").state == RunState.SUCCEEDED


def test_load_all_skips_broken_files_without_touching_them(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    good = manifest()
    store.save(good)
    broken = tmp_path / "T" / "broken-run" / "manifest.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    future = tmp_path / "T" / "future-run" / "manifest.json"
    future.parent.mkdir(parents=True)
    future.write_text(json.dumps({**good.wire(), "runId": "future-run", "schemaVersion": 99}))
    loaded, bad = store.load_all()
    assert [m.run_id for m in loaded] == [good.run_id]
    assert {p.parent.name for p, _ in bad} == {"broken-run", "future-run"}
    assert broken.read_text() == "{not json"


def test_a_manifest_from_before_the_cloud_fields_still_loads() -> None:
    old = Path(__file__).parent / "fixtures" / "manifest_v1_local.json"
    m = load_manifest(old)
    assert m.state == RunState.SUCCEEDED and m.cloud is None and m.diff is not None
    assert m.diff.files[0].path == "README.md"


def test_run_ids_sort_by_creation_time() -> None:
    ids = [new_run_id() for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_generated_docs_are_current() -> None:
    assert docgen.stale() == [], "run: python -m co_sidecar.docgen"


@pytest.mark.parametrize("bad_version", ["1", None, 2.5])
def test_non_integer_schema_version_is_refused(tmp_path: Path, bad_version: object) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({**manifest().wire(), "schemaVersion": bad_version}))
    with pytest.raises(ValueError):
        load_manifest(path)
