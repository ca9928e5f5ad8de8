"""A generic LSP client: headless Emacs with eglot runs the snippet docs/editors.md gives, end to
end against the real server (launch, diff, apply, a declined apply, a run eglot cannot take)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, git, make_repo

EMACS = shutil.which("emacs")

AGENT = """
import pathlib, sys
prompt = sys.argv[1]
if prompt.startswith("create"):
    pathlib.Path("NOTES.md").write_text("notes\\n")
else:
    path = pathlib.Path("README.md")
    path.write_text(path.read_text() + prompt + "\\n")
"""

DRIVER = r"""
(setq co-sidecar-command '(%(server)s))
(setq eglot-server-programs (cons `((prog-mode text-mode) . ,co-sidecar-command) (cdr eglot-server-programs)))
(defun test-out (key value) (princ (format "RESULT %%s %%s\n" key (json-encode value))))
(defun test-wait (id)
  (with-timeout (60 (error "run %%s did not finish" id))
    (while (not (member (plist-get (gethash id co-sidecar-runs) :state) '("succeeded" "failed")))
      (accept-process-output nil 0.05)))
  (plist-get (gethash id co-sidecar-runs) :state))
(defun test-apply (id answer)
  (cl-letf (((symbol-function 'y-or-n-p) (lambda (&rest _) answer)))
    (condition-case err (co-sidecar-apply id) (error (list :error (format "%%S" err))))))

(find-file "%(workspace)s/README.md")
(text-mode)
(apply #'eglot (eglot--guess-contact))
(with-timeout (60 (error "eglot did not connect")) (while (not (eglot-current-server)) (accept-process-output nil 0.05)))

(let ((id (co-sidecar-launch "first line")))
  (test-out "accepted-state" (test-wait id))
  (test-out "accepted-diff" (plist-get (co-sidecar-diff id) :patch))
  (test-out "accepted-apply" (test-apply id t))
  (save-some-buffers t)
  (test-out "accepted-id" id))

(let ((id (co-sidecar-launch "second line")))
  (test-wait id)
  (test-out "declined-apply" (test-apply id nil))
  (test-out "declined-id" id))

(let ((id (co-sidecar-launch "create a file")))
  (test-wait id)
  (test-out "create-apply" (test-apply id t))
  (test-out "create-id" id))
(kill-emacs 0)
"""


def _snippet() -> str:
    text = (ROOT / "docs" / "editors.md").read_text()
    found = re.search(r"<!-- emacs-snippet-start -->\n```elisp\n(.*?)```\n<!-- emacs-snippet-end -->", text, re.S)
    assert found, "docs/editors.md lost its Emacs snippet"
    return found.group(1)


def _eglot_loads() -> bool:
    if EMACS is None:
        return False
    probe = subprocess.run(
        [EMACS, "--batch", "--no-init-file", "--eval", "(require 'eglot)"], capture_output=True, timeout=60, check=False
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _eglot_loads(),
    reason="needs Emacs with eglot: apt-get install emacs-nox elpa-eglot (./dev setup does it as root)",
)


def test_eglot_launches_diffs_applies_and_declines_through_the_snippet(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "ws", {"README.md": "# demo\n", "app.py": "x = 1\n"})
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    snippet = tmp_path / "co-sidecar.el"
    snippet.write_text(_snippet())
    driver = tmp_path / "drive.el"
    server = " ".join(json.dumps(a) for a in [sys.executable, "-m", "co_sidecar", "serve"])
    driver.write_text(DRIVER % {"server": server, "workspace": repo})
    env = {
        **os.environ,
        "CO_AGENT_COMMAND": json.dumps([sys.executable, str(agent), "{prompt}"]),
        "HOME": str(tmp_path / "home"),
    }
    done = subprocess.run(
        [EMACS or "emacs", "--batch", "--no-init-file", "-l", str(snippet), "-l", str(driver)],
        cwd=repo, capture_output=True, text=True, timeout=240, env=env, check=False,
    )
    results = {
        m.group(1): json.loads(m.group(2)) for m in re.finditer(r"^RESULT (\S+) (.*)$", done.stdout, re.M)
    }
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # Accepted: eglot applied the edit to the buffer, the user saved, the disk has it.
    assert results["accepted-state"] == "succeeded"
    assert "+first line" in results["accepted-diff"]
    assert results["accepted-apply"]["applied"] is True, results
    assert (repo / "README.md").read_text() == "# demo\nfirst line\n"
    first = _manifest(repo, results["accepted-id"])
    assert first["state"] == "applied" and first["apply"]["strategy"] == "client"

    # Declined: eglot answered the edit with an error; the run says so and can still be applied.
    declined = results["declined-apply"]
    assert declined["applied"] is False and "User cancelled" in declined["failureReason"]
    second = _manifest(repo, results["declined-id"])
    assert second["state"] == "succeeded"
    assert second["apply"]["applied"] is False and "User cancelled" in second["apply"]["reason"]
    assert (repo / "README.md").read_text() == "# demo\nfirst line\n"

    # A new file needs resourceOperations, which eglot 1.9 does not advertise: refused, not misread.
    created = results["create-apply"]
    assert created["applied"] is False and "resourceOperations" in created["failureReason"]
    assert "strategy" in created["failureReason"] and not (repo / "NOTES.md").exists()
    assert git(repo, "status", "--porcelain") == " M README.md\n"


def _manifest(repo: Path, run_id: str) -> dict:
    (path,) = (repo / ".runs").glob(f"*/{run_id}/manifest.json")
    return json.loads(path.read_text())
