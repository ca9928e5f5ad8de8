"""The cloud feature guard: `cloud.enabled = false` (CO_CLOUD_ENABLED=0) routes every run local.

Its own module, below both the router and `cloud/preflight.py`, so the two answer the guard the
same way without importing each other, and a disabled cloud imports nothing cloud-related.
"""

from __future__ import annotations

from .errors import IssueCode
from .protocol import Issue


def cloud_disabled_issue() -> Issue:
    return Issue(
        code=IssueCode.CLOUD_DISABLED,
        message="cloud execution is turned off (cloud.enabled = false / CO_CLOUD_ENABLED=0)",
        fix="set cloud.enabled = true to allow cloud runs",
    )
