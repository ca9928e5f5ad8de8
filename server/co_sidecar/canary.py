"""`co-sidecar canary`: one minimal task through the whole cloud path, phase by phase.

create → poll → diff go through the same `CloudExecutor` and `RunRecord` a real
run uses (records in a temp dir, never the workspace's `.runs`); the apply
preflight is `git apply --check` in a scratch worktree, never the user's tree.
With `--emulator`, a loopback emulator of the task API serves the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from .config import Config, build_config, deep_merge, load_config
from .manifest import CloudInfo, DiffEvidence, ManifestStore, RunManifest, new_run_id, utc_now
from .protocol import CanaryPhase, CanaryResult, LaunchParams, RunState
from .router import cloud_route_check
from .run_record import RunRecord

PhaseName = Literal["preflight", "create", "poll", "diff", "apply_check"]

CANARY_PROMPT = (
    "co-sidecar canary: create a file named CO_SIDECAR_CANARY.md containing the line 'ok'. "
    "Change nothing else."
)


class CanaryReport(CanaryResult):
    def add(self, name: PhaseName, ok: bool, started: float, detail: str = "", ended: float | None = None) -> bool:
        ended = time.monotonic() if ended is None else ended
        self.phases.append(CanaryPhase(name=name, ok=ok, duration_ms=int((ended - started) * 1000), detail=detail))
        self.ok = self.ok and ok
        return ok


@contextlib.contextmanager
def _emulated(config: Config, workspace: Path) -> Iterator[Config]:
    from .testing.emulator import Emulator

    with Emulator(workspace).start() as emulator:
        overrides = {"cloud": {"baseUrl": emulator.base_url, "adapter": "http", "envId": config.cloud.env_id or "canary-env"}}
        yield build_config(deep_merge(config.model_dump(by_alias=True), overrides))


async def run_canary(config: Config, workspace: Path) -> CanaryReport:
    from .cloud.executor import CloudExecutor

    report = CanaryReport(adapter=config.cloud.adapter, base_url=config.cloud.base_url)
    started = time.monotonic()
    params = LaunchParams(prompt=CANARY_PROMPT, mode="cloud", task_id="canary")
    issues = cloud_route_check(params, config, workspace, os.environ).issues
    if not report.add("preflight", not issues, started, "; ".join(f"{i.code}: {i.message}" for i in issues)):
        return report

    marks: dict[str, float] = {}

    def on_update(update: dict[str, Any]) -> None:  # a RunUpdate's wire dict
        if update["state"] == RunState.RUNNING and "create" not in marks:
            marks["create"] = time.monotonic()

    def mark_diff(_evidence: DiffEvidence) -> None:  # the end of polling, the start of the diff phase
        marks.setdefault("diff", time.monotonic())

    with tempfile.TemporaryDirectory(prefix="co-sidecar-canary-") as tmp:
        now = utc_now()
        manifest = RunManifest(
            run_id=new_run_id(), task_id="canary", prompt=CANARY_PROMPT, workspace=str(workspace),
            requested_mode="cloud", selected_mode="cloud", routing_reason="canary",
            state=RunState.LAUNCHING, created_at=now, updated_at=now,
            cloud=CloudInfo(adapter=config.cloud.adapter, env_id=config.cloud.env_id, branch=config.cloud.branch, attempts=1),
        )  # fmt: skip
        record = RunRecord(manifest, workspace, ManifestStore(Path(tmp)), config, on_update)
        record.on_patch = mark_diff
        phase_start = time.monotonic()
        outcome = await CloudExecutor().execute(record)
        done = time.monotonic()
        cloud = record.manifest.cloud or CloudInfo()
        report.task_id, report.task_url = cloud.task_id, cloud.task_url
        created = "create" in marks
        report.add("create", created, phase_start, cloud.task_url or outcome.message, marks.get("create"))
        if not created:
            return report
        polled = outcome.state == RunState.SUCCEEDED
        detail = f"{cloud.poll_count} polls, {cloud.retries} retries; {outcome.message}"
        report.add("poll", polled, marks["create"], detail, marks.get("diff", done))
        if not polled:
            return report
        evidence = record.manifest.diff
        has_diff = evidence is not None and evidence.bytes > 0 and not evidence.problem
        detail = f"{len(evidence.files)} files, {evidence.bytes} bytes, sha256 {evidence.sha256[:12]}" if evidence else "no diff"
        report.add("diff", has_diff, marks.get("diff", done), detail, done)
        if not has_diff or evidence is None:
            return report
        check_start = time.monotonic()
        ok, why = await asyncio.to_thread(_apply_check, workspace, Path(tmp) / evidence.patch_path)
        report.add("apply_check", ok, check_start, why)
    return report


def _apply_check(workspace: Path, patch: Path) -> tuple[bool, str]:
    """`git apply --check` in a scratch worktree of the workspace, never the user's tree."""
    from .diffs import check_paths, parse_patch
    from .errors import CoError
    from .gitcmd import run_git
    from .local.scratch import create_scratch, remove_scratch

    try:
        check_paths(parse_patch(patch.read_bytes()), workspace)
        scratch = create_scratch(workspace, f"canary-{new_run_id()}")
    except CoError as exc:
        return False, exc.message
    try:
        result = run_git(["apply", "--check", "--binary", str(patch)], scratch.cwd)
        if result.returncode == 0:
            return True, "git apply --check passed in a scratch worktree"
        why = result.stderr.decode("utf-8", "replace").strip()
        return False, why or f"git apply --check exited {result.returncode}"
    finally:
        remove_scratch(scratch.path, scratch.repo)


async def canary(config: Config, workspace: Path, *, emulator: bool) -> CanaryReport:
    if emulator:
        with _emulated(config, workspace) as emulated:
            return await run_canary(emulated, workspace)
    return await run_canary(config, workspace)


def main(args: argparse.Namespace) -> int:
    workspace = Path(args.workspace).resolve()
    config = load_config(workspace)

    report = asyncio.run(canary(config, workspace, emulator=args.emulator))
    if args.format == "json":
        print(json.dumps(report.wire(), indent=2))
    else:
        print(f"canary against {report.base_url} ({report.adapter} adapter)")
        for phase in report.phases:
            print(f"[{'ok  ' if phase.ok else 'FAIL'}] {phase.name:<12} {phase.duration_ms:>7} ms  {phase.detail}")
        print("canary passed" if report.ok else "canary FAILED")
    return 0 if report.ok else 1
