"""Configuration: defaults < co-sidecar.toml / [tool.co-sidecar] < env < initializationOptions < didChangeConfiguration.

Keys are camelCase sections (`local.agentCommand`, `cloud.envId`, ...), the
same in TOML files, initializationOptions and workspace settings.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shlex
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from .errors import ErrorCategory, InvalidParams

log = logging.getLogger(__name__)
_logged: set[str] = set()

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
        'The agent argv; an element "{prompt}" becomes the prompt as one argument (also in $CO_PROMPT '
        'while it fits one variable), "{promptFile}" the path of a file holding it (also in $CO_PROMPT_FILE; '
        'for prompts over 128 KiB, which no argument can hold), "{workdir}" the scratch directory it runs in. Default when codex is on PATH: '
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
    max_prompt_bytes: int = doc(
        1_000_000,
        "The largest prompt (UTF-8 bytes) co/launch takes; a larger one is refused (prompt_too_large). "
        "Up to it a local agent gets the prompt as an argument while it fits one (128 KiB on Linux), "
        "then codex on stdin and other agents through {promptFile} / $CO_PROMPT_FILE.",
        ge=1,
    )


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
    env_id: str | None = doc(
        None,
        "Codex Cloud environment: an id or a label (case-insensitive). None: detected from the "
        "workspace's GitHub origin, as `codex cloud` does.",
    )
    branch: str | None = doc(
        None,
        "Branch the cloud task starts from; must exist on origin. None: the workspace's current "
        "branch, else its default branch, else main.",
    )
    start_from_local_changes: bool = doc(
        False,
        "Start cloud tasks from your uncommitted changes and the commits origin lacks (sent as "
        "the task's starting diff), so their diff applies to the workspace as it is.",
    )
    starting_diff_max_bytes: int = doc(
        2_000_000, "Largest starting diff startFromLocalChanges sends (the CLI adapter: at most 128 KiB).", ge=1
    )
    fallback: Literal["allow", "deny"] = doc(
        "allow", "When cloud preflight fails: allow runs it locally, deny fails the run."
    )
    adapter: Literal["http", "cli"] = doc("http", "Talk to Codex Cloud over its HTTP task API or the codex CLI.")
    base_url: str = doc("https://chatgpt.com/backend-api", "Base URL of the task API.")
    codex_command: list[str] = doc(lambda: ["codex"], "argv prefix of the Codex CLI (cli adapter).")
    qa_mode: bool = doc(False, "Ask the service to run the environment in QA mode.")
    max_response_bytes: int = doc(
        128 * 1024 * 1024,
        "The largest task API response read (a task's diff arrives inside one): a larger one is "
        "refused (cloud_protocol) without being read whole. Keep it above diff.maxPatchBytes.",
        ge=1024,
    )
    poll: PollConfig = doc(PollConfig, "Polling knobs.")


class DiffConfig(Section):
    max_files: int = doc(500, "Diff budget: more files than this needs force to apply.", ge=1)
    max_lines: int = doc(50_000, "Diff budget: more added+deleted lines than this needs force.", ge=1)
    max_patch_bytes: int = doc(50_000_000, "Diff budget: a larger patch needs force.", ge=1)
    hard_max_patch_bytes: int = doc(
        200_000_000,
        "Hard limit: a patch larger than this is refused by co/diff and co/apply, even with force "
        "(it is kept on disk as evidence but never parsed or given to git apply). A local run whose "
        "change is larger fails with local_patch_too_large (the patch is not read past it).",
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


TRUE_WORDS = frozenset({"1", "true", "yes", "on", "enabled"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "disabled", "never"})
ALLOW_WORDS = frozenset({"allow", "true", "1", "on", "enabled", "yes"})


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{text!r} is not one of {', '.join(sorted(TRUE_WORDS | FALSE_WORDS))}")


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
    """CO's fallback words; an unknown word is an error (`dney` once meant allow)."""
    key = word.strip().lower()
    if key in DENY_WORDS:
        return "deny"
    if key in ALLOW_WORDS:
        return "allow"
    raise ValueError(
        f"{word!r} is not a fallback policy: deny ({', '.join(sorted(DENY_WORDS))}) "
        f"or allow ({', '.join(sorted(ALLOW_WORDS))})"
    )


