"""Codex Cloud credentials: env vars first, else the Codex CLI's auth.json. Stdlib only.

The token is kept out of reprs, messages and manifests.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Credentials:
    token: str
    account_id: str | None = None
    source: str = "env"

    def __repr__(self) -> str:  # never print the token
        return (
            f"Credentials(token=<redacted>, account_id={self.account_id!r}, source={self.source!r})"
        )


def codex_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    home = env.get("CODEX_HOME")
    return Path(home).expanduser() if home else Path.home() / ".codex"


def _jwt_account_id(token: str) -> str | None:
    """The ChatGPT account id claim of a JWT access/id token, when present (no signature check)."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        value = claims.get("https://api.openai.com/auth", {}).get("chatgpt_account_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def load_credentials(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """CODEX_CLOUD_TOKEN / CODEX_CLOUD_ACCOUNT_ID, else the Codex CLI's $CODEX_HOME/auth.json."""
    env = os.environ if environ is None else environ
    token = env.get("CODEX_CLOUD_TOKEN", "").strip()
    if token:
        account = env.get("CODEX_CLOUD_ACCOUNT_ID", "").strip() or _jwt_account_id(token)
        return Credentials(token, account or None, "env")
    path = codex_home(env) / "auth.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, dict):
        return None
    access = tokens.get("access_token")
    if not isinstance(access, str) or not access:
        return None
    account = tokens.get("account_id")
    if not isinstance(account, str) or not account:
        id_token = tokens.get("id_token")
        account = _jwt_account_id(access) or (
            _jwt_account_id(id_token) if isinstance(id_token, str) else None
        )
    return Credentials(access, account or None, str(path))


def is_loopback(base_url: str) -> bool:
    """The emulator runs on loopback and needs no credentials."""
    host = urlsplit(base_url).hostname or ""
    return host in {"127.0.0.1", "localhost", "::1"}
