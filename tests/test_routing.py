"""Mode policy, preflight, fallback and configuration layering: pure parts, no server."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from co_sidecar.config import build_config, client_layer, env_layer, file_layer, load_config
from co_sidecar.errors import InvalidParams
from co_sidecar.protocol import LaunchParams
from co_sidecar.router import route
from conftest import git, make_repo

READY_ENV = {"CODEX_CLOUD_TOKEN": "t0k3n", "CODEX_HOME": "/nonexistent"}


def params(**kw: object) -> LaunchParams:
    return LaunchParams.model_validate({"prompt": "p", **kw})


def test_explicit_mode_beats_metadata_and_default(repo: Path) -> None:
    config = build_config({"mode": "cloud"})
    decision = route(params(mode="local", metadata={"parallel": True}), config, repo, READY_ENV)
    assert decision.mode == "local" and decision.reason == "explicit mode 'local'"


def test_parallel_metadata_asks_for_cloud(repo: Path) -> None:
    config = build_config({"cloud": {"envId": "env-1"}})
    decision = route(params(metadata={"parallel": True}), config, repo, READY_ENV)
    assert decision.mode == "cloud" and "parallel=true" in decision.reason and decision.fallback is None


def test_configured_default_applies_last(repo: Path) -> None:
    decision = route(params(), build_config({}), repo, READY_ENV)
    assert decision.mode == "local" and decision.reason == "configured default mode 'local'"


def test_failed_preflight_falls_back_to_local_with_every_issue(repo: Path) -> None:
    decision = route(params(mode="cloud", cloud={"branch": "feature"}), build_config({}), repo, {"CODEX_HOME": "/nonexistent"})
    assert decision.mode == "local" and not decision.denied
    codes = [i.code for i in decision.issues]
    # No origin remote in this repo: the branch cannot be checked, so it is not reported.
    assert codes == ["cloud_env_missing", "cloud_credentials_missing"]
    assert decision.fallback is not None and decision.fallback.at
    assert [i.code for i in decision.fallback.issues] == codes
    assert "falling back to local" in decision.reason


@pytest.mark.parametrize("word", ["deny", "strict", "false", "0", "off", "disabled", "never"])
def test_deny_policy_fails_fast_with_co_words(repo: Path, word: str) -> None:
    config = load_config(repo, {"CODEX_ORCHESTRATOR_CLOUD_FALLBACK": word, "CODEX_HOME": "/nonexistent"})
    decision = route(params(mode="cloud"), config, repo, {"CODEX_HOME": "/nonexistent"})
    assert decision.denied and decision.mode == "cloud" and decision.fallback is None
    assert "fallback policy is deny" in decision.reason


def test_feature_guard_routes_local_even_with_deny(repo: Path) -> None:
    config = load_config(repo, {"CO_CLOUD_ENABLED": "0", "CO_CLOUD_FALLBACK": "deny"})
    decision = route(params(mode="cloud"), config, repo, READY_ENV)
    assert decision.mode == "local" and not decision.denied
    assert [i.code for i in decision.issues] == ["cloud_disabled"]


def test_env_id_sources_in_order(repo: Path) -> None:
    config = build_config({"cloud": {"envId": "from-config"}})
    assert route(params(mode="cloud"), config, repo, READY_ENV).mode == "cloud"
    meta = route(params(mode="cloud", metadata={"cloudEnvId": "m"}), build_config({}), repo, READY_ENV)
    assert meta.mode == "cloud"


def test_branch_must_exist_on_origin(tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "origin")
    git(origin, "branch", "feature")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    config = build_config({"cloud": {"envId": "e"}})
    ok = route(params(mode="cloud", cloud={"branch": "feature"}), config, clone, READY_ENV)
    missing = route(params(mode="cloud", cloud={"branch": "nope"}), config, clone, READY_ENV)
    assert ok.mode == "cloud"
    assert missing.mode == "local" and missing.issues[0].code == "cloud_branch_missing"


def test_loopback_emulator_needs_no_credentials(repo: Path) -> None:
    config = build_config({"cloud": {"envId": "e", "baseUrl": "http://127.0.0.1:9/backend-api"}})
    assert route(params(mode="cloud"), config, repo, {"CODEX_HOME": "/nonexistent"}).mode == "cloud"


def test_cli_adapter_needs_the_codex_cli(repo: Path) -> None:
    config = build_config({"cloud": {"envId": "e", "adapter": "cli", "codexCommand": ["no-such-codex"]}})
    decision = route(params(mode="cloud"), config, repo, {})
    assert [i.code for i in decision.issues] == ["cloud_cli_missing"]


def test_config_layers_lowest_to_highest(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "co-sidecar.toml").write_text('[local]\ntimeoutSeconds = 10\nkeepScratch = true\n[runs]\nroot = "from-file"\n')
    config = load_config(
        ws,
        {"CO_LOCAL_TIMEOUT_SECONDS": "20", "CO_RUNS_ROOT": "from-env"},
        {"co-sidecar": {"runs": {"root": "from-init"}}},
        {"co-sidecar": {"local": {"agentCommand": ["a", "{prompt}"]}}},
    )
    assert config.local.timeout_seconds == 20 and config.local.keep_scratch is True
    assert config.runs.root == "from-init" and config.local.agent_command == ["a", "{prompt}"]


def test_pyproject_tool_section_is_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.co-sidecar.cloud]\nenvId = "py-env"\n')
    assert file_layer(tmp_path) == {"cloud": {"envId": "py-env"}}
    assert load_config(tmp_path, {}).cloud.env_id == "py-env"


def test_agent_command_env_accepts_json_or_words() -> None:
    assert env_layer({"CO_AGENT_COMMAND": '["my agent", "{prompt}"]'})["local"]["agentCommand"] == ["my agent", "{prompt}"]
    assert env_layer({"CO_AGENT_COMMAND": "agent --fast {prompt}"})["local"]["agentCommand"] == ["agent", "--fast", "{prompt}"]


def test_bad_configuration_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "co-sidecar.toml").write_text("[local]\ntimeoutSeconds = -1\n")
    with pytest.raises(InvalidParams, match=r"local\.timeoutSeconds"):
        load_config(tmp_path, {})
    (tmp_path / "co-sidecar.toml").write_text("[local\n")
    with pytest.raises(InvalidParams, match="cannot read configuration file"):
        load_config(tmp_path, {})


def test_client_layer_accepts_nested_or_flat() -> None:
    assert client_layer({"coSidecar": {"mode": "cloud"}}) == {"mode": "cloud"}
    assert client_layer({"mode": "cloud"}) == {"mode": "cloud"}
    assert client_layer(None) == {}


def fake_login_status(tmp_path: Path, answer: str, code: int) -> dict[str, str]:
    """An environ whose `codex login status` prints `answer` and exits `code` (as codex 0.169)."""
    bindir = tmp_path / f"bin-{code}"
    bindir.mkdir()
    script = bindir / "codex"
    script.write_text(f"#!/bin/sh\necho {shlex.quote(answer)} >&2\nexit {code}\n")
    script.chmod(0o755)
    home = tmp_path / f"home-{code}"
    home.mkdir()
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "CODEX_HOME": str(home)}


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_cli_adapter_signed_out_is_cloud_auth(repo: Path, tmp_path: Path, policy: str) -> None:
    environ = fake_login_status(tmp_path, "Not logged in", 1)
    config = build_config({"cloud": {"envId": "e", "adapter": "cli", "fallback": policy}})
    decision = route(params(mode="cloud"), config, repo, environ)
    assert [i.code for i in decision.issues] == ["cloud_auth"]
    assert "codex login" in (decision.issues[0].fix or "")
    if policy == "deny":
        assert decision.denied and decision.mode == "cloud"
        assert "(cloud_auth) and the fallback policy is deny" in decision.reason
    else:
        assert decision.mode == "local" and decision.fallback is not None
        assert "(cloud_auth); falling back to local" in decision.reason


def test_cli_adapter_signed_in_routes_cloud(repo: Path, tmp_path: Path) -> None:
    environ = fake_login_status(tmp_path, "Logged in using ChatGPT", 0)
    config = build_config({"cloud": {"envId": "e", "adapter": "cli", "fallback": "deny"}})
    decision = route(params(mode="cloud"), config, repo, environ)
    assert decision.mode == "cloud" and not decision.issues and not decision.denied
