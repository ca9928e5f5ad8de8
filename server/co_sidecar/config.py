"""Configuration: defaults < co-sidecar.toml / [tool.co-sidecar] < env < initializationOptions < didChangeConfiguration.

Keys are camelCase sections (`local.agentCommand`, `cloud.envId`, ...), the
same in TOML files, initializationOptions and workspace settings.
"""

from __future__ import annotations

import json
import os
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from .errors import InvalidParams

# Words CO (codex-orchestrator) accepts to mean "never fall back to local".
DENY_WORDS = frozenset({"deny", "strict", "false", "0", "off", "disabled", "never"})


class Section(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class LocalConfig(Section):
    agent_command: list[str] | None = None
    timeout_seconds: float = Field(default=1800.0, gt=0)
    keep_scratch: bool = False
    max_concurrent: int = Field(default=4, ge=1)
    max_output_bytes: int = Field(default=1_000_000, ge=1024)
    # Environment variables passed to the agent besides the built-in allowlist.
    env_allow: list[str] = Field(default_factory=list)


class RunsConfig(Section):
    root: str = ".runs"


class PollConfig(Section):
    interval_seconds: float = Field(default=2.0, gt=0)
    max_interval_seconds: float = Field(default=30.0, gt=0)
    backoff: float = Field(default=1.6, ge=1.0)
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)
    max_retries: int = Field(default=5, ge=0)
    timeout_seconds: float = Field(default=3600.0, gt=0)
    request_timeout_seconds: float = Field(default=30.0, gt=0)


class CloudConfig(Section):
    enabled: bool = True
    env_id: str | None = None
    branch: str | None = None
    fallback: Literal["allow", "deny"] = "allow"
    adapter: Literal["http", "cli"] = "http"
    base_url: str = "https://chatgpt.com/backend-api"
    codex_command: list[str] = Field(default_factory=lambda: ["codex"])
    qa_mode: bool = False
    poll: PollConfig = Field(default_factory=PollConfig)


class DiffConfig(Section):
    max_files: int = Field(default=500, ge=1)
    max_lines: int = Field(default=50_000, ge=1)
    max_patch_bytes: int = Field(default=50_000_000, ge=1)


class Config(Section):
    mode: Literal["local", "cloud"] = "local"
    local: LocalConfig = Field(default_factory=LocalConfig)
    runs: RunsConfig = Field(default_factory=RunsConfig)
    cloud: CloudConfig = Field(default_factory=CloudConfig)
    diff: DiffConfig = Field(default_factory=DiffConfig)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _parse_bool(text: str) -> bool:
    return text.strip().lower() not in {"", "0", "false", "no", "off", "disabled", "never"}


def _parse_argv(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a JSON list of strings")
        return value
    return shlex.split(text)


def env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from environment variables (CO's names included); see docs/configuration.md."""
    layer: dict[str, Any] = {}

    def put(section: str, key: str, value: Any) -> None:
        layer.setdefault(section, {})[key] = value

    if v := environ.get("CO_AGENT_COMMAND"):
        put("local", "agentCommand", _parse_argv(v))
    if v := environ.get("CO_LOCAL_TIMEOUT_SECONDS"):
        put("local", "timeoutSeconds", float(v))
    if v := environ.get("CO_RUNS_ROOT"):
        put("runs", "root", v)
    if v := environ.get("CODEX_CLOUD_ENV_ID"):
        put("cloud", "envId", v)
    if v := environ.get("CODEX_CLOUD_BRANCH"):
        put("cloud", "branch", v)
    if v := environ.get("CO_CLOUD_BASE_URL"):
        put("cloud", "baseUrl", v)
    if v := environ.get("CO_CLOUD_ADAPTER"):
        put("cloud", "adapter", v)
    if (v := environ.get("CO_CLOUD_ENABLED")) is not None:
        put("cloud", "enabled", _parse_bool(v))
    fallback = environ.get("CO_CLOUD_FALLBACK") or environ.get("CODEX_ORCHESTRATOR_CLOUD_FALLBACK")
    if fallback:
        put("cloud", "fallback", normalize_fallback(fallback))
    return layer


def normalize_fallback(word: str) -> str:
    return "deny" if word.strip().lower() in DENY_WORDS else "allow"


def file_layer(workspace: Path | None) -> dict[str, Any]:
    """`co-sidecar.toml` at the workspace root, else `[tool.co-sidecar]` in its pyproject.toml."""
    if workspace is None:
        return {}
    own = workspace / "co-sidecar.toml"
    try:
        if own.is_file():
            return tomllib.loads(own.read_text(encoding="utf-8"))
        pyproject = workspace / "pyproject.toml"
        if pyproject.is_file():
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            section = data.get("tool", {}).get("co-sidecar", {})
            return section if isinstance(section, dict) else {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidParams(f"cannot read configuration file: {exc}", category="config") from exc
    return {}


def client_layer(options: Any) -> dict[str, Any]:
    """initializationOptions or didChangeConfiguration settings, nested or under "co-sidecar"."""
    if not isinstance(options, Mapping):
        return {}
    for key in ("co-sidecar", "coSidecar", "co_sidecar"):
        nested = options.get(key)
        if isinstance(nested, Mapping):
            return dict(nested)
    return dict(options)


def build_config(*layers: Mapping[str, Any]) -> Config:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidParams(f"invalid configuration {where}: {first['msg']}", category="config") from exc


def load_config(
    workspace: Path | None,
    environ: Mapping[str, str] | None = None,
    client_options: Any = None,
    client_settings: Any = None,
) -> Config:
    environ = os.environ if environ is None else environ
    try:
        env = env_layer(environ)
    except ValueError as exc:
        raise InvalidParams(f"invalid environment setting: {exc}", category="config") from exc
    return build_config(
        file_layer(workspace), env, client_layer(client_options), client_layer(client_settings)
    )
