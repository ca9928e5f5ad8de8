"""Render results (and the committed "before" baseline) as docs/benchmarks.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import scratch_report
from .diff_stall import TARGET_SHARE

SECTIONS = (
    "## 1. Start-up",
    "## 2. Latency",
    "## 3. Polling at scale",
    "## 4. Diff → WorkspaceEdit",
    "## 5. Notification throughput",
    "## Before and after",
    "## 6. co/status during a big co/diff",
)


def _ok(met: bool) -> str:
    return "**met**" if met else "**not met**"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _poll_figure(p: dict[str, Any]) -> str:
    if "http_per_task" in p:  # sidecar's own CPU per extra poll, HTTP shared vs CLI
        c = p["cli"]["marginal"]["self_ms"]
        if p.get("http_measurable", True):
            h = p["http"]["marginal"]["self_ms"]
            return f"{p['ratio']:.1f}× ({h:.3f} vs {c:.2f} ms, sidecar's own CPU per poll)"
        return (
            f"≥ {p['ratio']:.0f}× (HTTP below noise: ≤ {p['http_bound_ms']:.3f} vs {c:.2f} ms, "
            "sidecar's own CPU per poll)"
        )
    # The first runs: whole batch / polls, children included, per-task HTTP.
    h, c = p["http"]["cpu_ms_per_poll"], p["cli"]["cpu_ms_per_poll"]
    return f"{p['ratio']:.1f}× ({h:.2f} vs {c:.2f} ms, per-task GETs, batch incl. children)"


def _polling_section(p: dict[str, Any], notes: dict[str, str]) -> list[str]:
    h, t, c = p["http"], p["http_per_task"], p["cli"]
    h1, t1, c1 = p["http_1"], p["http_per_task_1"], p["cli_1"]
    cols = (h, t, c)

    def reqs(m: dict[str, Any]) -> str:
        r = m["requests"]
        if not r:
            return "— (subprocesses)"
        return f"{r.get('list', 0)} list, {r.get('details', 0)} details, {r.get('post', 0)} create"

    def row(label: str, fmt: Any) -> list[Any]:
        return [label, *(fmt(m) for m in cols)]

    f = p["floor"]
    return [
        f"{p['runs']} cloud runs launched at once; each task completes on its "
        f"{p['polls_per_run']}th poll; poll interval {p['interval_s']} s, no backoff or jitter. "
        "HTTP: the loopback emulator in its own process with `--faults task:instant=N` (no "
        "agent; a task also counts a list page that shows it as a poll), one pooled httpx "
        "client in the sidecar, once with `cloud.poll.shared = true` (the default: one "
        "task-list call per round for all runs, a details GET only when a task looks "
        "finished) and once with `shared = false` (one details GET per run per poll). CLI: a "
        "fake `codex` (a `/bin/sh` script, builtins only) that answers at once, one subprocess "
        "per poll, as the TypeScript orchestrator polls. **Sidecar CPU** = utime+stime of the "
        "server process itself, from `/proc/<pid>/stat`; its reaped children (the `codex` "
        "processes) are counted apart. **CPU per poll** = (CPU of the batch polled "
        f"{p['polls_per_run']} times − CPU of the same batch when every task is done at its "
        "first poll) / (the extra polls): launch, create, the final details, the diff, the "
        "manifest writes and the end-of-run notifications are the same in both batches and "
        "cancel out, so what is left is what a poll costs while a run waits. The whole-batch "
        "figure (all CPU / all polls, the measure of the first runs) is shown too. HTTP "
        "requests are counted from the emulator's request log. A one-run warm-up loads the "
        "cloud modules first.",
        "",
        *_table(
            ["", "HTTP, shared (list)", "HTTP, per task", "CLI (subprocess per poll)"],
            [
                row("runs succeeded", lambda m: f"{m['succeeded']}/{p['runs']}"),
                row("polls (pollCount, all runs)", lambda m: m["polls"]),
                row("HTTP requests", reqs),
                row("wall time", lambda m: f"{m['wall_s']:.1f} s"),
                row("sidecar CPU (self)", lambda m: f"{m['cpu_self_s']:.2f} s"),
                row("children CPU (`codex`)", lambda m: f"{m['cpu_children_s']:.2f} s"),
                [
                    "same batch, done at its 1st poll: polls / self CPU",
                    *(f"{m['polls']} / {m['cpu_self_s']:.2f} s" for m in (h1, t1, c1)),
                ],
                row("HTTP requests for the extra polls", lambda m: reqs(m["marginal"]) if m["requests"] else "—"),
                row("**sidecar CPU per poll**", lambda m: f"**{m['marginal']['self_ms']:.3f} ms**"),
                row("children CPU per poll", lambda m: f"{m['marginal']['children_ms']:.3f} ms"),
                row("whole batch: self CPU / polls", lambda m: f"{m['self_ms_per_poll']:.2f} ms"),
                row("co/runUpdate sent", lambda m: m["updates"]),
                row("peak RSS (VmHWM)", lambda m: f"{m['peak_rss_mb']:.0f} MB"),
            ],
        ),
        "",
        "Floors, same run, in the harness process: CPU of one pooled httpx GET of a task (JSON "
        "decoded, the sidecar's httpcore set-up); one asyncio spawn of the fake `codex cloud "
        "status` (pipes read, child reaped, its CPU included); one heartbeat `co/runUpdate` "
        "(model, wire dict, JSON-RPC frame; every poll sends one).",
        "",
        *_table(
            ["one pooled httpx GET", "one `codex` spawn (fake, /bin/sh)", "spawn / GET", "one runUpdate"],
            [[f"{f['http_get_ms']:.2f} ms", f"{f['spawn_ms']:.2f} ms", f"{f['ratio']:.2f}×", f"{f.get('run_update_ms', 0):.3f} ms"]],
        ),
        "",
        f"CLI / HTTP (shared) sidecar CPU per poll: **{_poll_figure(p)}** (target ≥ 20×: "
        f"{_ok(p['met_ratio'])}); counting the `codex` children's CPU too: "
        f"{p['ratio_with_children']:.1f}×; per-task HTTP: {p['ratio_per_task']:.2f}×; "
        f"whole batch: {p['ratio_batch']:.2f}×. Peak RSS at {p['runs']} runs "
        f"{p['max_rss_mb']:.0f} MB at most (target ≤ 150 MB: {_ok(p['met_rss'])}). "
        + notes.get("polling", "").format(
            shared=p.get("http_ms", h["marginal"]["self_ms"]),
            per_task=t["marginal"]["self_ms"],
            cli=c["marginal"]["self_ms"],
            kids=c["marginal"]["children_ms"],
            ratio=p["ratio"],
            ratio_kids=p["ratio_with_children"],
            get=f["http_get_ms"],
            spawn=f["spawn_ms"],
            update=f.get("run_update_ms", 0.0),
            lists=h["marginal"]["requests"].get("list", 0),
            extra=h["marginal"]["extra_polls"],
            target=c["marginal"]["self_ms"] / 20,
            list_share=h["marginal"]["requests"].get("list", 0)
            * f["http_get_ms"]
            / max(h["marginal"]["extra_polls"], 1),
        ),
    ]


def _row(lat: dict[str, Any], name: str) -> float:
    """p99 of a latency row; NaN for rows an older saved run did not have."""
    return float(lat["rows"].get(name, {}).get("p99_ms", float("nan")))


def summary_rows(r: dict[str, Any]) -> list[list[Any]]:
    """(target, figure, verdict) per target; shared by the summary and the before/after table."""
    s, lat, p, d, n = r["startup"], r["latency"], r["polling"], r["diff"], r["notify"]
    rows = [
        ["start-up ≤ 1.15× bare pygls", f"{s['initialize']['ratio']:.2f}×", _ok(s["met"])],
        [
            f"co/status p99 ≤ 5 ms ({lat['runs']} runs)",
            f"{lat['rows']['co/status']['p99_ms']:.2f} ms",
            _ok(lat["rows"]["co/status"]["p99_ms"] <= 5),
        ],
        [
            f"co/list p99 ≤ 5 ms ({lat['runs']} runs, default page of 100)",
            f"{_row(lat, 'co/list (default page)'):.2f} ms",
            _ok(_row(lat, "co/list (default page)") <= 5),
        ],
        [
            f"co/list p99, limit 50 ({lat['runs']} runs)",
            f"{_row(lat, 'co/list (limit 50)'):.2f} ms",
            _ok(_row(lat, "co/list (limit 50)") <= 5),
        ],
        [
            f"co/list p99, all {lat['runs']} rows (limit 10000; beyond the target)",
            f"{_row(lat, 'co/list (all runs)'):.2f} ms",
            _ok(_row(lat, "co/list (all runs)") <= 5),
        ],
        ["polling: HTTP ≥ 20× less CPU/poll than CLI", _poll_figure(p), _ok(p["met_ratio"])],
        [
            f"polling: RSS ≤ 150 MB at {p['runs']} runs",
            f"{p['http']['peak_rss_mb']:.0f} MB (HTTP), {p['cli']['peak_rss_mb']:.0f} MB (CLI)",
            _ok(p["met_rss"]),
        ],
        [
            f"diff: largest ({d['rows'][-1]['files']} files, {d['rows'][-1]['patch_mb']:.1f} MB) ≤ 1 s",
            f"{d['rows'][-1]['convert_s']:.2f} s",
            _ok(d["met"]),
        ],
        [
            "diff: linear growth (s/MB, largest ≤ 1.5× smallest)",
            " → ".join(f"{row['s_per_mb'] * 1000:.0f}" for row in d["rows"]) + " ms/MB",
            _ok(d["linear"]),
        ],
        [
            "notifications: no lag, bounded memory",
            f"{n['updates_per_s']:.0f} runUpdates/s, status p99 {n['status_p99_ms']:.0f} ms, "
            f"RSS {n['rss_start_mb']:.0f}→{n['rss_max_mb']:.0f} MB",
            "see §5",
        ],
    ]
    if "stall" in r:
        st = r["stall"]
        rows.append(
            [
                f"co/status while a {st['patch_mb']:.0f} MB co/diff is built: worst ≤ {TARGET_SHARE:.0%} of the diff's time",
                f"{st['during_max_ms'] / 1000:.2f} s of {st['diff_s']:.1f} s ({st['share']:.0%})",
                _ok(st["met"]),
            ]
        )
    return rows


def _stall_section(st: dict[str, Any], notes: dict[str, str]) -> list[str]:
    return [
        SECTIONS[6],
        "",
        f"One finished run whose patch adds {st['files']:,} files ({st['patch_mb']:.1f} MB). The client "
        "sends `co/status` back to back: first idle, then from the moment it sends `co/diff` "
        "until the diff's answer arrives. Timed at the client, over stdio.",
        "",
        *_table(
            ["", ""],
            [
                ["co/diff round trip", f"{st['diff_s']:.1f} s ({st['diff_files']:,} files; {st.get('answer_mb', 0):.0f} MB received in all)"],
                ["co/status idle (p50)", f"{st['idle_p50_ms']:.2f} ms"],
                ["co/status answered while the diff was built", f"{st['during_count']:,}"],
                ["... p50 / worst", f"{st['during_p50_ms']:.2f} ms / {st['during_max_ms']:.0f} ms"],
                ["worst as a share of the co/diff's time", f"{st['share']:.0%}"],
                ["the co/status queued behind the diff's answer on the pipe", f"{st.get('behind_answer_ms', 0):.0f} ms"],
            ],
        ),
        "",
        f"Target: the worst co/status answered while the diff is built ≤ {TARGET_SHARE:.0%} of the co/diff's time: {_ok(st['met'])}. "
        + notes.get("stall", ""),
        "",
    ]
def scratch_section(r: dict[str, Any], notes: dict[str, str]) -> list[str]:
    """Section 6, when this run measured it; its "before" is `scratch_baseline.json`."""
    if "scratch" not in r:
        return []
    base = Path(__file__).with_name("scratch_baseline.json")
    before = json.loads(base.read_text()) if base.is_file() else None
    if before is not None and before.get("started") == r.get("started"):
        before = None  # this run is the baseline
    return scratch_report.render(r["scratch"], before, notes.get("scratch", ""))


def render(r: dict[str, Any], before: dict[str, Any] | None, notes: dict[str, str]) -> str:
    m = r["machine"]
    s, lat, p, d, n = r["startup"], r["latency"], r["polling"], r["diff"], r["notify"]
    out: list[str] = [
        "# Benchmarks",
        "",
        "Generated by `./dev bench` (`.venv/bin/python -m benchmarks`; `--quick` is the CI smoke "
        "mode). Do not edit by hand: the notes live in `benchmarks/notes.py`.",
        "",
        f"**Mode:** {'quick (smoke test, small sizes)' if r['quick'] else 'full'} · "
        f"**run at:** {r['started']} · **took:** {r['took_s']:.0f} s",
        "",
        "## Machine",
        "",
        "Absolute figures below are from this machine only; compare ratios, which were measured "
        "in the same run.",
        "",
        *_table(
            ["", ""],
            [
                ["CPU", m["cpu"]],
                ["cores", m["cores"]],
                ["memory", f"{m['memory_gb']} GB"],
                ["Python", m["python"]],
                ["OS", m["os"]],
                ["git", m["git"]],
                ["load average at start", " / ".join(str(x) for x in m["loadavg_at_start"])],
            ],
        ),
        "",
        notes.get("load", ""),
        "",
        "## Targets",
        "",
        *_table(["target", "this run", ""], summary_rows(r)),
        "",
        SECTIONS[0],
        "",
        f"Process start → `initialize` result over stdio (median of {s['reps']} alternating "
        "runs each), and import time of the modules each server needs before it can answer "
        "(`python -c` with a timer, same repetitions). The floor is `benchmarks/bare_server.py`, "
        "a pygls server that answers `initialize` and nothing else.",
        "",
        *_table(
            ["", "bare pygls (floor)", "co-sidecar", "ratio"],
            [
                [
                    "start → initialize result (median)",
                    f"{s['initialize']['bare_ms']:.0f} ms",
                    f"{s['initialize']['sidecar_ms']:.0f} ms",
                    f"{s['initialize']['ratio']:.2f}×",
                ],
                [
                    "start → initialize result (best)",
                    f"{s['initialize']['bare_min_ms']:.0f} ms",
                    f"{s['initialize']['sidecar_min_ms']:.0f} ms",
                    f"{s['initialize']['sidecar_min_ms'] / s['initialize']['bare_min_ms']:.2f}×",
                ],
                [
                    "import time (median)",
                    f"{s['import']['bare_ms']:.0f} ms",
                    f"{s['import']['sidecar_ms']:.0f} ms",
                    f"{s['import']['ratio']:.2f}×",
                ],
            ],
        ),
        "",
        f"Target ≤ 1.15×: {_ok(s['met'])}. " + notes.get("startup", ""),
        "",
        SECTIONS[1],
        "",
        f"{lat['runs']} finished runs written with the manifest model into a temp workspace; the "
        f"server loads them after `initialized` (first `co/list`: {lat['first_list_ms']:.0f} ms). "
        f"Then {lat['requests']} sequential requests of each kind, timed at the client "
        f"(round trip over stdio, JSON both ways). A full list is {lat['list_bytes'] / 1e3:.0f} kB.",
        "",
        *_table(
            ["request", "p50", "p99", "max"],
            [
                [name, f"{v['p50_ms']:.2f} ms", f"{v['p99_ms']:.2f} ms", f"{v['max_ms']:.1f} ms"]
                for name, v in lat["rows"].items()
            ],
        ),
        "",
        f"Server RSS with {lat['runs']} runs loaded: {lat['server_rss_mb']:.0f} MB. "
        + notes.get("latency", ""),
        "",
        SECTIONS[2],
        "",
        *_polling_section(p, notes),
        "",
        SECTIONS[3],
        "",
        "A git repository of N files (~10 kB each); every 4th line of every file changed; the patch "
        "is `git diff --binary -M`. Timed in-process: `parse_patch` + `check_paths` + "
        "`build_workspace_edit` against the files on disk (what `co/diff` does), median of "
        f"{d['reps']}; the floor is `git apply --check` of the same patch in the same repository.",
        "",
        *_table(
            ["files", "patch", "text edits", "parse", "patch → WorkspaceEdit", "per MB", "`git apply --check`", "ratio"],
            [
                [
                    row["files"],
                    f"{row['patch_mb']:.2f} MB",
                    row["edits"],
                    f"{row['parse_s'] * 1000:.0f} ms",
                    f"{row['convert_s'] * 1000:.0f} ms",
                    f"{row['s_per_mb'] * 1000:.0f} ms/MB",
                    f"{row['git_check_s'] * 1000:.0f} ms",
                    f"{row['ratio_to_git']:.1f}×",
                ]
                for row in d["rows"]
            ],
        ),
        "",
        f"Largest ≤ 1 s: {_ok(d['met'])}; linear (time per MB flat within 1.5×): "
        f"{_ok(d['linear'])}. " + notes.get("diff", ""),
        "",
        SECTIONS[4],
        "",
        f"{n['runs']} local run(s) at once, each agent printing ~60-byte lines as fast as it can "
        f"for {n['seconds']:g} s. The server forwards output at most every 0.1 s per run (≤ 50 "
        "lines, the rest summarised). Counted at the stdio client; co/status is sent every 0.2 s "
        "during the flood to see whether the server keeps answering.",
        "",
        *_table(
            ["", ""],
            [
                ["agent lines consumed", f"{n['lines']:,} ({n['lines_per_s']:,.0f} lines/s)"],
                ["co/runUpdate delivered", f"{n['updates']} ({n['updates_per_s']:.0f}/s during the flood)"],
                ["$/progress delivered", f"{n['progress']} ({n['progress_per_s']:.0f}/s)"],
                ["bytes to the client", f"{n['bytes_in_mb']:.1f} MB"],
                ["runs succeeded", f"{n['succeeded']}/{n['runs']}"],
                ["wall time (agents ran)", f"{n['wall_s']:.1f} s ({n['agent_s']:.1f} s)"],
                ["co/status during the flood", f"p50 {n['status_p50_ms']:.1f} ms, p99 {n['status_p99_ms']:.1f} ms"],
                ["server RSS: start → max → end", f"{n['rss_start_mb']:.0f} → {n['rss_max_mb']:.0f} → {n['rss_end_mb']:.0f} MB"],
            ],
        ),
        "",
        "RSS over time (s → MB): "
        + ", ".join(f"{t:.1f}→{v:.0f}" for t, v in n["rss_series"][:: max(1, len(n["rss_series"]) // 12)])
        + ".",
        "",
        notes.get("notify", ""),
        "",
        *(_stall_section(r["stall"], notes) if "stall" in r else []),
        *scratch_section(r, notes),
        SECTIONS[5],
        "",
    ]
    if before is None:
        out += ["No baseline recorded yet (`python -m benchmarks --save-baseline`)."]
    else:
        out += [
            f"“Before” is the first full run, before the fixes below ({before['started']}, same "
            "machine; kept in `benchmarks/baseline.json`); “after” is this run.",
            "",
        ]
        after_rows = summary_rows(r)
        before_rows = summary_rows(before)
        # Targets measured only since the baseline (e.g. §6) have no "before".
        before_rows += [[a[0], "—"] for a in after_rows[len(before_rows) :]]
        out += _table(
            ["target", "before", "after"],
            [[a[0], b[1], a[1]] for a, b in zip(after_rows, before_rows, strict=True)],
        )
    out += ["", notes.get("changes", ""), "", "## Caveats", "", notes.get("caveats", ""), ""]
    return "\n".join(out).replace("\n\n\n", "\n\n")
