"""The loopback Codex Cloud emulator as https://chatgpt.com, inside a private network namespace.

The real `codex cloud` only talks to trusted ChatGPT origins (https on port 443; it refuses
CODEX_CLOUD_TASKS_BASE_URL=http://127.0.0.1:..., and ignores `chatgpt_base_url`). So
tests/test_codex_cli.py runs this program under `unshare --user --map-root-user --mount --net`:
a namespace with only a loopback interface, where /etc/hosts (bind-mounted) maps chatgpt.com
to 127.0.0.1 and the emulator serves TLS on 127.0.0.1:443 with a throwaway certificate that
codex trusts through CODEX_CA_CERTIFICATE. codex is then run in the same namespace with
`nsenter`. Nothing can leave the namespace: it has no other interface.

    python codex_cloud_namespace.py WORKDIR REPO TOKEN [FAULTS]

WORKDIR holds hosts, cert.pem, key.pem; the program prints "ready" once serving, serves until
its stdin closes, then writes the requests it saw to WORKDIR/requests.json.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from co_sidecar.cloud import emulator as emu_mod


class Handler(emu_mod._Handler):
    """The emulator's task routes plus the environment listing `codex cloud` may ask for."""

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        path = self.path.split("?", 1)[0]
        if path.startswith("/backend-api/wham/environments"):
            self._record()
            envs = [{"id": "env-emulated", "label": "emulated", "is_pinned": True, "repo_map": {}}]
            self._send(200, envs)
            return
        if path == "/backend-api/wham/tasks/list" and self.emulator.token is not None:
            # The emulator's list items lack `archived` and `has_unread_turn`, which codex
            # 0.169 requires ("Decode error ... missing field `archived`"): add them until
            # the emulator does.
            self._record()
            if not self._authorized():
                self._error(401, "invalid bearer token")
                return
            body = self.emulator.list_body(20)
            for item in body.get("items", []):
                item.setdefault("archived", False)
                item.setdefault("has_unread_turn", False)
            self._send(200, body)
            return
        super().do_GET()


def main(argv: list[str]) -> int:
    workdir, repo, token = Path(argv[0]), Path(argv[1]), argv[2]
    subprocess.run(["mount", "--bind", str(workdir / "hosts"), "/etc/hosts"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    faults = argv[3] if len(argv) > 3 else None
    emulator = emu_mod.Emulator(repo, host="127.0.0.1", port=443, token=token, faults=faults)
    handler = type("Handler", (Handler,), {"emulator": emulator})
    server = ThreadingHTTPServer(("127.0.0.1", 443), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    emulator._server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print("ready", flush=True)
    sys.stdin.read()
    requests: list[dict[str, Any]] = list(emulator.requests)
    emulator.stop()
    (workdir / "requests.json").write_text(json.dumps(requests))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
