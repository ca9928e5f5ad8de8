"""Each emulator fault kind gives the outcome documented in docs/cloud.md, manifest intact."""

from __future__ import annotations

import pytest

from co_sidecar.cloud.executor import CloudExecutor
from co_sidecar.manifest import RunManifest
from co_sidecar.protocol import RunState
from co_sidecar.testing.emulator import parse_faults
from test_cloud_support import TOKEN, FakeContext, cloud_config, start_emulator

# (fault spec, extra poll settings, final state, error code, retries (None: don't check))
CASES = [
    ("create:429:retry_after=0.05:times=2", {}, RunState.SUCCEEDED, None, 2),
    ("create:429:retry_after=date:times=1", {}, RunState.SUCCEEDED, None, 1),
    ("create:503:times=1", {}, RunState.SUCCEEDED, None, 1),
    ("create:500", {}, RunState.FAILED, "cloud_unavailable", 0),  # maybe created: not retried
    ("create:drop", {}, RunState.FAILED, "cloud_unavailable", 0),  # maybe created: not retried
    ("create:401", {}, RunState.FAILED, "cloud_auth", 0),
    ("poll:503:times=2", {}, RunState.SUCCEEDED, None, 2),
    ("poll:500:times=1", {}, RunState.SUCCEEDED, None, 1),
    ("poll:503", {}, RunState.FAILED, "cloud_unavailable", 3),  # maxRetries = 3
    ("poll:429:retry_after=0:times=1", {}, RunState.SUCCEEDED, None, 1),
    ("poll:hang=3:times=1", {"requestTimeoutSeconds": 0.3}, RunState.SUCCEEDED, None, 1),
    ("poll:drop:times=1", {}, RunState.SUCCEEDED, None, 1),
    ("poll:401", {}, RunState.FAILED, "cloud_auth", 0),
    ("poll:404", {}, RunState.FAILED, "cloud_not_found", 0),
    ("poll:malformed", {}, RunState.FAILED, "cloud_protocol", 0),
    ("diff:malformed", {}, RunState.FAILED, "cloud_protocol", 0),
    ("diff:503:times=1", {}, RunState.SUCCEEDED, None, 1),
    ("task:fail", {}, RunState.FAILED, "cloud_task_failed", 0),
    ("task:slow=3", {"timeoutSeconds": 0.6}, RunState.TIMED_OUT, "cloud_timeout", None),
]


@pytest.mark.parametrize(
    ("spec", "poll", "state", "code", "retries"), CASES, ids=[c[0] for c in CASES]
)
async def test_fault_outcome(tmp_path, spec, poll, state, code, retries):
    emu = start_emulator(tmp_path, faults=spec)
    try:
        ctx = FakeContext(tmp_path, cloud_config(emu.base_url, **poll))
        env = {"CODEX_CLOUD_TOKEN": TOKEN, "CODEX_HOME": str(tmp_path)}
        outcome = await CloudExecutor(environ=env).execute(ctx)
    finally:
        emu.stop()
    assert outcome.state == state, outcome
    assert outcome.error_code == code
    info = ctx.manifest.cloud
    assert info is not None
    if retries is not None:
        assert info.retries == retries
    if code is not None:
        assert info.last_error is not None and info.last_error.code == code
        assert TOKEN not in info.last_error.message and TOKEN not in outcome.message
    if state == RunState.SUCCEEDED:
        assert info.attempt_status and info.attempt_status[0].diff is not None
        if retries:
            assert info.last_error is not None  # the retried error stays as evidence
    if spec == "task:fail":
        assert info.attempt_status[0].error == "TASK_FAILED: injected task failure"
        assert "injected task failure" in outcome.message
    RunManifest.model_validate(ctx.saved[-1] if ctx.saved else ctx.manifest.wire())


def test_fault_grammar():
    [a, b, c] = parse_faults(
        "create:429:retry_after=2:times=3:after=1, poll:hang=5 ,task:fail=boom:attempt=2"
    )
    assert (a.endpoint, a.kind, a.retry_after, a.times, a.after) == ("create", "429", "2", 3, 1)
    assert (b.endpoint, b.kind, b.value, b.times) == ("poll", "hang", "5", None)
    assert (c.endpoint, c.kind, c.value, c.attempt) == ("task", "fail", "boom", 2)
    assert [a.take() for _ in range(5)] == [False, True, True, True, False]
    for bad in ("poll", "nope:503", "poll:418", "task:503", "poll:503:color=red"):
        with pytest.raises(ValueError):
            parse_faults(bad)
