"""`python -m benchmarks [--quick] [--output PATH] [--json PATH] [--save-baseline]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import diff_edit, diff_stall, latency, notify, polling, scratch, scratch_report, startup
from .machine import describe
from .notes import NOTES
from .report import render
from .rpc import ROOT

BASELINE = Path(__file__).with_name("baseline.json")

FULL = {
    "startup_reps": 20,
    "latency_runs": 1000,
    "latency_requests": 500,
    "poll_runs": 200,
    "poll_polls": 30,
    "diff_sizes": [20, 200, 2000],
    "diff_reps": 3,
    "notify_runs": 4,
    "notify_seconds": 5.0,
    "stall_files": 16_000,
    "scratch_sizes": [5_000, 50_000, 200_000],
    "scratch_warm": 3,
    "scratch_concurrent": 4,
    "scratch_own_repo": True,
}
QUICK = {
    "startup_reps": 3,
    "latency_runs": 200,
    "latency_requests": 30,
    "poll_runs": 10,
    "poll_polls": 3,
    "diff_sizes": [5, 20, 50],
    "diff_reps": 1,
    "notify_runs": 1,
    "notify_seconds": 1.0,
    "stall_files": 1_000,
    "scratch_sizes": [300],
    "scratch_warm": 1,
    "scratch_concurrent": 2,
    "scratch_own_repo": False,
}


def step(name: str) -> None:
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)


async def run_scratch(sizes: dict[str, Any]) -> dict[str, Any]:
    return await scratch.run(
        sizes["scratch_sizes"], sizes["scratch_warm"], sizes["scratch_concurrent"], sizes["scratch_own_repo"]
    )


async def run_all(sizes: dict[str, Any], only: str | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if only == "scratch":
        return {"scratch": await run_scratch(sizes)}
    step("1/7 start-up")
    results["startup"] = await startup.run(sizes["startup_reps"])
    step("2/7 latency")
    results["latency"] = await latency.run(sizes["latency_runs"], sizes["latency_requests"])
    step("3/7 polling at scale")
    results["polling"] = await polling.run(sizes["poll_runs"], sizes["poll_polls"])
    step("4/7 diff → WorkspaceEdit")
    results["diff"] = diff_edit.run(sizes["diff_sizes"], sizes["diff_reps"])
    step("5/7 notification throughput")
    results["notify"] = await notify.run(sizes["notify_runs"], sizes["notify_seconds"])
    step("6/7 co/status during a big co/diff")
    results["stall"] = await diff_stall.run(sizes["stall_files"], 20)
    step("7/7 scratch copies")
    results["scratch"] = await run_scratch(sizes)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: the CI smoke run")
    parser.add_argument("--output", default=None, help="report path (default docs/benchmarks.md)")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument(
        "--save-baseline", action="store_true", help="record this run as the 'before' figures"
    )
    parser.add_argument(
        "--from-json", default=None, help="render the report from saved results; run nothing"
    )
    parser.add_argument(
        "--only", choices=["scratch"], default=None,
        help="run one section and replace it in the existing report",
    )
    parser.add_argument(
        "--save-scratch-baseline", action="store_true",
        help="record this run's scratch section as its 'before' figures",
    )
    args = parser.parse_args(argv)
    output = Path(args.output) if args.output else ROOT / "docs" / "benchmarks.md"
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
    else:
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        machine = describe()
        t0 = time.perf_counter()
        results = asyncio.run(run_all(QUICK if args.quick else FULL, args.only))
        results.update(
            machine=machine, quick=args.quick, started=started, took_s=time.perf_counter() - t0
        )
    if args.save_scratch_baseline and "scratch" in results:
        scratch_base = dict(results["scratch"], started=results.get("started"))
        (BASELINE.parent / "scratch_baseline.json").write_text(json.dumps(scratch_base, indent=1) + "\n")
    if args.only:
        from .report import scratch_section

        old = output.read_text() if output.is_file() else ""
        section = scratch_section(results, NOTES)
        load = " / ".join(str(x) for x in results["machine"]["loadavg_at_start"])
        # The rest of the report is from another run: say when this section was measured.
        section[1:1] = ["", f"*This section alone (`--only scratch`): run at {results['started']}, load average at start {load}.*"]
        output.write_text(scratch_report.splice(old, section))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        print(f"[bench] wrote {output}", file=sys.stderr)
        return 0
    if args.save_baseline:
        BASELINE.write_text(json.dumps(results, indent=1) + "\n")
    before = json.loads(BASELINE.read_text()) if BASELINE.is_file() else None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(results, before, NOTES))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"[bench] wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
