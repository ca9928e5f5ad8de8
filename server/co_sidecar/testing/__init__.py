"""Test doubles that ship with the package: the loopback Codex Cloud emulator
(`co-sidecar emulator`, `co-sidecar canary --emulator`). Never imported by a run."""
