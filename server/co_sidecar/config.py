"""Configuration: defaults < co-sidecar.toml / [tool.co-sidecar] < env < initializationOptions < didChangeConfiguration.

Keys are camelCase sections (`local.agentCommand`, `cloud.envId`, ...), the
same in TOML files, initializationOptions and workspace settings.
"""

from __future__ import annotations

import json
import os
import shlex
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from .errors import InvalidParams

# Words CO (codex-orchestrator) accepts to mean "never fall back to local".
DENY_WORDS = frozenset({"deny", "strict", "false", "0", "off", "disabled", "never"})


class Section(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def doc(default: Any = None, text: str = "", **kw: Any) -> Any:
    """A field with its documentation (docs/configuration.md is generated from these)."""
    if callable(default):
        return Field(default_factory=default, description=text, **kw)
    return Field(default=default, description=text, **kw)


class CodexLocalConfig(Section):
    model: str | None = doc(None, "`--model` for the default Codex agent (unset: codex's own default).")
    profile: str | None = doc(None, "`--profile` (a profile of $CODEX_HOME/config.toml) for the default Codex agent.")
    sandbox: Literal["read-only", "workspace-write", "danger-full-access"] = doc(
        "workspace-write", "`--sandbox` of the default Codex agent (read-only produces no diff)."
    )
    extra_args: list[str] = doc(list, "More arguments for `codex exec`, before the prompt (e.g. [\"-c\", \"model_reasoning_effort=high\"]).")


class ScratchPoolConfig(Section):
    size: int = doc(
        2,
        "Scratch checkouts kept per repository for reuse (least recently used evicted beyond "
        "this); each holds one checkout on disk. 0: a fresh one per run, removed after it.",
        ge=0,
    )


class LocalConfig(Section):
    agent_command: list[str] | None = doc(
        None,
        'The agent argv; an element "{prompt}" becomes the prompt as one argument (also in $CO_PROMPT), '
        '"{workdir}" the scratch directory it runs in. Default when codex is on PATH: '
        "codex exec --json --sandbox workspace-write -C {workdir} -- {prompt} (the form the installed "
        "version accepts, see docs/codex.md; shaped by local.codex).",
    )
    output: Literal["auto", "text", "codex-json"] = doc(
        "auto",
        "How to read the agent's stdout: codex-json parses `codex exec --json` events into steps; "
        "text forwards lines. auto: codex-json for the default Codex agent or a codex command with --json.",
    )
    codex: CodexLocalConfig = doc(CodexLocalConfig, "The default Codex agent's flags.")
    timeout_seconds: float = doc(1800.0, "Kill the agent's process group after this long.", gt=0)
    keep_scratch: bool = doc(False, "Keep the scratch checkout after the run, out of the pool (its path is in the manifest).")
    scratch_pool: ScratchPoolConfig = doc(ScratchPoolConfig, "The pool of reused scratch checkouts.")
    max_concurrent: int = doc(4, "Local runs at once per workspace; more wait in state queued.", ge=1)
    max_output_bytes: int = doc(1_000_000, "Agent output kept per stream (the tail) in the manifest.", ge=1024)
    env_allow: list[str] = doc(
        list, "Extra environment variable names (fnmatch patterns) passed to the agent besides the allowlist."
    )


class RunsConfig(Section):
    root: str = doc(".runs", "Where manifests and patches live; relative to the workspace.")


class PollConfig(Section):
    interval_seconds: float = doc(2.0, "First wait between polls.", gt=0)
    max_interval_seconds: float = doc(30.0, "Cap of the backoff between polls.", gt=0)
    backoff: float = doc(1.6, "Multiplier of the interval after each poll.", ge=1.0)
    jitter: float = doc(0.1, "Random fraction added to or taken from each wait.", ge=0.0, le=1.0)
    max_retries: int = doc(5, "Transient errors in a row before the run fails.", ge=0)
    timeout_seconds: float = doc(3600.0, "Overall time before the run is timed_out.", gt=0)
    request_timeout_seconds: float = doc(30.0, "Timeout of one HTTP request or CLI call.", gt=0)
    shared: bool = doc(
        True,
        "http adapter: one task-list call per poll round serves every live run of the account; a "
        "run fetches its own task details only when the list shows it finished or missing. "
        "false: one details call per run per poll.",
    )


class CloudConfig(Section):
    enabled: bool = doc(True, "Feature guard: false routes every run local and never touches the cloud.")
    env_id: str | None = doc(None, "Codex Cloud environment id.")
    branch: str | None = doc(None, "Branch the cloud task starts from; must exist on origin.")
    fallback: Literal["allow", "deny"] = doc(
        "allow", "When cloud preflight fails: allow runs it locally, deny fails the run."
    )
    adapter: Literal["http", "cli"] = doc("http", "Talk to Codex Cloud over its HTTP task API or the codex CLI.")
    base_url: str = doc("https://chatgpt.com/backend-api", "Base URL of the task API.")
    codex_command: list[str] = doc(lambda: ["codex"], "argv prefix of the Codex CLI (cli adapter).")
    qa_mode: bool = doc(False, "Ask the service to run the environment in QA mode.")
    poll: PollConfig = doc(PollConfig, "Polling knobs.")


class DiffConfig(Section):
    max_files: int = doc(500, "Diff budget: more files than this needs force to apply.", ge=1)
    max_lines: int = doc(50_000, "Diff budget: more added+deleted lines than this needs force.", ge=1)
    max_patch_bytes: int = doc(50_000_000, "Diff budget: a larger patch needs force.", ge=1)
    hard_max_patch_bytes: int = doc(
        200_000_000,
        "Hard limit: a patch larger than this is refused by co/diff and co/apply, even with force "
        "(it is kept on disk as evidence but never parsed or given to git apply).",
        ge=1,
    )


class Config(Section):
    mode: Literal["local", "cloud"] = doc("local", "Default mode when neither the request nor the task asks.")
    local: LocalConfig = doc(LocalConfig, "Local execution.")
    runs: RunsConfig = doc(RunsConfig, "Run records.")
    cloud: CloudConfig = doc(CloudConfig, "Codex Cloud execution.")
    diff: DiffConfig = doc(DiffConfig, "Diff handling.")


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


def parse_argv(text: str) -> list[str]:
    """An argv given as text: a JSON list of strings, or shell-style words."""
    text = text.strip()
    if text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a JSON list of strings")
        return value
    return shlex.split(text)


def normalize_fallback(word: str) -> str:
    return "deny" if word.strip().lower() in DENY_WORDS else "allow"


# (variable, config key, parser); the first variable found wins for a key.
ENV_VARS: list[tuple[str, str, Callable[[str], Any]]] = [
    ("CO_AGENT_COMMAND", "local.agentCommand", parse_argv),
    ("CO_LOCAL_TIMEOUT_SECONDS", "local.timeoutSeconds", float),
    ("CO_RUNS_ROOT", "runs.root", str),
    ("CO_CLOUD_ENABLED", "cloud.enabled", _parse_bool),
    ("CODEX_CLOUD_ENV_ID", "cloud.envId", str),
    ("CODEX_CLOUD_BRANCH", "cloud.branch", str),
    ("CO_CLOUD_BASE_URL", "cloud.baseUrl", str),
    ("CO_CLOUD_ADAPTER", "cloud.adapter", str),
    ("CO_CLOUD_FALLBACK", "cloud.fallback", normalize_fallback),
    ("CODEX_ORCHESTRATOR_CLOUD_FALLBACK", "cloud.fallback", normalize_fallback),
]


def env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from environment variables (CO's names included); see docs/configuration.md."""
    layer: dict[str, Any] = {}
    for name, key, parse in ENV_VARS:
        value = environ.get(name)
        if value is None or value == "":
            continue
        section, field = key.split(".")
        try:
            layer.setdefault(section, {}).setdefault(field, parse(value))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from exc
    return layer


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
