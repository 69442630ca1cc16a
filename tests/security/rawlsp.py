"""RawServer: the real ``crucible-lsp --stdio`` process driven with raw bytes.

pytest-lsp's client only sends well-formed messages; these tests need to send anything (broken
headers, invalid UTF-8, lies about lengths) and to see every byte that comes back, including
error replies whose id is null.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import psutil

SERVER = [sys.executable, "-m", "crucible", "--stdio"]


def frame(message: object) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def request(msg_id: object, method: str, params: object = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: object = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


INITIALIZE_PARAMS: dict[str, Any] = {"processId": None, "rootUri": None, "capabilities": {}}


def _key(msg_id: object) -> str:
    return json.dumps(msg_id)  # 1 and "1" are different ids


class RawServer:
    """One server process; ``replies`` collects every response, in order of arrival."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.replies: list[dict[str, Any]] = []
        self._by_id: dict[str, list[dict[str, Any]]] = {}
        self._arrived = asyncio.Condition()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, tmp_path: Path, env: dict[str, str] | None = None) -> RawServer:
        process = await asyncio.create_subprocess_exec(
            *SERVER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={
                **os.environ,
                "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
                "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
                **(env or {}),
            },
            limit=1 << 24,
        )
        return cls(process)

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            length = 0
            while (line := await stdout.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if not line:
                return
            message = json.loads(await stdout.readexactly(length))
            if isinstance(message, list) or "id" in message:
                async with self._arrived:
                    self.replies.append(message)
                    if isinstance(message, dict):
                        self._by_id.setdefault(_key(message["id"]), []).append(message)
                    self._arrived.notify_all()

    async def send(self, data: bytes) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(data)
        await stdin.drain()

    async def call(
        self, msg_id: object, method: str, params: object = None, within: float = 10
    ) -> dict[str, Any]:
        await self.send(frame(request(msg_id, method, params)))
        return await self.reply(msg_id, within)

    async def reply(self, msg_id: object, within: float = 10) -> dict[str, Any]:
        """The (first) response with this id, waiting for it."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: self._find(msg_id) is not None)
        found = self._find(msg_id)
        assert found is not None
        return found

    async def next_replies(self, count: int, within: float = 10) -> list[dict[str, Any]]:
        """Wait until ``count`` more replies than now have come; returns them."""
        start = len(self.replies)
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.replies) >= start + count)
        return self.replies[start : start + count]

    def _find(self, msg_id: object) -> dict[str, Any] | None:
        found = self._by_id.get(_key(msg_id))
        return found[0] if found else None

    def replies_to(self, msg_id: object) -> list[dict[str, Any]]:
        return list(self._by_id.get(_key(msg_id), []))

    async def initialize(self, **params: Any) -> dict[str, Any]:
        reply = await self.call("init", "initialize", {**INITIALIZE_PARAMS, **params}, within=30)
        await self.send(frame(notification("initialized", {})))
        return reply

    async def alive_and_serving(self, tag: object) -> None:
        """A valid request after whatever came before is still answered with a result."""
        reply = await self.call(f"probe-{tag}", "crucible/status")
        assert "result" in reply, reply
        assert reply["result"]["version"]

    def rss_mb(self) -> float:
        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    async def wait_exit(self, within: float) -> int:
        return await asyncio.wait_for(self.process.wait(), within)

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.send(frame(request("bye", "shutdown")))
                await self.send(frame(notification("exit")))
                await asyncio.wait_for(self.process.wait(), 10)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
