"""co-sidecar benchmarks: `python -m benchmarks [--quick] [--output PATH]` (see docs/benchmarks.md)."""
