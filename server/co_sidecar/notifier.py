"""How a run reaches the client: `co/runUpdate` wire dicts, agent output batched.

The one place that knows the notification's wire format and its rate limit. The server passes in
the sink (which sends the JSON-RPC notification and `$/progress`); nothing here imports pygls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from . import followup, redact
from .execution import Stream
from .manifest import RunManifest, parse_utc
from .protocol import FINISHED_STATES, RunState

# Takes a `RunUpdate` as its wire dict (camelCase keys, JSON values): see `RunNotifier.emit`.
UpdateSink = Callable[[dict[str, Any]], None]

# Agent output is forwarded at most this often per run; lines in between are batched.
OUTPUT_INTERVAL_S = 0.1
OUTPUT_MAX_LINES = 50
OUTPUT_MAX_CHARS = 8_000


class RunNotifier:
    """One run's notifications. `manifest` is read at each send: the record may replace it
    (re-read from disk) between two updates."""

    def __init__(self, manifest: Callable[[], RunManifest], sink: UpdateSink) -> None:
        self._manifest = manifest
        self.sink = sink
        self._pending: list[tuple[Stream, str]] = []
        self._last_output: float = 0.0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._created: tuple[str, float] | None = None  # manifest.created_at and its timestamp
        # The agent's diff so far (`DiffStats` wire), while a local run executes.
        self.live_diff_stats: dict[str, int] | None = None

    def output(self, stream: Stream, line: str) -> None:
        """One line of agent output: sent now, or batched with the next lines (rate limit)."""
        self._pending.append((stream, line))
        wait = self._last_output + OUTPUT_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(wait, self.flush)

    def step(self, message: str, event: dict[str, Any]) -> None:
        self.flush()  # output printed before this step is shown before it
        self.emit(message, event=event)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()  # flushing now: the pending timer would emit a second batch
        self._flush_handle = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        self._last_output = time.monotonic()
        for stream in ("stdout", "stderr"):
            lines = [line for s, line in pending if s == stream]
            if not lines:
                continue
            dropped = max(0, len(lines) - OUTPUT_MAX_LINES)
            text = "\n".join(lines[-OUTPUT_MAX_LINES:])[-OUTPUT_MAX_CHARS:]
            if dropped:
                text = f"[{dropped} earlier lines omitted]\n{text}"
            self.emit(text, stream=stream)

    def emit(self, message: str, *, stream: Stream | None = None, event: dict[str, Any] | None = None) -> None:
        """Send a `co/runUpdate`. Every cloud poll sends one, so the wire dict is built directly:
        the same keys and values as `RunUpdate(...).wire()` (tests/test_run_update_wire.py holds
        them to the model), without validating and dumping a model each time."""
        m = self._manifest()
        cloud = m.cloud
        created = self._created
        if created is None or created[0] != m.created_at:
            created = self._created = (m.created_at, parse_utc(m.created_at).timestamp())
        state = m.state
        # The terminal update of a cloud run carries each attempt's answer.
        answers = cloud.answers() if cloud is not None and state in FINISHED_STATES else None
        if redact.active():
            message, event, answers = redact.redact(message), redact.redact_json(event), redact.redact_json(answers)
        self.sink(
            {
                "runId": m.run_id,
                "taskId": m.task_id,
                "state": state.value if isinstance(state, RunState) else RunState(state).value,
                "mode": m.selected_mode,
                "message": message,
                "attempt": None,
                "pollCount": cloud.poll_count if cloud else 0,
                "elapsedMs": int((time.time() - created[1]) * 1000),
                "cloudTaskId": cloud.task_id if cloud else None,
                "cloudTaskUrl": cloud.task_url if cloud else None,
                "stream": stream,
                "errorCode": m.error_code,
                "event": event,
                "answers": answers,
                # Live while the agent works, the recorded diff's (a follow-up's step) after.
                "diffStats": self.live_diff_stats if state not in FINISHED_STATES and self.live_diff_stats else followup.diff_stats(m),
                "parentRunId": m.parent_run_id,
                "rootRunId": m.root_run_id,
            }
        )
