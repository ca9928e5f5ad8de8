"""Errors the core raises, each with a stable JSON-RPC code and a string category.

The core never imports pygls: the server maps `CoError` to a JSON-RPC error
with `code`, `message` and `data = {"category": ...}`. docs/errors.md lists them.
"""

from __future__ import annotations

from typing import Any

INVALID_PARAMS = -32602

# Application codes, in the JSON-RPC range reserved for implementations.
RUN_NOT_FOUND = -32001
INVALID_STATE = -32002
APPLY_REFUSED = -32003
PREFLIGHT_FAILED = -32004
PATCH_REFUSED = -32005
WORKSPACE_ERROR = -32006
CLOUD_ERROR = -32010


class CoError(Exception):
    """An error a client should see as-is."""

    code: int = -32603
    category: str = "internal"

    def __init__(self, message: str, *, category: str | None = None, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if category is not None:
            self.category = category
        self.data = data or {}

    def payload(self) -> dict[str, Any]:
        return {"category": self.category, **self.data}


class InvalidParams(CoError):
    code = INVALID_PARAMS
    category = "invalid_params"


class RunNotFound(CoError):
    code = RUN_NOT_FOUND
    category = "run_not_found"

    def __init__(self, run_id: str):
        super().__init__(f"unknown runId: {run_id!r}", data={"runId": run_id})


class InvalidState(CoError):
    code = INVALID_STATE
    category = "invalid_state"


class ApplyRefused(CoError):
    code = APPLY_REFUSED
    category = "apply_refused"


class PreflightFailed(CoError):
    code = PREFLIGHT_FAILED
    category = "preflight"


class PatchRefused(CoError):
    """A patch that would write outside the workspace or is otherwise unsafe."""

    code = PATCH_REFUSED
    category = "patch_refused"


class WorkspaceError(CoError):
    code = WORKSPACE_ERROR
    category = "workspace"
