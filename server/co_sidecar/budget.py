"""A diff's size against the configured budget (`diff.*`)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .manifest import DiffEvidence
from .protocol import DiffBudget


def too_large(size: int, limit: int) -> str:
    return f"the patch is {size} bytes, over the hard limit diff.hardMaxPatchBytes={limit}"


@dataclass(frozen=True)
class BudgetCheck:
    limits: DiffBudget

    @property
    def over_limit(self) -> bool:
        b = self.limits
        return b.files > b.max_files or b.lines > b.max_lines or b.bytes > b.max_bytes


def budget_of(evidence: DiffEvidence, config: Config) -> BudgetCheck:
    """The diff's size against the budget in force now (config may have changed since the run)."""
    return BudgetCheck(
        DiffBudget(
            files=len(evidence.files),
            lines=evidence.additions + evidence.deletions,
            bytes=evidence.bytes,
            max_files=config.diff.max_files,
            max_lines=config.diff.max_lines,
            max_bytes=config.diff.max_patch_bytes,
        )
    )
