"""The agent command: argv resolution, its environment, and the local preflight for co/doctor."""

from __future__ import annotations

import fnmatch
import os
import shutil
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..codex_cli import ExecForm, cli_version, exec_form
from ..config import CodexLocalConfig, Config, LocalConfig
from ..errors import IssueCode, PreflightFailed, RunErrorCode, WorkspaceError
from ..protocol import Issue
from .processes import MAX_ARG_BYTES
from .scratch import NO_COMMITS, has_commit, repo_toplevel

PROMPT_PLACEHOLDER = "{prompt}"
# The scratch directory the agent runs in (its cwd), for agents that take it as a flag.
WORKDIR_PLACEHOLDER = "{workdir}"
# A file holding the prompt (any size up to maxPromptBytes): for prompts too large for argv.
PROMPT_FILE_PLACEHOLDER = "{promptFile}"
PROMPT_FILE = "prompt.txt"
AgentOutput = Literal["text", "codex-json"]
JSON_FLAGS = frozenset({"--json", "--experimental-json"})
AGENT_MISSING = (
    'no local agent: set `local.agentCommand` (e.g. ["my-agent", "{prompt}"]) '
    "or install the Codex CLI (`codex` on PATH)"
)

# Variables the agent inherits from the sidecar. Everything else is dropped, so
# the sidecar's own secrets (CODEX_CLOUD_TOKEN) and GIT_DIR-style redirections
# never reach it. The agent keeps what it needs to run and to authenticate
# itself: HOME/CODEX_HOME (codex's auth.json), CODEX_API_KEY (the API key `codex exec`
# reads; it ignores OPENAI_API_KEY for its own auth, but a custom provider's `env_key` may
# name it), OPENAI_BASE_URL, proxies and CA bundles, and the `env_key` variables of the
# providers in the user's $CODEX_HOME/config.toml. Patterns use fnmatch; add more with
# `local.envAllow`.
AGENT_ENV_ALLOW: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ",
    "LANG", "LANGUAGE", "LC_*",
    "TMPDIR", "TMP", "TEMP",
    "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
    "CODEX_HOME", "CODEX_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
)  # fmt: skip
# Never passed, even when `local.envAllow` names them: the sidecar's cloud credential.
AGENT_ENV_DENY = frozenset({"CODEX_CLOUD_TOKEN"})


def codex_exec_argv(codex: CodexLocalConfig, form: ExecForm) -> list[str]:
    """The default agent: `codex exec` as the installed version accepts it (codex_cli.EXEC_FORMS).

    Codex 0.169 (tests/codex, tests/test_codex_cli.py) rejects the `--full-auto` of older
    releases, and a bare `codex exec` runs read-only (apply_patch is refused, codex still exits
    0, and the run "succeeds" with no changes): `--sandbox workspace-write` is what
    `--full-auto` meant. `-C` roots codex in the scratch copy; `--` keeps a prompt that starts
    with "-" or names a subcommand ("resume", "review") the prompt."""
    argv = ["codex", "exec"]
    if form.json_flag:
        argv.append(form.json_flag)
    argv += ["--sandbox", codex.sandbox, "-C", WORKDIR_PLACEHOLDER]
    if codex.model:
        argv += ["--model", codex.model]
    if codex.profile:
        argv += ["--profile", codex.profile]
    return [*argv, *codex.extra_args, "--", PROMPT_PLACEHOLDER]


@dataclass(frozen=True)
class AgentPlan:
    """What the local executor runs: the argv template ("{prompt}"/"{workdir}" unexpanded: the
    manifest keeps it so), how to read its stdout, and the Codex CLI version when it is codex."""

    template: list[str]
    output: AgentOutput
    codex_version: str | None = None

    def argv(self, prompt: str, workdir: str, prompt_file: str = "") -> list[str]:
        """Each exact "{prompt}" element becomes the prompt as one argument, "{workdir}" the
        scratch directory, "{promptFile}" the path of a file holding the prompt. Never a shell
        string. Without a "{prompt}" element the agent still gets the prompt in $CO_PROMPT."""
        values = {PROMPT_PLACEHOLDER: prompt, WORKDIR_PLACEHOLDER: workdir, PROMPT_FILE_PLACEHOLDER: prompt_file}
        return [values.get(arg, arg) for arg in self.template]

    def invocation(self, prompt: str, workdir: str, prompt_file: str) -> Invocation:
        """How the prompt reaches the agent. As an argument while it fits one (an argument
        holds at most MAX_ARG_BYTES on Linux; more fails exec with E2BIG). A larger one goes
        to codex on stdin (`-` as its prompt: codex exec reads the prompt from stdin then), and
        to other agents through "{promptFile}" / $CO_PROMPT_FILE; an agent that only takes
        "{prompt}" cannot get it, and the run fails with local_prompt_too_large."""
        size = len(prompt.encode("utf-8"))
        env = {"CO_PROMPT_FILE": prompt_file}
        if size + len("CO_PROMPT=") < MAX_ARG_BYTES:
            env["CO_PROMPT"] = prompt
        if size < MAX_ARG_BYTES or PROMPT_PLACEHOLDER not in self.template:
            return Invocation(self.argv(prompt, workdir, prompt_file), None, env)
        if is_codex(self.template[0]):
            return Invocation(self.argv("-", workdir, prompt_file), prompt.encode("utf-8"), env)
        raise PreflightFailed(
            f"the prompt is {size} bytes and one argument holds at most {MAX_ARG_BYTES - 1} "
            f"(E2BIG): put {PROMPT_FILE_PLACEHOLDER} in local.agentCommand instead of "
            f"{PROMPT_PLACEHOLDER}, or read the file named by $CO_PROMPT_FILE",
            category=RunErrorCode.LOCAL_PROMPT_TOO_LARGE,
        )


