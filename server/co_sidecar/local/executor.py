"""LocalExecutor: run the agent in a pooled scratch checkout, stream its output, capture its diff."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import CoError, RunErrorCode, local_error_code
from ..execution import Outcome, RunContext
from ..followup import CUMULATIVE_PATCH, starting_patch_of
from ..manifest import utc_now
from ..protocol import RunState
from ..redact import redact
from ..shutdown import on_shutdown
from ..waits import Ended, wait_unless
from . import follow, live_diff, processes
from .agent import PROMPT_FILE, AgentPlan, Invocation, agent_env, agent_git_config, plan_agent
from .codex_events import CodexEventReader
from .live_diff import LIVE_INTERVAL_S, Watcher
from .pool import Lease, acquire
from .scratch import Scratch

CHUNK_BYTES = 64 * 1024
# A "line" longer than this is emitted in pieces, so a newline-free flood can't grow memory.
MAX_LINE_CHARS = 64 * 1024
# One codex event is one line, and a command's aggregated output can make it long: split only
# beyond this, or the event would be lost as fragments.
MAX_EVENT_CHARS = 8 * 1024 * 1024
TERM_GRACE_SECONDS = 2.0
EXIT_POLL_SECONDS = 0.05
# After the agent exits, how long to wait for its pipes to reach EOF (a straggler may hold them).
DRAIN_SECONDS = 5.0
FAILURE_TAIL_LINES = 20
EVENTS_FILE = "events.jsonl"
STEP_UPDATE_INTERVAL_S = 0.1
# Codex items after which the scratch's diff is looked at again (live diff stats).
CHANGES_FILES = frozenset({"file_change", "command_execution"})


class Tail:
    """The last `limit` bytes written to one stream."""

    def __init__(self, limit: int):
        self.limit = limit
        self.buf = bytearray()

    def add(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) > self.limit:
            del self.buf[: len(self.buf) - self.limit]

    def text(self) -> str:
        return self.buf.decode("utf-8", "replace")


async def pump(
    reader: asyncio.StreamReader,
    on_line: Callable[[str], None],
    tail: Tail,
    max_line: int = MAX_LINE_CHARS,
) -> None:
    """Hand `reader`'s lines to `on_line`, reading fixed-size chunks; a line longer than
    `max_line` is handed over in pieces."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while chunk := await reader.read(CHUNK_BYTES):
        tail.add(chunk)
        pending += decoder.decode(chunk)
        *lines, pending = pending.split("\n")
        for line in lines:
            on_line(line.removesuffix("\r"))
        while len(pending) > max_line:
            on_line(pending[:max_line])
            pending = pending[max_line:]
    pending += decoder.decode(b"", final=True)
    if pending:
        on_line(pending.removesuffix("\r"))


class EventLog:
    """events.jsonl beside the manifest: codex's events as they came, up to `limit` bytes; then
    one closing line saying how many were left out."""

    def __init__(self, path: Path, limit: int):
        self.path = path
        self.limit = limit
        self.written = 0
        self.dropped = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = path.open("ab")

    def add(self, line: str) -> None:
        data = redact(line).encode("utf-8", "replace") + b"\n"
        if self.written + len(data) > self.limit:
            self.dropped += 1
            return
        self.handle.write(data)
        self.written += len(data)

    def close(self) -> None:
        if self.dropped:
            note = {"type": "co.truncated", "droppedEvents": self.dropped, "limitBytes": self.limit}
            self.handle.write(json.dumps(note).encode() + b"\n")
        self.handle.close()


