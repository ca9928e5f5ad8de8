#!/usr/bin/env python3
"""Deterministic agent for the Neovim plugin tests (stdlib only).

Runs in the scratch copy co-sidecar gives it (cwd). argv[1] is the prompt:
- a prompt containing "sleep" sleeps 60 s first (cancel tests);
- a prompt starting "follow" only appends the prompt to src.txt (a follow-up's own change);
- otherwise: prints two progress lines, then
  * modifies src.txt: "line 10" -> "line 10 changed by agent", and appends "line 21",
  * creates created.txt, and noeol.txt (no newline at its end),
  * deletes old.txt,
  * renames rename_me.txt -> renamed.txt.
"""

import sys
import time
from pathlib import Path

prompt = sys.argv[1] if len(sys.argv) > 1 else ""
print(f"agent: task {prompt!r}", flush=True)
if "sleep" in prompt:
    print("agent: sleeping", flush=True)
    time.sleep(60)
if prompt.startswith("follow"):
    Path("src.txt").write_text(Path("src.txt").read_text() + prompt + "\n")
    print("agent: followed up", flush=True)
    sys.exit(0)
time.sleep(0.3)
print("agent: editing files", flush=True)
src = Path("src.txt")
src.write_text(src.read_text().replace("line 10\n", "line 10 changed by agent\n") + "line 21\n")
Path("created.txt").write_text("created by agent\n")
Path("noeol.txt").write_text("no newline")
Path("old.txt").unlink()
Path("rename_me.txt").rename("renamed.txt")
time.sleep(0.3)
print("agent: done", flush=True)
