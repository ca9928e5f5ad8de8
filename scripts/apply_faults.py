"""Fault scenarios for accepting a diff, through real servers over stdio (stdlib + the package).

Shared by the tests (tests/test_apply_faults.py asserts on what each returns) and
scripts/reliability.py (which reports it in docs/reliability.md), so the page states only what
the tests check. Each scenario builds its own repository under `base` and returns plain data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rpc import RpcError, RpcProcess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from co_sidecar.manifest import DiffEvidence, ManifestStore, RunManifest, new_run_id, utc_now  # noqa: E402
from co_sidecar.protocol import RunState  # noqa: E402

PATCH_REFUSED, APPLY_REFUSED = -32005, -32003


def git(repo: Path, *args: str) -> str:
    return subprocess.run(  # noqa: S603 - fixed git argv
        ["git", "-c", "user.name=r", "-c", "user.email=r@r", "-c", "commit.gpgsign=false", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def make_repo(path: Path, files: dict[str, str | bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, data in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "base")
    return path


def diff_of(repo: Path, change: dict[str, str | bytes | None], modes: dict[str, int] | None = None) -> bytes:
    """`git diff --binary` of `change` (None deletes) against HEAD; the repo is left as it was."""
    for name, data in change.items():
        target = repo / name
        if data is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.encode() if isinstance(data, str) else data)
    for name, mode in (modes or {}).items():
        os.chmod(repo / name, mode)
    git(repo, "add", "-A")
    patch = subprocess.run(["git", "diff", "--cached", "--binary", "HEAD"], cwd=repo, check=True, capture_output=True).stdout  # noqa: S603, S607
    git(repo, "reset", "-q", "--hard", "HEAD")
    return patch


def seed_run(repo: Path, patch: bytes | str, runs_root: Path | None = None) -> str:
    """A succeeded run holding `patch`, written straight into the runs root."""
    data = patch.encode() if isinstance(patch, str) else patch
    store = ManifestStore(runs_root or repo / ".runs")
    run_id, now = new_run_id(), utc_now()
    run_dir = store.run_dir("adhoc", run_id)
    run_dir.mkdir(parents=True)
    (run_dir / "patch.diff").write_bytes(data)
    store.save(
        RunManifest(
            run_id=run_id, task_id="adhoc", prompt="seeded run", workspace=str(repo), requested_mode="local",
            selected_mode="local", routing_reason="seeded", state=RunState.SUCCEEDED, created_at=now, updated_at=now,
            diff=DiffEvidence(patch_path=f"adhoc/{run_id}/patch.diff", sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)),
        )
    )  # fmt: skip
    return run_id


def manifest_of(runs_root: Path, run_id: str) -> dict[str, Any]:
    return dict(json.loads(next(runs_root.glob(f"*/{run_id}/manifest.json")).read_text()))


def snapshot(repo: Path) -> dict[str, tuple[int, bytes]]:
    """Every file outside .git and .runs: mode and bytes (symlinks: their target)."""
    out: dict[str, tuple[int, bytes]] = {}
    for path in repo.rglob("*"):
        rel = path.relative_to(repo)
        if rel.parts[0] in (".git", ".runs"):
            continue
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            out[rel.as_posix()] = (info.st_mode, os.readlink(path).encode())
        elif stat.S_ISREG(info.st_mode):
            out[rel.as_posix()] = (stat.S_IMODE(info.st_mode), path.read_bytes())
    return out


def slow_git(base: Path) -> tuple[Path, Path, Path]:
    """A `git` for PATH whose real applies (not --check, not --numstat) stop after applying,
    touch MARK and wait for RELEASE (at most 30 s). Returns (bin dir, mark, release)."""
    bin_dir, mark, release = base / "slow-git-bin", base / "applied.mark", base / "release"
    bin_dir.mkdir(parents=True, exist_ok=True)
    real = shutil.which("git")
    assert real is not None
    script = bin_dir / "git"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = apply ] || exec {real} "$@"\n'
        f'for a in "$@"; do case "$a" in --check|--numstat) exec {real} "$@";; esac; done\n'
        f'{real} "$@"; rc=$?\n'
        f": > {mark}\n"
        f"i=0; while [ ! -e {release} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n"
        "exit $rc\n"
    )
    script.chmod(0o755)
    return bin_dir, mark, release


def wait_for(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


def server(repo: Path, env: dict[str, str], options: dict[str, Any] | None = None, **kw: Any) -> RpcProcess:
    proc = RpcProcess(cwd=repo, env=env, **kw)
    proc.initialize(repo, options or {})
    return proc


def error_of(proc: RpcProcess, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
    try:
        proc.request(method, params)
    except RpcError as exc:
        return exc.error
    return None


# --------------------------------------------------------------------------- hostile patches

HOSTILE: dict[str, str] = {
    "rename old/new through an outside symlink": (
        "diff --git a/a.txt b/a.txt\nsimilarity index 100%\nrename old a.txt\nrename new out/evil.desktop\n"
    ),
    "rename from/to through an outside symlink": (
        "diff --git a/a.txt b/out/evil.txt\nsimilarity index 100%\nrename from a.txt\nrename to out/evil.txt\n"
    ),
    "copy to outside": "diff --git a/a.txt b/out/c.txt\nsimilarity index 100%\ncopy from a.txt\ncopy to out/c.txt\n",
    "symlink made by the patch, then a file through it": (
        "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+../outside\n"
        "\\ No newline at end of file\ndiff --git a/l/x b/l/x\nnew file mode 100644\n--- /dev/null\n+++ b/l/x\n"
        "@@ -0,0 +1 @@\n+pwned\n"
    ),
    "symlink to outside (no allowExternalSymlinks)": (
        "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+../outside\n"
        "\\ No newline at end of file\n"
    ),
    "write under the runs root": (
        "diff --git a/.runs/adhoc/forged/manifest.json b/.runs/adhoc/forged/manifest.json\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/.runs/adhoc/forged/manifest.json\n@@ -0,0 +1 @@\n+{}\n"
    ),
    "unknown header line": "diff --git a/a.txt b/a.txt\nrenamed-to x\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-keep\n+x\n",
    "patch hidden after a hunk": (
        "diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-keep\n+x\nnote\n"
        "--- a/b.txt\n+++ b/out/t.txt\n@@ -0,0 +1 @@\n+pwned\n"
    ),
}
for _name in ["GIT~1/config", ".git./config", ".g\u200cit/config", ".GIT/hooks/post-checkout", "gitmod~1", "x./y"]:
    _q = json.dumps(_name, ensure_ascii=False)[1:-1]
    HOSTILE[f"name {_name!r}"] = (
        f'diff --git "a/{_q}" "b/{_q}"\nnew file mode 100644\n--- /dev/null\n+++ "b/{_q}"\n@@ -0,0 +1 @@\n+x\n'
    )


def hostile_patches(base: Path) -> dict[str, Any]:
    """Each hostile patch through co/diff and co/apply (client and git): counts refusals, files
    written outside the workspace or inside it, and `git apply` runs that saw one."""
    repo = make_repo(base / "hostile-patches" / "ws", {"a.txt": "keep\n"})
    outside = base / "hostile-patches" / "outside"
    outside.mkdir()
    (repo / "out").symlink_to(outside)
    runs = {name: seed_run(repo, patch) for name, patch in HOSTILE.items()}
    spy_dir, spy_log = base / "hostile-patches" / "spy", base / "hostile-patches" / "git.log"
    spy_dir.mkdir()
    (spy_dir / "git").write_text(f'#!/bin/sh\necho "$@" >> {spy_log}\nexec {shutil.which("git")} "$@"\n')
    (spy_dir / "git").chmod(0o755)
    before = snapshot(repo)
    proc = server(repo, {"PATH": f"{spy_dir}{os.pathsep}{os.environ['PATH']}"})
    refused: dict[str, int] = {}
    try:
        for name, run_id in runs.items():
            refused[name] = 0
            for method, params in [
                ("co/diff", {"runId": run_id}),
                ("co/apply", {"runId": run_id, "accept": True, "strategy": "client"}),
                ("co/apply", {"runId": run_id, "accept": True, "strategy": "git"}),
            ]:
                error = error_of(proc, method, params)
                if error is not None and error["code"] == PATCH_REFUSED:
                    refused[name] += 1
                elif method == "co/diff" and name.startswith("symlink to outside"):
                    refused[name] += int(any("outside" in c["reason"] for c in proc.request(method, params)["conflicts"]))
        alive = proc.alive()
        edits_sent = len(proc.server_requests)
    finally:
        proc.close()
    calls = spy_log.read_text().splitlines() if spy_log.exists() else []
    return {
        "patches": len(HOSTILE),
        "names": list(HOSTILE),
        "refused_everywhere": sum(1 for n in refused.values() if n == 3),
        "refused": refused,
        "written_outside": len(list(outside.iterdir())),
        "workspace_changed": snapshot(repo) != before,
        "git_apply_runs": len([c for c in calls if c.startswith("apply") and "--numstat" not in c]),
        "edits_sent": edits_sent,
        "alive": alive,
    }


# --------------------------------------------------------------------------- applied at most once


def double_apply(base: Path) -> dict[str, Any]:
    """Two servers on one workspace (two editor windows). A applies with a git that pauses after
    writing; meanwhile B's co/apply and co/reject and A's own co/reject must be refused, and
    after A is done B must see the run applied. The line must be in the file once."""
    work = base / "double"
    repo = make_repo(work / "ws", {"f.txt": "one\n"})
    run_id = seed_run(repo, diff_of(repo, {"f.txt": "one\nadded\n"}))
    bin_dir, mark, release = slow_git(work)
    a = server(repo, {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    b = server(repo, {})
    out: dict[str, Any] = {}
    try:
        b.request("co/list", {})  # B has loaded the run as succeeded
        answer: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda: answer.update(a.request_raw("co/apply", {"runId": run_id, "accept": True, "strategy": "git"}, timeout=60))
        )
        thread.start()
        wait_for(mark.exists)
        out["intent_recorded"] = manifest_of(repo / ".runs", run_id).get("applying") is not None
        during = [
            error_of(b, "co/apply", {"runId": run_id, "accept": True, "strategy": "git"}),
            error_of(b, "co/reject", {"runId": run_id}),
            error_of(a, "co/reject", {"runId": run_id}),
        ]
        release.touch()
        thread.join(60)
        after = [
            error_of(b, "co/apply", {"runId": run_id, "accept": True, "strategy": "git"}),
            error_of(b, "co/reject", {"runId": run_id}),
        ]
        out.update(
            first_applied=answer.get("result", {}).get("applied") is True,
            refused_during=sum(1 for e in during if e and e["code"] == APPLY_REFUSED),
            refused_after=sum(1 for e in after if e and e["code"] == APPLY_REFUSED),
            during_messages=[e["message"] if e else None for e in during],
            after_messages=[e["message"] if e else None for e in after],
            b_status=b.request("co/status", {"runId": run_id})["state"],
        )
    finally:
        release.touch()
        a.close()
        b.close()
    final = manifest_of(repo / ".runs", run_id)
    out.update(
        line_count=(repo / "f.txt").read_text().count("added"),
        state=final["state"],
        states_seen=[t["state"] for t in final["transitions"]],
    )
    return out


# --------------------------------------------------------------------------- failed apply restores


def eight_files() -> tuple[dict[str, str | bytes], dict[str, str | bytes | None]]:
    base: dict[str, str | bytes] = {f"f{i}.txt": f"original {i}\n" * 200 for i in range(8)}
    change: dict[str, str | bytes | None] = {f"f{i}.txt": (f"new {i} " * 40 + "\n") * 1000 for i in range(5)}
    change["f5.txt"] = None  # deleted
    change["f6.txt"] = "short\n"  # truncated
    change["new/dir/f8.txt"] = "x" * 300_000  # a new file in new directories
    return base, change


def disk_full(base: Path) -> dict[str, Any]:
    """`git apply` on a full disk: a tmpfs of 1 MiB when this machine lets us mount one (root),
    else a file-size limit (RLIMIT_FSIZE) on the server and its git. Every file must be back."""
    work = base / "diskfull"
    work.mkdir(parents=True)
    mount = work / "tmpfs"
    mount.mkdir()
    method = "tmpfs"
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True, capture_output=True)  # noqa: S603, S607
    except (OSError, subprocess.CalledProcessError):
        method = "rlimit"
    try:
        files, change = eight_files()
        # The patch is made in a twin repository on the big disk: the same files, the same blobs.
        patch = diff_of(make_repo(work / "twin", files), change, {"f7.txt": 0o755})
        repo = make_repo(mount / "ws", files)
        runs_root = work / "runs"  # on the big disk: pre-images need room
        run_id = seed_run(repo, patch, runs_root)
        before = snapshot(repo)
        kw: dict[str, Any] = {}
        if method == "rlimit":
            limit = 150_000
            kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        proc = RpcProcess(cwd=repo, env={}, **kw)
        try:
            proc.initialize(repo, {"runs": {"root": str(runs_root)}})
            result = proc.request("co/apply", {"runId": run_id, "accept": True, "strategy": "git"})
            state = proc.request("co/status", {"runId": run_id})
        finally:
            proc.close()
        after = snapshot(repo)
        return {
            "method": method,
            "applied": result["applied"],
            "reason": result.get("failureReason"),
            "files": len(change) + 1,
            "restored_reported": len(result.get("restored", [])),
            "identical": after == before,
            "differing": sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)),
            "state": state["state"],
            "journal_left": (runs_root / "adhoc" / run_id / "apply-preimages").exists(),
        }
    finally:
        if method == "tmpfs":
            subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)  # noqa: S603, S607


def kill_mid_apply(base: Path) -> dict[str, Any]:
    """kill -9 of the server while git is applying (files written, apply not finished). The next
    server must name the changed files and restore them on `co/apply {restore: true}`."""
    work = base / "killapply"
    files, change = eight_files()
    repo = make_repo(work / "ws", files)
    patch = diff_of(repo, change, {"f7.txt": 0o755})
    run_id = seed_run(repo, patch)
    before = snapshot(repo)
    bin_dir, mark, release = slow_git(work)
    first = server(repo, {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    try:
        first.send({"jsonrpc": "2.0", "id": "apply", "method": "co/apply", "params": {"runId": run_id, "accept": True, "strategy": "git"}})
        wait_for(mark.exists)
        first.kill()  # SIGKILL
    finally:
        release.touch()  # let the paused git exit
    changed_on_disk = sorted(k for k in set(before) | set(snapshot(repo)) if before.get(k) != snapshot(repo).get(k))
    at_crash = manifest_of(repo / ".runs", run_id)
    second = server(repo, {})
    try:
        wait_for(lambda: any("interrupted" in u["message"] for u in second.updates(run_id)), 30)
        report = next(u["message"] for u in second.updates(run_id) if "interrupted" in u["message"])
        refused = error_of(second, "co/apply", {"runId": run_id, "accept": True, "strategy": "git"})
        restored = second.request("co/apply", {"runId": run_id, "restore": True})
        identical = snapshot(repo) == before
        again = second.request("co/apply", {"runId": run_id, "accept": True, "strategy": "git"})
    finally:
        second.close()
    return {
        "state_at_crash": at_crash["state"],
        "intent_at_crash": at_crash.get("applying") is not None,
        "changed_on_disk": changed_on_disk,
        "reported": [p for p in changed_on_disk if p in report],
        "report": report,
        "apply_refused_until_restored": bool(refused and refused["code"] == APPLY_REFUSED and "restore" in refused["message"]),
        "restored": sorted(restored["restored"]),
        "identical_after_restore": identical,
        "applied_after_restore": again["applied"],
        "final_matches_change": all(
            (repo / k).read_bytes() == (v.encode() if isinstance(v, str) else v) if v is not None else not (repo / k).exists()
            for k, v in change.items()
        ),
    }


# --------------------------------------------------------------------------- manifests are input

BAD_MANIFESTS: dict[str, bytes] = {
    "empty array": b"[]",
    "string": b'"str"',
    "null": b"null",
    "bad JSON": b"{not json",
    "wrong shape": b'{"runId": 5, "state": "nope"}',
    "deep nesting": b"[" * 5000 + b"]" * 5000,
    "newer schema": b'{"schemaVersion": 99}',
}


def bad_manifests(base: Path) -> dict[str, Any]:
    """Bad manifest files beside a good run: the good run is listed, each bad one is skipped
    with a reason, the server stays up; a newer version's extra fields survive a rewrite."""
    from co_sidecar.manifest import skipped_manifests

    repo = make_repo(base / "manifests" / "ws", {"f.txt": "one\n"})
    good = seed_run(repo, diff_of(repo, {"f.txt": "two\n"}))
    path = next((repo / ".runs").glob(f"*/{good}/manifest.json"))
    data = json.loads(path.read_text())
    data["fromTheFuture"] = {"kept": [1, 2]}
    data["executor"]["futureDetail"] = "kept too"
    path.write_text(json.dumps(data))
    for i, body in enumerate(BAD_MANIFESTS.values()):
        bad = repo / ".runs" / "adhoc" / f"bad-{i}" / "manifest.json"
        bad.parent.mkdir(parents=True)
        bad.write_bytes(body)
    # A manifest copied into another run's directory (as a forger would) names another run.
    forged = repo / ".runs" / "adhoc" / "forged" / "manifest.json"
    forged.parent.mkdir(parents=True)
    forged.write_text(json.dumps(data))
    proc = server(repo, {})
    try:
        listed = [r["runId"] for r in proc.request("co/list", {})["runs"]]
        rejected = proc.request("co/reject", {"runId": good})["state"]
        alive = proc.alive()
    finally:
        proc.close()
    after = json.loads(path.read_text())
    skipped = skipped_manifests(repo / ".runs")
    return {
        "bad": len(BAD_MANIFESTS) + 1,
        "kinds": [*BAD_MANIFESTS, "another run's manifest"],
        "good_listed": listed == [good],
        "skipped": len(skipped),
        "reasons": [why for _, why in skipped],
        "alive": alive,
        "rewritten_state": after["state"] if rejected == "rejected" else None,
        "extra_fields_kept": after.get("fromTheFuture") == {"kept": [1, 2]} and after["executor"].get("futureDetail") == "kept too",
    }


