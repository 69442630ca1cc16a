"""DiskCache: the L2 response cache, a sqlite file (WAL) shared by all of the user's servers.

Rows of ``key -> value`` with ``created_at``/``last_used`` survive restarts and are shared by
every server process of the user (WAL: readers run beside the one writer; ``busy_timeout``
queues writers). A row costs ``len(key) + len(value as UTF-8)`` bytes; each write evicts the
least recently used rows until the total is within ``max_bytes``. Rows older than ``ttl_s`` (by
the injected clock) are misses and get deleted. ``application_id`` marks the file as ours,
``user_version`` is the schema version; triggers keep running totals in a one-row table, so
counts cost no scan and agree across processes.

The event loop never touches the disk: reads run on a reader thread, writes on a writer thread,
each with its own connection (a read never waits behind a write stuck on another process's
lock). ``put`` only queues; a flush writes the queue in one transaction after ``flush_delay_s``
(at once when it is long); ``get`` looks in the queue first. Hits refresh ``last_used`` through
the same queue. Before each use a connection checks that the path still names the file it
opened (another process may have moved a broken file aside) and reopens if not.

Errors: none reaches a caller; the cache is an optimisation and the server keeps serving.

    sqlite3.Error | OSError on a worker -> a miss / a dropped batch, ``errors`` + 1, the
    │                                      connection reopened on next use
    ├── corrupt (SQLITE_CORRUPT, SQLITE_NOTADB) or _ForeignFile (sqlite, but not ours)
    │       -> file, -wal, -shm moved to ``<name>.corrupt-<unix time>``, a new file, one
    │          WARNING naming the path, ``recoveries`` + 1 (also when found by ``open``)
    └── busy/locked past busy_timeout -> DEBUG only (other failures: the first at WARNING)
    OSError | sqlite3.Error in ``open`` (no directory, not writable) -> one WARNING; the cache
        turns itself off and every operation is a no-op.
A schema version mismatch is no error: the tables are recreated (INFO).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

FILE_NAME = "completions.sqlite3"
SCHEMA_VERSION = 1
_APP_ID = 0x43524331  # "CRC1": tells our file from someone else's sqlite file at the same path
_BATCH_ROWS = 256  # a queue this long is flushed at once instead of after flush_delay_s
_MAX_QUEUED = 4096  # beyond this (the writer is stuck) puts are dropped: memory stays bounded
_WAL_LIMIT = 4 * 1024 * 1024  # the -wal file is truncated back to this after a checkpoint
_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}

_SCHEMA = (
    "CREATE TABLE entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, size INTEGER NOT NULL,"
    " created_at REAL NOT NULL, last_used REAL NOT NULL)",
    "CREATE INDEX entries_last_used ON entries (last_used)",
    "CREATE TABLE totals (id INTEGER PRIMARY KEY CHECK (id = 0),"
    " entries INTEGER NOT NULL, bytes INTEGER NOT NULL)",
    "INSERT INTO totals VALUES (0, 0, 0)",
    "CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN"
    " UPDATE totals SET entries = entries + 1, bytes = bytes + NEW.size; END",
    "CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN"
    " UPDATE totals SET entries = entries - 1, bytes = bytes - OLD.size; END",
    "CREATE TRIGGER entries_resize AFTER UPDATE OF size ON entries BEGIN"
    " UPDATE totals SET bytes = bytes - OLD.size + NEW.size; END",
    f"PRAGMA application_id = {_APP_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_UPSERT = (
    "INSERT INTO entries (key, value, size, created_at, last_used) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, size = excluded.size,"
    " created_at = excluded.created_at, last_used = excluded.last_used"
)


def default_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CACHE_HOME/crucible``, else ``~/.cache/crucible`` (a relative XDG value is ignored,
    as the XDG spec says)."""
    xdg = env.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path(env.get("HOME") or Path.home()) / ".cache"
    return base / "crucible"


@dataclass(frozen=True, slots=True)
class DiskStats:
    """For ``crucible/status``. ``entries``/``bytes``: the file's totals (all processes) as of
    this process's last write; ``writes``: rows written; ``pending``: puts queued; ``dropped``:
    puts refused (larger than ``max_bytes``, queue full, or text not encodable as UTF-8)."""

    enabled: bool
    path: str
    hits: int
    misses: int
    entries: int
    bytes: int
    evictions: int
    writes: int
    errors: int
    recoveries: int
    pending: int = 0
    dropped: int = 0