@dataclass(frozen=True)
class Invocation:
    """One run of the agent: its argv, bytes for its stdin (None: no stdin), and the prompt's
    environment variables ($CO_PROMPT when it fits one variable, $CO_PROMPT_FILE always)."""

    argv: list[str]
    stdin: bytes | None
    env: dict[str, str]


def is_codex(program: str) -> bool:
    return Path(program).name == "codex"


def plan_agent(local: LocalConfig, environ: Mapping[str, str] | None = None) -> AgentPlan:
    """The configured argv, or codex's default when unset and `codex` is on PATH."""
    configured = local.agent_command
    if configured is None:
        found = cli_version("codex", environ)
        if found is None:
            raise PreflightFailed(AGENT_MISSING, category=RunErrorCode.LOCAL_AGENT_MISSING)
        form = exec_form(found.version)
        template = codex_exec_argv(local.codex, form)
        auto: AgentOutput = "codex-json" if form.json_flag else "text"
        version = found.text or None
    elif not configured or not configured[0]:
        raise PreflightFailed(
            '`local.agentCommand` is empty: give the agent\'s argv, e.g. ["my-agent", "{prompt}"]',
            category=RunErrorCode.LOCAL_AGENT_MISSING,
        )
    else:
        template = list(configured)
        codex = is_codex(template[0])
        auto = "codex-json" if codex and JSON_FLAGS & set(template) else "text"
        found = cli_version(template[0], environ) if codex else None
        version = found.text or None if found else None
    output = auto if local.output == "auto" else local.output
    return AgentPlan(template, output, version)


def codex_provider_keys(environ: Mapping[str, str]) -> list[str]:
    """The variables the user's Codex config names as provider keys (`env_key` of each
    `[model_providers.X]` in $CODEX_HOME/config.toml): codex reads its API key from them."""
    home = environ.get("CODEX_HOME") or (
        os.path.join(environ["HOME"], ".codex") if environ.get("HOME") else None
    )
    if home is None:
        return []
    try:
        with open(os.path.join(home, "config.toml"), "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return []
    providers = data.get("model_providers")
    if not isinstance(providers, dict):
        return []
    keys = (p.get("env_key") for p in providers.values() if isinstance(p, dict))
    return [k for k in keys if isinstance(k, str) and k]


def agent_env(
    environ: Mapping[str, str], extra_allow: Iterable[str], extra: Mapping[str, str]
) -> dict[str, str]:
    """The agent's environment: allowlisted names from `environ` (with the provider keys the
    user's Codex config names), then `extra` (CO_* values)."""
    patterns = [*AGENT_ENV_ALLOW, *codex_provider_keys(environ), *extra_allow]
    env = {
        name: value
        for name, value in environ.items()
        if name not in AGENT_ENV_DENY and any(fnmatch.fnmatchcase(name, p) for p in patterns)
    }
    env.update(extra)
    return env


def user_git_config(environ: Mapping[str, str]) -> bytes:
    """The user's global git config as git reads it: GIT_CONFIG_GLOBAL, else the XDG file then
    ~/.gitconfig."""
    if explicit := environ.get("GIT_CONFIG_GLOBAL"):
        paths = [Path(explicit)]
    else:
        home = Path(environ.get("HOME") or Path.home())
        xdg = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        paths = [xdg / "git" / "config", home / ".gitconfig"]
    return b"".join(p.read_bytes() + b"\n" for p in paths if p.is_file())


def agent_git_config(beside: Path, environ: Mapping[str, str]) -> Path:
    """A copy of the user's global git config for one run's agent (its GIT_CONFIG_GLOBAL), in
    the scratch's directory: the agent's commits keep the user's identity and aliases, and its
    `git config --global` lands in the copy, never in the user's ~/.gitconfig."""
    path = beside / "agent-gitconfig"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(user_git_config(environ))
    return path


def find_executable(program: str, workspace: Path) -> str | None:
    """argv[0] as something runnable: a PATH lookup for bare names, else a path (relative to the
    workspace) that is an executable file."""
    if os.sep not in program:
        return shutil.which(program)
    path = Path(program) if os.path.isabs(program) else workspace / program
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def local_preflight(config: Config, workspace: Path) -> list[Issue]:
    """Why local mode cannot run here (empty when it can): git, a repo with a commit, the agent."""
    issues: list[Issue] = []
    if shutil.which("git") is None:
        issues.append(
            Issue(code=IssueCode.LOCAL_GIT_MISSING, message="git not found on PATH", fix="install git")
        )
    else:
        try:
            top = repo_toplevel(workspace)
            if not has_commit(top):
                issues.append(
                    Issue(
                        code=IssueCode.LOCAL_NO_COMMITS,
                        message=NO_COMMITS,
                        fix="git commit --allow-empty -m init",
                    )
                )
        except WorkspaceError as exc:
            issues.append(
                Issue(code=exc.category, message=exc.message, fix="run `git init` and commit once")
            )
    try:
        argv = plan_agent(config.local).template
    except PreflightFailed as exc:
        issues.append(
            Issue(code=IssueCode.LOCAL_AGENT_MISSING, message=exc.message, fix="set local.agentCommand")
        )
    else:
        if find_executable(argv[0], workspace) is None:
            issues.append(
                Issue(
                    code=IssueCode.LOCAL_AGENT_MISSING,
                    message=f"agent command not found or not executable: {argv[0]}",
                    fix="fix local.agentCommand or put the program on PATH",
                )
            )
    return issues