# --------------------------------------------------------------------------- secrets


def secret_echo(base: Path) -> dict[str, Any]:
    """A hostile task API that echoes the cloud token in a task's error message, and local agents
    that print their provider API key (as text and inside a codex event): neither may reach a
    manifest, events.jsonl, a notification, a response or the DEBUG log."""
    from co_sidecar.testing.emulator import Emulator

    token, api_key = "sk-cloud-SECRET-91c0ffee5e", "sk-proj-APIKEY-4242deadbeef"
    work = base / "secrets"
    repo = make_repo(work / "ws", {"f.txt": "one\n"})
    log = work / "server.log"
    # The emulator's agent gets the token under another name (the emulator holds it) and fails
    # with it on stderr: the task's error message then carries it back.
    echo = [sys.executable, "-c", "import os, sys; sys.stderr.write('denied for ' + os.environ['HOSTILE_ECHO']); sys.exit(3)"]
    printer = (
        "import json, os; key = os.environ['OPENAI_API_KEY']; print('my key is', key);"
        "print(json.dumps({'type': 'item.completed', 'item': {'id': 'i1', 'type': 'agent_message', 'text': 'key ' + key}}));"
        "open('f.txt', 'w').write('two\\n')"
    )
    os.environ["HOSTILE_ECHO"] = token
    try:
        with Emulator(repo, agent=echo).start() as emu:
            options = {
                "local": {"agentCommand": [sys.executable, "-c", printer], "output": "codex-json"},
                "cloud": {"envId": "env-x", "baseUrl": emu.base_url, "poll": {"intervalSeconds": 0.05, "maxIntervalSeconds": 0.2}},
            }
            argv = [sys.executable, "-m", "co_sidecar", "serve", "--log-file", str(log), "--log-level", "DEBUG"]
            proc = RpcProcess(argv=argv, cwd=repo, env={"CODEX_CLOUD_TOKEN": token, "OPENAI_API_KEY": api_key})
            try:
                proc.initialize(repo, options)
                cloud = proc.request("co/launch", {"prompt": "echo", "mode": "cloud"})["runId"]
                local = proc.request("co/launch", {"prompt": "print", "mode": "local"})["runId"]
                states = [proc.wait_state(r, {"succeeded", "failed", "cancelled", "timed_out"}) for r in (cloud, local)]
                for run_id in (cloud, local):
                    proc.request("co/status", {"runId": run_id})
                proc.request("co/list", {})
            finally:
                proc.close()
    finally:
        os.environ.pop("HOSTILE_ECHO", None)
    messages = [u["message"] for u in proc.updates(cloud)]
    out: dict[str, Any] = {"states": states, "echo_seen_masked": any("[REDACTED]" in m for m in messages)}
    for name, secret in (("cloud token", token), ("api key", api_key)):
        found = [str(p.relative_to(repo)) for p in (repo / ".runs").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        found += ["log"] if secret.encode() in log.read_bytes() else []
        found += [f"message {i}" for i, body in enumerate(proc.received) if secret.encode() in body]
        out[name] = found
    out["events_files"] = len(list((repo / ".runs").rglob("events.jsonl")))
    return out


def all_scenarios(base: Path) -> dict[str, Any]:
    return {
        "hostile_patches": hostile_patches(base),
        "double_apply": double_apply(base),
        "disk_full": disk_full(base),
        "kill_mid_apply": kill_mid_apply(base),
        "bad_manifests": bad_manifests(base),
        "secret_echo": secret_echo(base),
    }


if __name__ == "__main__":  # a quick look: python scripts/apply_faults.py
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(all_scenarios(Path(tmp)), indent=1, default=str))