class CodexSteps:
    """The stdout handler for `local.output = codex-json`: each event becomes a step update,
    other lines stay agent output, and every event is kept in events.jsonl."""

    def __init__(self, ctx: RunContext, reader: CodexEventReader, log: EventLog, watcher: Watcher | None = None):
        self.ctx = ctx
        self.reader = reader
        self.log = log
        self.watcher = watcher
        self._last_update: dict[str | None, float] = {}  # item id -> when its update was shown

    def __call__(self, line: str) -> None:
        step = self.reader.feed(line)
        if step is None:
            self.ctx.output("stdout", line)
            return
        self.log.add(line)
        for out in step.output:
            self.ctx.output("stdout", out)
        if step.event.type == "item.updated":
            # An item that updates in a flood (a todo list, a long command) is shown at most
            # once per STEP_UPDATE_INTERVAL_S; its start and end always are, and its output
            # lines above still go out (batched like any output).
            now = time.monotonic()
            if now - self._last_update.get(step.event.item_id, -STEP_UPDATE_INTERVAL_S) < STEP_UPDATE_INTERVAL_S:
                return
            self._last_update[step.event.item_id] = now
        self.ctx.step(step.message, step.event.wire())
        if self.watcher is not None and step.event.type == "item.completed" and step.event.kind in CHANGES_FILES:
            self.watcher.poke()  # the agent's files may have changed: look at the diff
        if step.event.kind == "thread.started":
            self.ctx.save()  # the thread id is worth having on disk at once


def kill_group(agent: processes.Agent) -> None:
    """SIGKILL everything the run started (see processes.kill_tree)."""
    processes.kill_tree(agent)


async def leader_exit(proc: asyncio.subprocess.Process) -> int:
    """The agent's exit code once it is reaped. Not `proc.wait()`: on Python 3.11 that also
    waits for the pipes to close, which a leftover grandchild can postpone forever."""
    while proc.returncode is None:
        await asyncio.sleep(EXIT_POLL_SECONDS)
    return proc.returncode


