"""Which finished runs `co/prune` removes: pure, so the rule is tested without a server."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .protocol import FINISHED_STATES, RunState


@dataclass(frozen=True)
class RunAge:
    run_id: str
    state: RunState
    updated_at: datetime


def select_prunable(
    runs: Iterable[RunAge], now: datetime, *, older_than_days: float | None, keep: int | None
) -> list[str]:
    """Finished runs last updated more than `older_than_days` ago, and finished runs beyond the
    `keep` newest; never a run that is still executing. Newest first."""
    finished = sorted((r for r in runs if r.state in FINISHED_STATES), key=lambda r: r.run_id, reverse=True)
    cutoff = None if older_than_days is None else now - timedelta(days=older_than_days)
    chosen = []
    for index, run in enumerate(finished):
        too_old = cutoff is not None and run.updated_at < cutoff
        beyond_keep = keep is not None and index >= keep
        if too_old or beyond_keep:
            chosen.append(run.run_id)
    return chosen
