#!/usr/bin/env python3
"""Reliability suite: fault matrix, kill -9 rounds, concurrency, hostile input, accepting a diff
(scripts/apply_faults.py) and the hostile-input and fault classes at the boundary
(scripts/boundary_faults.py), all through real servers over stdio (or `serve --tcp`; cloud mode
against the loopback emulator). Writes docs/reliability.md.

    .venv/bin/python scripts/reliability.py            # full run, rewrites docs/reliability.md
    .venv/bin/python scripts/reliability.py --quick --out /tmp/r.md   # the subset the tests run
    .venv/bin/python scripts/reliability.py --only boundary           # hostile input and faults, printed

Every figure in the document comes from this run; nothing in it is typed by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import apply_faults  # noqa: E402
import boundary_faults  # noqa: E402
from rpc import RpcProcess, frame  # noqa: E402

from co_sidecar.manifest import RunManifest, load_manifest  # noqa: E402
from co_sidecar.protocol import REQUEST_PARAMS, param_names  # noqa: E402
from co_sidecar.testing.emulator import Emulator  # noqa: E402

DEMO_AGENT = ROOT / "examples" / "demo_agent.py"
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
PHASES = ["create", "poll", "diff"]
KINDS = ["429", "500", "502", "503", "401", "403", "404", "malformed", "hang", "drop", "delay"]
QUICK_KINDS = ["429", "500", "401", "malformed"]
POLL = {
    "intervalSeconds": 0.05,
    "maxIntervalSeconds": 0.2,
    "maxRetries": 3,
    "requestTimeoutSeconds": 0.5,
    "timeoutSeconds": 30,
}
HANG_SECONDS = 1.5  # hang and delay faults outlast the 0.5 s request timeout


def git(repo: Path, *args: str) -> None:
    subprocess.run(  # noqa: S603 - fixed git argv
        ["git", "-c", "user.name=r", "-c", "user.email=r@r", "-c", "commit.gpgsign=false", *args],
        cwd=repo, check=True, capture_output=True,
    )  # fmt: skip


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# demo\n")
    (path / "app.py").write_text("def main():\n    return 1\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "base")
    return path


def options(emu: Emulator | None, poll: dict[str, Any] | None = None, **local: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "local": {
            "agentCommand": [sys.executable, str(DEMO_AGENT), "{prompt}"],
            "envAllow": ["DEMO_AGENT_*"],
            **local,
        }
    }
    if emu is not None:
        opts["cloud"] = {"envId": "env-rel", "baseUrl": emu.base_url, "poll": poll or POLL}
    return opts


def server_env(base: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEX_CLOUD", "CO_"))}
    env.update(
        CO_SCRATCH_ROOT=str(base / "scratch"),
        CODEX_HOME=str(base / "codex-home"),
        DEMO_AGENT_DELAY="0",
        PYTHONPATH=str(ROOT / "server"),
        **extra,
    )
    return env


def start(repo: Path, opts: dict[str, Any], env: dict[str, str]) -> RpcProcess:
    proc = RpcProcess(env=env, cwd=repo)
    proc.initialize(repo, opts)
    return proc


def manifest_ok(repo: Path, m: RunManifest) -> bool:
    """The manifest validated (it was loaded) and every recorded patch matches its sha256."""
    evidence = [m.diff] + [a.diff for a in (m.cloud.attempt_status if m.cloud else [])]
    for ev in evidence:
        if ev is None:
            continue
        patch = repo / ".runs" / ev.patch_path
        if not patch.is_file() or hashlib.sha256(patch.read_bytes()).hexdigest() != ev.sha256:
            return False
    return True


def find_manifest(repo: Path, run_id: str) -> RunManifest | None:
    try:
        return load_manifest(next((repo / ".runs").glob(f"*/{run_id}/manifest.json")))
    except (StopIteration, OSError, ValueError):
        return None


# --------------------------------------------------------------------------- fault matrix


@dataclass
class Cell:
    phase: str
    kind: str
    spec: str
    state: str = "?"
    error_code: str | None = None
    retries: int = 0
    polls: int = 0
    manifest_valid: bool = False
    editor_states: list[str] = field(default_factory=list)
    editor_final: str | None = None
    updates: int = 0
    message: str = ""
    seconds: float = 0.0

    @property
    def consistent(self) -> bool:
        return self.manifest_valid and self.editor_final == self.state


def run_cell(
    base: Path, phase: str, kind: str, spec: str | None = None, poll: dict[str, Any] | None = None
) -> Cell:
    if spec is None:
        value = {"hang": f"hang={HANG_SECONDS}", "delay": f"delay={HANG_SECONDS}"}.get(kind, kind)
        spec = f"{phase}:{value}:times=1"
        if kind == "429":
            spec += ":retry_after=0.1"
    cell = Cell(phase, kind, spec)
    work = Path(tempfile.mkdtemp(prefix=f"cell-{phase}-{kind}-", dir=base))
    repo = make_repo(work / "ws")
    started = time.monotonic()
    with Emulator(repo, faults=spec, hang_seconds=HANG_SECONDS).start() as emu:
        server = start(repo, options(emu, poll), server_env(work))
        try:
            run_id = server.request("co/launch", {"prompt": f"fault {spec}", "mode": "cloud"})["runId"]
            server.wait_state(run_id, TERMINAL, timeout=60)
            updates = server.updates(run_id)
        finally:
            server.close()
    cell.seconds = time.monotonic() - started
    cell.updates = len(updates)
    for u in updates:
        if not cell.editor_states or cell.editor_states[-1] != u["state"]:
            cell.editor_states.append(u["state"])
    final = [u for u in updates if u["state"] in TERMINAL]
    cell.editor_final = final[-1]["state"] if final else None
    cell.message = (final[-1]["message"] if final else "")[:90]
    m = find_manifest(repo, run_id)
    if m is not None:
        cell.state = m.state.value
        cell.error_code = m.error_code
        cell.retries = m.cloud.retries if m.cloud else 0
        cell.polls = m.cloud.poll_count if m.cloud else 0
        cell.manifest_valid = manifest_ok(repo, m)
    return cell


def fault_matrix(base: Path, kinds: list[str], workers: int) -> list[Cell]:
    jobs = [(phase, kind) for phase in PHASES for kind in kinds]
    jobs += [("task", "fail"), ("task", "slow")]
    with ThreadPoolExecutor(workers) as pool:
        cells = list(pool.map(lambda job: run_task_cell(base, *job) if job[0] == "task" else run_cell(base, *job), jobs))
    return cells


def run_task_cell(base: Path, phase: str, kind: str) -> Cell:
    """Task faults: the attempt itself fails, or runs past the overall poll timeout (2 s here)."""
    if kind == "fail":
        return run_cell(base, phase, kind, "task:fail")
    return run_cell(base, phase, kind, "task:slow=5", {**POLL, "timeoutSeconds": 2})


# --------------------------------------------------------------------------- kill -9 rounds


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def kill_rounds(base: Path, rounds: int, local_runs: int, cloud_runs: int) -> dict[str, Any]:
    """Start runs, kill -9 the server `rounds` times mid-flight, restart each time; count losses."""
    repo = make_repo(base / "kill" / "ws")
    env = server_env(base / "kill", DEMO_AGENT_SLEEP="30")
    with Emulator(repo, faults="task:slow=3", hang_seconds=HANG_SECONDS).start() as emu:
        server = start(repo, options(emu), env)
        local = [server.request("co/launch", {"prompt": f"l{i}", "mode": "local"})["runId"] for i in range(local_runs)]
        cloud = [server.request("co/launch", {"prompt": f"c{i}", "mode": "cloud"})["runId"] for i in range(cloud_runs)]
        for run_id in local + cloud:
            server.wait_state(run_id, {"running"}, timeout=30)
        kills = 0
        intact_after_kill = True
        for _ in range(rounds):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ms = [find_manifest(repo, r) for r in cloud]
                if all(m and m.cloud and m.cloud.task_id for m in ms):
                    break
                time.sleep(0.05)
            agent_pids = [m.executor.pid for r in local if (m := find_manifest(repo, r)) and m.executor.pid]
            os.kill(server.pid, signal.SIGKILL)
            server.kill()
            kills += 1
            for pid in agent_pids:  # the agents die with the editor session in real life
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            intact_after_kill &= all(find_manifest(repo, r) is not None for r in local + cloud)
            server = start(repo, options(emu), env)
            server.request("co/list", {})
            time.sleep(0.3)
        for run_id in cloud:
            # From the manifest: a run may have finished under an earlier server (no update now).
            deadline = time.monotonic() + 60
            while not ((m := find_manifest(repo, run_id)) and m.state.value in TERMINAL) and time.monotonic() < deadline:
                time.sleep(0.05)
        server.close()
        creates = sum(1 for r in emu.requests if r["method"] == "POST" and r["path"].endswith("/tasks"))
    final = {r: find_manifest(repo, r) for r in local + cloud}
    scratch = base / "kill" / "scratch"
    # Left behind: a per-run scratch directory (<root>/<repo>/<run>), or a pool slot
    # (<root>/pool/<repo>/<slot>) that was not returned to the pool clean.
    per_run = [p for p in scratch.glob("*/*") if p.is_dir() and p.parent.name != "pool"]
    dirty = [s for s in scratch.glob("pool/*/*") if s.is_dir() and '"clean"' not in _read(s / "meta.json")]
    leftover = per_run + dirty
    return {
        "kills": kills,
        "runs": len(final),
        "intact_after_each_kill": intact_after_kill,
        "local_interrupted": sum(1 for r in local if (m := final[r]) and m.error_code == "interrupted"),
        "local": len(local),
        "cloud_succeeded": sum(1 for r in cloud if (m := final[r]) and m.state.value == "succeeded"),
        "cloud": len(cloud),
        "cloud_tasks_created": creates,
        "lost": sum(1 for m in final.values() if m is None or m.state.value not in TERMINAL or not manifest_ok(repo, m)),
        "scratch_left": len(leftover),
    }


# --------------------------------------------------------------------------- concurrency


def concurrency(base: Path, local_runs: int, cloud_runs: int) -> dict[str, Any]:
    repo = make_repo(base / "conc" / "ws")
    with Emulator(repo, hang_seconds=HANG_SECONDS).start() as emu:
        server = start(repo, options(emu, maxConcurrent=8), server_env(base / "conc"))
        started = time.monotonic()
        ids = [server.request("co/launch", {"prompt": f"c{i}", "mode": "local" if i < local_runs else "cloud"})["runId"] for i in range(local_runs + cloud_runs)]
        states = [server.wait_state(r, TERMINAL, timeout=120) for r in ids]
        seconds = time.monotonic() - started
        server.close()
    final = [find_manifest(repo, r) for r in ids]
    return {
        "runs": len(ids),
        "local": local_runs,
        "cloud": cloud_runs,
        "succeeded": states.count("succeeded"),
        "manifests_valid": sum(1 for m in final if m is not None and manifest_ok(repo, m) and m.state.value == "succeeded"),
        "seconds": round(seconds, 1),
        "lost": sum(1 for m in final if m is None),
    }


# --------------------------------------------------------------------------- hostile input

FRAMING: list[tuple[str, bytes]] = [
    ("non-JSON body", frame(b"{not json")),
    ("non-numeric Content-Length", b"Content-Length: abc\r\n\r\n{}"),
    ("negative Content-Length", b"Content-Length: -5\r\n\r\n"),
    ("missing Content-Length", b"Content-Type: x\r\n\r\n"),
    ("empty body", b"Content-Length: 0\r\n\r\n"),
    ("body shorter than declared", b"Content-Length: 10\r\n\r\n{}"),
    ("JSON array", frame(b"[1, 2]")),
    ("JSON number", frame(b"42")),
    ("not UTF-8", frame(b"\xff\xfe\x00")),
    ("oversized (over CO_MAX_MESSAGE_BYTES)", frame(b'{"pad": "' + b"a" * 200_000 + b'"}')),
    ("object as id", frame(b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "co/list"}')),
    ("no jsonrpc member", frame(b'{"id": 5, "method": "co/list"}')),
    ("unknown method", frame(b'{"jsonrpc": "2.0", "id": 6, "method": "co/frobnicate"}')),
]
# co/canary is left out: it starts a cloud task (or an emulator) per call.
FIELDS = {m: param_names(model) for m, model in REQUEST_PARAMS.items() if m != "co/canary"}


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 2 else 6)
    if choice == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if choice == 7:
        keys = ["a", "prompt", "runId", ""]
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(3))}
    if choice == 8:
        return {"prompt": "x"}
    return [
        lambda: None,
        lambda: rng.choice([True, False]),
        lambda: rng.randint(-(2**40), 2**40),
        lambda: rng.uniform(-1e9, 1e9),
        lambda: "".join(rng.choice("ab/.\\\0 é\n{}") for _ in range(rng.randrange(12))),
        lambda: rng.choice(["local", "cloud", "auto", "", "..", "/etc", "succeeded", "git", "client"]),
    ][choice]()


def hostile(base: Path, random_inputs: int) -> dict[str, Any]:
    repo = make_repo(base / "hostile" / "ws")
    known = {-32700, -32600, -32601, -32602, -32001, -32002, -32003, -32004, -32005, -32006, -32007}
    proc = RpcProcess(env=server_env(base / "hostile", CO_MAX_MESSAGE_BYTES="100000"), cwd=repo)
    early = proc.request_raw("co/list", {})
    before_init_ok = early.get("error", {}).get("code") == -32002
    proc.initialize(repo, {"local": {"agentCommand": [sys.executable, "-c", "pass"]}})
    framing_ok = 0
    for _, raw in FRAMING:
        proc.write(raw)
        answered = "result" in proc.request_raw("co/list", {}, timeout=15)
        errors = [r for r in proc.responses.values() if "error" in r]
        proc.responses.clear()
        framing_ok += answered and all(e["error"]["code"] in known and e["error"]["message"] for e in errors)
    rng = random.Random(5)
    results = errors = crashes = 0
    for _ in range(random_inputs):
        method = rng.choice(sorted(FIELDS))
        params = (
            random_value(rng)
            if rng.random() < 0.1
            else {f: random_value(rng) for f in rng.sample(FIELDS[method], rng.randrange(len(FIELDS[method]) + 1))}
        )
        response = proc.request_raw(method, params, timeout=30)
        if "result" in response:
            results += 1
        elif response["error"]["code"] in known and response["error"]["message"]:
            errors += 1
        else:
            crashes += 1
    alive = proc.alive() and "result" in proc.request_raw("co/list", {})
    proc.close()
    return {
        "framing": len(FRAMING),
        "framing_ok": framing_ok,
        "before_init_ok": before_init_ok,
        "random": random_inputs,
        "results": results,
        "clear_errors": errors,
        "crashes": crashes,
        "alive": alive,
    }


# --------------------------------------------------------------------------- boundary classes


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def boundary_lines(b: dict[str, Any]) -> list[str]:
    """One line per class: what scripts/boundary_faults.py saw (also printed by the script)."""
    j, p, r, tc, lg = (b[k] for k in ("json", "processes", "runs_root", "tcp", "large"))
    e, pr, t = b.get("emfile"), b.get("prompts"), b.get("trust")  # not in --quick
    lines = [
        f"{j['shapes']} hostile JSON shapes: {j['shapes_ok']} answered ({j['shapes_with_error']} with their JSON-RPC error, "
        f"{j['shapes'] - j['shapes_with_error']} well-formed and answered), server alive: {_yes(j['alive'])}",
        f"{j['strict']} strict-type cases ({j['strict_fields']} fields of {j['strict_methods']} methods, each given every JSON "
        f"type its schema refuses): {j['strict'] - len(j['strict_accepted'])} refused with -32602 naming the field, "
        f"{j['launched_by_junk']} runs launched by the junk; a real run after it all: {j['run_after']}",
        f"co/apply `accept` not `true` ({j['accept_values']} values): {j['accept_refused']} refused, {j['accept_written']} files "
        f"written; `true` applies: {_yes(j['true_applies'])}",
    ]
    if p["available"]:
        for c in p["cases"]:
            lines.append(
                f"double-forked setsid agent ignoring SIGTERM, ended by {boundary_faults.PROCESS_CASES[c['how']]}: "
                f"{c['survivors']} processes left, daemon still writing: {'yes' if c['still_writing'] else 'no'}, run `{c['state']}`"
                + (f", server exit code {c['exit_code']}" if c["exit_code"] is not None else "")
            )
    else:
        lines.append("process cases: skipped (needs Linux /proc and prctl)")
    if e is not None:
        lines.append(
        f"EMFILE launches ({e['launches']} with the server's descriptor limit 6 above what it holds): {e['launched']} launched, "
        f"{e['terminal']} of them terminal ({e['succeeded']} succeeded, {e['failed']} failed), {e['refused']} refused at launch; "
        f"{e['causes_emfile']} / {e['causes']} failures name EMFILE (codes: {', '.join(e['codes']) or 'none'}); ghosts {e['ghosts']}; "
        f"manifests terminal {e['manifests_terminal']} / {e['manifests']}; the next run: {e['run_after']}"
        )  # fmt: skip
    lines.append(
        f"runs root not writable: launch refused ({r['category']}, names the errno: {_yes(r['names_errno'])}); "
        f"ghost runs {r['ghosts']}, run updates {r['updates']}"
    )
    if pr is not None:
        ways = "; ".join(
            f"{way}: {w['state']}" + (f" ({w['code']}, names E2BIG: {_yes(w['names_e2big'])})" if w["code"] else f", all {pr['bytes']:,} bytes reached the agent: {_yes(w['received_whole'])}")
            for way, w in pr["ways"].items()
        )
        lines.append(f"{pr['bytes']:,}-byte prompt: {ways}; over runs.maxPromptBytes: refused ({pr['over_bound']}), {pr['over_bound_listed']} runs")
    for c in t["cases"] if t is not None else []:
        lines.append(
            f"{c['kind']} aiming agentCommand and cloud.baseUrl at the attacker, workspace {'trusted' if c['trusted'] else 'not trusted'}: "
            f"{c['attacker_requests']} requests reached the attacker host ({c['attacker_got_token']} with the token), "
            f"{c['user_host_requests']} the user's; the repository's agent ran: {'yes' if c['repo_agent_ran'] else 'no'}"
            + ("; the launch warned how to trust" if c["warned"] else "")
        )
    lines += [
        f"TCP: unauthenticated refused {tc['unauth_refused']} / {tc['unauth']}, HTTP refused {tc['http_refused']} / {tc['http']}, "
        f"still listening: {_yes(tc['listening_after'])}, the agent they set ran: {'yes' if tc['agent_ran'] else 'no'}; "
        f"the token opens a session: {_yes(tc['token_opens'])}, HTTP inside it closes it: {_yes(tc['http_in_session_closed'])}; "
        f"token file {tc['token_mode'][2:]}, removed on exit: {_yes(tc['token_removed'])}",
        f"local change over diff.hardMaxPatchBytes={lg['patch_limit']}: run {lg['local']}, the reason names the setting: "
        f"{_yes(lg['local_names_setting'])}, patch kept: {'yes' if lg['local_captured'] else 'no'}; the same server's next run: {lg['next_run']}",
        f"cloud diff over cloud.maxResponseBytes={lg['response_limit']}: run {lg['cloud']}, names the setting: "
        f"{_yes(lg['cloud_names_setting'])}, server answering: {_yes(lg['cloud_alive'])}",
    ]
    if "stall" in lg:
        s = lg["stall"]
        lines.append(
            f"co/diff of a {s['patch_mb']:.1f} MB patch ({s['files']:,} files) took {s['diff_s']:.1f} s; {s['during_count']} "
            f"co/status answered meanwhile (benchmarks/diff_stall.py; docs/benchmarks.md §6 has the 98 MB figure)"
        )
    return lines


# Which test asserts each class (the script reports the same cases; see scripts/boundary_faults.py).
BOUNDARY_TESTS = [
    ("the server never dies of input", "hostile JSON shapes, strict types, `accept` only `true`", "tests/test_hostile_server.py, tests/test_hostile_rpc.py"),
    ("no process outlives its run", "a double-forked setsid agent: co/cancel, timeout, SIGTERM, kill -9 of the server", "tests/test_processes.py"),
    ("every run reaches a terminal state", "EMFILE, an unwritable runs root, a 200 KB prompt", "tests/test_terminal_states.py"),
    ("a repository cannot aim credentials or run code", "hostile co-sidecar.toml / pyproject.toml, attacker host on loopback", "tests/test_trust.py"),
    ("`serve --tcp` is not an open door", "no or wrong token, HTTP requests", "tests/test_tcp.py"),
    ("large results are bounded", "local patch and cloud response over their limits", "tests/test_large_results.py"),
]


def boundary_section(b: dict[str, Any]) -> list[str]:
    return [
        "## Hostile input and faults at the boundary",
        "",
        "Real servers over stdio (and `serve --tcp` over loopback sockets), real git repositories in temp dirs, "
        "loopback HTTP servers for the attacker's host, the user's host and the cloud (scripts/boundary_faults.py; "
        "the cases are shared with the tests named below, which assert the same outcomes).",
        "",
        "| class | cases | asserted by |",
        "|---|---|---|",
        *[f"| {name} | {cases} | {tests} |" for name, cases, tests in BOUNDARY_TESTS],
        "",
        "What this run saw:",
        "",
        *[f"- {line}" for line in boundary_lines(b)],
        "",
        "Hostile JSON shapes: " + "; ".join(b["json"]["shape_names"]) + ".",
        "",
    ]


# --------------------------------------------------------------------------- report


def accepting_section(acc: dict[str, Any]) -> list[str]:
    """What scripts/apply_faults.py observed (tests/test_apply_faults.py asserts the same)."""
    hp, da, df, km, bm, se = (acc[k] for k in ("hostile_patches", "double_apply", "disk_full", "kill_mid_apply", "bad_manifests", "secret_echo"))
    yes = {True: "yes", False: "NO"}
    return [
        "## Accepting a diff",
        "",
        "Each scenario builds its own repository and drives real servers over stdio (scripts/apply_faults.py; "
        "tests/test_apply_faults.py asserts the same figures).",
        "",
        "| check | result |",
        "|---|---|",
        f"| hostile patches refused by co/diff, client apply and git apply | {hp['refused_everywhere']} / {hp['patches']} |",
        f"| files written outside the workspace / workspace changed | {hp['written_outside']} / {'yes' if hp['workspace_changed'] else 'no'} |",
        f"| `git apply` runs that saw a hostile patch / edits sent to the editor | {hp['git_apply_runs']} / {hp['edits_sent']} |",
        f"| two servers, one run: applied by the first; apply and reject (both servers) refused while it applied | "
        f"{yes[da['first_applied']]}; {da['refused_during']} / 3 refused |",
        f"| ... after it: the second server's apply and reject refused, its co/status says | {da['refused_after']} / 2, `{da['b_status']}` |",
        f"| the added line is in the file | {da['line_count']} time(s) |",
        f"| full disk ({'1 MiB tmpfs' if df['method'] == 'tmpfs' else 'RLIMIT_FSIZE'}): git left files half-written, restored | "
        f"{df['restored_reported']} restored, every file identical (content, mode, existence): {yes[df['identical']]}; run `{df['state']}` |",
        f"| kill -9 mid-apply: intent in the manifest; files the next server names / changed on disk | "
        f"{yes[km['intent_at_crash']]}; {len(km['reported'])} / {len(km['changed_on_disk'])} |",
        f"| ... apply refused until restored; `co/apply {{restore: true}}` puts back / identical | "
        f"{yes[km['apply_refused_until_restored']]}; {len(km['restored'])} / {yes[km['identical_after_restore']]} |",
        f"| ... then applied normally | {yes[km['applied_after_restore'] and km['final_matches_change']]} |",
        f"| bad manifest files skipped and reported, the good run still listed | {bm['skipped']} / {bm['bad']}, {yes[bm['good_listed']]} |",
        f"| a newer version's extra fields survive a rewrite | {yes[bm['extra_fields_kept']]} |",
        f"| echoed cloud token / printed API key found in manifests, events.jsonl, log, messages | "
        f"{len(se['cloud token'])} / {len(se['api key'])} places (the echo came back masked: {yes[se['echo_seen_masked']]}) |",
        "",
        "Hostile patches: " + "; ".join(hp["names"]) + ". Bad manifests: " + "; ".join(bm["kinds"]) + ".",
        "",
    ]


def render(
    cells: list[Cell], kills: dict[str, Any], conc: dict[str, Any], bad: dict[str, Any], quick: bool, seconds: float,
    acc: dict[str, Any], bnd: dict[str, Any],
) -> str:
    faults = len(cells)
    recovered = sum(1 for c in cells if c.state == "succeeded")
    inputs = bad["framing"] + bad["random"] + 1
    runs = len(cells) + kills["runs"] + conc["runs"]
    lost = kills["lost"] + conc["lost"] + sum(1 for c in cells if not c.consistent or c.state not in TERMINAL)
    j, procs = bnd["json"], bnd["processes"]["cases"]
    untrusted = [c for c in bnd.get("trust", {"cases": []})["cases"] if not c["trusted"]]
    tc = bnd["tcp"]
    lines = [
        "# Reliability",
        "",
        "<!-- generated by scripts/reliability.py; do not edit by hand -->",
        "",
        f"Generated by `scripts/reliability.py`{' --quick' if quick else ''} in {seconds:.0f} s "
        "(every run goes through a real server over stdio, or `serve --tcp` for its own class; cloud runs against "
        "the loopback emulator). "
        "Re-run it to refresh this page; `tests/test_reliability_script.py` runs its quick mode.",
        "",
        "## Figures",
        "",
        "| figure | value |",
        "|---|---|",
        f"| runs | {runs} |",
        f"| kills survived (kill -9 mid-run, restart) | {kills['kills']} |",
        f"| faults injected (kind × phase, plus task faults) | {faults} ({recovered} recovered by retry, {faults - recovered} failed cleanly) |",
        f"| hostile inputs tried | {inputs} ({bad['framing']} framing cases, 1 request before initialize, {bad['random']} random co/* params) |",
        f"| hostile patches (co/diff + both apply strategies each) | {acc['hostile_patches']['patches']} ({acc['hostile_patches']['refused_everywhere']} refused everywhere) |",
        f"| hostile JSON shapes / strict-type cases | {j['shapes']} ({j['shapes_ok']} answered) / {j['strict']} "
        f"({j['strict'] - len(j['strict_accepted'])} refused) |",
        f"| server crashes | {bad['crashes'] + (0 if j['alive'] else 1)} |",
        f"| agent processes left after {', '.join(boundary_faults.PROCESS_CASES[c['how']] for c in procs) or '(skipped)'} | "
        f"{sum(c['survivors'] for c in procs)} |",
        f"| runs left non-terminal (EMFILE, unwritable runs root) | {bnd.get('emfile', {}).get('ghosts', 0) + bnd['runs_root']['ghosts']} |",
        f"| requests to the attacker's host / its agent run, from {len(untrusted)} untrusted repositories | "
        f"{sum(c['attacker_requests'] for c in untrusted)} / {sum(c['repo_agent_ran'] for c in untrusted)} |",
        f"| `serve --tcp` connections without the token / HTTP let in | {tc['unauth'] - tc['unauth_refused']} / {tc['http'] - tc['http_refused']} |",
        f"| runs applied twice / files left changed by a failed or interrupted apply | "
        f"{int(acc['double_apply']['line_count'] != 1)} / {len(acc['disk_full']['differing']) + (0 if acc['kill_mid_apply']['identical_after_restore'] else len(acc['kill_mid_apply']['changed_on_disk']))} |",
        f"| **data lost** | **{lost}** |",
        "",
        "*Data lost* counts runs whose manifest is missing, does not validate, has a patch whose sha256 does not match, "
        "ends in a non-terminal state, or whose final state differs from the last `co/runUpdate` the editor saw.",
        "",
        "## Fault matrix",
        "",
        f"One emulator fault per cell (`times=1`: it fires once), cloud mode, `poll` = `{json.dumps(POLL)}`, "
        f"hang/delay faults last {HANG_SECONDS} s (over the request timeout). Phases: `create` = POST tasks, "
        "`poll` = GET of the running task, `diff` = GET of the finished task / its turns. "
        "*Editor saw* is the sequence of states in `co/runUpdate`.",
        "",
        "| phase | fault | final state | error code | retries | polls | manifest valid | editor saw | updates |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        lines.append(
            f"| {c.phase} | `{c.spec}` | {c.state} | {c.error_code or '—'} | {c.retries} | {c.polls} | "
            f"{'yes' if c.manifest_valid else 'NO'} | {' → '.join(c.editor_states)} | {c.updates} |"
        )
    lines += [
        "",
        f"In {sum(c.manifest_valid for c in cells)} of {len(cells)} cells the manifest validates (patch hashes "
        f"included); in {sum(c.consistent for c in cells)} of {len(cells)} the editor's last `co/runUpdate` state "
        "equals the manifest's. The expected behaviour per kind and phase is in docs/cloud.md (fault SPEC): 429 and "
        "503 are retried everywhere; other 5xx, hangs, delays and dropped connections are retried on poll and diff but "
        "fail a create (the task may exist, so it is never created twice); 401/403/404 and malformed bodies fail at "
        "once with their code (tests/test_cloud_faults.py asserts each kind; tests/test_reliability_script.py this "
        "script's quick matrix).",
        "",
        "## Crash recovery",
        "",
        f"{kills['local']} local and {kills['cloud']} cloud runs in flight; the server was killed with SIGKILL "
        f"{kills['kills']} time(s) and restarted each time (tests/test_recovery.py and tests/test_reliability_runs.py "
        "assert the same with one kill).",
        "",
        "| check | result |",
        "|---|---|",
        f"| every manifest present and valid after each kill | {'yes' if kills['intact_after_each_kill'] else 'NO'} |",
        f"| local runs failed with `interrupted` | {kills['local_interrupted']} / {kills['local']} |",
        f"| cloud runs resumed and succeeded | {kills['cloud_succeeded']} / {kills['cloud']} |",
        f"| cloud tasks created (no duplicates on resume) | {kills['cloud_tasks_created']} |",
        f"| scratch copies left behind (per run, or pool slots not returned clean) | {kills['scratch_left']} |",
        f"| runs lost | {kills['lost']} |",
        "",
        "## Concurrency",
        "",
        f"{conc['runs']} runs launched at once ({conc['local']} local with `local.maxConcurrent = 8`, "
        f"{conc['cloud']} cloud): {conc['succeeded']} succeeded, {conc['manifests_valid']} manifests valid with "
        f"matching patch hashes, {conc['seconds']} s in all, {conc['lost']} lost (tests/test_reliability_runs.py).",
        "",
        "## Hostile input",
        "",
        "Broken framing and random co/* params into one server (tests/test_hostile_rpc.py asserts the framing cases "
        "and a property test of the params).",
        "",
        "| check | result |",
        "|---|---|",
        f"| request before `initialize` answered -32002 | {'yes' if bad['before_init_ok'] else 'NO'} |",
        f"| framing cases answered with a clear error, server still answering | {bad['framing_ok']} / {bad['framing']} |",
        f"| random co/* params: results / clear errors / crashes | {bad['results']} / {bad['clear_errors']} / {bad['crashes']} |",
        f"| server alive at the end | {'yes' if bad['alive'] else 'NO'} |",
        "",
        "Framing cases: " + "; ".join(name for name, _ in FRAMING) + ".",
        "",
        *accepting_section(acc),
        *boundary_section(bnd),
        "## What the suite guarantees, and how",
        "",
        "Each point names the tests that assert it; the tables above are what this script saw.",
        "",
        "- **Manifests** are written atomically (temp file, fsync, rename) at every change, so a kill leaves the old "
        "or the new file. A run's driver holds an exclusive `flock` on `owner.lock` beside its manifest; the kernel "
        "drops it when the process dies (even by SIGKILL). At start a server takes over only executing runs whose lock "
        "it can take, and re-reads the manifest under the lock, so a second server on the same workspace never marks "
        "another's live run interrupted, and two servers starting together recover an orphan once "
        "(tests/test_manifest.py, tests/test_recovery.py, tests/test_reliability_runs.py).",
        "- **Manifests are input**: a file under the runs root that is not a valid manifest (`[]`, a string, `null`, "
        "bad JSON, wrong shape, deep nesting, a newer schema, another run's manifest) is skipped and reported, never "
        "hides the other runs, and fields from a newer version survive a rewrite (tests/test_manifest_input.py, "
        "tests/test_apply_faults.py).",
        "- **Framing** (stdio and `serve --tcp`, one transport): a body that is not JSON gets -32700 (id null); a body that is not a request object "
        "-32600; a message over `CO_MAX_MESSAGE_BYTES` (default 64 MiB) -32600, its body read and dropped; after a "
        "bad header or a body shorter than its Content-Length the reader resynchronises on the next "
        "`Content-Length:`. Requests before `initialize` get -32002 (ServerNotInitialized); notifications then are "
        "dropped (tests/test_hostile_rpc.py).",
        "- **Any JSON shape**: nesting deeper than 64 levels anywhere in a message is -32600 (or -32602 inside params "
        "that parse), NaN, Infinity, numbers beyond a double or over 4,300 digits are -32700, lone surrogates -32602; "
        "the server answers the next request. **Strict types**: every co/* param refuses every JSON type its schema "
        "does not allow with -32602 naming the field; only JSON `true` accepts a diff (tests/test_hostile_server.py).",
        "- **Patches** are read as git's apply.c reads them: every extended header line it knows (renames as "
        "`rename from/to` and `rename old/new`, copies, modes, symlinks 120000, gitlinks 160000, (dis)similarity, "
        "index); any other header line, or a hunk or file header git would find between files, refuses the patch, and "
        "`git apply --numstat` must name the same files. Every path is checked where it resolves before and after the "
        "whole patch (through symlinks on disk and ones the patch creates): outside the workspace, inside `.git` or "
        "under the runs root is refused (-32005) on co/diff, co/apply (client and git) and again inside the git "
        "strategy; so are `..`, absolute paths, NUL bytes, names NTFS/HFS read as `.git` or `.gitmodules` (trailing "
        "dots and spaces, 8.3 short names, ignorable Unicode), a sha256 that no longer matches and patches over "
        "`diff.hardMaxPatchBytes`. A symlink the patch creates that points outside the workspace needs "
        "`allowExternalSymlinks: true` on that co/apply. Refused patches never reach `git apply` (the tests spy on "
        "git). CRLF, missing final newlines, non-UTF-8 text (git strategy) and big hunks apply byte for byte "
        "(tests/test_hostile_patches.py, tests/test_apply_faults.py, tests/test_diffs.py).",
        "- **Applying** takes the run's `apply.lock` (flock, across processes) and re-reads the manifest under it, so a "
        "run is applied at most once and co/reject during an apply is refused. Before the first file is touched the "
        "apply saves each file's pre-image in the run directory and records an `applying` intent in the manifest; "
        "an apply that fails puts every file back, and a server that finds an intent nobody holds the lock for "
        "names the files that differ and restores them on `co/apply {runId, restore: true}` "
        "(tests/test_apply_faults.py, tests/test_apply_journal.py).",
        "- **Processes**: the agent runs under a small launcher that is a child subreaper with a parent-death signal, "
        "so every descendant (double-forked, `setsid`, ignoring SIGTERM) is found and ended on co/cancel, timeout, "
        "the agent's own exit, SIGTERM/SIGHUP/SIGINT of the server (a clean shutdown: runs `cancelled`, exit 0), the "
        "end of the server's input, and kill -9 of the server (the next server marks the run `interrupted`) "
        "(tests/test_processes.py).",
        "- **Terminal states**: with descriptors exhausted every launched run ends (the reason names EMFILE) or its "
        "launch is refused, and no run stays in `routing`/`launching`; an unwritable runs root refuses the launch "
        "(`runs_root`, naming the errno) and records nothing; a folder that is not a git repository gets nothing "
        "written; a prompt too large for an argument reaches the agent through `{promptFile}` or, for codex, stdin, "
        "and as `{prompt}` fails with `local_prompt_too_large` naming E2BIG; a prompt over `runs.maxPromptBytes` is "
        "refused at launch (tests/test_terminal_states.py).",
        "- **Trust**: `local.agentCommand`, `local.envAllow`, `cloud.baseUrl`, `cloud.codexCommand` and a runs root "
        "outside the workspace are taken from a workspace's `co-sidecar.toml` / `pyproject.toml` only when the user "
        "trusts it (`trustedWorkspaces` in the user's config.toml, or the editor's `workspaceTrusted: true`); "
        "otherwise they are ignored with a warning saying how to trust (tests/test_trust.py).",
        "- **`serve --tcp`** writes a token to a file only the user can read (0600, in a 0700 directory) and closes "
        "any connection whose `initialize` does not carry it, and any connection that speaks HTTP, before a setting "
        "is taken (tests/test_tcp.py).",
        "- **Secrets**: `CODEX_CLOUD_TOKEN` lives only in request headers. The agent's environment is an allowlist "
        "(docs/configuration.md); `CODEX_CLOUD_TOKEN` is never passed, even when `local.envAllow` names it or is "
        "`[\"*\"]`: an agent that needs Codex credentials uses its own (`CODEX_HOME`/auth.json or an API key, both "
        "allowlisted). Known secret values (the cloud token, from the environment or auth.json, and the provider API "
        "keys an agent gets) are masked (`[REDACTED]`) in manifests, every co/runUpdate and $/progress, agent output, "
        "events.jsonl and the log (tests/test_secrets.py, tests/test_redact.py and tests/test_apply_faults.py grep "
        "manifests, patches, a DEBUG log and every message for known secrets).",
        "- **Edges**: a bad `co-sidecar.toml` is a config error naming the file and key (no traceback), unknown "
        "keys are reported with the nearest valid one, unknown values are errors naming the allowed words "
        "(tests/test_config_edges.py); `co-sidecar run` whose server dies says so and exits non-zero, and Ctrl-C "
        "prints one line and cancels the run (tests/test_run_client_faults.py).",
        "- **Bounds** (tested at their edges in tests/test_bounds.py and tests/test_large_results.py): "
        "`diff.hardMaxPatchBytes` (refused above it, even with `force`; a local agent's change over it fails the run "
        "with `local_patch_too_large` while git's output is read; `diff.maxPatchBytes` is the soft budget that only "
        "needs `force`), `cloud.maxResponseBytes` (a larger task response is refused while it is read: "
        "`cloud_protocol`), `local.maxOutputBytes` (the tail kept per stream, minimum 1024), `cloud.poll.maxRetries`, "
        "`cloud.poll.requestTimeoutSeconds` and `cloud.poll.timeoutSeconds` (a poll due exactly at the deadline is "
        "not made: the run is `timed_out`). co/diff parses and builds off the event loop, so co/status is answered "
        "while a big diff is built (benchmarks/diff_stall.py, docs/benchmarks.md).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset, for the test suite")
    parser.add_argument("--out", default=str(ROOT / "docs" / "reliability.md"))
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument(
        "--only", choices=["boundary"], help="only the hostile-input and fault classes at the boundary: printed, no page written"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="co-reliability-") as tmp:
        base = Path(tmp)
        if args.only == "boundary":
            bnd = boundary_faults.all_scenarios(base, args.quick, args.workers)
            print("\n".join(boundary_lines(bnd)))
            if args.json:
                Path(args.json).write_text(json.dumps({"boundary": bnd}, indent=2, default=str))
            return 0
        # The boundary classes run beside the rest (mostly waiting on servers and sockets).
        with ThreadPoolExecutor(1) as beside:
            boundary = beside.submit(boundary_faults.all_scenarios, base / "boundary", args.quick, max(1, args.workers // 2))
            cells = fault_matrix(base, QUICK_KINDS if args.quick else KINDS, args.workers)
            kills = kill_rounds(base, 1 if args.quick else 3, 2, 2 if args.quick else 3)
            conc = concurrency(base, *((4, 4) if args.quick else (25, 25)))
            bad = hostile(base, 30 if args.quick else 400)
            acc = apply_faults.all_scenarios(base)
            bnd = boundary.result()
    text = render(cells, kills, conc, bad, args.quick, time.monotonic() - started, acc, bnd)
    Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"cells": [c.__dict__ for c in cells], "kills": kills, "concurrency": conc, "hostile": bad, "accepting": acc, "boundary": bnd},
                indent=2, default=str,
            )  # fmt: skip
        )
    print("\n".join(boundary_lines(bnd)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
