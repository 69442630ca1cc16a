"""The server process's vital signs over a run: read from outside, and from its own status.

From outside (psutil on the server's pid: an independent view that works whatever the server
reports): RSS, USS (private memory; needs ``/proc/PID/smaps``, None where it cannot be read),
threads and open file descriptors. From ``crucible/status`` when the server reports them (the
memory supervisor's fields; every one read with a default, so an older server gives None):
live asyncio tasks, the pressure level, shrinks and the bytes per component (L1 among them).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import psutil

_MB = 1 << 20


@dataclass(frozen=True)
class Vitals:
    """One reading. ``quiet`` readings are taken with nothing in flight (a checkpoint)."""

    at_s: float  # seconds since the run started
    events: int  # client events sent by then
    rss_mb: float
    uss_mb: float | None
    threads: int
    open_files: int  # file descriptors (sockets and pipes included)
    tasks: int | None  # from status
    pressure: str | None
    l1_bytes: int | None  # the memory cache (L1)
    documents_bytes: int | None  # memory.components.documents: the open documents' text
    status_ms: float | None  # how long crucible/status took to answer (the server's backlog)
    quiet: bool = False
    task_kinds: dict[str, int] | None = None  # memory.task_kinds: live tasks by name


def component(status: dict[str, Any] | None, name: str) -> int | None:
    components = _memory(status).get("components")
    value = components.get(name) if isinstance(components, dict) else None
    return value if isinstance(value, int) else None


def l1_bytes(status: dict[str, Any] | None) -> int | None:
    """The memory cache's bytes: ``memory.components.l1``, else ``cache.levels.l1.bytes``."""
    found = component(status, "l1")
    if found is not None or not isinstance(status, dict):
        return found
    level: Any = status.get("cache")
    for key in ("levels", "l1", "bytes"):
        level = level.get(key) if isinstance(level, dict) else None
    return level if isinstance(level, int) else None


def _kinds(listed: Any) -> dict[str, int] | None:
    """``memory.task_kinds`` (a list of ``{name, count}``) as a dict, if the server sent it."""
    if not isinstance(listed, list):
        return None
    return {str(k.get("name")): int(k.get("count", 0)) for k in listed if isinstance(k, dict)}


def _memory(status: dict[str, Any] | None) -> dict[str, Any]:
    memory = status.get("memory") if isinstance(status, dict) else None
    return memory if isinstance(memory, dict) else {}


def outside(pid: int) -> tuple[float, float | None, int, int]:
    """(RSS MiB, USS MiB or None, threads, open fds) of process ``pid``, read with psutil."""
    process = psutil.Process(pid)
    with process.oneshot():
        rss = process.memory_info().rss / _MB
        threads = process.num_threads()
        fds = process.num_fds()
    try:
        uss: float | None = process.memory_full_info().uss / _MB
    except (psutil.AccessDenied, AttributeError):
        uss = None
    return round(rss, 1), None if uss is None else round(uss, 1), threads, fds


class Monitor:
    """Takes :class:`Vitals` of one server; ``read`` once, or ``every`` seconds in a task."""

    def __init__(self, pid: int, status: Any, events: Any, started: float) -> None:
        self._pid = pid
        self._status = status  # async () -> dict | None
        self._events = events  # () -> int
        self._started = started
        self.readings: list[Vitals] = []
        self.last_status: dict[str, Any] | None = None

    async def read(self, *, quiet: bool = False) -> Vitals:
        asked = time.perf_counter()
        status = await self._status()
        status_ms = (time.perf_counter() - asked) * 1000 if status is not None else None
        if isinstance(status, dict):
            self.last_status = status
        rss, uss, threads, fds = outside(self._pid)
        memory = _memory(status)
        tasks = memory.get("tasks")
        pressure = memory.get("pressure")
        reading = Vitals(
            at_s=round(time.perf_counter() - self._started, 2),
            events=self._events(),
            rss_mb=rss,
            uss_mb=uss,
            threads=threads,
            open_files=fds,
            tasks=tasks if isinstance(tasks, int) else None,
            pressure=pressure if isinstance(pressure, str) else None,
            l1_bytes=l1_bytes(status),
            documents_bytes=component(status, "documents"),
            status_ms=None if status_ms is None else round(status_ms, 1),
            quiet=quiet,
            task_kinds=_kinds(memory.get("task_kinds")),
        )
        self.readings.append(reading)
        return reading

    async def every(self, interval_s: float) -> None:
        """Read every ``interval_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.read()
            except psutil.NoSuchProcess:
                return
