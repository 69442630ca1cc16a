"""A keystroke's server CPU against an echo's, on the same transport, in the same run.

Two servers get the very same bytes on stdio from one raw JSON-RPC client: for each key a
``didChange`` (one character, incremental, UTF-16 positions) and a
``textDocument/inlineCompletion`` request, the answer awaited before the next key. One is
Crucible (``python -m crucible --stdio``) typing through a suggestion it has shown (answered
from memory); the other is the stdlib floor (``benchmarks/_peer_floor.py``: ``json`` and a pipe,
it ignores the notification and answers the request with ``null``), what handling those two
messages costs in this Python with no framework and no work at all; a third,
``_asyncio_floor.py``, answers the same way through Crucible's own asyncio reader. Their CPU
time per key is read from outside, per thread, from ``/proc/<pid>/task/*/schedstat``
(nanoseconds: psutil's clock ticks of 10 ms are as long as a burst of keys), psutil elsewhere.

The two are run in alternating rounds (Crucible, floor, Crucible, …) so that a change in the
machine's load falls on both; the medians of the rounds are compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

_FLOOR = Path(__file__).with_name("_peer_floor.py")
_TIMEOUT = 30.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far, to the nanosecond where Linux
    says it (``schedstat``), else psutil's."""
    total = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/schedstat", "rb") as stat:
                total += int(stat.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)


class RawPeer:
    """A server process on stdio, spoken to in raw JSON-RPC: what goes over the pipe is
    exactly what an editor's client writes, the same bytes for any server."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.ensure_future(self._read())

    @property
    def pid(self) -> int:
        return self.process.pid

    def notify(self, method: str, params: Any = None) -> None:
        message = {"jsonrpc": "2.0", "method": method}
        self._write(message if params is None else {**message, "params": params})

    async def request(self, method: str, params: Any) -> Any:
        self._next_id += 1
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = answer
        message = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        self._write(message if params is None else {**message, "params": params})
        message = await asyncio.wait_for(answer, _TIMEOUT)
        if "error" in message:
            raise RuntimeError(f"{method}: {message['error']}")
        return message.get("result")

    def _write(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = 0
            while (line := await stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if not line:
                return
            message = json.loads(await stream.readexactly(length))
            if "method" in message:
                if "id" in message:  # a request of the server's: nothing to tell it
                    self._write({"jsonrpc": "2.0", "id": message["id"], "result": None})
                continue
            waiting = self._waiting.pop(message.get("id"), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.request("shutdown", None), 5)
            self.notify("exit")
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()


@contextlib.asynccontextmanager
async def raw_peer(
    argv: list[str], initialize: dict[str, Any], env: dict[str, str], cwd: Path
) -> AsyncIterator[RawPeer]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    peer = RawPeer(process)
    try:
        await peer.request("initialize", initialize)
        peer.notify("initialized", {})
        yield peer
    finally:
        await peer.close()


@dataclass(frozen=True)
class Typing:
    """What is typed: the line the cursor is on, its column, the suggestion typed through."""

    uri: str
    line: int
    column: int
    suggestion: str


async def type_through(peer: RawPeer, typing: Typing, cycles: int, first_version: int) -> float:
    """Server CPU seconds per typed-through key over ``cycles`` cycles: a new identifier (a
    miss, unmeasured: it shows the suggestion), then the suggestion typed through but its last
    character, each key measured; then the line emptied again."""
    version = first_version
    uri, line = typing.uri, typing.line
    spent, keys = 0.0, 0

    def change(start: int, end: int, text: str) -> None:
        nonlocal version
        version += 1
        span = {
            "start": {"line": line, "character": start},
            "end": {"line": line, "character": end},
        }
        peer.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"range": span, "text": text}],
            },
        )

    async def ask(column: int) -> Any:
        return await peer.request(
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": uri},
                "position": {"line": line, "character": column},
                "context": {"triggerKind": 2},
            },
        )

    for cycle in range(cycles):
        marker = f"v{cycle}_"
        change(typing.column, typing.column, marker)
        at = typing.column + len(marker)
        await ask(at)
        before = cpu_seconds(peer.pid)
        for char in typing.suggestion[:-1]:
            change(at, at, char)
            at += 1
            await ask(at)
            keys += 1
        spent += cpu_seconds(peer.pid) - before
        change(typing.column, at, "")
    return spent / keys


def floor_argv() -> list[str]:
    return [sys.executable, str(_FLOOR)]


def asyncio_floor_argv() -> list[str]:
    """The echo on Crucible's transport; the server's ``PYTHONPATH`` picks the checkout."""
    return [sys.executable, str(_FLOOR.with_name("_asyncio_floor.py"))]


def median_ratio(crucible: list[float], floor: list[float]) -> tuple[float, float, float]:
    """(Crucible's median, the floor's median, their ratio)."""
    ours, echo = statistics.median(crucible), statistics.median(floor)
    return ours, echo, ours / echo
