"""One redactor for the secret values in force (the cloud token, the provider API keys an agent
gets), applied where anything is persisted or sent: manifests (RunRecord.save), every
co/runUpdate and $/progress (RunNotifier.emit, agent output included), events.jsonl and the log.

It replaces values, not names: a token echoed back inside a task's error message, or an API key
an agent prints, is caught wherever it lands.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

MASK = "[REDACTED]"
MIN_LENGTH = 8  # shorter values would mask ordinary words
# Variables whose values are secrets wherever they come from (besides the provider keys the
# user's Codex config names and the cloud credential itself).
SECRET_NAMES = ("CODEX_CLOUD_TOKEN", "CODEX_API_KEY", "OPENAI_API_KEY")
_SECRET_NAME = re.compile(r"(?:^|_)(?:API_KEY|TOKEN|SECRET|PASSWORD)$")

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def add(values: Iterable[str | None]) -> None:
    """Redact these values from now on."""
    global _pattern
    fresh = {v for v in values if isinstance(v, str) and len(v.strip()) >= MIN_LENGTH}
    with _lock:
        if fresh <= _values:
            return
        _values.update(fresh)
        _values.update(v.strip() for v in fresh)
        # Longest first, so a value that contains another is masked whole.
        _pattern = re.compile("|".join(re.escape(v) for v in sorted(_values, key=len, reverse=True)))


def clear() -> None:
    """Forget every value (tests)."""
    global _pattern
    with _lock:
        _values.clear()
        _pattern = None


def secrets_in(environ: Mapping[str, str]) -> list[str]:
    """The secret values an environment carries: the cloud credential (env or auth.json), the
    provider keys the agent may get, and any *_API_KEY / *_TOKEN / *_SECRET / *_PASSWORD."""
    from .cloud.auth import load_credentials
    from .local.agent import codex_provider_keys

    names = {*SECRET_NAMES, *codex_provider_keys(environ)}
    values = [value for name, value in environ.items() if name in names or _SECRET_NAME.search(name.upper())]
    credentials = load_credentials(environ)
    if credentials is not None:
        values.append(credentials.token)
    return values


def refresh(environ: Mapping[str, str] | None = None) -> None:
    """Add the secrets of `environ` (the server's own by default)."""
    add(secrets_in(os.environ if environ is None else environ))


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def active() -> bool:
    return _pattern is not None


def redact_json(value: Any) -> Any:
    """A copy of a JSON value with every string redacted (the same object when nothing is to)."""
    if _pattern is None:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    return value


def redact_model(model: BaseModel) -> None:
    """Redact, in place, every string a pydantic model holds (nested models, lists, dicts and
    extra fields included): the manifest in memory is what co/status answers with."""
    if _pattern is None:
        return
    for name in [*type(model).model_fields, *(model.model_extra or {})]:
        value = getattr(model, name, None)
        new = _redacted(value)
        if new is not value:
            setattr(model, name, new)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        new = redact(value)
        return new if new != value else value
    if isinstance(value, BaseModel):
        redact_model(value)
        return value
    if isinstance(value, list):
        items = [_redacted(v) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, dict):
        pairs = {k: _redacted(v) for k, v in value.items()}
        return pairs if any(pairs[k] is not value[k] for k in value) else value
    return value


class RedactingFilter(logging.Filter):
    """Rewrites a log record's message (and traceback text) with the secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Mask secrets in everything the root logger's handlers write (idempotent)."""
    for handler in (logger or logging.getLogger()).handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
