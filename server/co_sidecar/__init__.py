"""co-sidecar: hand coding tasks to local or Codex Cloud execution, apply diffs only on acceptance."""

__version__ = "0.1.0"
