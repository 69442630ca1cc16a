"""DiskCache: the L2 response cache, a sqlite file (WAL) shared by all of the user's servers.

Rows of ``key -> value`` with ``created_at``/``last_used`` survive restarts and are shared by
every server process of the user. A row costs ``len(key) + len(value as UTF-8)`` bytes; each
write evicts the least recently used rows until the total is within ``max_bytes``. Rows older
than ``ttl_s`` (by the injected clock) are misses and get deleted. The file itself (creation,
schema, connections, moving a broken file aside, refusing a file that is not Crucible's) is
``sqlite_file.py``.

The event loop never touches the disk: reads run on a reader thread, writes on a writer thread,
each with its own connection (a read never waits behind a write stuck on another process's
lock). ``put`` only queues; a flush writes the queue in one transaction after ``flush_delay_s``
(at once when it is long); ``get`` looks in the queue first. Hits refresh ``last_used`` through
the same queue.

Errors: none reaches a caller; the cache is an optimisation and the server keeps serving. A
failure on a worker is a miss or a dropped batch (counted, logged and recovered from as
``sqlite_file.py`` describes). OSError | sqlite3.Error in ``open`` (no directory, not writable)
-> one WARNING; the cache turns itself off and every operation is a no-op. The same for
``NotOurFile`` (the path names something that is not a Crucible cache), left untouched.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crucible.cache.sqlite_file import NotOurFile, SqliteFile, Worker
from crucible.config.paths import default_cache_dir

logger = logging.getLogger(__name__)

__all__ = ["FILE_NAME", "DiskCache", "DiskStats", "default_cache_dir"]

FILE_NAME = "completions.sqlite3"
_BATCH_ROWS = 256  # a queue this long is flushed at once instead of after flush_delay_s
_MAX_QUEUED = 4096  # beyond this (the writer is stuck) puts are dropped: memory stays bounded

_UPSERT = (
    "INSERT INTO entries (key, value, size, created_at, last_used) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, size = excluded.size,"
    " created_at = excluded.created_at, last_used = excluded.last_used"
)


@dataclass(frozen=True, slots=True)
class DiskStats:
    """For ``crucible/status``. ``entries``/``bytes``: the file's totals (all processes) as of
    this process's last write; ``writes``: rows written; ``pending``: puts queued; ``dropped``:
    puts refused (larger than ``max_bytes``, queue full, or text not encodable as UTF-8)."""

    enabled: bool
    path: str
    entries: int
    bytes: int
    evictions: int
    writes: int
    errors: int
    recoveries: int
    pending: int = 0
    dropped: int = 0


@dataclass(slots=True)
class _Batch:
    """What the next flush writes; its length is the number of rows it touches."""

    puts: dict[str, tuple[str, float, int]] = field(default_factory=dict)  # (value, made, size)
    touched: dict[str, float] = field(default_factory=dict)  # key -> last used
    expired: dict[str, float] = field(default_factory=dict)  # key -> delete if created before

    def __len__(self) -> int:
        return len(self.puts) + len(self.touched) + len(self.expired)


def _select(conn: sqlite3.Connection, key: str) -> tuple[str, float] | None:
    row = conn.execute("SELECT value, created_at FROM entries WHERE key = ?", (key,)).fetchone()
    return None if row is None else (str(row[0]), float(row[1]))


def _room(queued: dict[str, float], key: str) -> bool:
    """Whether ``key`` may be queued: while the writer is stuck, recency updates and deletions
    of expired rows wait in memory only up to ``_MAX_QUEUED``; one left out costs an LRU
    position or a row that a later read or the size bound removes instead."""
    return key in queued or len(queued) < _MAX_QUEUED


class DiskCache:
    """The L2 cache. Build, ``await open()``, use, ``await close()``. Safe to use before
    ``open`` or after a failed one: everything is then a no-op."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
        flush_delay_s: float = 0.05,
        busy_timeout_s: float = 1.0,
        enabled: bool = True,
    ) -> None:
        self._file = file = SqliteFile(Path(path), clock)
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._clock = clock
        self._flush_delay_s = flush_delay_s
        self._wanted = enabled
        self._opened = False
        self._enabled = False  # true between a successful open() and close()
        # threads start on first use; reads give up sooner than writes: a lookup is only worth
        # its time while it is fast
        self._reader = Worker(file, "crucible-disk-read", min(busy_timeout_s, 0.2))
        self._writer = Worker(file, "crucible-disk-write", busy_timeout_s)
        self._batch = _Batch()
        self._inflight: list[dict[str, tuple[str, float, int]]] = []  # being written
        self._timer: asyncio.TimerHandle | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one open() ran on
        self._dropped = 0
        self._closing: asyncio.Future[None] | None = None  # the one close, once asked for

    async def open(self) -> None:
        if not self._wanted or self._opened:
            return
        self._opened = True
        self._loop = asyncio.get_running_loop()  # flushes are scheduled there
        writer = self._writer
        try:
            await writer.call(lambda: self._totals(writer.connection()))
        except NotOurFile as exc:  # says what to do itself
            logger.warning("%s", exc)
            await self._shutdown()
            return
        except (OSError, sqlite3.Error) as exc:
            logger.warning("disk cache %s unusable, turning it off: %r", self._file.path, exc)
            await self._shutdown()
            return
        self._enabled = True

    async def get(self, key: str) -> str | None:
        if not self._enabled:
            return None
        now = self._clock()
        found: tuple[str, float] | None = None
        for queued in (self._batch.puts, *reversed(self._inflight)):
            if (entry := queued.get(key)) is not None:
                found = entry[:2]
                break
        else:
            reader = self._reader
            found = await reader.call(reader.run, lambda conn: _select(conn, key), None)
        batch = self._batch
        if found is None or found[1] + self._ttl_s < now:
            if found is not None and _room(batch.expired, key):
                batch.expired[key] = now - self._ttl_s
                self._kick()
            return None
        if _room(batch.touched, key):
            batch.touched[key] = now
            self._kick()
        return found[0]

    def put(self, key: str, value: str) -> None:
        """Queue a complete answer (callers never store partial ones); never blocks or raises."""
        if not self._enabled:
            return
        try:
            size = len(key.encode()) + len(value.encode())
        except UnicodeEncodeError:  # lone surrogates: sqlite could not store them either
            size = -1
        if size < 0 or size > self._max_bytes or len(self._batch.puts) >= _MAX_QUEUED:
            self._dropped += 1
            return
        self._batch.puts[key] = (value, self._clock(), size)
        self._kick()

    async def flush(self) -> None:
        """Write everything queued so far, and wait for writes already under way."""
        if not self._enabled:
            return
        self._cancel_timer()
        batch, self._batch = self._batch, _Batch()
        self._inflight.append(batch.puts)
        try:
            writer = self._writer
            await writer.call(writer.run, lambda conn: self._write(conn, batch), None)
        finally:
            self._inflight = [q for q in self._inflight if q is not batch.puts]

    async def clear(self) -> int:
        """Remove every row (other processes' too: the file is shared) and everything queued;
        returns the number of rows removed plus queued entries dropped."""
        if not self._enabled:
            return 0
        dropped = len(self._batch.puts)
        self._batch = _Batch()
        writer = self._writer  # writes under way finish first (one thread, in order)
        removed: int = await writer.call(writer.run, self._clear, 0)
        return removed + dropped

    def stats(self) -> DiskStats:
        f = self._file
        return DiskStats(
            enabled=self._enabled, path=str(f.path),
            entries=f.entries, bytes=f.bytes, evictions=f.evictions, writes=f.writes,
            errors=f.errors, recoveries=f.recoveries, pending=len(self._batch.puts),
            dropped=self._dropped,
        )  # fmt: skip

    async def close(self) -> None:
        """Write what is queued and stop the threads. Closing twice at once (``shutdown`` and
        ``exit`` arriving together both close the server) waits for the one close."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        if not self._enabled:
            return
        await self.flush()
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)
        self._enabled = False
        self._cancel_timer()  # a hit during the last flush may have armed one
        await self._shutdown()

    async def _shutdown(self) -> None:
        await self._reader.aclose()
        await self._writer.aclose()

    # -- flushing (loop side) --------------------------------------------------------------

    def _kick(self) -> None:
        """Make sure a flush will come: soon, or at once when the queue is large."""
        if self._drainer is not None and not self._drainer.done():
            return  # it loops until the queue is empty
        loop = self._loop
        if loop is None:
            return  # never opened: nothing is enabled, nothing queued
        if len(self._batch) >= _BATCH_ROWS or self._flush_delay_s <= 0:
            self._start_drain()
        elif self._timer is None:
            self._timer = loop.call_later(self._flush_delay_s, self._start_drain)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start_drain(self) -> None:
        self._timer = None
        if self._loop is not None and (self._drainer is None or self._drainer.done()):
            self._drainer = self._loop.create_task(self._drain(), name="crucible-disk-cache-flush")

    async def _drain(self) -> None:
        while self._enabled and self._batch:
            await self.flush()

    # -- the writer thread -----------------------------------------------------------------

    def _write(self, conn: sqlite3.Connection, batch: _Batch) -> None:
        if not batch:
            return
        conn.execute("BEGIN IMMEDIATE")  # on failure the worker closes the connection: rollback
        conn.executemany(_UPSERT, [(k, v, n, t, t) for k, (v, t, n) in batch.puts.items()])
        conn.executemany(
            "UPDATE entries SET last_used = max(last_used, ?) WHERE key = ?",
            [(t, k) for k, t in batch.touched.items()],
        )
        expired = "DELETE FROM entries WHERE key = ? AND created_at < ?"
        conn.executemany(expired, batch.expired.items())
        evicted = self._evict(conn)
        conn.execute("COMMIT")
        with self._file.lock:
            self._file.writes += len(batch.puts)
            self._file.evictions += evicted
        self._totals(conn)

    def _evict(self, conn: sqlite3.Connection) -> int:
        """Delete least recently used rows until the total is within ``max_bytes``."""
        excess = int(conn.execute("SELECT bytes FROM totals").fetchone()[0]) - self._max_bytes
        victims: list[tuple[str]] = []
        cursor = conn.execute("SELECT key, size FROM entries ORDER BY last_used, rowid")
        while excess > 0 and (rows := cursor.fetchmany(64)):
            for key, size in rows:
                if excess <= 0:
                    break
                victims.append((key,))
                excess -= int(size)
        cursor.close()
        conn.executemany("DELETE FROM entries WHERE key = ?", victims)
        return len(victims)

    def _clear(self, conn: sqlite3.Connection) -> int:
        conn.execute("BEGIN IMMEDIATE")
        removed = conn.execute("DELETE FROM entries").rowcount
        conn.execute("COMMIT")
        self._totals(conn)
        return removed

    def _totals(self, conn: sqlite3.Connection) -> None:
        entries, size = conn.execute("SELECT entries, bytes FROM totals").fetchone()
        self._file.entries, self._file.bytes = int(entries), int(size)
