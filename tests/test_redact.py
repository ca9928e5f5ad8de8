"""The redactor: values (not names) are masked in text, JSON, models and log records."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from co_sidecar import redact
from co_sidecar.manifest import ExecutorInfo, RunManifest, Transition

SECRET = "sk-test-0123456789abcdef"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    redact.clear()
    yield
    redact.clear()


def test_values_are_masked_wherever_they_appear() -> None:
    assert redact.redact(f"error: token {SECRET} rejected") == f"error: token {SECRET} rejected"  # nothing known yet
    redact.add([SECRET, "short", None])
    assert redact.redact(f"error: token {SECRET} rejected") == "error: token [REDACTED] rejected"
    assert redact.redact("short stays") == "short stays"  # too short to mask safely
    data = {"a": [f"x{SECRET}y", 3, {"b": SECRET}], "c": None}
    assert redact.redact_json(data) == {"a": ["x[REDACTED]y", 3, {"b": "[REDACTED]"}], "c": None}


def test_secrets_come_from_the_environment_and_auth_json(tmp_path: Path) -> None:
    home = tmp_path / "codex"
    home.mkdir()
    (home / "auth.json").write_text('{"tokens": {"access_token": "auth-json-access-token-1234"}}')
    (home / "config.toml").write_text('[model_providers.acme]\nenv_key = "ACME_KEY"\n')
    env = {"CODEX_HOME": str(home), "OPENAI_API_KEY": "sk-openai-key-5678", "ACME_KEY": "acme-secret-9999", "GITHUB_TOKEN": "ghp_abcdefgh1234", "PATH": "/usr/bin:/bin"}
    values = redact.secrets_in(env)
    assert {"auth-json-access-token-1234", "sk-openai-key-5678", "acme-secret-9999", "ghp_abcdefgh1234"} <= set(values)
    assert "/usr/bin:/bin" not in values


def test_models_are_redacted_in_place_extras_included() -> None:
    manifest = RunManifest.model_validate(
        {
            "runId": "r", "taskId": "t", "prompt": "p", "workspace": "/w", "requestedMode": "local",
            "selectedMode": "local", "routingReason": "x", "state": "failed", "createdAt": "a", "updatedAt": "b",
            "failureReason": f"HTTP 400: bad token {SECRET}", "futureField": {"note": SECRET},
        }
    )  # fmt: skip
    manifest.transitions.append(Transition(state="failed", at="c", message=SECRET))
    manifest.executor = ExecutorInfo(stderr_tail=f"key={SECRET}\n")
    redact.add([SECRET])
    redact.redact_model(manifest)
    assert SECRET not in manifest.model_dump_json()
    assert manifest.failure_reason == "HTTP 400: bad token [REDACTED]"
    assert manifest.wire()["futureField"] == {"note": "[REDACTED]"}


def test_log_records_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    redact.add([SECRET])
    logger = logging.getLogger("co_sidecar.test_redact")
    handler = logging.Handler()
    seen: list[str] = []
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(redact.RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("got %s back", SECRET)
    finally:
        logger.removeHandler(handler)
    assert seen == ["got [REDACTED] back"]
