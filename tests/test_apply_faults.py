"""Accepting a diff under faults, through real servers over stdio: hostile patches, two servers on
one workspace, reject during apply, a full disk, kill -9 mid-apply, bad manifests, echoed
secrets. The scenarios live in scripts/apply_faults.py, which scripts/reliability.py reports."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import apply_faults  # noqa: E402


def test_hostile_patches_are_refused_everywhere(tmp_path: Path) -> None:
    out = apply_faults.hostile_patches(tmp_path)
    assert out["refused_everywhere"] == out["patches"], out["refused"]
    assert out["written_outside"] == 0 and not out["workspace_changed"]
    assert out["git_apply_runs"] == 0 and out["edits_sent"] == 0 and out["alive"]


def test_two_servers_apply_a_run_once_and_reject_waits_for_apply(tmp_path: Path) -> None:
    out = apply_faults.double_apply(tmp_path)
    assert out["intent_recorded"] and out["first_applied"]
    assert out["refused_during"] == 3, out["during_messages"]
    assert all("being applied" in m for m in out["during_messages"])
    assert out["refused_after"] == 2 and all("already applied" in m for m in out["after_messages"])
    assert out["b_status"] == "applied" and out["state"] == "applied"
    assert out["line_count"] == 1
    assert "rejected" not in out["states_seen"]


def test_a_failed_apply_on_a_full_disk_restores_every_file(tmp_path: Path) -> None:
    out = apply_faults.disk_full(tmp_path)
    assert out["applied"] is False and out["state"] == "succeeded"
    assert out["restored_reported"] > 0  # git really left files half-changed...
    assert out["identical"], out["differing"]  # ...and every one is back: content, mode, existence
    assert not out["journal_left"]


def test_kill_9_mid_apply_is_reported_and_restorable(tmp_path: Path) -> None:
    out = apply_faults.kill_mid_apply(tmp_path)
    assert out["state_at_crash"] == "succeeded" and out["intent_at_crash"]
    assert out["changed_on_disk"] and out["reported"] == out["changed_on_disk"]
    assert "restore" in out["report"]
    assert out["apply_refused_until_restored"]
    assert out["restored"] == out["changed_on_disk"] and out["identical_after_restore"]
    assert out["applied_after_restore"] and out["final_matches_change"]


def test_bad_manifests_are_skipped_reported_and_never_hide_runs(tmp_path: Path) -> None:
    out = apply_faults.bad_manifests(tmp_path)
    assert out["good_listed"] and out["alive"]
    assert out["skipped"] == out["bad"] and all(out["reasons"])
    assert out["rewritten_state"] == "rejected" and out["extra_fields_kept"]


def test_echoed_secrets_are_redacted_everywhere(tmp_path: Path) -> None:
    out = apply_faults.secret_echo(tmp_path)
    assert out["states"] == ["failed", "succeeded"]
    assert out["echo_seen_masked"]  # the echo really came back, masked
    assert out["events_files"] == 1
    assert out["cloud token"] == [] and out["api key"] == []
