#!/usr/bin/env python3
"""Drive co-sidecar over stdio with nothing but the standard library: a reference for other tools.

It frames JSON-RPC messages with `Content-Length` headers, runs one task on a
throwaway git repository (initialize → co/launch → co/runUpdate … → co/diff →
co/apply with the git strategy → shutdown/exit), and prints the transcript.
`--markdown` prints it as the session section of docs/jsonrpc-session.md, with
volatile values (ids, times, paths) replaced by placeholders; a test checks
that the checked-in document still matches a fresh run.

    python examples/jsonrpc_session.py [--markdown] [--server "co-sidecar serve"]
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

AGENT = "import pathlib; pathlib.Path('README.md').write_text('# demo\\nhello from the agent\\n')"


class Connection:
    """JSON-RPC 2.0 with LSP base-protocol framing over a child process's stdio."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: S603
        self.next_id = 1
        self.transcript: list[tuple[str, dict[str, Any]]] = []

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode("utf-8")
        stdin: IO[bytes] = self.proc.stdin  # type: ignore[assignment]
        stdin.write(f"Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body)
        stdin.flush()
        self.transcript.append(("client → server", message))

    def receive(self) -> dict[str, Any]:
        stdout: IO[bytes] = self.proc.stdout  # type: ignore[assignment]
        length = None
        while True:
            line = stdout.readline()
            if not line:
                raise EOFError("the server closed its stdout")
            line = line.strip()
            if not line:
                break
            name, _, value = line.decode("ascii").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if length is None:
            raise ValueError("a message without Content-Length")
        message = json.loads(stdout.read(length))
        self.transcript.append(("server → client", message))
        return message

    def request(self, method: str, params: Any) -> Any:
        msg_id = self.next_id
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        while True:
            message = self.receive()
            if message.get("id") == msg_id and "method" not in message:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait_for_state(self, run_id: str, states: set[str]) -> dict[str, Any]:
        while True:
            message = self.receive()
            params = message.get("params") or {}
            if message.get("method") == "co/runUpdate" and params.get("runId") == run_id and params["state"] in states:
                return params


def make_repo(path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=demo", "-c", "user.email=demo@localhost", *args], cwd=path, check=True, capture_output=True)  # noqa: S603

    git("init", "-q", "-b", "main")
    (path / "README.md").write_text("# demo\n")
    git("add", "-A")
    git("commit", "-qm", "initial")


def run_session(server: list[str], workspace: Path) -> list[tuple[str, dict[str, Any]]]:
    conn = Connection(server)
    try:
        conn.request(
            "initialize",
            {
                "processId": None,
                "rootUri": workspace.as_uri(),
                "capabilities": {},
                "workspaceFolders": [{"uri": workspace.as_uri(), "name": "demo"}],
                "initializationOptions": {"local": {"agentCommand": [sys.executable, "-c", AGENT]}},
            },
        )
        conn.notify("initialized", {})
        launched = conn.request("co/launch", {"prompt": "say hello in the README", "mode": "local"})
        conn.wait_for_state(launched["runId"], {"succeeded", "failed", "cancelled", "timed_out"})
        conn.request("co/diff", {"runId": launched["runId"]})
        conn.request("co/apply", {"runId": launched["runId"], "accept": True, "strategy": "git"})
        conn.request("shutdown", None)
        conn.notify("exit", None)
        conn.proc.wait(timeout=10)
    finally:
        if conn.proc.poll() is None:
            conn.proc.kill()
    return conn.transcript


def normalize(text: str, workspace: Path) -> str:
    """Replace what differs between runs, so the transcript can be compared."""
    text = text.replace(workspace.as_uri(), "file:///tmp/demo").replace(str(workspace), "/tmp/demo")
    text = text.replace(json.dumps(sys.executable)[1:-1], "python3")
    text = re.sub(r"\d{8}T\d{12}-[0-9a-f]{6}", "<runId>", text)
    text = re.sub(r'"\d{4}-\d\d-\d\dT[\d:.]+Z"', '"<time>"', text)
    text = re.sub(r'"elapsedMs": \d+', '"elapsedMs": 0', text)
    text = re.sub(r"agent started: python[\d.]* \(pid \d+\)", "agent started: python3 (pid N)", text)
    text = re.sub(r'"version": "[^"]+"', '"version": "<version>"', text)
    text = re.sub(r'"(baseHead|head)": "[0-9a-f]{40}"', r'"\1": "<commit>"', text)
    return re.sub(r"index [0-9a-f]+\.\.[0-9a-f]+", "index <blob>..<blob>", text)


HEADER = """# A full JSON-RPC session, message by message

<!-- generated by `python examples/jsonrpc_session.py --markdown > docs/jsonrpc-session.md`;
     tests/test_jsonrpc_session.py fails when a fresh run no longer matches -->

For tools that are not editors: co-sidecar speaks JSON-RPC 2.0 over stdio with the LSP base
protocol's framing. Each message is a header block and a JSON body:

```
Content-Length: 52\\r\\n
\\r\\n
{"jsonrpc": "2.0", "id": 1, "method": "co/list", ...}
```

`examples/jsonrpc_session.py` is a complete client in ~150 lines of standard-library Python.
Below is what it sends and receives on a throwaway repository, with an agent that rewrites
`README.md`; ids, times and paths are replaced by placeholders. Note that the run's first
`co/runUpdate` notifications arrive before the `co/launch` response, and that notifications
and responses interleave: match responses by `id` and updates by `runId`.

"""


def markdown(transcript: list[tuple[str, dict[str, Any]]], workspace: Path) -> str:
    out = [HEADER]
    for direction, message in transcript:
        body = normalize(json.dumps(message, indent=2), workspace)
        what = message.get("method") or f"response {message.get('id')}"
        out += [f"**{direction}** `{what}`", "", "```json", body, "```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=f"{shlex.quote(sys.executable)} -m co_sidecar serve")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp).resolve()
        make_repo(workspace)
        transcript = run_session(shlex.split(args.server), workspace)
        if args.markdown:
            print(markdown(transcript, workspace))
        else:
            for direction, message in transcript:
                print(direction, json.dumps(message))
        return 0 if (workspace / "README.md").read_text().endswith("hello from the agent\n") else 1


if __name__ == "__main__":
    sys.exit(main())