# (variable, config key, parser); the first variable found wins for a key.
ENV_VARS: list[tuple[str, str, Callable[[str], Any]]] = [
    ("CO_AGENT_COMMAND", "local.agentCommand", parse_argv),
    ("CO_LOCAL_TIMEOUT_SECONDS", "local.timeoutSeconds", float),
    ("CO_MAX_PROMPT_BYTES", "runs.maxPromptBytes", int),
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


def workspace_config_file(workspace: Path | None) -> tuple[Path | None, dict[str, Any]]:
    """`co-sidecar.toml` at the workspace root, else `[tool.co-sidecar]` in its pyproject.toml:
    the file (None when neither) and its settings."""
    if workspace is None:
        return None, {}
    own = workspace / "co-sidecar.toml"
    if own.is_file():
        return own, read_toml(own)
    pyproject = workspace / "pyproject.toml"
    if pyproject.is_file():
        section = read_toml(pyproject).get("tool", {}).get("co-sidecar", {})
        return pyproject, section if isinstance(section, dict) else {}
    return None, {}


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InvalidParams(
            f"cannot read configuration file {path}: {exc}", category=ErrorCategory.CONFIG, data={"file": str(path)}
        ) from exc


def file_layer(workspace: Path | None) -> dict[str, Any]:
    """The workspace file's settings (see `workspace_config_file`)."""
    return workspace_config_file(workspace)[1]


# Keys of initializationOptions / settings that are not settings.
CLIENT_ONLY_KEYS = frozenset({"workspaceTrusted", "authToken"})


def client_layer(options: Any) -> dict[str, Any]:
    """initializationOptions or didChangeConfiguration settings, nested or under "co-sidecar"."""
    if not isinstance(options, Mapping):
        return {}
    for key in ("co-sidecar", "coSidecar", "co_sidecar"):
        if key in options:  # Lua clients send an empty table as [], so not always a Mapping
            nested = options[key]
            return {k: v for k, v in nested.items() if k not in CLIENT_ONLY_KEYS} if isinstance(nested, Mapping) else {}
    return {k: v for k, v in options.items() if k not in CLIENT_ONLY_KEYS}


def client_trusts(*client: Any) -> bool:
    """The editor passed its workspace trust: `workspaceTrusted: true` in initializationOptions
    (top level or under "co-sidecar")."""
    for options in client:
        if not isinstance(options, Mapping):
            continue
        if options.get("workspaceTrusted") is True:
            return True
        for key in ("co-sidecar", "coSidecar", "co_sidecar"):
            nested = options.get(key)
            if isinstance(nested, Mapping) and nested.get("workspaceTrusted") is True:
                return True
    return False


# -- trust ------------------------------------------------------------------------------------

# Settings that choose what runs on this machine or where credentials go. A workspace's own
# file (co-sidecar.toml, pyproject.toml) may set them only when the user trusts the workspace:
# a cloned repository must not aim the user's token at its host or run its code on open.
TRUSTED_KEYS: dict[str, str] = {
    "local.agentCommand": "the program run as the agent",
    "local.envAllow": "which of your environment variables (secrets) the agent gets",
    "local.codex.profile": "the Codex profile (its model provider and where your key goes)",
    "local.codex.extraArgs": "extra codex flags (-c overrides: provider, base URL, sandbox)",
    "local.codex.sandbox": "how much the agent may do outside its copy",
    "cloud.baseUrl": "the host your Codex Cloud token is sent to",
    "cloud.adapter": "whether the codex CLI is run for cloud tasks",
    "cloud.codexCommand": "the program run as the Codex CLI",
    "runs.root": "where run records are written (only when outside the workspace)",
}
USER_ONLY_KEYS = frozenset({"trustedWorkspaces"})


def user_config_path(environ: Mapping[str, str]) -> Path:
    """The user's own configuration: $XDG_CONFIG_HOME/co-sidecar/config.toml (~/.config/...)."""
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME") or str(Path.home()), ".config")
    return Path(base) / "co-sidecar" / "config.toml"


def trusted_workspaces(user: Mapping[str, Any], path: Path) -> list[Path]:
    value = user.get("trustedWorkspaces", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParams(
            f"invalid configuration trustedWorkspaces in {path}: must be a list of paths",
            category=ErrorCategory.CONFIG,
            data={"file": str(path), "key": "trustedWorkspaces"},
        )
    return [Path(os.path.expanduser(v)).resolve() for v in value]


def is_trusted(workspace: Path, trusted: list[Path]) -> bool:
    """A listed folder trusts itself and everything below it."""
    here = workspace.resolve()
    return any(here == t or t in here.parents for t in trusted)


def _get(layer: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = layer
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _drop(layer: dict[str, Any], key: str) -> None:
    *parents, last = key.split(".")
    node: Any = layer
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(last, None)


def _inside(workspace: Path, root: Any) -> bool:
    if not isinstance(root, str):
        return False
    target = Path(root) if os.path.isabs(root) else workspace / root
    try:
        target.resolve().relative_to(workspace.resolve())
    except ValueError:
        return False
    return True


def untrusted_settings(layer: dict[str, Any], workspace: Path) -> list[str]:
    """Drop the TRUSTED_KEYS an untrusted workspace's file sets (in place); their names."""
    dropped: list[str] = []
    for key in TRUSTED_KEYS:
        for spelling in dict.fromkeys([key, ".".join(_snake(p) for p in key.split("."))]):
            found, value = _get(layer, spelling)
            if not found or (key == "runs.root" and _inside(workspace, value)):
                continue
            _drop(layer, spelling)
            if key not in dropped:
                dropped.append(key)
    return dropped


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def trust_hint(workspace: Path, environ: Mapping[str, str]) -> str:
    return (
        f'to trust {workspace}, add it to trustedWorkspaces in {user_config_path(environ)} '
        f'(trustedWorkspaces = ["{workspace}"]) or trust the workspace in your editor'
    )


# -- unknown keys -----------------------------------------------------------------------------


@functools.cache
def known_keys(model: type[BaseModel] | None = None, prefix: str = "") -> dict[str, type[BaseModel] | None]:
    """Every settings key (camelCase and snake_case), dotted, with its section model if any."""
    model = model or Config
    keys: dict[str, type[BaseModel] | None] = {}
    for name, field in model.model_fields.items():
        sub = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        for spelling in {field.alias or to_camel(name), name}:
            keys[prefix + spelling] = sub
            if sub is not None:
                keys.update(known_keys(sub, prefix + spelling + "."))
    return keys


def unknown_keys(layer: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of `layer` that are no setting, each with the nearest valid key if any."""
    import difflib

    known = known_keys()
    found: list[str] = []
    for key, value in layer.items():
        dotted = prefix + str(key)
        if dotted in known:
            if known[dotted] is not None and isinstance(value, Mapping):
                found += unknown_keys(value, dotted + ".")
            continue
        siblings = [k for k in known if k.rsplit(".", 1)[0] == prefix.rstrip(".") or (not prefix and "." not in k)]
        near = difflib.get_close_matches(dotted, siblings or list(known), n=1, cutoff=0.6)
        found.append(f"{dotted} (did you mean {near[0]}?)" if near else dotted)
    return found


KNOWN_ENV = frozenset(name for name, _, _ in ENV_VARS) | {
    "CO_SCRATCH_ROOT", "CO_MAX_MESSAGE_BYTES", "CO_PROMPT", "CO_PROMPT_FILE", "CO_RUN_ID",
    "CO_TASK_ID", "CO_WORKSPACE", "CODEX_CLOUD_TOKEN", "CODEX_CLOUD_ACCOUNT_ID",
}  # fmt: skip


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """CO_* / CODEX_CLOUD_* variables that look like a misspelt setting variable."""
    import difflib

    names = sorted(name for name, _, _ in ENV_VARS)
    found = []
    for name in environ:
        if name in KNOWN_ENV or not (name.startswith("CO_") or name.startswith("CODEX_CLOUD_")):
            continue
        near = difflib.get_close_matches(name, names, n=1, cutoff=0.8)
        if near:
            found.append(f"{name} (did you mean {near[0]}?)")
    return found


# -- building ---------------------------------------------------------------------------------


def build_config(*layers: Mapping[str, Any], names: list[str] | None = None) -> Config:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        where = ".".join(loc)
        source = ""
        if names:  # the highest layer that sets the key is the one to fix
            for layer, name in zip(reversed(layers), reversed(names), strict=True):
                if _get(layer, ".".join(loc[:2]))[0] or _get(layer, loc[0])[0]:
                    source = f" (from {name})"
                    break
        raise InvalidParams(
            f"invalid configuration {where}{source}: {first['msg']}", category=ErrorCategory.CONFIG, data={"key": where}
        ) from exc


def load_config(
    workspace: Path | None,
    environ: Mapping[str, str] | None = None,
    client_options: Any = None,
    client_settings: Any = None,
    warnings: list[str] | None = None,
) -> Config:
    """All layers: defaults < the user's config.toml < the workspace's file < environment <
    initializationOptions < didChangeConfiguration. Settings in TRUSTED_KEYS come from the
    workspace's file only when the workspace is trusted; what is ignored, and unknown keys,
    are added to `warnings` (and logged)."""
    environ = os.environ if environ is None else environ
    notes: list[str] = []
    user_path = user_config_path(environ)
    user = read_toml(user_path) if user_path.is_file() else {}
    trusted = trusted_workspaces(user, user_path)
    user = {k: v for k, v in user.items() if k not in USER_ONLY_KEYS}
    file_path, workspace_file = workspace_config_file(workspace)
    try:
        env = env_layer(environ)
    except ValueError as exc:
        raise InvalidParams(f"invalid environment setting: {exc}", category=ErrorCategory.CONFIG) from exc
    client, settings = client_layer(client_options), client_layer(client_settings)
    trusts = client_trusts(client_options, client_settings)
    if file_path is not None and workspace is not None and not (trusts or is_trusted(workspace, trusted)):
        # Worth a warning only where no higher layer sets the key anyway.
        dropped = [
            key
            for key in untrusted_settings(workspace_file, workspace)
            if not any(_get(layer, key)[0] for layer in (env, client, settings))
        ]
        if dropped:
            notes.append(
                f"{file_path.name} sets {', '.join(dropped)}; ignored because this workspace is "
                f"not trusted ({trust_hint(workspace, environ)})"
            )
    layers: list[tuple[str, dict[str, Any]]] = [
        (str(user_path), user),
        (str(file_path) if file_path else "workspace file", workspace_file),
        ("the environment", env),
        ("initializationOptions", client),
        ("workspace/didChangeConfiguration", settings),
    ]
    for name, layer in layers:
        unknown = unknown_keys(layer)
        if unknown:
            notes.append(f"unknown setting{'s' if len(unknown) > 1 else ''} in {name}: {'; '.join(unknown)}")
    for name in unknown_env(environ):
        notes.append(f"unknown environment variable {name}")
    config = build_config(*(layer for _, layer in layers), names=[name for name, _ in layers])
    for note in notes:
        if note not in _logged:  # config is read on every call: say each thing once
            _logged.add(note)
            log.warning("%s", note)
    if warnings is not None:
        warnings.extend(notes)
    return config