async def stop(agent: processes.Agent, grace: float) -> None:
    """End the agent and every descendant: SIGTERM, `grace` seconds, then SIGKILL (grace 0:
    SIGKILL at once). The launcher does it and exits; if it does not, the server kills what it
    can see."""
    proc = agent.proc
    if proc.returncode is None:
        processes.request_stop(agent, graceful=grace > 0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(leader_exit(proc), grace + DRAIN_SECONDS)
    if proc.returncode is None or not agent.launched:
        # Without the launcher, always SIGKILL the group: grandchildren may outlive a leader
        # that obeyed SIGTERM.
        kill_group(agent)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(leader_exit(proc), DRAIN_SECONDS)


def write_prompt(path: Path, prompt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prompt, encoding="utf-8")


async def feed_stdin(proc: asyncio.subprocess.Process, data: bytes) -> None:
    """The prompt on the agent's stdin, then EOF; an agent that does not read it is no error."""
    assert proc.stdin is not None
    with contextlib.suppress(OSError):  # BrokenPipeError, ConnectionResetError: it exited
        proc.stdin.write(data)
        await proc.stdin.drain()
    proc.stdin.close()


_RELEASES: set[asyncio.Task[None]] = set()
RELEASE_WAIT_S = 10.0


def release_later(lease: Lease) -> None:
    task = asyncio.get_running_loop().create_task(asyncio.to_thread(lease.release))
    _RELEASES.add(task)
    task.add_done_callback(_RELEASES.discard)
    on_shutdown(wait_for_releases)


async def wait_for_releases() -> None:
    """At shutdown: let slots being reset finish, so none is left marked as running."""
    if _RELEASES:
        await asyncio.wait(set(_RELEASES), timeout=RELEASE_WAIT_S)


def last_lines(text: str, n: int = FAILURE_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def count_files(patch: bytes) -> int:
    return sum(1 for line in patch.split(b"\n") if line.startswith(b"diff --git "))


class LocalExecutor:
    """Runs `local.agentCommand` in a scratch copy of the workspace and records its diff.

    The manifest's executor.argv is the argv template (configured or codex's
    default) with "{prompt}" unexpanded: the prompt is stored once, in
    manifest.prompt. executor.scratchPath is set while the scratch exists and
    kept only with `local.keepScratch`. stdout/stderr tails keep at most
    `local.maxOutputBytes` each.
    """

    async def execute(self, ctx: RunContext) -> Outcome:
        info = ctx.manifest.executor
        info.kind = "local"
        started = time.monotonic()
        lease: Lease | None = None
        try:
            plan = await asyncio.to_thread(plan_agent, ctx.config.local)
            follow_up = ctx.manifest.follow_up
            if follow_up is not None:  # Codex keeps its context: resume the parent's thread
                plan, follow_up.resumed_thread_id = follow.resumed_plan(plan, follow_up.resumed_thread_id)
            # The manifest keeps the template: the prompt is stored once, in manifest.prompt.
            info.argv = plan.template
            if ctx.cancel_event.is_set():
                return Outcome(RunState.CANCELLED, "cancelled before the agent started")
            lease = await asyncio.to_thread(
                acquire,
                Path(ctx.workspace),
                ctx.run_id,
                exclude=[self._runs_root(ctx)],
                size=ctx.config.local.scratch_pool.size,
            )
            first_base: str | None = None
            if follow_up is not None:  # start from the parent's result: a second base
                starting = await asyncio.to_thread(starting_patch_of, ctx.manifest, self._runs_root(ctx))
                first_base = await asyncio.to_thread(follow.start_from, lease, starting or b"")
            scratch = lease.scratch
            info.scratch_path = str(scratch.path)
            ctx.save()
            if ctx.cancel_event.is_set():  # cancelled while the scratch was being made
                return Outcome(RunState.CANCELLED, "cancelled before the agent started")
            prompt_file = ctx.run_dir / PROMPT_FILE
            await asyncio.to_thread(write_prompt, prompt_file, ctx.prompt)
            call = plan.invocation(ctx.prompt, str(scratch.cwd), str(prompt_file))
            argv = call.argv
            # A relative program path means "relative to the workspace", not to the scratch.
            if os.sep in argv[0] and not os.path.isabs(argv[0]):
                argv[0] = str(Path(ctx.workspace) / argv[0])
            live_diff.register(ctx.run_id, scratch)
            return await self._run(ctx, argv, scratch, plan, call, first_base)
        except CoError as exc:
            return Outcome(RunState.FAILED, exc.message, local_error_code(exc.category))
        finally:
            live_diff.unregister(ctx.run_id)
            info.finished_at = utc_now()
            info.duration_ms = int((time.monotonic() - started) * 1000)
            if lease is not None:
                if ctx.config.local.keep_scratch:
                    info.scratch_path = str(await asyncio.to_thread(lease.detach))
                else:
                    # The slot goes back to the pool after the run is reported: its reset
                    # (the agent's files removed) is not on the way to `succeeded`.
                    release_later(lease)
                    info.scratch_path = None
            ctx.save()

    @staticmethod
    def _runs_root(ctx: RunContext) -> Path:
        root = Path(ctx.config.runs.root)
        return root if root.is_absolute() else Path(ctx.workspace) / root

    async def _run(
        self,
        ctx: RunContext,
        argv: list[str],
        scratch: Scratch,
        plan: AgentPlan,
        call: Invocation,
        first_base: str | None = None,
    ) -> Outcome:
        cfg = ctx.config.local
        info = ctx.manifest.executor
        stdin_data = call.stdin
        feeder: asyncio.Task[None] | None = None
        # Beside the slot's git directory (outside the agent's work tree and sandbox).
        beside = scratch.gitdir.parent if scratch.gitdir is not None else scratch.path.parent
        env = agent_env(
            os.environ,
            cfg.env_allow,
            {
                **call.env,
                "GIT_CONFIG_GLOBAL": str(await asyncio.to_thread(agent_git_config, beside, os.environ)),
                "CO_RUN_ID": ctx.run_id,
                "CO_TASK_ID": ctx.task_id,
                "CO_WORKSPACE": str(ctx.workspace),
            },
        )
        try:
            stdin = asyncio.subprocess.DEVNULL if stdin_data is None else asyncio.subprocess.PIPE
            agent = await processes.spawn(argv, cwd=scratch.cwd, env=env, stdin=stdin, grace=TERM_GRACE_SECONDS)
        except processes.SpawnError as exc:
            return Outcome(RunState.FAILED, exc.message, exc.code)
        proc = agent.proc
        try:
            info.pid = agent.pid
            info.started_at = utc_now()
            ctx.set_state(RunState.RUNNING, f"agent started: {Path(argv[0]).name} (pid {agent.pid})")

            tails = {"stdout": Tail(cfg.max_output_bytes), "stderr": Tail(cfg.max_output_bytes)}
            on_stdout: Callable[[str], None] = lambda line: ctx.output("stdout", line)  # noqa: E731
            stdout_max_line = MAX_LINE_CHARS
            codex: CodexEventReader | None = None
            log: EventLog | None = None
            # Codex says when it changes files; other agents are looked at now and then.
            watcher = Watcher(ctx, None if plan.output == "codex-json" else LIVE_INTERVAL_S)
            if plan.output == "codex-json":
                codex = CodexEventReader(str(scratch.cwd), plan.codex_version)
                log = EventLog(ctx.run_dir / EVENTS_FILE, cfg.max_output_bytes)
                codex.info.events_path = str((ctx.run_dir / EVENTS_FILE).relative_to(self._runs_root(ctx)))
                ctx.manifest.codex = codex.info
                on_stdout = CodexSteps(ctx, codex, log, watcher)
                stdout_max_line = MAX_EVENT_CHARS
            if stdin_data is not None:
                feeder = asyncio.create_task(feed_stdin(proc, stdin_data))
        except BaseException:
            processes.request_stop(agent, graceful=False)  # never leave it running unwatched
            raise

        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            asyncio.create_task(pump(proc.stdout, on_stdout, tails["stdout"], stdout_max_line)),
            asyncio.create_task(
                pump(proc.stderr, lambda line: ctx.output("stderr", line), tails["stderr"])
            ),
        ]
        outcome: Outcome | None = None
        watcher.start()
        try:
            ended = await wait_unless(leader_exit(proc), ctx.cancel_event, cfg.timeout_seconds)
            if ended is Ended.CANCELLED:
                await stop(agent, grace=0)
                outcome = Outcome(RunState.CANCELLED, "cancelled: agent stopped")
            elif ended is Ended.TIMED_OUT:
                await stop(agent, grace=TERM_GRACE_SECONDS)
                outcome = Outcome(
                    RunState.TIMED_OUT,
                    f"agent timed out after {cfg.timeout_seconds:g}s and was stopped",
                    RunErrorCode.LOCAL_TIMEOUT,
                )
            elif not agent.launched:
                # Leader is done; don't let background children outlive the run (the launcher
                # has ended them already when there is one).
                kill_group(agent)
        finally:
            await watcher.stop()
            if feeder is not None:
                feeder.cancel()
            if proc.returncode is None:  # our own task was cancelled or raised
                processes.request_stop(agent, graceful=False)
            _, late = await asyncio.wait(pumps, timeout=DRAIN_SECONDS)
            if late:
                # Something outside the group (e.g. a setsid daemon) still holds the pipes:
                # stop reading and close our ends.
                for task in late:
                    task.cancel()
                transport = getattr(proc, "_transport", None)
                if transport is not None:
                    transport.close()
            info.exit_code = proc.returncode
            info.stdout_tail = tails["stdout"].text()
            info.stderr_tail = tails["stderr"].text()
            if log is not None and codex is not None:
                log.close()
                codex.info.events_truncated = log.dropped > 0
            ctx.save()
        if outcome is not None:
            return outcome

        code = proc.returncode
        if codex is not None and codex.failure is not None:
            # Codex's own words (turn.failed or a top-level error), not its stderr banner.
            return Outcome(RunState.FAILED, f"codex: {codex.failure}", RunErrorCode.LOCAL_AGENT_FAILED)
        if code != 0:
            tail = last_lines(info.stderr_tail) or last_lines(info.stdout_tail)
            if code is not None and code < 0:
                what = f"agent was killed by signal {-code}"
            else:
                what = f"agent exited with code {code}"
            return Outcome(
                RunState.FAILED, f"{what}: {tail}" if tail else what, RunErrorCode.LOCAL_AGENT_FAILED
            )

        patch = await asyncio.to_thread(live_diff.capture, ctx.run_id, scratch, ctx.config.diff.hard_max_patch_bytes)
        evidence = ctx.record_patch(patch)
        if first_base is not None and ctx.manifest.follow_up is not None:
            cumulative = await asyncio.to_thread(follow.capture_cumulative, scratch, first_base)
            ctx.manifest.follow_up.cumulative = ctx.record_patch(cumulative, name=CUMULATIVE_PATCH)
        if not patch:
            return Outcome(RunState.SUCCEEDED, "agent finished: no changes")
        files = len(evidence.files) or count_files(patch)
        noun = "file" if files == 1 else "files"
        return Outcome(
            RunState.SUCCEEDED,
            f"agent finished: {files} {noun} changed, +{evidence.additions} -{evidence.deletions}",
        )
