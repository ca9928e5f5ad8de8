"""The heartbeat path: `RunRecord.emit` builds the `co/runUpdate` wire dict by hand and the
server frames it itself; both must say exactly what the documented model and pygls would."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from co_sidecar.config import Config
from co_sidecar.manifest import CloudInfo, ManifestStore, RunManifest, utc_now
from co_sidecar.protocol import RunState, RunUpdate
from co_sidecar.run_record import RunRecord
from co_sidecar.server import CoSidecarServer


def _aliases(model: type[RunUpdate]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def _record(tmp_path: Path, cloud: CloudInfo | None, sent: list[dict[str, Any]]) -> RunRecord:
    now = utc_now()
    manifest = RunManifest(
        run_id="r1", task_id="t", prompt="p", workspace=str(tmp_path), requested_mode="auto",
        selected_mode="cloud" if cloud else "local", routing_reason="r", state=RunState.RUNNING,
        created_at=now, updated_at=now, cloud=cloud, error_code=None,
    )  # fmt: skip
    return RunRecord(manifest, tmp_path, ManifestStore(tmp_path / ".runs"), Config(), sent.append)


@pytest.mark.parametrize("cloud", [None, CloudInfo(task_id="task_e_1", task_url="https://x/1", poll_count=7)])
@pytest.mark.parametrize("stream", [None, "stdout"])
def test_emitted_update_matches_the_model(tmp_path: Path, cloud: CloudInfo | None, stream: Any) -> None:
    sent: list[dict[str, Any]] = []
    record = _record(tmp_path, cloud, sent)
    record.notifier.emit("cloud task in_progress (poll 7)", stream=stream)
    record.manifest.state = RunState.FAILED
    record.manifest.error_code = "cloud_timeout"
    record.emit("timed out")
    for update in sent:
        assert set(update) == _aliases(RunUpdate)
        model = RunUpdate.model_validate(update)
        assert model.wire() == update
        assert json.loads(json.dumps(update)) == update  # plain JSON values only
    first, last = sent
    assert first["state"] == "running" and type(first["state"]) is str
    assert first["stream"] == stream and first["pollCount"] == (cloud.poll_count if cloud else 0)
    assert first["cloudTaskUrl"] == (cloud.task_url if cloud else None)
    assert last["state"] == "failed" and last["errorCode"] == "cloud_timeout"
    assert 0 <= first["elapsedMs"] < 60_000


def test_elapsed_follows_a_changed_created_at(tmp_path: Path) -> None:
    sent: list[dict[str, Any]] = []
    record = _record(tmp_path, None, sent)
    record.emit("a")
    record.manifest.created_at = "2000-01-01T00:00:00.000Z"
    record.emit("b")
    assert sent[1]["elapsedMs"] > 10 * 365 * 86_400_000


class _Writer:
    def __init__(self) -> None:
        self.out = io.BytesIO()

    def write(self, data: bytes) -> None:
        self.out.write(data)

    def close(self) -> None:
        pass


def _frames(data: bytes) -> list[tuple[dict[str, str], Any]]:
    frames = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        size = int(headers["Content-Length"])
        frames.append((headers, json.loads(rest[:size])))
        data = rest[size:]
    return frames


def test_send_notification_frames_as_pygls_notify_does() -> None:
    params = {"runId": "r1", "message": "caf\u00e9 \u2603", "pollCount": 3, "stream": None}
    fast, slow = CoSidecarServer(), CoSidecarServer()
    for server in (fast, slow):
        server.protocol.set_writer(_Writer(), include_headers=True)
    fast.send_notification("co/runUpdate", params)
    slow.protocol.notify("co/runUpdate", params)
    got = _frames(fast.protocol.writer.out.getvalue())  # type: ignore[union-attr]
    want = _frames(slow.protocol.writer.out.getvalue())  # type: ignore[union-attr]
    assert got == want and got[0][1]["params"] == params


def test_progress_report_is_what_pygls_would_send() -> None:
    from lsprotocol import types

    fast, slow = CoSidecarServer(), CoSidecarServer()
    for server in (fast, slow):
        server.protocol.set_writer(_Writer(), include_headers=True)
    fast.send_notification("$/progress", {"token": "tok", "value": {"kind": "report", "message": "running: x"}})
    slow.work_done_progress.report("tok", types.WorkDoneProgressReport(message="running: x"))
    got = _frames(fast.protocol.writer.out.getvalue())  # type: ignore[union-attr]
    want = _frames(slow.protocol.writer.out.getvalue())  # type: ignore[union-attr]
    assert got == want


class _Stdout(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


async def test_batching_writer_writes_once_per_loop_turn_in_order() -> None:
    import asyncio

    from co_sidecar.transport import BatchingWriter

    out = _Stdout()
    writer = BatchingWriter(out)
    for n in range(5):
        writer.write(b"%d;" % n)
    assert out.getvalue() == b""  # not before the turn's callbacks are done
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert out.getvalue() == b"0;1;2;3;4;" and out.flushes == 1
    writer.write(b"5;")
    await asyncio.to_thread(writer.write, b"6;")  # off the loop: at once, after what is pending
    assert out.getvalue() == b"0;1;2;3;4;5;6;"
    await asyncio.sleep(0)
    assert out.getvalue() == b"0;1;2;3;4;5;6;"
