"""All runs a server knows: loading and recovery, launch, list, prune, cancel, diff and explicit apply.

A run itself is a `run_record.RunRecord` (persisted, checked transitions) with a `driver.RunDriver`
(task, cancel, owner lock) and a `notifier.RunNotifier` (co/runUpdate).

No pygls here: the server passes in a sink for `RunUpdate`s (as wire dicts) and, for the client
apply strategy, a coroutine that sends `workspace/applyEdit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import logging
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import apply_journal, apply_plan, diffs, followup, redact
from .budget import budget_of, too_large
from .config import Config
from .driver import CANCEL_WAIT_S, OWNER_LOCK, drive, failure_of, os_cause, try_lock
from .errors import (
    ApplyRefused,
    ErrorCategory,
    InvalidState,
    PatchRefused,
    RunErrorCode,
    RunNotFound,
    WorkspaceError,
)
from .execution import Executor, Outcome, ResumableExecutor
from .git_apply import external_symlinks_refused, parse_checked, verify_with_git
from .gitcmd import git_output
from .manifest import (
    MANIFEST_NAME,
    ApplyIntent,
    ApplyOutcome,
    DiffEvidence,
    ManifestStore,
    RunManifest,
    Transition,
    atomic_write_bytes,
    load_manifest,
    new_run_id,
    parse_utc,
    utc_now,
)
from .notifier import UpdateSink
from .protocol import (
    DEFAULT_LIST_LIMIT,
    FINISHED_STATES,
    ApplyOutcomeKind,
    ApplyParams,
    ApplyResult,
    Conflict,
    DiffParams,
    DiffResult,
    FollowUpParams,
    LaunchParams,
    LaunchResult,
    ListParams,
    Mode,
    PruneParams,
    PruneResult,
    RouteResult,
    RunState,
    RunStateResult,
    RunSummary,
)
from .prune import RunAge, select_prunable
from .router import (
    in_git_work_tree,
    not_a_repository,
    requested_cloud_branch,
    requested_cloud_env,
    route,
)
from .run_record import RunRecord
from .shutdown import run_shutdown_hooks

log = logging.getLogger(__name__)

ClientApply = Callable[[dict[str, Any], str], Awaitable[tuple[bool, str | None]]]
ExecutorFactory = Callable[[Mode], Executor]

EXECUTING_STATES = frozenset({RunState.QUEUED, RunState.ROUTING, RunState.LAUNCHING, RunState.RUNNING})

# Held (flock) by whoever applies, restores or rejects the run, in any process: see `_apply_lock`.
APPLY_LOCK = "apply.lock"
APPLY_LOCK_RETRIES, APPLY_LOCK_RETRY_S = 10, 0.05


class RunManager:
    """All runs this server knows: started here or loaded from manifests on disk."""

    def __init__(
        self,
        sink: UpdateSink,
        config_for: Callable[[Path], Config],
        executor_for: ExecutorFactory,
        environ: Mapping[str, str] | None = None,
    ):
        self.sink = sink
        self.config_for = config_for
        self.executor_for = executor_for
        self.environ = os.environ if environ is None else environ
        self.runs: dict[str, RunRecord] = {}
        # Each runs root loaded so far: the workspace, store and config it was loaded with.
        self._loaded: dict[Path, tuple[Path, ManifestStore, Config]] = {}
        self.skipped: dict[Path, list[tuple[Path, str]]] = {}  # runs root -> manifests not loaded
        redact.refresh(self.environ)
        redact.install_log_filter()
        self._local_slots: dict[Path, asyncio.Semaphore] = {}

    # -- loading ------------------------------------------------------------
    def store_for(self, workspace: Path, config: Config) -> ManifestStore:
        root = Path(config.runs.root)
        return ManifestStore(root if root.is_absolute() else workspace / root)

    def ensure_loaded(self, workspace: Path) -> list[RunRecord]:
        """Load a workspace's manifests once; returns runs that were interrupted by a crash."""
        config = self.config_for(workspace)
        store = self.store_for(workspace, config)
        if store.root in self._loaded:
            return []
        self._loaded[store.root] = (workspace, store, config)
        manifests, broken = store.load_all()
        self.skipped[store.root] = broken
        for path, why in broken:
            log.warning("skipping manifest %s: %s", path, why)
        orphans: list[RunRecord] = []
        for manifest in manifests:
            if manifest.run_id in self.runs:
                continue
            record = RunRecord(manifest, workspace, store, config, self.sink)
            self.runs[manifest.run_id] = record
            if manifest.applying is not None:
                self._report_interrupted_apply(record)
            # A run still executing is an orphan only if nobody holds its owner lock (another
            # server on this workspace keeps it while driving the run). Taking the lock also
            # makes us its only recoverer when two servers start at once.
            if manifest.state in EXECUTING_STATES and record.driver.claim(record.run_dir):
                path = store.path_for(manifest)
                try:
                    fresh = load_manifest(path)  # its owner may have finished it since we read it
                except (OSError, ValueError) as exc:
                    log.warning("cannot re-read manifest %s: %s", path, exc)
                    fresh = manifest
                record.manifest = fresh
                if fresh.state in EXECUTING_STATES:
                    orphans.append(record)
                else:
                    record.driver.release()
        return orphans

    def recover(self, orphans: list[RunRecord]) -> None:
        """Runs whose server died: local ones failed as interrupted, cloud ones resume polling."""
        for record in orphans:
            cloud = record.manifest.cloud
            if record.manifest.selected_mode == "cloud" and cloud and cloud.task_id:
                executor = self.executor_for("cloud")
                if isinstance(executor, ResumableExecutor):
                    record.manifest.owner_pid = os.getpid()
                    record.set_state(RunState.RUNNING, f"resuming cloud task {cloud.task_id} after restart")
                    record.driver.start(drive(record, executor.resume, self._local_slots))
                    continue
            record.finish(
                Outcome(
                    RunState.FAILED,
                    "interrupted: the server stopped while this run was in progress",
                    RunErrorCode.INTERRUPTED,
                )
            )

    def _report_interrupted_apply(self, record: RunRecord) -> None:
        """An `applying` intent nobody holds the apply lock for: that apply was cut short (its
        server died). Say which files may be changed and how to put them back."""
        lock = try_lock(record.run_dir / APPLY_LOCK)
        if lock is None:
            return  # another live server is applying it right now
        try:
            try:
                record.manifest = load_manifest(record.store.path_for(record.manifest))
            except (OSError, ValueError) as exc:
                log.warning("cannot re-read manifest of run %s: %s", record.run_id, exc)
            if record.manifest.applying is None:
                return
            message = interrupted_apply_message(record)
        finally:
            os.close(lock)
        log.warning("run %s: %s", record.run_id, message)
        record.emit(message)

    # -- lookups ------------------------------------------------------------
    def get(self, run_id: str) -> RunRecord:
        record = self.runs.get(run_id) or self._load_new(run_id)
        if record is None:
            raise RunNotFound(run_id)
        self.refresh(record)
        return record

    def _load_new(self, run_id: str) -> RunRecord | None:
        """A run another server started after this one loaded its workspaces."""
        if not run_id or "/" in run_id or run_id.startswith("."):
            return None
        for workspace, store, config in self._loaded.values():
            for path in store.root.glob(f"*/{run_id}/{MANIFEST_NAME}"):
                try:
                    manifest = load_manifest(path)
                except (OSError, ValueError):
                    continue
                if manifest.run_id == run_id:
                    found = RunRecord(manifest, workspace, store, config, self.sink)
                    self.runs[run_id] = found
                    return found
        return None

    def refresh(self, record: RunRecord) -> None:
        """Re-read the manifest of a run another server drives (or did since we loaded it), so
        `co/status` from a second client follows it to its end."""
        if record.driver.task is not None or record.driver.owner_lock is not None or record.applying:
            return
        path = record.store.path_for(record.manifest)
        try:
            info = path.stat()
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp == record.disk_stamp:
                return
            fresh = load_manifest(path)
        except (OSError, ValueError) as exc:
            log.info("cannot re-read manifest %s: %s", path, exc)
            return
        record.disk_stamp = stamp
        if fresh.run_id == record.run_id:
            record.manifest = fresh

    # -- prune --------------------------------------------------------------
    async def prune(self, params: PruneParams, workspace: Path) -> PruneResult:
        """Remove finished runs by age and count (see prune.select_prunable). Deciding happens
        on the event loop; only the removal of each run's directory runs in a thread."""
        self.recover(self.ensure_loaded(workspace))
        records = [r for r in self.runs.values() if r.workspace == workspace]
        for record in records:
            self.refresh(record)
        ages = [RunAge(r.run_id, RunState(r.manifest.state), parse_utc(r.manifest.updated_at)) for r in records]
        chosen = select_prunable(ages, datetime.now(UTC), older_than_days=params.older_than_days, keep=params.keep)
        removed: list[RunSummary] = []
        skipped: list[str] = []
        freed = 0
        for run_id in chosen:
            record = self.runs[run_id]
            row = RunSummary.model_validate(record.summary())
            if params.dry_run:
                removed.append(row)
                freed += await asyncio.to_thread(_tree_size, record.run_dir)
                continue
            lock = try_lock(record.run_dir / OWNER_LOCK)  # held: another server is applying or driving it
            if lock is None or record.driver.task is not None or record.applying:
                skipped.append(f"{run_id}: in use by a server")
                if lock is not None:
                    os.close(lock)
                continue
            try:
                freed += await asyncio.to_thread(_remove_tree, record.run_dir)
            except OSError as exc:
                skipped.append(f"{run_id}: {exc.strerror or exc}")
                continue
            finally:
                os.close(lock)
            with contextlib.suppress(OSError):
                record.run_dir.parent.rmdir()  # the task's directory, once empty
            del self.runs[run_id]
            removed.append(row)
        finished = sum(1 for r in records if r.manifest.state in FINISHED_STATES)
        kept = finished - len(removed)
        return PruneResult(dry_run=params.dry_run, removed=removed, kept=kept, skipped=skipped, bytes_freed=freed)

    def list_runs(self, params: ListParams) -> dict[str, Any]:
        """`ListResult` as wire JSON: a page of rows, newest first (cached per record, see
        `summary`), and the total that matched."""
        limit = DEFAULT_LIST_LIMIT if params.limit is None else params.limit
        rows: list[dict[str, Any]] = []
        total = 0
        for record in sorted(self.runs.values(), key=lambda r: r.manifest.run_id, reverse=True):
            m = record.manifest
            if params.state is not None and m.state != params.state:
                continue
            if params.task_id is not None and m.task_id != params.task_id:
                continue
            if params.root_run_id is not None and followup.root_of(m) != params.root_run_id:
                continue
            total += 1
            if len(rows) < limit:
                row = record.summary()
                live = record.notifier.live_diff_stats
                if live and m.state in EXECUTING_STATES:  # not in the cached row: no save moves it
                    row = {**row, "diffStats": live}
                rows.append(row)
        return {"runs": rows, "total": total}

    # -- route & launch -----------------------------------------------------
    def route(self, params: LaunchParams, workspace: Path) -> RouteResult:
        return route(params, self.config_for(workspace), workspace, self.environ)

    def launch(
        self,
        params: LaunchParams,
        workspace: Path,
        decision: RouteResult | None = None,
        prepare: Callable[[RunRecord], None] | None = None,
    ) -> LaunchResult:
        """`decision`: a route already taken off the event loop (it may list cloud environments).
        `prepare`: fills in the new run before its first write (a follow-up's links)."""
        config = self.config_for(workspace)
        self.recover(self.ensure_loaded(workspace))
        decision = decision or route(params, config, workspace, self.environ)
        if decision.mode == "local" and not in_git_work_tree(workspace):
            raise not_a_repository(workspace)  # refused before the runs root is created
        now = utc_now()
        manifest = RunManifest(
            run_id=new_run_id(),
            task_id=params.task_id,
            prompt=params.prompt,
            workspace=str(workspace),
            requested_mode=params.mode,
            selected_mode=decision.mode,
            routing_reason=decision.reason,
            metadata=params.metadata,
            fallback=decision.fallback,
            state=RunState.ROUTING,
            created_at=now,
            updated_at=now,
            owner_pid=os.getpid(),
            workspace_head=git_output(["rev-parse", "-q", "--verify", "HEAD"], workspace),
            transitions=[Transition(state=RunState.ROUTING, at=now)],
        )
        if decision.mode == "cloud":
            from .manifest import CloudInfo

            start_local = params.cloud.start_from_local_changes
            manifest.cloud = CloudInfo(
                adapter=config.cloud.adapter,
                env_id=decision.cloud_env.id if decision.cloud_env else requested_cloud_env(params, config),
                branch=decision.cloud_branch or requested_cloud_branch(params, config),
                attempts=params.cloud.attempts,
                env=decision.cloud_env,
                warnings=decision.warnings,
                start_from_local_changes=config.cloud.start_from_local_changes if start_local is None else start_local,
            )
        record = RunRecord(manifest, workspace, self.store_for(workspace, config), config, self.sink)
        try:
            # Before the first write: no other server may take this run for an orphan.
            if not record.driver.claim(record.run_dir):
                raise OSError(errno.EBUSY, "its owner lock is held by another process")
            if prepare is not None:
                prepare(record)
            record.store.save(manifest)
        except OSError as exc:  # refused, and no ghost record left behind
            record.driver.release()
            shutil.rmtree(record.run_dir, ignore_errors=True)
            system = exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM)
            raise WorkspaceError(
                f"cannot record the run under {record.store.root}: {os_cause(exc)}",
                category=RunErrorCode.SYSTEM_ERROR if system else ErrorCategory.RUNS_ROOT,
            ) from exc
        self.runs[manifest.run_id] = record
        record.emit(decision.reason)
        try:
            if decision.denied:
                codes = ", ".join(i.code for i in decision.issues)
                record.finish(Outcome(RunState.FAILED, decision.reason + f" [{codes}]", RunErrorCode.CLOUD_PREFLIGHT))
            else:
                record.set_state(RunState.LAUNCHING, f"launching {decision.mode} run")
                record.driver.start(drive(record, self.executor_for(decision.mode).execute, self._local_slots))
        except Exception as exc:  # recorded already: it must end, failed with the cause
            record.finish(failure_of(exc))
        return LaunchResult(
            run_id=manifest.run_id,
            task_id=manifest.task_id,
            mode=manifest.selected_mode,
            state=manifest.state,
            reason=decision.reason,
            fallback=decision.fallback,
            cloud_env=decision.cloud_env if decision.mode == "cloud" else None,
            warnings=decision.warnings,
        )

    def follow_up(
        self, parent: RunRecord, params: FollowUpParams, starting: bytes | None, decision: RouteResult
    ) -> LaunchResult:
        """co/followUp: a new run where `parent` ended (see followup.py). `starting`: the
        parent's cumulative change (None: the workspace has it already)."""
        launch = followup.launch_params(parent, params)
        return self.launch(launch, parent.workspace, decision, prepare=lambda r: followup.link(r, parent, starting))

    def family(self, record: RunRecord) -> dict[str, RunRecord]:
        """The runs of `record`'s chain (same root), re-read from disk where another server drives them."""
        root = followup.root_of(record.manifest)
        out = {}
        for run_id, other in self.runs.items():
            if followup.root_of(other.manifest) == root:
                if other is not record:
                    self.refresh(other)
                out[run_id] = other
        return out

    # -- cancel / reject ----------------------------------------------------
    async def cancel(self, run_id: str) -> RunStateResult:
        record = self.get(run_id)
        if record.manifest.state not in EXECUTING_STATES or record.driver.task is None:
            raise InvalidState(
                f"run {run_id} is not running (state {record.manifest.state.value}); nothing to cancel",
                data={"state": record.manifest.state.value},
            )
        await record.driver.cancel()
        return RunStateResult(run_id=run_id, state=record.manifest.state)

    async def reject(self, run_id: str) -> RunStateResult:
        record = self.get(run_id)
        async with self._apply_lock(record, "reject"):
            self._require_succeeded(record, "reject")
            record.manifest.apply = ApplyOutcome(rejected=True, reason="rejected by the user", at=utc_now())
            record.set_state(RunState.REJECTED, "diff rejected")
        return RunStateResult(run_id=run_id, state=record.manifest.state)

    @contextlib.asynccontextmanager
    async def _apply_lock(self, record: RunRecord, verb: str) -> AsyncIterator[None]:
        """The run's apply lock, across processes (two editor windows on one workspace), with
        the manifest re-read under it: whatever another server did to the run is seen here."""
        if record.applying:
            raise ApplyRefused(f"run {record.run_id} is being applied right now; not {verb}ing it")
        lock = try_lock(record.run_dir / APPLY_LOCK)
        for _ in range(APPLY_LOCK_RETRIES):
            # A child forked (git) while the lock was held keeps it until it execs: a moment.
            if lock is not None:
                break
            await asyncio.sleep(APPLY_LOCK_RETRY_S)
            lock = try_lock(record.run_dir / APPLY_LOCK)
        if lock is None:
            raise ApplyRefused(f"run {record.run_id} is being applied by another server right now; not {verb}ing it")
        try:
            try:
                record.manifest = load_manifest(record.store.path_for(record.manifest))
            except (OSError, ValueError) as exc:
                raise ApplyRefused(f"cannot re-read the manifest of run {record.run_id}: {exc}") from exc
            if record.manifest.applying is not None and verb != "restore":
                raise ApplyRefused(interrupted_apply_message(record), category=ErrorCategory.APPLY_INTERRUPTED)
            yield
        finally:
            os.close(lock)

    def _require_succeeded(self, record: RunRecord, verb: str) -> None:
        state = record.manifest.state
        if state == RunState.APPLIED:
            raise ApplyRefused(f"run {record.run_id} was already applied; refusing to {verb} it again")
        if state == RunState.REJECTED:
            raise ApplyRefused(f"run {record.run_id} was rejected; launch it again to get a new diff")
        if state not in (RunState.SUCCEEDED, RunState.PARTIALLY_APPLIED):
            raise InvalidState(
                f"run {record.run_id} is {state.value}; only a succeeded run can be {verb}ed",
                data={"state": state.value},
            )

    # -- diff & apply -------------------------------------------------------
    def evidence(self, record: RunRecord, attempt: int | None) -> tuple[DiffEvidence, int | None]:
        m = record.manifest
        if m.cloud and m.cloud.attempt_status:
            with_diff = [a for a in m.cloud.attempt_status if a.diff is not None]
            if attempt is None:
                if with_diff and with_diff[0].diff is not None:
                    return with_diff[0].diff, with_diff[0].attempt
            else:
                for a in m.cloud.attempt_status:
                    if a.attempt == attempt:
                        if a.diff is None:
                            raise InvalidState(f"attempt {attempt} of run {m.run_id} has no diff ({a.status})")
                        return a.diff, attempt
                raise InvalidState(f"run {m.run_id} has no attempt {attempt}")
        if m.diff is None:
            raise InvalidState(
                f"run {m.run_id} has no diff (state {m.state.value})", data={"state": m.state.value}
            )
        if attempt not in (None, 1):
            raise InvalidState(f"run {m.run_id} has a single attempt; attempt {attempt} does not exist")
        return m.diff, None

    def diff(self, params: DiffParams, open_documents: Mapping[str, diffs.OpenDocument]) -> DiffResult:
        """Runs off the event loop (see handlers.diff): a big patch takes seconds to parse. With a
        selection, or once part of the run is applied, the patch and edit are of the parts asked
        for that are not applied yet."""
        record = self.get(params.run_id)
        if record.manifest.state in EXECUTING_STATES and record.manifest.selected_mode == "local":
            from .local.live_diff import partial_diff

            config = self.config_for(record.workspace)
            return partial_diff(record, open_documents, self._label(record), config, lambda e: budget_of(e, config).limits)
        evidence, attempt = self.evidence(record, params.attempt)
        evidence, view = followup.view_evidence(record, evidence, attempt, params.view)
        patch, changes, external = self._load_patch(record, evidence)
        applied = record.manifest.applied_parts
        text = patch.decode("utf-8", "surrogateescape")
        raws = apply_plan.split_patch(text)
        if params.files is not None or params.hunks is not None or applied:
            chosen, _ = apply_plan.select(changes, raws, applied, params.files, params.hunks)
            text = apply_plan.render(changes, raws, chosen, applied)
            shown = apply_plan.sub_changes(text)
        else:
            shown = changes
        edit, conflicts = diffs.build_workspace_edit(shown, record.workspace, open_documents, label=self._label(record))
        names = {c.path for c in shown}
        flagged = {c.path for c in external}
        conflicts = [*(c for c in external if c.path in names), *(c for c in conflicts if c.path not in flagged)]
        budget = budget_of(evidence, self.config_for(record.workspace))
        return DiffResult(
            run_id=record.run_id,
            attempt=attempt,
            view=view,
            patch=text.encode("utf-8", "surrogateescape").decode("utf-8", errors="replace"),
            files=diffs.file_stats(shown),
            edit=edit,
            conflicts=conflicts,
            over_budget=budget.over_limit,
            budget=budget.limits,
            hunks=apply_plan.hunk_stats(changes, raws, applied),
            applied_paths=list(applied),
        )

    def _label(self, record: RunRecord) -> str:
        prompt = record.prompt.strip().splitlines()[0]
        return f"co-sidecar: {prompt[:60]}"

    def _load_patch(
        self, record: RunRecord, evidence: DiffEvidence
    ) -> tuple[bytes, list[diffs.FileChange], list[Conflict]]:
        """The run's patch, parsed and checked: refused if anything in it is unsafe; the
        symlinks it would create pointing outside the workspace are returned for the caller."""
        if evidence.problem:
            raise PatchRefused(f"the run's patch was refused: {evidence.problem}")
        hard_limit = self.config_for(record.workspace).diff.hard_max_patch_bytes
        path = record.store.root / evidence.patch_path
        size = path.stat().st_size if path.is_file() else evidence.bytes
        if max(size, evidence.bytes) > hard_limit:  # the limit in force now, or a file grown since
            raise PatchRefused(f"the run's patch was refused: {too_large(max(size, evidence.bytes), hard_limit)}")
        patch = path.read_bytes()
        if hashlib.sha256(patch).hexdigest() != evidence.sha256:
            raise PatchRefused(f"patch file {evidence.patch_path} changed since it was recorded (sha256 mismatch)")
        changes = parse_checked(patch)
        external = diffs.check_paths(changes, record.workspace, record.store.root)
        verify_with_git(changes, path)
        return patch, changes, external

    async def apply(
        self,
        params: ApplyParams,
        open_documents: Mapping[str, diffs.OpenDocument],
        client_apply: ClientApply | None,
        caps: apply_plan.ClientEditCaps | None = None,
    ) -> ApplyResult:
        record = self.get(params.run_id)
        caps = caps or apply_plan.ClientEditCaps(apply_edit=client_apply is not None)
        if params.restore:
            return await self.restore(record)
        if params.dry_run:
            self._require_succeeded(record, "apply")
            prepared = await asyncio.to_thread(self._prepare, record, params, open_documents, caps)
            return prepared.dry_run_result()
        if params.accept is not True:
            raise ApplyRefused("co/apply needs accept: true (the user's explicit acceptance); nothing was changed")
        if params.on_conflict == "markers" and params.strategy == "client":
            raise ApplyRefused(
                'conflict markers are written by git: use strategy "git" with onConflict "markers"; nothing was changed'
            )
        async with self._apply_lock(record, "apply"):
            self._require_succeeded(record, "apply")
            prepared = await asyncio.to_thread(self._prepare, record, params, open_documents, caps)
            if client_apply is None and params.strategy == "client":
                raise ApplyRefused("the client cannot apply edits (no workspace.applyEdit capability); use strategy git")
            record.applying = True
            try:
                result = await self._apply_journaled(record, params, prepared, client_apply, caps)
            finally:
                record.applying = False
            self._record_apply(record, params, prepared, result)
            await asyncio.to_thread(apply_journal.clear, record.run_dir)
        return result

    def _prepare(
        self,
        record: RunRecord,
        params: ApplyParams,
        open_documents: Mapping[str, diffs.OpenDocument],
        caps: apply_plan.ClientEditCaps,
    ) -> apply_plan.Prepared:
        """The parts to apply and, per file, what would happen (off the event loop)."""
        m = record.manifest
        evidence, attempt = self.evidence(record, params.attempt)
        # A follow-up applies its chain's cumulative change (or its step when its parent was).
        evidence, view = followup.evidence_to_apply(record, evidence, attempt, self.family(record))
        if m.applied_parts and m.apply is not None and m.apply.attempt != attempt:
            raise ApplyRefused(
                f"run {m.run_id} is partly applied from attempt {m.apply.attempt}; apply the rest of that attempt or reject it"
            )
        patch, changes, external = self._load_patch(record, evidence)
        raws = apply_plan.split_patch(patch.decode("utf-8", "surrogateescape"))
        chosen, already = apply_plan.select(changes, raws, m.applied_parts, params.files, params.hunks)
        if not chosen:
            raise ApplyRefused(
                f"nothing to apply: {', '.join(already) or 'every part of run ' + m.run_id} already applied"
                " (a part of a run is applied at most once)"
            )
        text = apply_plan.render(changes, raws, chosen, m.applied_parts)
        subs = apply_plan.sub_changes(text)
        additions, deletions = diffs.totals(subs)
        size = len(text.encode("utf-8", "surrogateescape"))
        sized = DiffEvidence(patch_path="", sha256="", bytes=size, additions=additions, deletions=deletions, files=diffs.file_stats(subs))
        budget = budget_of(sized, self.config_for(record.workspace))
        over = budget.over_limit and not params.force
        if over and not params.dry_run:
            b = budget.limits
            raise ApplyRefused(
                f"the diff is over budget ({b.files} files, {b.lines} lines, {b.bytes} bytes; limits "
                f"diff.maxFiles={b.max_files}, diff.maxLines={b.max_lines}, diff.maxPatchBytes={b.max_bytes}); "
                "pass force: true to apply anyway",
                category=ErrorCategory.OVER_BUDGET,
                data={"budget": b.wire()},
            )
        # Symlinks pointing outside: refused before git or the client sees them (skipped with skip).
        outside = {c.path: c for c in external if c.path in {s.path for s in subs}}
        if outside and not params.allow_external_symlinks:
            if not params.dry_run and params.on_conflict != "skip":
                raise PatchRefused(external_symlinks_refused(list(outside.values())))
        else:
            outside = {}
        planned = [(i, n, sub) for (i, n), sub in zip(chosen.items(), subs, strict=True) if sub.path not in outside]
        files = [changes[i] for i, _, _ in planned]
        drift = apply_plan.drift(
            record.workspace, files, [raws[i] for i, _, _ in planned], m.created_at, m.workspace_head
        )
        if over:  # a dry run: nothing is worked out for a diff nobody can apply without force
            b = budget.limits
            why = (
                f"over budget ({b.files} files, {b.lines} lines; limits diff.maxFiles={b.max_files}, "
                f"diff.maxLines={b.max_lines}, diff.maxPatchBytes={b.max_bytes}); force: true applies it"
            )
            plan = apply_plan.Plan(files=[apply_plan.skipped(sub, why) for _, _, sub in planned], drift=drift)
        elif params.strategy == "git":
            texts = [apply_plan.render(changes, raws, {i: n}, m.applied_parts) for i, n, _ in planned]
            plan = apply_plan.plan_git(
                [s for _, _, s in planned], [n for _, n, _ in planned], texts, record.workspace, drift
            )
        else:
            plan = apply_plan.plan_client(
                [s for _, _, s in planned], [n for _, n, _ in planned], record.workspace, open_documents, caps,
                self._label(record), drift,
            )
        by_path = {f.path: f for f in plan.files}
        plan.files = [
            by_path.get(sub.path)
            or apply_plan.skipped(sub, f"path refused: {outside[sub.path].reason}; allowExternalSymlinks: true allows it")
            for sub in subs
        ]
        return apply_plan.Prepared(
            changes=changes, raws=raws, chosen=chosen, subs=subs, plan=plan, attempt=attempt, budget=budget,
            external=[c for c in external if c.path in {s.path for s in subs}], already_asked=already,
            strategy=params.strategy, applied_before=dict(m.applied_parts), documents=open_documents, view=view,
        )

    async def _apply_journaled(
        self,
        record: RunRecord,
        params: ApplyParams,
        prepared: apply_plan.Prepared,
        client_apply: ClientApply | None,
        caps: apply_plan.ClientEditCaps,
    ) -> ApplyResult:
        """Decide what to write from the plan (onConflict), keep the pre-image of every file it
        touches and record the intent, then apply; if it does not complete, put every file back."""
        plan = prepared.plan
        blocked = plan.blocked()
        if blocked and params.on_conflict == "refuse":
            return prepared.result(False, "conflicts" if prepared.conflicts() else "refused", prepared.blocked_reason())
        if params.on_conflict == "markers":
            take = [f.path for f in plan.files if f.outcome in ("clean", "merged", "conflict")]
        else:
            take = plan.take()
        done = [f.path for f in plan.files if f.outcome == "already_applied"]
        if not take:
            if done:
                return prepared.result(True, None, None, taken=[], recorded=done)
            return prepared.result(False, "conflicts" if prepared.conflicts() else "refused", prepared.blocked_reason())
        chosen = {i: n for i, n in prepared.chosen.items() if prepared.changes[i].path in take}
        text = apply_plan.render(prepared.changes, prepared.raws, chosen, prepared.applied_before)
        subs = apply_plan.sub_changes(text)
        paths = list(dict.fromkeys(p for c in subs for p in (c.old_path, c.path) if p))
        await asyncio.to_thread(apply_journal.snapshot, record.workspace, paths, record.run_dir)
        record.manifest.applying = ApplyIntent(
            strategy=params.strategy, attempt=prepared.attempt, paths=paths, pid=os.getpid(), started_at=utc_now()
        )
        record.save()  # persisted, not announced: editors react to runUpdates, and nothing changed yet
        try:
            applied, reason, outcome, marked = await self._write(record, params, text, subs, client_apply, caps, prepared)
        except BaseException:
            await self._restore_after_failure(record)
            record.manifest.applying = None
            record.save("apply failed; every file it touched is as it was")
            await asyncio.to_thread(apply_journal.clear, record.run_dir)
            raise
        if not applied:
            result = prepared.result(False, outcome, reason)
            result.restored = await self._restore_after_failure(record)
            return result
        if params.strategy == "client" and marked:  # the paths the client's preview applied
            applied_paths = {c.path for c in marked}
            left_out = [p for p in take if p not in applied_paths]
            take = [p for p in take if p in applied_paths]
            result = prepared.result(True, None, None, taken=take, recorded=done + take, left_out=left_out)
            result.paths = [p for p in paths if p in applied_paths or p not in left_out]
            return result
        result = prepared.result(True, outcome, reason, taken=take, recorded=done + take, marked=marked)
        result.paths = paths
        return result

    async def _write(
        self,
        record: RunRecord,
        params: ApplyParams,
        text: str,
        subs: list[diffs.FileChange],
        client_apply: ClientApply | None,
        caps: apply_plan.ClientEditCaps,
        prepared: apply_plan.Prepared,
    ) -> tuple[bool, str | None, ApplyOutcomeKind | None, list[Conflict]]:
        """Write the sub-patch: (written, why not, outcome when not clean, files left with markers)."""
        if params.strategy == "git":
            from .git_apply import git_apply

            patch_path = record.run_dir / "apply-selection.diff"
            atomic_write_bytes(patch_path, text.encode("utf-8", "surrogateescape"))
            outcome = await asyncio.to_thread(
                functools.partial(
                    git_apply, record.workspace, patch_path, runs_root=record.store.root,
                    allow_external_symlinks=params.allow_external_symlinks,
                )
            )
            if not outcome.applied:
                return False, outcome.failure_reason, "failed", []
            if outcome.conflicts and params.on_conflict != "markers":
                # The plan said clean, yet git left markers (the workspace changed meanwhile): undo.
                return False, "the workspace changed during the apply and a merge left conflicts; nothing was applied", "conflicts", []
            return True, outcome.failure_reason, "conflicts" if outcome.conflicts else None, outcome.conflicts
        assert client_apply is not None
        edit, conflicts = diffs.build_workspace_edit(subs, record.workspace, prepared.documents, label=self._label(record))
        if conflicts:
            return False, "the workspace changed during the apply: " + "; ".join(f"{c.path}: {c.reason}" for c in conflicts), "conflicts", []
        applied, reason = await client_apply(caps.shape(edit), self._label(record))
        only = apply_plan.applied_only(reason, record.workspace) if not applied else None
        if only:  # the user took part of the edit in the client's preview
            prepared.narrow(only)
            return True, None, None, [Conflict(path=p, reason="applied") for p in only]
        if not applied:
            return False, reason or "the client did not apply the edit", "declined", []
        return True, None, None, []

    def _record_apply(self, record: RunRecord, params: ApplyParams, prepared: apply_plan.Prepared, result: ApplyResult) -> None:
        """The manifest says what happened, whatever it was; the state follows what is applied."""
        m = record.manifest
        written = prepared.recorded_parts()
        for path, numbers in written.items():
            m.applied_parts[path] = sorted(set(m.applied_parts.get(path, [])) | set(numbers))
        left = apply_plan.pending(prepared.changes, prepared.raws, m.applied_parts)
        result.remaining = [prepared.changes[i].path for i in left]
        if result.applied and result.outcome == "applied" and result.remaining:
            result.outcome = "partial"
        m.apply = ApplyOutcome(
            strategy=params.strategy,
            applied=result.applied,
            attempt=prepared.attempt,
            paths=result.paths,
            reason=result.failure_reason,
            forced=params.force and prepared.budget.over_limit,
            at=utc_now(),
            outcome=result.outcome,
            on_conflict=params.on_conflict,
            skipped_paths=result.skipped_paths,
            conflict_paths=result.conflict_paths,
            remaining=result.remaining,
            hunks=written,
        )
        m.applying = None
        if written:
            if m.follow_up is not None and prepared.view is not None:
                m.follow_up.applied_view = prepared.view
            state = RunState.PARTIALLY_APPLIED if result.remaining else RunState.APPLIED
            how = f"{len(written)} file(s) applied with the {params.strategy} strategy"
            if result.remaining:
                how += f"; {len(result.remaining)} file(s) left: {', '.join(result.remaining)}"
            if result.conflict_paths and result.outcome == "conflicts":
                how += f"; conflict markers in {', '.join(result.conflict_paths)}"
            record.set_state(state, how)
        else:
            restored = f"; the {len(result.restored)} file(s) it had changed are restored" if result.restored else ""
            record.save(f"not applied ({result.outcome}): {result.failure_reason}{restored}")

    async def _restore_after_failure(self, record: RunRecord) -> list[str]:
        try:
            return await asyncio.to_thread(apply_journal.restore, record.workspace, record.run_dir)
        except OSError as exc:  # keep the intent and the journal: the next start offers it again
            log.error("run %s: restoring files after a failed apply failed: %s", record.run_id, exc)
            raise ApplyRefused(
                f"the apply failed and restoring the files it touched failed too ({exc}); "
                f'retry with co/apply {{"runId": "{record.run_id}", "restore": true}}',
                category=ErrorCategory.APPLY_INTERRUPTED,
            ) from exc

    async def restore(self, record: RunRecord) -> ApplyResult:
        """`co/apply {runId, restore: true}`: put back the files an interrupted apply touched."""
        async with self._apply_lock(record, "restore"):
            intent = record.manifest.applying
            if intent is None:
                raise InvalidState(
                    f"run {record.run_id} has no interrupted apply to restore (state {record.manifest.state.value})",
                    data={"state": record.manifest.state.value},
                )
            if not apply_journal.exists(record.run_dir):
                # The intent is written after the pre-images: they were removed since. Say so.
                record.manifest.applying = None
                record.save(
                    f"the interrupted apply's pre-images ({apply_journal.JOURNAL_DIR}) are missing; nothing "
                    f"could be restored: check {', '.join(intent.paths)} by hand"
                )
                return ApplyResult(applied=False, strategy=intent.strategy, paths=intent.paths)
            restored = await asyncio.to_thread(apply_journal.restore, record.workspace, record.run_dir)
            record.manifest.applying = None
            record.save(
                f"restored {len(restored)} file(s) an interrupted apply had changed"
                + (f": {', '.join(restored)}" if restored else "")
            )
            await asyncio.to_thread(apply_journal.clear, record.run_dir)
        return ApplyResult(applied=False, strategy=intent.strategy, paths=intent.paths, restored=restored)

    async def shutdown(self) -> None:
        live = [r.driver for r in self.runs.values() if r.driver.active]
        if live:
            await asyncio.gather(*(driver.cancel(CANCEL_WAIT_S) for driver in live))
        for record in self.runs.values():
            if record.unsaved and record.try_save():  # a terminal state not yet on disk
                record.driver.release()
        await run_shutdown_hooks()  # e.g. the HTTP pool, registered when a cloud run opened it


def _remove_tree(path: Path) -> int:
    size = _tree_size(path)
    shutil.rmtree(path)
    return size


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def interrupted_apply_message(record: RunRecord) -> str:
    """What the user needs after an apply was cut short: which files may be changed, and how
    to put them back."""
    intent = record.manifest.applying
    assert intent is not None
    try:
        changed = apply_journal.changed(record.workspace, record.run_dir)
        which = f"{len(changed)} file(s) differ from before it: {', '.join(changed)}" if changed else "no file differs from before it"
    except (OSError, ValueError, TypeError) as exc:
        which = f"its pre-images cannot be read ({exc}); it touched: {', '.join(intent.paths)}"
    return (
        f"an apply of run {record.run_id} ({intent.strategy} strategy, started {intent.started_at}) was "
        f"interrupted; {which}. Restore them with co/apply {{\"runId\": \"{record.run_id}\", \"restore\": true}}"
    )
