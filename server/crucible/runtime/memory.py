"""Process memory: the readings (psutil stays in this module), the supervisor that keeps the
server inside its ``[memory]`` budget, and giving freed memory back to the operating system.

The supervisor samples the process's resident set (RSS) off the keystroke path, on an interval
that adapts: ``check_interval_s`` normally, more often under pressure, up to six times rarer
while nothing happens. Each sample is classified against the limits into a pressure level
(``Pressure``):

    normal ──rss ≥ soft──▶ elevated ──rss ≥ hard──▶ critical
    normal ◀─rss < 0.9·soft, 30 s in level─ elevated ◀─rss < 0.9·hard, 30 s in level─ critical

Going up is immediate (a sample over a limit acts at once, normal straight to critical runs
both levels' actions); going down needs RSS a tenth under the limit *and* 30 s at that level, so a
process hovering at a limit does not flap between levels and undo its own relief.

What each level does is the ``MemoryRelief``'s (App wires it to the components, so this module
imports none of them):

* elevated, on entry: L1 down to a quarter of its budget, per-document state of long-idle
  documents dropped, prefetch paused, a garbage collection;
* critical, on entry: L1 cleared (and held at a tenth), background work cancelled, idle provider
  connections closed, prefetch refused, and the user told once per session, with the numbers;
* back to normal: prefetch resumes and L1's budget comes back a quarter per sample.

Each action is recorded under its name: how often it ran and the bytes it freed, measured as
RSS before and after it (with the C heap trimmed in between, so that freed memory shows).

Readings cost ~12 µs (RSS, from /proc/self/statm) and ~0.2-0.5 ms (USS, from smaps_rollup,
read only for ``crucible/status``). psutil is imported on the first reading, not at start-up
(~12 ms of import on this machine), and glibc's ``malloc_trim`` looked up on first use.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import gc
import inspect
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from crucible.config.settings import MemorySettings

if TYPE_CHECKING:
    import psutil

logger = logging.getLogger(__name__)

_MB = 1 << 20

# Hysteresis: back down only a tenth below the limit, and only after this long at the level.
_RELEASE_FRACTION = 0.9
_DWELL_S = 30.0
# What L1 may keep, as a fraction of its configured budget, at each level; back in normal it
# grows again by _RESTORE_STEP per sample, so a process just under its soft limit does not
# refill its cache in one go and cross it again.
_ELEVATED_CACHE = 0.25
_CRITICAL_CACHE = 0.1
_RESTORE_STEP = 0.25
# Per-document state unused this long is dropped at elevated (it comes back on the next edit).
IDLE_DOCUMENT_S = 300.0
# The sampling interval, as a multiple of check_interval_s: tighter under pressure, looser
# while idle (doubling per idle sample up to the cap), never below _MIN_INTERVAL_S.
_ELEVATED_PACE = 0.5
_CRITICAL_PACE = 0.25
_IDLE_CAP = 6
_MIN_INTERVAL_S = 0.25


class Pressure(StrEnum):
    NORMAL = "normal"
    ELEVATED = "elevated"
    CRITICAL = "critical"


_RANK = {Pressure.NORMAL: 0, Pressure.ELEVATED: 1, Pressure.CRITICAL: 2}


# -- readings ----------------------------------------------------------------------------------


@functools.cache
def _process() -> psutil.Process:
    import psutil  # here, not at the top: off the start-up path

    return psutil.Process()


def rss_bytes() -> int:
    """Resident set size of this process."""
    return int(_process().memory_info().rss)


def uss_bytes() -> int | None:
    """Unique set size (memory freed if the process ended), or None where it cannot be read."""
    try:
        return int(_process().memory_full_info().uss)
    except Exception:  # psutil.AccessDenied, or no smaps on this platform
        return None


def rss_mb() -> float:
    """Resident set size of this process, in MiB."""
    return round(rss_bytes() / _MB, 1)


@dataclass(frozen=True, slots=True)
class ProcessCounts:
    """What a leak would make grow besides memory."""

    tasks: int  # live asyncio tasks on the running loop (0 off the loop)
    threads: int  # OS threads of the process
    open_files: int  # file descriptors (handles on Windows): files, sockets, pipes
    task_kinds: dict[str, int]  # live tasks by name, numbers left out ("Task-", "crucible-warm-")


def process_counts() -> ProcessCounts:
    process = _process()
    try:
        live = asyncio.all_tasks()
    except RuntimeError:  # no running loop: a status read from a test, say
        live = set()
    # Windows has no file descriptors: its open files stand in (sockets not counted there).
    open_files = process.num_fds() if hasattr(process, "num_fds") else len(process.open_files())
    kinds = Counter(_TASK_NUMBER.sub("", task.get_name()) for task in live)
    return ProcessCounts(len(live), process.num_threads(), open_files, dict(kinds.most_common()))


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has ``malloc_trim`` and ``mallopt``), else None (musl,
    macOS, Windows)."""
    name = ctypes.util.find_library("c")  # ~9 ms (it may run ldconfig): looked up once, late
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_TASK_NUMBER = re.compile(r"\d+")  # a task's name less its numbers: its kind

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
_MMAP_THRESHOLD_BYTES = 256 * 1024


