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

from co_sidecar.testing import emulator as emu_mod


def main(argv: list[str]) -> int:
    workdir, repo, token = Path(argv[0]), Path(argv[1]), argv[2]
    subprocess.run(["mount", "--bind", str(workdir / "hosts"), "/etc/hosts"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    faults = argv[3] if len(argv) > 3 else None
    # What `codex cloud exec --env` resolves against: an id, or this label (case-insensitive).
    environments = [{"id": "env-emulated", "label": "Emulated", "is_pinned": True}]
    emulator = emu_mod.Emulator(
        repo, host="127.0.0.1", port=443, token=token, faults=faults, environments=environments
    )
    handler = type("Handler", (emu_mod._Handler,), {"emulator": emulator})
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
