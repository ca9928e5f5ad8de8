"""Pre-images: restore puts back content, mode, symlinks and absence (and the directories an apply
made), and reports exactly what had changed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from co_sidecar import apply_journal


def test_restore_puts_every_path_back_exactly(tmp_path: Path) -> None:
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    ws.mkdir()
    (ws / "text.txt").write_bytes(b"one\r\ntwo")
    (ws / "tool.sh").write_text("#!/bin/sh\n")
    os.chmod(ws / "tool.sh", 0o755)
    (ws / "link").symlink_to("text.txt")
    (ws / "gone.txt").write_text("keep me\n")
    (ws / "same.txt").write_text("same\n")
    paths = ["text.txt", "tool.sh", "link", "gone.txt", "same.txt", "new/deep/file.txt"]
    apply_journal.snapshot(ws, paths, run_dir)
    # What a half-done apply leaves: changed, truncated, chmodded, relinked, deleted, created.
    (ws / "text.txt").write_text("")
    os.chmod(ws / "tool.sh", 0o644)
    (ws / "link").unlink()
    (ws / "link").symlink_to("/etc/passwd")
    (ws / "gone.txt").unlink()
    (ws / "new/deep").mkdir(parents=True)
    (ws / "new/deep/file.txt").write_text("added\n")
    changed = apply_journal.changed(ws, run_dir)
    assert changed == ["text.txt", "tool.sh", "link", "gone.txt", "new/deep/file.txt"]
    assert apply_journal.restore(ws, run_dir) == changed
    assert (ws / "text.txt").read_bytes() == b"one\r\ntwo"
    assert stat.S_IMODE((ws / "tool.sh").stat().st_mode) == 0o755
    assert os.readlink(ws / "link") == "text.txt"
    assert (ws / "gone.txt").read_text() == "keep me\n"
    assert not (ws / "new").exists()  # the directories the apply made are gone too
    assert apply_journal.changed(ws, run_dir) == []
    assert apply_journal.restore(ws, run_dir) == []  # running it again changes nothing
    apply_journal.clear(run_dir)
    assert not apply_journal.exists(run_dir)


def test_a_directory_with_other_content_is_left_alone(tmp_path: Path) -> None:
    ws, run_dir = tmp_path / "ws", tmp_path / "run"
    ws.mkdir()
    apply_journal.snapshot(ws, ["new/file.txt"], run_dir)
    (ws / "new").mkdir()
    (ws / "new/file.txt").write_text("added\n")
    (ws / "new/users-own.txt").write_text("not the apply's\n")
    assert apply_journal.restore(ws, run_dir) == ["new/file.txt"]
    assert (ws / "new/users-own.txt").exists() and not (ws / "new/file.txt").exists()