def fix_mmap_threshold() -> bool:
    """Serve every allocation of 256 KB or more (a large document's text, its joined copy, a
    big JSON-RPC message) from its own mmap, returned to the system the moment it is freed.

    glibc starts there at 128 KB but raises the threshold each time such a block is freed (up
    to 32 MB), after which multi-megabyte strings come from the heap and leave holes below its
    top that ``malloc_trim`` cannot return. Setting it fixes it (and turns off the raising).
    Returns whether it was set (False where there is no glibc).
    """
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


def release_free_memory() -> None:
    """Give the C heap's free pages back to the operating system.

    CPython frees a closed document's text to malloc, and glibc keeps freed memory below the
    top of its heap for reuse: measured, a 24 MB document closed left the process 24 MB
    larger until ``malloc_trim``. Cheap (about a millisecond on this server's heap); a no-op
    where there is no glibc.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


# -- the supervisor ----------------------------------------------------------------------------


class MemoryRelief(Protocol):
    """What the supervisor can ask of the server's components (App wires each to them)."""

    def limit_cache(self, fraction: float) -> Awaitable[None] | None:
        """L1 may use ``fraction`` of its configured budget from now on (1.0: all of it).
        What is left of the eviction, if any, is returned to await (it yields as it goes)."""
        ...

    def drop_idle_state(self, idle_s: float) -> None:
        """Forget per-document state of documents untouched for ``idle_s``."""
        ...

    def pause_background(self, paused: bool) -> None:
        """Start no prefetch (completions, hover) while paused."""
        ...

    def cancel_background(self) -> None:
        """Cancel background work in flight (prefetches, provider attempts left warming),
        never a request a user waits on."""
        ...

    def clear_cache(self) -> None:
        """Empty L1 (the disk cache stays)."""
        ...

    def release_connections(self) -> Awaitable[None] | None:
        """Close providers' idle keep-alive connections (returned to await: closing is I/O)."""
        ...

    def tell_user(self, message: str) -> None:
        """One window/showMessage warning."""
        ...


class MemoryBudget(Protocol):
    """What the App holds as its ``memory``: its own ``MemorySupervisor``, or in the shared
    daemon its session's view of the daemon's budget (``shared/budget.py``)."""

    @property
    def cache_fraction(self) -> float: ...

    def reconfigure(self, settings: MemorySettings) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


@dataclass(slots=True)
class ActionRecord:
    """How often an action ran and what it freed, as RSS before minus after (never negative)."""

    count: int = 0
    freed_bytes: int = 0


