"""A stdlib LSP client over a child's stdio, the same for every server the peers benchmark starts.

One client for all of them (Crucible, tabby-agent, the Copilot language server, a bare pygls
server, a stdlib floor), so that none is timed through a different client: Content-Length
framing on asyncio pipes, requests with integer ids whose futures resolve with the time the
answer was read (``time.perf_counter()``) and the message; requests from the server are answered
at once (``workspace/configuration`` with one ``null`` per item, everything else ``null``, as an
editor that has no settings for it would), notifications are counted and dropped. The child's
stderr is drained into a short tail, kept for the report of a crash.

Also here: the resident memory of a process tree, read from ``/proc`` (the Copilot language
server runs as two processes on Node 20: a Node wrapper and the native server it spawns).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Message = dict[str, Any]
_STDERR_LINES = 40
_STOP_TIMEOUT_S = 5.0
_READ_LIMIT = 64 * 1024 * 1024  # one LSP message may be large (a big didOpen echo, a log line)


class PeerExited(RuntimeError):
    """The server ended (or never answered) while the benchmark was still talking to it."""


def _message(method: str, params: Any) -> Message:
    """A request or notification; ``None`` params are left out, as JSON-RPC 2.0 wants (params,
    when present, are an object or an array): ``shutdown`` and ``exit`` have none, and a server
    may refuse ``"params": null`` (Crucible answers it with -32600, and ignores such an
    ``exit``, so it only ended when killed, 5 s later)."""
    message: Message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def _frame(message: Message) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class RawLsp:
    """One child process speaking LSP over stdio; see the module docstring."""

    def __init__(self, process: asyncio.subprocess.Process, started: float) -> None:
        self.process = process
        self.started = started  # time.perf_counter() just before the spawn
        self.stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self.notifications: dict[str, int] = {}
        self.server_requests: dict[str, int] = {}
        self._ids = 0
        self._pending: dict[int, asyncio.Future[tuple[float, Message]]] = {}
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    @classmethod
    async def spawn(cls, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> RawLsp:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            limit=_READ_LIMIT,
        )
        return cls(process, started)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def check_alive(self) -> None:
        if self.process.returncode is not None:
            tail = "\n".join(self.stderr)
            raise PeerExited(f"exited with code {self.process.returncode}:\n{tail}")

    def _write(self, message: Message) -> None:
        stdin = self.process.stdin
        if stdin is None or stdin.is_closing():
            raise PeerExited("its stdin is closed")
        stdin.write(_frame(message))

    def notify(self, method: str, params: Any) -> None:
        self._write(_message(method, params))

    def request(self, method: str, params: Any) -> asyncio.Future[tuple[float, Message]]:
        """Send now; the future resolves with (arrival time, the response message)."""
        self._ids += 1
        answered: asyncio.Future[tuple[float, Message]] = asyncio.get_running_loop().create_future()
        self._pending[self._ids] = answered
        self._write({**_message(method, params), "id": self._ids})
        return answered

    async def _read_stdout(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                head = await stdout.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                message = json.loads(await stdout.readexactly(length))
                self._dispatch(time.perf_counter(), message)
        except (asyncio.IncompleteReadError, ConnectionError, StopIteration, ValueError):
            pass  # the server closed its stdout (or wrote garbage): pending requests fail below
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(PeerExited("no answer: the server's stdout ended"))
            self._pending.clear()

    def _dispatch(self, arrived: float, message: Message) -> None:
        method = message.get("method")
        if method is None:
            future = self._pending.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result((arrived, message))
        elif "id" in message:
            self.server_requests[method] = self.server_requests.get(method, 0) + 1
            result: Any = None
            if method == "workspace/configuration":
                items = (message.get("params") or {}).get("items") or []
                result = [None] * len(items)
            with contextlib.suppress(PeerExited):
                self._write({"jsonrpc": "2.0", "id": message["id"], "result": result})
        else:
            self.notifications[method] = self.notifications.get(method, 0) + 1

    async def _read_stderr(self) -> None:
        stderr = self.process.stderr
        assert stderr is not None
        with contextlib.suppress(ValueError, ConnectionError):  # an over-long line ends the tail
            while line := await stderr.readline():
                # Minified JavaScript in a stack trace can be a megabyte on one line.
                self.stderr.append(line.decode(errors="replace").rstrip()[:300])

    async def stop(self) -> None:
        """``shutdown`` and ``exit`` if it still runs; then kill it and every process it
        started that is still alive (by pid), and wait for the readers."""
        timeout = _STOP_TIMEOUT_S
        children = tree_pids(self.pid)[1:]
        if self.process.returncode is None:
            with contextlib.suppress(PeerExited, TimeoutError):
                await asyncio.wait_for(self.request("shutdown", None), timeout)
                self.notify("exit", None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), timeout)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        for pid in children:  # a child that outlived its parent (Copilot's native server, say)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.wait(self._tasks, timeout=timeout)
        for task in self._tasks:
            task.cancel()


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants alive now (``/proc/PID/task/*/children``), parents first."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    queue += [int(child) for child in (task / "children").read_text().split()]
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tree_rss(pid: int) -> tuple[int, int]:
    """(resident KiB summed over ``pid`` and its descendants, how many processes)."""
    pids = tree_pids(pid)
    return sum(rss_kib(p) for p in pids), len(pids)
