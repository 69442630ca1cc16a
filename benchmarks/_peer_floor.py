"""The stdlib JSON-RPC floor for the peers benchmark: an LSP server with nothing but ``json``.

Run as a script (``python benchmarks/_peer_floor.py``, no package import): it answers
``initialize`` with inline-completion and incremental-sync capabilities, every other request
with ``null``, ignores notifications and exits on ``exit``. What starting an LSP server costs in
this Python with no framework at all: the interpreter, ``json`` and a pipe.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _read(stream: Any) -> dict[str, Any] | None:
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("ascii").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        return None
    message: dict[str, Any] = json.loads(stream.read(length))
    return message


def _write(stream: Any, message: dict[str, Any]) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    stream.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    stream.flush()


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    capabilities = {"textDocumentSync": 2, "inlineCompletionProvider": True}
    while (message := _read(stdin)) is not None:
        method = message.get("method")
        if method == "exit":
            return 0
        if "id" not in message:
            continue  # a notification
        result = None
        if method == "initialize":
            result = {"capabilities": capabilities, "serverInfo": {"name": "stdlib-floor"}}
        _write(stdout, {"jsonrpc": "2.0", "id": message["id"], "result": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
