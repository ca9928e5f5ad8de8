"""No surprises at the edges of configuration: a bad co-sidecar.toml is a config error naming the
file and key (no traceback), unknown keys are reported with the nearest valid one in every
layer, unknown values are errors naming the allowed words."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from co_sidecar.config import load_config, normalize_fallback
from co_sidecar.errors import InvalidParams
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from rpc import RpcError, RpcProcess  # noqa: E402

CLI = [sys.executable, "-m", "co_sidecar"]


def doctor(repo: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [*CLI, "doctor", "--workspace", str(repo)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "XDG_CONFIG_HOME": str(repo / ".no-user-config"), **(env or {})},
    )  # fmt: skip


BAD_FILES = [
    ("[local\n", "co-sidecar.toml", None),
    ("[local]\ntimeoutSeconds = -1\n", "co-sidecar.toml", "local.timeoutSeconds"),
    ('[cloud]\nfallback = "dney"\n', "co-sidecar.toml", "cloud.fallback"),
    ('mode = "sideways"\n', "co-sidecar.toml", "mode"),
    ("[local]\nmaxConcurrent = \"four\"\n", "co-sidecar.toml", "local.maxConcurrent"),
    ("\xff\xfe", "co-sidecar.toml", None),
]


@pytest.mark.parametrize(("text", "file", "key"), BAD_FILES)
def test_doctor_with_a_bad_config_file_is_a_config_error_not_a_traceback(
    repo: Path, text: str, file: str, key: str | None
) -> None:
    (repo / file).write_bytes(text.encode("latin-1"))
    result = doctor(repo)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("co-sidecar doctor: config error:")
    assert str(repo / file) in result.stderr
    if key:
        assert key in result.stderr


def test_bad_user_config_and_bad_env_are_config_errors_too(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "cfg"
    (home / "co-sidecar").mkdir(parents=True)
    (home / "co-sidecar" / "config.toml").write_text("trustedWorkspaces = 3\n")
    result = doctor(repo, {"XDG_CONFIG_HOME": str(home)})
    assert result.returncode == 2 and "trustedWorkspaces" in result.stderr and "Traceback" not in result.stderr
    bad = doctor(repo, {"CO_CLOUD_FALLBACK": "dney"})
    assert bad.returncode == 2 and "CO_CLOUD_FALLBACK" in bad.stderr and "'dney'" in bad.stderr
    assert "deny (" in bad.stderr and "allow (" in bad.stderr  # names the allowed words


@pytest.mark.parametrize("word", ["dney", "maybe", "denied", ""])
def test_unknown_fallback_words_are_errors(word: str) -> None:
    if word == "":
        return  # unset
    with pytest.raises(ValueError, match="not a fallback policy"):
        normalize_fallback(word)


@pytest.mark.parametrize("word", ["allow", "ALLOW", "true", "1"])
def test_allow_words(word: str) -> None:
    assert normalize_fallback(word) == "allow"


def test_cloud_enabled_takes_only_known_words(repo: Path) -> None:
    assert load_config(repo, {"CO_CLOUD_ENABLED": "off"}).cloud.enabled is False
    assert load_config(repo, {"CO_CLOUD_ENABLED": "yes"}).cloud.enabled is True
    with pytest.raises(InvalidParams, match="CO_CLOUD_ENABLED"):
        load_config(repo, {"CO_CLOUD_ENABLED": "nope"})


def test_unknown_keys_in_every_layer_name_the_nearest(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "cfg"
    (home / "co-sidecar").mkdir(parents=True)
    (home / "co-sidecar" / "config.toml").write_text("[cloud]\nenvID = 'e'\n")
    (repo / "co-sidecar.toml").write_text("[local]\nagentComand = ['x']\n[diff]\nmaxFile = 3\n")
    warnings: list[str] = []
    load_config(
        repo,
        {"XDG_CONFIG_HOME": str(home), "CO_AGENT_COMAND": "x", "CO_LOCAL_TIMEOUT_SECOND": "3"},
        {"co-sidecar": {"locl": {}, "cloud": {"poll": {"intervalSecond": 1}}}},
        {"modee": "local"},
        warnings,
    )
    text = "\n".join(warnings)
    assert "cloud.envID (did you mean cloud.envId?)" in text and "config.toml" in text
    assert "local.agentComand (did you mean local.agentCommand?)" in text and "diff.maxFile (did you mean diff.maxFiles?)" in text
    assert "CO_AGENT_COMAND (did you mean CO_AGENT_COMMAND?)" in text
    assert "CO_LOCAL_TIMEOUT_SECOND (did you mean CO_LOCAL_TIMEOUT_SECONDS?)" in text
    assert "locl (did you mean local?)" in text and "cloud.poll.intervalSecond (did you mean cloud.poll.intervalSeconds?)" in text
    assert "modee (did you mean mode?)" in text and "workspace/didChangeConfiguration" in text


def test_unknown_keys_over_stdio_reach_launch_warnings_and_doctor(repo: Path) -> None:
    (repo / "co-sidecar.toml").write_text("[local]\ntimeoutSecond = 5\n")
    server = RpcProcess(cwd=repo, env={"XDG_CONFIG_HOME": str(repo / ".none")})
    try:
        server.initialize(repo, {"local": {"agentCommand": [sys.executable, "-c", "pass"], "keepScrach": True}})
        run = server.request("co/launch", {"prompt": "p", "mode": "local"})
        text = " | ".join(w["message"] for w in run["warnings"])
        assert "local.timeoutSecond (did you mean local.timeoutSeconds?)" in text
        assert "local.keepScrach (did you mean local.keepScratch?)" in text
        checks = server.request("co/doctor", {})["checks"]
        assert sum(c["code"] == "config_warning" for c in checks) == 2
        (repo / "co-sidecar.toml").write_text('[cloud]\nfallback = "dney"\n')
        with pytest.raises(RpcError) as bad:
            server.request("co/launch", {"prompt": "p", "mode": "local"})
        assert bad.value.code == -32602 and "cloud.fallback" in bad.value.message
        assert str(repo / "co-sidecar.toml") in bad.value.message
        assert server.alive()
    finally:
        server.close()


def test_doctor_json_is_parseable_with_warnings(repo: Path) -> None:
    (repo / "co-sidecar.toml").write_text("[local]\nagentComand = ['x']\n")
    out = subprocess.run(  # noqa: S603
        [*CLI, "doctor", "--workspace", str(repo), "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "XDG_CONFIG_HOME": str(repo / ".none")},
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert any("did you mean local.agentCommand" in c["message"] for c in report["checks"])
    assert out.stderr == ""


def test_lua_empty_table_settings_are_no_unknown_key(repo: Path) -> None:
    warnings: list[str] = []
    load_config(repo, {"XDG_CONFIG_HOME": str(repo / ".none")}, {"co-sidecar": []}, {"co-sidecar": []}, warnings)
    assert warnings == []
