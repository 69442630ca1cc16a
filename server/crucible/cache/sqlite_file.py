"""The L2 cache's sqlite file and the threads that hold connections to it.

``SqliteFile`` owns the path. It only ever opens a file that is a Crucible cache: one it
created, or one whose sqlite ``application_id`` is Crucible's. Anything else at the path (a
text file, another program's database, an empty file, a directory or device) is never
renamed, truncated or written: the cache refuses it (``NotOurFile``) and the server runs
without L2. A new file is built under a temporary name (0600 whatever the umask, schema and
marks written) and linked into place only if the path is still free, so the path never names
a half-made file. Connections run in WAL mode (readers beside the one writer;
``busy_timeout`` queues writers); ``user_version`` is the schema version; triggers keep running
totals in a one-row table, so counts cost no scan and agree across processes. ``Worker`` is
one thread with its own connection; before each use the connection checks that the path still
names the file it opened (another process may have moved a broken file aside) and reopens if
not.

Errors: none leaves ``Worker.run``; the cache is an optimisation and the server keeps serving.

    sqlite3.Error | OSError on a worker -> the caller's default (a miss / a dropped batch),
    │                                      ``errors`` + 1, the connection reopened on next use
    ├── NotOurFile: the path names something that is not a Crucible cache
    │       -> left as it is; one WARNING naming the path and what to do (at open: L2 off)
    ├── corrupt (SQLITE_CORRUPT, SQLITE_NOTADB) in a file that was ours when opened
    │       -> file, -wal, -shm moved to ``<name>.corrupt-<unix time>``, a new file, one
    │          WARNING naming the path, ``recoveries`` + 1 (also when found on first open)
    └── busy/locked past busy_timeout -> DEBUG only (other failures: the first at WARNING)
    ``Worker.connection`` raises what opening raises (the caller decides what that means).
A schema version mismatch is no error: the tables are recreated (INFO).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 1
_APP_ID = 0x43524331  # "CRC1": tells our file from someone else's sqlite file at the same path
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

Identity = tuple[int, int]  # (st_dev, st_ino): which file a path named when it was opened


_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every sqlite database
_APP_ID_AT = 68  # where the header keeps application_id (4 bytes, big-endian)


class NotOurFile(sqlite3.DatabaseError):
    """The path names something that is not a Crucible cache; it is left as it is."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(
            f"disk cache: {path} is {what}, not a Crucible cache. It is left untouched and the"
            " disk cache is off: move or delete it, or set cache.disk_path to another file"
        )


def _code(exc: BaseException) -> int:
    """The primary sqlite result code (0 for OSError and for errors raised from Python)."""
    return int(getattr(exc, "sqlite_errorcode", 0)) & 0xFF


def _is_corrupt(exc: BaseException) -> bool:
    return not isinstance(exc, NotOurFile) and _code(exc) in _CORRUPT


def _examine(path: Path) -> tuple[Identity | None, str | None]:
    """Which file ``path`` names (None: none), and what it is when it is not a Crucible cache
    (None: it is one). Reads, never writes: at most the 100-byte header, and for a database
    whose header has no application_id yet (a write-ahead log may hold it), sqlite's answer
    through a read-only connection."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, None
    ident = (st.st_dev, st.st_ino)
    if not stat.S_ISREG(st.st_mode):
        return ident, "not a regular file"  # a directory, a FIFO (opening it would block) …
    with open(path, "rb") as file:
        header = file.read(100)
    if not header:
        return ident, "an empty file"
    if len(header) < 100 or not header.startswith(_MAGIC):
        return ident, "not a sqlite database"
    app = int.from_bytes(header[_APP_ID_AT : _APP_ID_AT + 4], "big")
    if app == 0:
        try:
            with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as ro:
                app = int(ro.execute("PRAGMA application_id").fetchone()[0])
        except sqlite3.Error:
            pass  # unreadable and not marked as ours: not ours
    if app != _APP_ID:
        return ident, "a sqlite database of another program"
    return ident, None


def _identity(path: Path) -> Identity | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class SqliteFile:
    """What the worker threads share: the path, how to open it, how to move it aside, and the
    counters they update (under ``lock``; the loop only reads them)."""

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.path = path
        self.clock = clock
        self.lock = threading.Lock()
        self.errors = self.recoveries = self.evictions = self.writes = 0
        self.entries = self.bytes = 0
        self._warned = False

    def connect(self, busy_s: float) -> tuple[sqlite3.Connection, Identity | None]:
        """Create the file if there is none, open it in WAL mode, make sure the schema is
        current; moves a corrupt file of ours aside and retries once. Raises ``NotOurFile``
        when the path names anything else."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for retry in (False, True):
            ident, foreign = _examine(self.path)
            if ident is None:
                self._create()
                ident, foreign = _examine(self.path)  # ours, or another process's first
            if foreign is not None:
                raise NotOurFile(self.path, foreign)
            if ident is None:
                raise FileNotFoundError(f"{self.path} vanished as it was created")
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

    def _create(self) -> None:
        """A new cache file at the path, unless something got there first (then it stays)."""
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}")
        os.close(os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            os.chmod(temp, 0o600)  # exactly 0600, whatever the umask took away
            with contextlib.closing(sqlite3.connect(temp, isolation_level=None)) as conn:
                conn.execute("BEGIN")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("COMMIT")
            try:
                os.link(temp, self.path)  # fails, atomically, when the path is taken
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links: the same, less atomic
                if not os.path.lexists(self.path):
                    os.replace(temp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

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
            if app != _APP_ID:  # changed since _examine looked: not ours to take over
                raise NotOurFile(self.path, "a sqlite database of another program")
            msg = "disk cache %s has schema version %d, not %d: recreating it"
            logger.info(msg, self.path, version, SCHEMA_VERSION)
            for (name,) in names:  # ours, an older or newer layout
                conn.execute('DROP TABLE IF EXISTS "{}"'.format(name.replace('"', '""')))
            for statement in _SCHEMA:
                conn.execute(statement)
        conn.execute("COMMIT")

    def recover(self, bad: Identity | None, exc: BaseException) -> None:
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

    def failed(self, exc: BaseException, bad: Identity | None) -> None:
        """An operation failed: count it; recover from corruption; log the first other failure
        at WARNING (repeats would flood the log), lock contention only at DEBUG."""
        with self.lock:
            self.errors += 1
        if _is_corrupt(exc):
            self.recover(bad, exc)
        elif _code(exc) in _BUSY or self._warned:
            logger.debug("disk cache %s failed: %r", self.path, exc)
        elif isinstance(exc, NotOurFile):
            self._warned = True
            logger.warning("%s", exc)
        else:
            self._warned = True
            logger.warning("disk cache %s failed: %r (further failures at DEBUG)", self.path, exc)


class Worker:
    """One thread and its own connection to the file; ``call`` runs work there."""

    def __init__(self, file: SqliteFile, name: str, busy_s: float) -> None:
        self._file = file
        self._busy_s = busy_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None
        self._ident: Identity | None = None

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
