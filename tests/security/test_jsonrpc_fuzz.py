"""A malformed-frame fuzz run against the real server process: thousands of random and mutated
frames (seeded, so a failure replays), with well-formed requests and sentinels among them.

What must hold whatever the garbage: every well-formed request is answered exactly once, every
sentinel (a status request after the garbage) is served, the process stays alive with bounded
memory, and it still shuts down cleanly (exit code 0).

Budget: ``CRUCIBLE_FUZZ_FRAMES`` frames (default 3000) and ``CRUCIBLE_FUZZ_SECONDS`` seconds
of sending (default 20), whichever ends first; ``CRUCIBLE_FUZZ_SEED`` picks the seed.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.security.rawlsp import RawServer, frame, notification, request

pytestmark = pytest.mark.e2e

FRAMES = int(os.environ.get("CRUCIBLE_FUZZ_FRAMES", "3000"))
SECONDS = float(os.environ.get("CRUCIBLE_FUZZ_SECONDS", "20"))
SEED = int(os.environ.get("CRUCIBLE_FUZZ_SEED", "20261206"))
GROUP = 10  # garbage frames between two sentinels
# Methods a fuzzed frame may name: never shutdown or exit, which end the session on purpose.
METHODS = [
    "crucible/status",
    "textDocument/inlineCompletion",
    "textDocument/completion",
    "textDocument/didChange",
    "textDocument/didClose",
    "textDocument/hover",
    "$/cancelRequest",
    "$/setTrace",
    "workspace/executeCommand",
    "initialize",
    "no/such/method",
    "",
]


def _inline_params(rng: random.Random) -> dict[str, Any]:
    return {
        "textDocument": {"uri": f"file:///fuzz/{rng.randrange(5)}.py"},
        "position": {"line": rng.randrange(10), "character": rng.randrange(80)},
        "context": {"triggerKind": rng.choice([1, 2])},
    }


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**40), rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e-300, 3.0])
    if kind == 4:
        return rng.choice(["", "x", "\ud800", "é𝔸中", "a" * rng.randrange(500), "\x00\n\r"])
    if kind == 5:
        return rng.choice(METHODS)
    if kind == 6:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["jsonrpc", "id", "method", "params", "result", "error", "textDocument", "position"]
    return {rng.choice(keys): _json_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def _valid_message(rng: random.Random) -> dict[str, Any]:
    method = rng.choice(["crucible/status", "textDocument/inlineCompletion", "no/such/method"])
    params = _inline_params(rng) if method == "textDocument/inlineCompletion" else {}
    return request(rng.randrange(10_000), method, params)


def _garbage(rng: random.Random) -> bytes:
    """One malformed frame (or a stretch of junk)."""
    kind = rng.randrange(10)
    body = json.dumps(_valid_message(rng)).encode()
    if kind == 0:  # random bytes, no header
        return rng.randbytes(rng.randrange(300))
    if kind == 1:  # a valid frame with bytes flipped anywhere (header included)
        data = bytearray(frame(body))
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 2:  # the body cut short: the declared length is too long
        return b"Content-Length: %d\r\n\r\n" % len(body) + body[: rng.randrange(len(body))]
    if kind == 3:  # the declared length off by a little
        delta = rng.choice([-3, -1, 1, 2, 7])
        return b"Content-Length: %d\r\n\r\n" % max(0, len(body) + delta) + body
    if kind == 4:  # broken header values
        value = rng.choice([b"-1", b"abc", b"", b"1e3", b" 12 ", b"9" * 30, b"0x10"])
        return b"Content-Length: " + value + b"\r\n\r\n" + body
    if kind == 5:  # a huge declared length with a little body
        size = rng.choice([10**6 * 100, 10**9, 10**12, 2**63])
        return b"Content-Length: %d\r\n\r\n" % size + body[: rng.randrange(len(body))]
    if kind == 6:  # random JSON, framed correctly
        return frame(json.dumps(_json_value(rng)).encode())
    if kind == 7:  # a request-shaped object with random members
        message: dict[str, Any] = {
            "jsonrpc": rng.choice(["2.0", "2.0", "1.0", 2]),
            "id": _json_value(rng),
            "method": rng.choice(METHODS),
        }
        if rng.random() < 0.8:
            message["params"] = _json_value(rng)
        return frame(message)
    if kind == 8:  # a response to nothing the server asked
        return frame({"jsonrpc": "2.0", "id": _json_value(rng), "result": _json_value(rng)})
    # Extra headers, odd spacing, bare LF, junk lines inside the block.
    lines = [b"Content-Type: application/vscode-jsonrpc; charset=utf-8", b"X-Junk:", b"::"]
    rng.shuffle(lines)
    return b"\n".join(lines[: rng.randrange(4)]) + b"\r\ncontent-LENGTH:%d\n\n" % len(body) + body


@pytest.mark.timeout(60 + 2 * SECONDS)
async def test_malformed_frame_fuzz_answers_what_it_must_and_stays_alive(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    server = await RawServer.start(tmp_path)
    try:
        await server.initialize()
        must_answer: list[str] = []
        sentinels: list[str] = []
        deadline = time.monotonic() + SECONDS
        sent = 0
        while sent < FRAMES and time.monotonic() < deadline:
            for _ in range(GROUP):
                if rng.random() < 0.1:  # a well-formed request among the garbage
                    msg_id = f"must-{sent}"
                    must_answer.append(msg_id)
                    message = _valid_message(rng)
                    message["id"] = msg_id
                    await server.send(frame(message))
                else:
                    await server.send(_garbage(rng))
                sent += 1
            sentinel = f"sentinel-{sent}"
            sentinels.append(sentinel)
            # A blank line ends whatever header block the garbage left open.
            await server.send(b"\r\n\r\n" + frame(request(sentinel, "crucible/status")))
            reply = await server.reply(sentinel, within=10)
            assert "result" in reply, (sentinel, reply)

        assert sent >= min(FRAMES, 500), f"only {sent} frames in {SECONDS} s"
        await server.alive_and_serving("end")
        for msg_id in must_answer:
            assert len(server.replies_to(msg_id)) == 1, (msg_id, server.replies_to(msg_id))
        for sentinel in sentinels:
            assert len(server.replies_to(sentinel)) == 1, sentinel
        # The garbage did reach the parser: a good share of it was answered with an error.
        refused = [r for r in server.replies if isinstance(r, list) or "error" in r]
        assert len(refused) > sent // 5, f"{len(refused)} errors for {sent} frames"
        assert server.rss_mb() < 150
        assert (await server.call("down", "shutdown"))["result"] is None
        await server.send(frame(notification("exit")))
        assert await server.wait_exit(10) == 0
    finally:
        await server.close()
