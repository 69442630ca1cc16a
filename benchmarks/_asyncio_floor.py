"""An echo on Crucible's own transport: what a keystroke costs before any LSP work.

Run as a script (``python benchmarks/_asyncio_floor.py``, with Crucible's package importable):
stdin read through ``lsp/stdio.py``'s asyncio pipe and ``lsp/framing.py``'s ``FrameReader``,
each body through ``lsp/jsonrpc.py``, as the server reads them; ``initialize`` answered with
empty capabilities, every other request with ``null`` from a task of its own (as the server
runs a request's handler), notifications ignored, ``exit`` ends it. Beside
``_peer_floor.py`` (blocking reads, no event loop) it tells what the asyncio transport costs,
so a keystroke's CPU can be split into transport and work (``scaling.py``). It is issue 16's
baseline, "an echo on the same transport": the issue's 670 µs a key was 7 × it (~96 µs).
"""

from __future__ import annotations

import asyncio
import json
import sys

from crucible.lsp import jsonrpc
from crucible.lsp.framing import MAX_MESSAGE_BYTES, FrameReader
from crucible.lsp.stdio import stdin_stream


def _write(message: dict[str, object]) -> None:
    body = json.dumps(message)
    sys.stdout.buffer.write(f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
    sys.stdout.buffer.flush()


async def _answer(msg_id: jsonrpc.MsgId, result: object) -> None:
    _write({"id": msg_id, "jsonrpc": "2.0", "result": result})


async def main() -> int:
    reader = FrameReader(await stdin_stream(), MAX_MESSAGE_BYTES)
    answers: set[asyncio.Task[None]] = set()
    while (item := await reader.next()) is not None:
        message = jsonrpc.parse_body(item.body) if hasattr(item, "body") else None
        if isinstance(message, jsonrpc.Notification) and message.method == "exit":
            return 0
        if isinstance(message, jsonrpc.Request):
            result = {"capabilities": {}} if message.method == "initialize" else None
            task = asyncio.ensure_future(_answer(message.id, result))
            answers.add(task)
            task.add_done_callback(answers.discard)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