class MemorySupervisor:
    """Samples RSS, keeps the pressure level, acts on changes; see the module docstring."""

    def __init__(
        self,
        settings: MemorySettings,
        relief: MemoryRelief,
        *,
        components: Callable[[], Mapping[str, int]] = dict,
        activity: Callable[[], int] = lambda: 0,
        read_rss: Callable[[], int] = rss_bytes,
        clock: Callable[[], float] = time.monotonic,
        collect: Callable[[], object] = gc.collect,
        trim: Callable[[], None] = release_free_memory,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_sample: Callable[[], None] = lambda: None,
        tell_once: bool = True,
    ) -> None:
        self._settings = settings
        self._on_sample = on_sample  # after each sample's actions (the shared daemon's sessions)
        self._relief = relief
        self._components = components
        self._activity = activity
        self._read_rss = read_rss
        self._clock = clock
        self._collect = collect
        self._trim = trim
        self._sleep = sleep
        self.pressure = Pressure.NORMAL
        self._since = clock()
        self._entered_at = self._limits()  # the limits the level was entered at
        self._cache_fraction = 1.0
        self._last_rss = 0
        self._last_activity = activity()
        self._idle_samples = 0
        self._samples = 0
        self._transitions = 0
        self._told = False
        self._napping: asyncio.Future[None] | None = None  # run's sleep until the next sample
        # False: the user is told on every entry into critical, and the relief decides whom
        # (the shared daemon tells each session once: its sessions come and go).
        self._tell_once = tell_once
        self.actions: dict[str, ActionRecord] = {}
        # What actions left to finish, for ``finish``; with the record to credit (None: none).
        self._pending: list[tuple[ActionRecord | None, Awaitable[object]]] = []

    @property
    def cache_fraction(self) -> float:
        """The share of its configured budget L1 may use now (1.0 but under pressure)."""
        return self._cache_fraction

    def reconfigure(self, settings: MemorySettings) -> None:
        """New limits apply from the next sample (which may then change the level). Limits
        other than those a level was entered at waive the dwell (``_classify``); a shorter
        interval ends the nap before the next sample (``_nap``)."""
        shorter = settings.check_interval_s < self._settings.check_interval_s
        self._settings = settings
        if shorter and self._napping is not None:
            self._napping.cancel()

    # -- one sample ---------------------------------------------------------------------------

    def check(self) -> float:
        """Take one sample, change level and act if the limits say so; returns the seconds to
        wait before the next sample."""
        rss = self._read_rss()
        self._last_rss = rss
        self._samples += 1
        wanted = self._classify(rss)
        if wanted is not self.pressure:
            self._enter(wanted, rss)
        elif wanted is Pressure.NORMAL and self._cache_fraction < 1.0:
            self._cache_fraction = min(1.0, self._cache_fraction + _RESTORE_STEP)
            self._limit_cache()
        return self._next_interval()

    def _classify(self, rss: int) -> Pressure:
        soft, hard = self._limits()
        if rss >= hard:
            return Pressure.CRITICAL
        # Down one level at a time, and only past the band and the dwell. The dwell keeps a
        # level from flapping around a limit; when the limits are no longer those the level
        # was entered at, it is waived (the shared daemon's rise when a window with small
        # ones closes, and the other windows should not stay shed for another 30 s).
        moved = self._limits() != self._entered_at
        settled = moved or self._clock() - self._since >= _DWELL_S
        if self.pressure is Pressure.CRITICAL:
            eased = settled and rss < hard * _RELEASE_FRACTION
            return Pressure.ELEVATED if eased else Pressure.CRITICAL
        if rss >= soft:
            return Pressure.ELEVATED
        if self.pressure is Pressure.ELEVATED and not (settled and rss < soft * _RELEASE_FRACTION):
            return Pressure.ELEVATED
        return Pressure.NORMAL

    def _limits(self) -> tuple[int, int]:
        return int(self._settings.soft_limit_mb * _MB), int(self._settings.hard_limit_mb * _MB)

    def _enter(self, level: Pressure, rss: int) -> None:
        previous, self.pressure = self.pressure, level
        self._since = self._clock()
        if _RANK[level] > _RANK[previous]:  # down, the limits waived stay waived
            self._entered_at = self._limits()
        self._transitions += 1
        soft, hard = self._limits()
        logger.warning(
            "memory: %s -> %s at %.0f MB RSS (soft limit %.0f MB, hard %.0f MB)",
            previous,
            level,
            rss / _MB,
            soft / _MB,
            hard / _MB,
        )
        if level is Pressure.NORMAL:
            self._relief.pause_background(False)
            self._cache_fraction = min(1.0, self._cache_fraction + _RESTORE_STEP)
            self._limit_cache()
            return
        if previous is Pressure.NORMAL:
            self._elevated_actions()
        if level is Pressure.CRITICAL:
            self._critical_actions(rss)
        elif previous is Pressure.CRITICAL:  # critical -> elevated: L1 back to a quarter
            self._cache_fraction = _ELEVATED_CACHE
            self._limit_cache()

    def _elevated_actions(self) -> None:
        self._cache_fraction = min(self._cache_fraction, _ELEVATED_CACHE)
        self._act("shrink_cache", lambda: self._relief.limit_cache(self._cache_fraction))
        self._act("drop_idle_documents", lambda: self._relief.drop_idle_state(IDLE_DOCUMENT_S))
        self._act("pause_prefetch", lambda: self._relief.pause_background(True))
        self._act("collect_garbage", self._collect)

    def _critical_actions(self, rss: int) -> None:
        self._cache_fraction = _CRITICAL_CACHE

        def clear() -> None:
            self._relief.clear_cache()
            self._limit_cache()

        self._act("clear_cache", clear)
        self._act("cancel_background", self._relief.cancel_background)
        self._act("release_connections", self._relief.release_connections)
        self._act("pause_prefetch", lambda: self._relief.pause_background(True))
        if not self._told:
            self._told = self._tell_once
            self._relief.tell_user(self._critical_message(rss))

    def _limit_cache(self) -> None:
        """L1's budget to ``_cache_fraction``; an eviction left to finish joins the pending
        work (not recorded as an action: restoring frees nothing, and a cleared L1 has
        nothing left to evict)."""
        rest = self._relief.limit_cache(self._cache_fraction)
        if rest is not None:
            self._pending.append((None, rest))

    def _act(self, name: str, action: Callable[[], object]) -> None:
        """Run ``action`` and record what it freed. An action that returns an awaitable has
        done its first part; the rest is awaited by ``finish`` (``run`` calls it after each
        sample), and what that part frees is added to the same record."""
        before = self._read_rss()
        rest = action()
        self._trim()
        after = self._read_rss()
        record = self.actions.setdefault(name, ActionRecord())
        record.count += 1
        record.freed_bytes += max(0, before - after)
        self._last_rss = after
        if inspect.isawaitable(rest):
            self._pending.append((record, rest))

    async def finish(self) -> None:
        """Await what the last sample's actions left to do (a shrink in steps, connections
        being closed), each measured as it completes."""
        while self._pending:
            record, rest = self._pending.pop(0)
            before = self._read_rss()
            await rest
            self._trim()
            after = self._read_rss()
            if record is not None:
                record.freed_bytes += max(0, before - after)
            self._last_rss = after

    def _critical_message(self, rss: int) -> str:
        _, hard = self._limits()
        largest = sorted(self._components().items(), key=lambda item: -item[1])[:3]
        held = ", ".join(f"{name} {size / _MB:.0f} MB" for name, size in largest if size)
        return (
            f"Crucible is using {rss / _MB:.0f} MB, over its hard limit of {hard / _MB:.0f} MB"
            f" ([memory] hard_limit_mb). It cleared its in-memory cache and stopped background"
            f" work{f'; largest: {held}' if held else ''}. Raise [memory] hard_limit_mb, lower"
            " [cache] memory_mb, or close large files."
        )

    def _next_interval(self) -> float:
        base = self._settings.check_interval_s
        if self.pressure is Pressure.CRITICAL:
            return max(_MIN_INTERVAL_S, base * _CRITICAL_PACE)
        if self.pressure is Pressure.ELEVATED:
            return max(_MIN_INTERVAL_S, base * _ELEVATED_PACE)
        activity = self._activity()
        if activity == self._last_activity:
            self._idle_samples = min(self._idle_samples + 1, 3)  # 2**3 is past the cap
        else:
            self._idle_samples = 0
        self._last_activity = activity
        return max(_MIN_INTERVAL_S, base * min(1 << self._idle_samples, _IDLE_CAP))

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Sample until cancelled (App owns the task). A failing sample is logged and the
        next one tried later: supervision must never take the server down."""
        interval = self._settings.check_interval_s
        while True:
            await self._nap(interval)
            try:
                interval = self.check()
                await self.finish()
                self._on_sample()
            except Exception:
                logger.exception("memory: a sample failed")
                interval = self._settings.check_interval_s

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds``, or less: a shorter ``check_interval_s`` (``reconfigure``) ends
        the nap at once, so it applies now, not after up to six times the old interval (in
        the shared daemon, a window asking for 0.5 s behind one at the default 10 s)."""
        nap = asyncio.ensure_future(self._sleep(seconds))
        self._napping = nap
        try:
            await asyncio.wait({nap})
        finally:
            self._napping = None
            nap.cancel()

    # -- status -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """``crucible/status`` ``memory``: fresh readings, the level and what was done."""
        rss = self._read_rss()
        uss = uss_bytes()
        counts = process_counts()
        return {
            "rss_mb": round(rss / _MB, 1),
            "uss_mb": round(uss / _MB, 1) if uss is not None else None,
            "soft_limit_mb": self._settings.soft_limit_mb,
            "hard_limit_mb": self._settings.hard_limit_mb,
            "pressure": str(self.pressure),
            "pressure_since_s": round(self._clock() - self._since, 1),
            "samples": self._samples,
            "transitions": self._transitions,
            "cache_fraction": self._cache_fraction,
            "shrinks": {
                name: {"count": record.count, "freed_bytes": record.freed_bytes}
                for name, record in self.actions.items()
            },
            "components": dict(self._components()),
            "tasks": counts.tasks,
            # A list, not an object: task names are not identifiers, and clients that turn
            # JSON objects into records (pygls's own client does) would mangle them.
            "task_kinds": [
                {"name": name, "count": count} for name, count in counts.task_kinds.items()
            ],
            "threads": counts.threads,
            "open_files": counts.open_files,
        }