class _ForeignFile(sqlite3.DatabaseError):
    """The path holds a sqlite database that is not a Crucible cache: moved aside, not wiped."""


def _code(exc: BaseException) -> int:
    """The primary sqlite result code (0 for OSError and for errors raised from Python)."""
    return int(getattr(exc, "sqlite_errorcode", 0)) & 0xFF


def _is_corrupt(exc: BaseException) -> bool:
    return isinstance(exc, _ForeignFile) or _code(exc) in _CORRUPT


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


@dataclass(slots=True)
class _Batch:
    puts: dict[str, tuple[str, float, int]]  # key -> (value, created_at, size)
    touched: dict[str, float]  # key -> last used
    expired: dict[str, float]  # key -> delete if created before this


class _File:
    """What both worker threads share: the path, how to open it, how to move it aside, and the
    counters they update (under ``lock``; the loop only reads them)."""

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.path = path
        self.clock = clock
        self.lock = threading.Lock()
        self.errors = self.recoveries = self.evictions = self.writes = 0
        self.entries = self.bytes = 0
        self._warned = False

    def connect(self, busy_s: float) -> tuple[sqlite3.Connection, tuple[int, int] | None]:
        """Create the file if needed (0600 whatever the umask), open it in WAL mode, make sure
        the schema is ours and current; moves a corrupt or foreign file aside and retries once."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for retry in (False, True):
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
                os.chmod(self.path, 0o600)  # exactly 0600, whatever the umask took away
            ident = _identity(self.path)
            conn = sqlite3.connect(self.path, timeout=busy_s, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")  # a cache may lose its last write
                conn.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT}")
                self._ensure_schema(conn)
                return conn, ident
            except BaseException as exc:
                conn.close()  # rolls back
                if retry or not _is_corrupt(exc):
                    raise
                self.recover(ident, exc)
        raise AssertionError("unreachable")

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        def marks() -> tuple[int, int]:
            app = conn.execute("PRAGMA application_id").fetchone()[0]
            return int(app), int(conn.execute("PRAGMA user_version").fetchone()[0])

        if marks() == (_APP_ID, SCHEMA_VERSION):
            return
        conn.execute("BEGIN IMMEDIATE")  # another process may be here too; connect() rolls back
        app, version = marks()
        if (app, version) != (_APP_ID, SCHEMA_VERSION):
            query = (
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            )
            names = conn.execute(query).fetchall()
            if app != _APP_ID and names:
                raise _ForeignFile(f"not a Crucible cache (application_id {app})")
            if app == _APP_ID:
                msg = "disk cache %s has schema version %d, not %d: recreating it"
                logger.info(msg, self.path, version, SCHEMA_VERSION)
            for (name,) in names:  # ours, an older or newer layout
                conn.execute('DROP TABLE IF EXISTS "{}"'.format(name.replace('"', '""')))
            for statement in _SCHEMA:
                conn.execute(statement)
        conn.execute("COMMIT")

    def recover(self, bad: tuple[int, int] | None, exc: BaseException) -> None:
        """Move the broken file (and its -wal/-shm) aside, unless someone already did."""
        with self.lock:
            if bad is None or _identity(self.path) != bad:
                return  # the other thread or another process moved it already
            base = f"{self.path}.corrupt-{int(self.clock())}"
            target, n = base, 0
            while os.path.lexists(target):
                n += 1
                target = f"{base}.{n}"
            # -wal first: a new file must never meet the old file's log at <path>-wal
            for suffix in ("-wal", "-shm", ""):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}{suffix}", f"{target}{suffix}")
            self.recoveries += 1
        msg = "disk cache %s is unreadable (%s): moved it aside to %s and started a new one"
        logger.warning(msg, self.path, exc, target)

    def failed(self, exc: BaseException, bad: tuple[int, int] | None) -> None:
        """An operation failed: count it; recover from corruption; log the first other failure
        at WARNING (repeats would flood the log), lock contention only at DEBUG."""
        with self.lock:
            self.errors += 1
        if _is_corrupt(exc):
            self.recover(bad, exc)
        elif _code(exc) in _BUSY or self._warned:
            logger.debug("disk cache %s failed: %r", self.path, exc)
        else:
            self._warned = True
            logger.warning("disk cache %s failed: %r (further failures at DEBUG)", self.path, exc)


class _Worker:
    """One thread and its own connection to the file; ``call`` runs work there."""

    def __init__(self, file: _File, name: str, busy_s: float) -> None:
        self._file = file
        self._busy_s = busy_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None
        self._ident: tuple[int, int] | None = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def connection(self) -> sqlite3.Connection:
        """Raises what opening raises; ``run`` is the forgiving form."""
        if self._conn is None or _identity(self._file.path) != self._ident:
            self.disconnect()
            self._conn, self._ident = self._file.connect(self._busy_s)
        return self._conn

    def run(self, work: Callable[[sqlite3.Connection], T], default: T) -> T:
        try:
            return work(self.connection())
        except (sqlite3.Error, OSError) as exc:
            bad = self._ident
            self.disconnect()  # rolls back; the next use reopens (or finds the new file)
            self._file.failed(exc, bad)
            return default

    def disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = self._ident = None

    async def aclose(self) -> None:
        await self.call(self.disconnect)
        self._pool.shutdown(wait=False)  # idle now: the thread exits at once


def _select(conn: sqlite3.Connection, key: str) -> tuple[str, float] | None:
    row = conn.execute("SELECT value, created_at FROM entries WHERE key = ?", (key,)).fetchone()
    return None if row is None else (str(row[0]), float(row[1]))


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
        self._file = file = _File(Path(path), clock)
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._clock = clock
        self._flush_delay_s = flush_delay_s
        self._wanted = enabled
        self._opened = False
        self._enabled = False  # true between a successful open() and close()
        # threads start on first use; reads give up sooner than writes: a lookup is only worth
        # its time while it is fast
        self._reader = _Worker(file, "crucible-disk-read", min(busy_timeout_s, 0.2))
        self._writer = _Worker(file, "crucible-disk-write", busy_timeout_s)
        self._batch = _Batch({}, {}, {})
        self._inflight: list[dict[str, tuple[str, float, int]]] = []  # being written
        self._timer: asyncio.TimerHandle | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._hits = self._misses = self._dropped = 0

    async def open(self) -> None:
        if not self._wanted or self._opened:
            return
        self._opened = True
        writer = self._writer
        try:
            await writer.call(lambda: self._totals(writer.connection()))
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
        if found is None or found[1] + self._ttl_s < now:
            self._misses += 1
            if found is not None:
                self._batch.expired[key] = now - self._ttl_s
                self._kick()
            return None
        self._hits += 1
        self._batch.touched[key] = now
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, _Batch({}, {}, {})
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
        self._batch = _Batch({}, {}, {})
        writer = self._writer  # writes under way finish first (one thread, in order)
        removed: int = await writer.call(writer.run, self._clear, 0)
        return removed + dropped

    def stats(self) -> DiskStats:
        f = self._file
        return DiskStats(
            enabled=self._enabled, path=str(f.path), hits=self._hits, misses=self._misses,
            entries=f.entries, bytes=f.bytes, evictions=f.evictions, writes=f.writes,
            errors=f.errors, recoveries=f.recoveries, pending=len(self._batch.puts),
            dropped=self._dropped,
        )  # fmt: skip

    async def close(self) -> None:
        if not self._enabled:
            return
        await self.flush()
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)
        self._enabled = False
        if self._timer is not None:  # a hit during the last flush may have armed one
            self._timer.cancel()
            self._timer = None
        await self._shutdown()

    async def _shutdown(self) -> None:
        await self._reader.aclose()
        await self._writer.aclose()

    # -- flushing (loop side) --------------------------------------------------------------

    def _kick(self) -> None:
        """Make sure a flush will come: soon, or at once when the queue is large."""
        if self._drainer is not None and not self._drainer.done():
            return  # it loops until the queue is empty
        b = self._batch
        now = len(b.puts) + len(b.touched) + len(b.expired) >= _BATCH_ROWS
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a sync caller): flush() or close() writes the queue
        if now or self._flush_delay_s <= 0:
            self._start_drain()
        elif self._timer is None:
            self._timer = loop.call_later(self._flush_delay_s, self._start_drain)

    def _start_drain(self) -> None:
        self._timer = None
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain(), name="crucible-disk-cache-flush"
            )

    async def _drain(self) -> None:
        b = self._batch
        while self._enabled and (b.puts or b.touched or b.expired):
            await self.flush()
            b = self._batch

    # -- the writer thread -----------------------------------------------------------------

    def _write(self, conn: sqlite3.Connection, batch: _Batch) -> None:
        if not (batch.puts or batch.touched or batch.expired):
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
