"""`co-sidecar serve --tcp`: a JSON-RPC port that only its user's clients can use.

Any local process can connect to a TCP port, and a web page can make a browser POST to one.
So the server writes a random token to a file only its user can read (0600, in a 0700
directory under $XDG_RUNTIME_DIR, printed at start), and a connection must prove it knows
the token in its first message: `initialize` with `initializationOptions.authToken`. Anything
else, and anything that looks like HTTP at any point, closes the connection. The first
authenticated connection is served until it ends, as stdio would be; then the server exits.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

from .server import CoSidecarServer
from .transport import INVALID_REQUEST, FramedReader, serve

log = logging.getLogger(__name__)
AUTH_TIMEOUT_S = 10.0


def token_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return Path(base) / "co-sidecar"
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "co-sidecar" / "run"


def write_token(path: Path) -> str:
    """A fresh token in `path`, readable by this user only (its directory too when we make it)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # never write through someone else's file or link
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def offered_token(message: Any) -> str | None:
    """initialize's initializationOptions.authToken (top level or under "co-sidecar")."""
    if not isinstance(message, dict) or message.get("method") != "initialize":
        return None
    params = message.get("params")
    options = params.get("initializationOptions") if isinstance(params, dict) else None
    if not isinstance(options, dict):
        return None
    for holder in (options, options.get("co-sidecar"), options.get("coSidecar")):
        if isinstance(holder, dict) and isinstance(holder.get("authToken"), str):
            return str(holder["authToken"])
    return None


def _refuse(conn: socket.socket, message: Any, why: str) -> None:
    log.warning("closed an unauthenticated TCP connection: %s", why)
    msg_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(msg_id, int | str):
        import json

        body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": {"code": INVALID_REQUEST, "message": why}}).encode()
        with contextlib.suppress(OSError):
            conn.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def serve_tcp(server: CoSidecarServer, host: str, port: int, token_file: Path | None = None) -> int:
    listener = socket.create_server((host, port))
    port = listener.getsockname()[1]
    path = token_file or token_dir() / f"tcp-{port}.token"
    token = write_token(path)
    server.exit_hooks.append(lambda: path.unlink(missing_ok=True))
    print(
        f"co-sidecar: listening on {host}:{port}; a client must send the token in {path} as "
        "initializationOptions.authToken in its initialize request",
        file=sys.stderr,
        flush=True,
    )
    try:
        while True:
            conn, peer = listener.accept()
            conn.settimeout(AUTH_TIMEOUT_S)
            reader = FramedReader(conn.makefile("rb"), refuse_http=True)
            try:
                item = reader.next_message()
            except (OSError, TimeoutError):
                item = None
            if item is None:
                _refuse(conn, None, "no JSON-RPC message (or an HTTP request)")
                continue
            kind, message = item
            offered = offered_token(message) if kind == "message" else None
            if offered is None or not hmac.compare_digest(offered.encode(), token.encode()):
                _refuse(conn, message if kind == "message" else None, f"authentication required: initialize with initializationOptions.authToken from {path}")
                continue
            log.info("authenticated TCP client %s", peer)
            listener.close()  # one session, as with stdio
            conn.settimeout(None)
            serve(server, reader, conn.makefile("wb"), first=message)  # as stdio is served
            return 0
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            path.unlink()
