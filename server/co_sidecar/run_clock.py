"""A live run's elapsed time, kept by the client between updates so it never looks frozen.

The server sends `elapsedMs` only with an update; a quiet agent sends none for a long time.
The clock anchors the run's start on the client's monotonic clock (from the latest update's
`elapsedMs`, or the launch) and tells the elapsed time at any moment, with the latest step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunClock:
    now: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    step: str = ""
    state: str = ""

    def __post_init__(self) -> None:
        self.started = self.now()

    def update(self, update: dict[str, Any]) -> None:
        """Take a co/runUpdate: its state, its step (not output lines), and its elapsed time
        (the start is only ever moved earlier: a late update must not rewind the clock)."""
        self.state = update.get("state") or self.state
        elapsed = update.get("elapsedMs")
        if isinstance(elapsed, int) and elapsed >= 0:
            self.started = min(self.started, self.now() - elapsed / 1000)
        message = (update.get("message") or "").strip()
        if message and not update.get("stream"):
            self.step = message.splitlines()[-1]

    def elapsed(self) -> float:
        return max(0.0, self.now() - self.started)

    def line(self, width: int = 70) -> str:
        """`running 12s  $ pytest -q`: what a status line shows."""
        step = self.step if len(self.step) <= width else self.step[: width - 1] + "…"
        return f"{self.state} {format_elapsed(self.elapsed())}" + (f"  {step}" if step else "")


def format_elapsed(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
