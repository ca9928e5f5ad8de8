"""The installed Codex CLI: its version (read once per binary), its sign-in state, and the
`codex exec` form each known version accepts. Shared by the local agent, the cloud CLI
adapter's preflight and doctor. See docs/codex.md."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

Version = tuple[int, int, int]
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
VERSION_TIMEOUT_S = 15.0
LOGIN_TIMEOUT_S = 15.0
# Sign-in changes rarely and `codex login status` costs a node start (~0.2 s): reuse an
# answer this long. A `codex login` takes effect at the latest after this.
LOGIN_CACHE_S = 30.0


@dataclass(frozen=True)
class ExecForm:
    """How `codex exec` is asked for a non-interactive, workspace-writing run with events."""

    since: Version
    json_flag: str | None  # None: this CLI has no thread/item JSONL stream; output stays text
    source: str  # where this row comes from


# Newest first; the first row whose `since` is <= the installed version wins, and an unknown
# or unparsable version gets the first (current) row. Only 0.169.0 is run here (tests/codex).
EXEC_FORMS: tuple[ExecForm, ...] = (
    ExecForm((0, 46, 0), "--json", "verified: codex-cli 0.169.0 (tests/test_codex_cli.py)"),
    ExecForm(
        (0, 41, 0),
        "--experimental-json",
        "CLI history: the thread/item stream was `--experimental-json` while `--json` still "
        "printed the older event shape (0.169 keeps it as an alias of `--json`)",
    ),
    ExecForm((0, 0, 0), None, "CLI history: no thread/item stream; plain text output"),
)


def parse_version(text: str) -> Version | None:
    """`codex-cli 0.169.0` (or any text with an x.y.z) as a tuple; None if there is none."""
    match = _VERSION.search(text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def exec_form(version: Version | None) -> ExecForm:
    if version is not None:
        for form in EXEC_FORMS:
            if version >= form.since:
                return form
    return EXEC_FORMS[0]


@dataclass(frozen=True)
class CliVersion:
    path: str
    text: str  # what `codex --version` printed, e.g. "codex-cli 0.169.0" ("" if it failed)
    version: Version | None


_version_cache: dict[tuple[str, int, int], CliVersion] = {}
_lock = threading.Lock()


def _private_cwd() -> str:
    # Never the user's workspace: the real CLI may leave an error.log in its working directory.
    return tempfile.gettempdir()


def cli_version(program: str, environ: Mapping[str, str] | None = None) -> CliVersion | None:
    """`program --version`, run once per binary (keyed by its path, size and mtime, so an
    upgrade is noticed); None when `program` is not found."""
    path = shutil.which(program, path=(environ or os.environ).get("PATH"))
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _lock:
        cached = _version_cache.get(key)
    if cached is not None:
        return cached
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            env=dict(environ) if environ is not None else None,
            cwd=_private_cwd(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
        text = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        first = text[0] if text and proc.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        first = ""
    found = CliVersion(path=path, text=first, version=parse_version(first) if first else None)
    with _lock:
        _version_cache[key] = found
    return found


@dataclass(frozen=True)
class LoginStatus:
    signed_in: bool | None  # None: could not tell (CLI missing, crashed, timed out)
    detail: str  # the CLI's own line, e.g. "Logged in using ChatGPT" / "Not logged in"


_login_cache: dict[tuple[str, ...], tuple[float, LoginStatus]] = {}


def login_status(command: list[str], environ: Mapping[str, str] | None = None) -> LoginStatus:
    """`<command> login status`: exit 0 and "Logged in using ..." when signed in, exit 1 and
    "Not logged in" when not (codex 0.169). Cached for LOGIN_CACHE_S per CLI and CODEX_HOME."""
    env = os.environ if environ is None else environ
    argv = [*(command or ["codex"]), "login", "status"]
    key = (*argv, env.get("CODEX_HOME", ""), env.get("HOME", ""), env.get("PATH", ""))
    now = time.monotonic()
    with _lock:
        cached = _login_cache.get(key)
    if cached is not None and now - cached[0] < LOGIN_CACHE_S:
        return cached[1]
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        return LoginStatus(None, f"`{argv[0]}` not found on PATH")
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            argv,
            capture_output=True,
            text=True,
            timeout=LOGIN_TIMEOUT_S,
            env=dict(env),
            cwd=_private_cwd(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return LoginStatus(None, f"`{' '.join(argv)}` failed: {exc}")
    lines = [
        line.strip()
        for line in (proc.stdout + "\n" + proc.stderr).splitlines()
        if line.strip() and not line.lstrip().startswith("WARNING:")
    ]
    text = " ".join(lines)
    low = text.lower()
    if "not logged in" in low or "not signed in" in low:
        status = LoginStatus(False, lines[-1] if lines else "Not logged in")
    elif proc.returncode == 0 and "logged in" in low:
        status = LoginStatus(True, next(line for line in lines if "logged in" in line.lower()))
    else:
        status = LoginStatus(None, text[:300] or f"exit status {proc.returncode}")
    with _lock:
        _login_cache[key] = (now, status)
    return status
