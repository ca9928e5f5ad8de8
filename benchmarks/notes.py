"""Hand-written notes rendered into docs/benchmarks.md (analysis of the figures, and the fixes)."""

NOTES: dict[str, str] = {
    "load": "The machine has 2 cores shared with other work (test suites of colleagues ran "
    "alongside): absolute times carry that noise; every comparison is a ratio of figures "
    "taken in the same run, interleaved where possible.",
    "startup": "",
    "latency": "",
    "polling": "",
    "diff": "",
    "notify": "",
    "changes": "",
    "caveats": "- Wall-clock figures depend on the machine's load at the time; the CPU figures "
    "(polling) are less sensitive to it.\n"
    "- Tests never assert on timings: `tests/test_benchmarks_quick.py` only runs `--quick` "
    "and checks that the report has every section.",
}
