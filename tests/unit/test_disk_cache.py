"""DiskCache (L2): a real sqlite file in tmp_path, a fake clock, no sleeping.

Each test drives the cache through its public interface and checks what a user (or another
server process) would see: the file on disk, its mode, what a fresh instance reads back, the
counters ``crucible/status`` shows, and the log line a broken file leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crucible.cache import disk, sqlite_file
from crucible.cache.disk import DiskCache, default_cache_dir
from crucible.cache.sqlite_file import SCHEMA_VERSION

KEY = "ab" * 32  # keys are hex digests


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Make = Callable[..., Awaitable[DiskCache]]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "xdg" / "crucible" / "completions.sqlite3"


@pytest.fixture
async def make(db: Path) -> AsyncIterator[Make]:
    """Builds and opens caches (on ``db`` unless told otherwise); closes them all afterwards.
    The flush delay is long, so only an explicit ``flush()`` (or a full queue) writes."""
    caches: list[DiskCache] = []

    async def build(path: Path = db, **kw: Any) -> DiskCache:
        kw = {"max_bytes": 1_000_000, "ttl_s": 3_600.0, "clock": FakeClock(), **kw}
        cache = DiskCache(path, flush_delay_s=kw.pop("flush_delay_s", 60.0), **kw)
        caches.append(cache)
        await cache.open()
        return cache

    yield build
    for cache in caches:
        await cache.close()


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection, as another program (or sqlite3 on the command line) would open."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def rows(path: Path) -> dict[str, str]:
    with raw(path) as conn:
        return dict(conn.execute("SELECT key, value FROM entries").fetchall())


def mode(path: Path) -> int | None:
    """Permission bits, or None when there is no such file."""
    return stat.S_IMODE(path.stat().st_mode) if path.exists() else None


def break_file(db: Path, how: str) -> bytes:
    """Destroy the cache file under a running cache; returns the garbage written."""
    garbage = b"\x13garbage" * max(512, db.stat().st_size // 8)
    if how == "replaced":  # a new file at the path (a sync tool, a user's mv over it)
        tmp = db.with_name("tmp")
        tmp.write_bytes(garbage)
        os.replace(tmp, db)
    elif how == "overwritten":  # the same file, its bytes destroyed
        with open(db, "r+b") as f:
            f.write(garbage)
    else:
        db.unlink()
    return garbage


def checkpoint(path: Path) -> None:
    """Move everything from the -wal into the main file, so that the main file is what counts."""
    with raw(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# -- location and file ---------------------------------------------------------------------


def test_default_cache_dir_honours_xdg_cache_home() -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": "/x/cache", "HOME": "/h"}) == Path(
        "/x/cache/crucible"
    )
    assert default_cache_dir({"HOME": "/h"}) == Path("/h/.cache/crucible")
    # the XDG spec says a relative value is invalid and must be ignored
    assert default_cache_dir({"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == Path("/h/.cache/crucible")


async def test_file_is_created_0600_in_a_new_0700_directory_in_wal_mode(
    make: Make, db: Path
) -> None:
    old = os.umask(0o022)  # what sqlite would otherwise honour: 0644
    try:
        cache = await make()
        cache.put(KEY, "x")
        await cache.flush()
    finally:
        os.umask(old)
    assert mode(db) == 0o600
    assert mode(db.parent) == 0o700
    assert mode(Path(f"{db}-wal")) == mode(Path(f"{db}-shm")) == 0o600
    with raw(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_turned_off_it_creates_nothing_and_does_nothing(make: Make, db: Path) -> None:
    cache = await make(enabled=False)
    cache.put(KEY, "x")
    await cache.flush()
    assert await cache.get(KEY) is None
    assert await cache.clear() == 0
    assert mode(db.parent) is None
    assert cache.stats().enabled is False


# -- behaviour ----------------------------------------------------------------------------


async def test_values_survive_a_restart(make: Make, db: Path) -> None:
    first = await make()
    first.put(KEY, "def f():\n    return 1 → ✓")
    await first.close()
    await first.close()  # idempotent

    second = await make()
    assert await second.get(KEY) == "def f():\n    return 1 → ✓"
    assert await second.get("cd" * 32) is None
    s = second.stats()
    assert (s.enabled, s.path, s.entries) == (True, str(db), 1)


async def test_a_put_is_readable_at_once_before_it_reaches_the_file(make: Make, db: Path) -> None:
    cache = await make()
    other = await make()
    cache.put(KEY, "queued")
    assert cache.stats().pending == 1
    assert await other.get(KEY) is None  # not on disk yet: the answer below came from the queue
    assert await cache.get(KEY) == "queued"
    await cache.flush()
    assert cache.stats().pending == 0
    assert await other.get(KEY) == "queued"
    assert rows(db) == {KEY: "queued"}


async def test_expired_rows_are_misses_and_are_deleted(make: Make, db: Path) -> None:
    clock = FakeClock(1_000.0)
    cache = await make(clock=clock, ttl_s=10.0)
    cache.put(KEY, "v")
    await cache.flush()
    clock.now = 1_010.0  # exactly ttl_s old: still fresh
    assert await cache.get(KEY) == "v"
    clock.now = 1_010.5
    assert await cache.get(KEY) is None
    await cache.flush()
    assert rows(db) == {}
    assert cache.stats().entries == 0


async def test_eviction_drops_least_recently_used_first_and_honours_reads(
    make: Make, db: Path
) -> None:
    clock = FakeClock(0.0)
    row = len("k0") + 8  # each row costs len(key) + its UTF-8 length
    cache = await make(clock=clock, max_bytes=3 * row)
    for i in range(3):
        clock.now = float(i)
        cache.put(f"k{i}", "v" * 8)
        await cache.flush()
    clock.now = 5.0
    assert await cache.get("k0") == "v" * 8  # k0 is now the most recently used
    with raw(db) as conn:  # recorded with the next write batch, not one write per read
        assert conn.execute("SELECT last_used FROM entries WHERE key = 'k0'").fetchone() == (0.0,)
    clock.now = 6.0
    cache.put("k3", "v" * 8)
    await cache.flush()
    assert set(rows(db)) == {"k0", "k2", "k3"}  # k1 went, not k0
    assert cache.stats().evictions == 1


async def test_total_size_stays_within_max_bytes_counting_utf8(make: Make, db: Path) -> None:
    clock = FakeClock(0.0)
    cache = await make(clock=clock, max_bytes=100)
    for i in range(40):
        clock.now = float(i)
        cache.put(f"k{i:02d}", "é" * 10)  # 3 + 20 bytes, though only 13 characters
    await cache.flush()
    kept = rows(db)
    size = sum(len(k) + len(v.encode()) for k, v in kept.items())
    assert size <= 100
    assert len(kept) == 4  # 4 * 23 = 92; five would be 115
    assert set(kept) == {"k36", "k37", "k38", "k39"}
    s = cache.stats()
    assert (s.entries, s.bytes, s.evictions, s.writes) == (4, 92, 36, 40)


async def test_a_value_larger_than_the_whole_cache_is_not_stored(make: Make) -> None:
    cache = await make(max_bytes=50)
    cache.put(KEY, "x" * 100)
    cache.put("k", "\ud800")  # a lone surrogate cannot be stored as UTF-8: dropped, no raise
    await cache.flush()
    assert await cache.get(KEY) is None
    assert cache.stats().dropped == 2


async def test_clear_removes_rows_and_queued_puts(make: Make, db: Path) -> None:
    cache = await make()
    other = await make()
    cache.put("a", "1")
    cache.put("b", "2")
    await cache.flush()
    other.put("c", "3")
    await other.flush()
    cache.put("d", "4")  # still queued
    assert await cache.clear() == 4
    assert await cache.get("d") is None
    await cache.flush()
    assert rows(db) == {}
    assert (cache.stats().entries, cache.stats().bytes) == (0, 0)


async def test_stats_count_what_happened(make: Make) -> None:
    cache = await make()
    cache.put("aa", "xyz")
    cache.put("bb", "xyzw")
    await cache.flush()
    assert await cache.get("aa") == "xyz"
    assert await cache.get("zz") is None
    assert await cache.get("zz") is None
    s = cache.stats()
    assert (s.entries, s.bytes, s.writes, s.evictions) == (2, 11, 2, 0)
    assert (s.errors, s.recoveries, s.pending) == (0, 0, 0)


async def test_puts_are_batched_and_a_full_queue_or_the_delay_starts_a_flush(
    make: Make, db: Path
) -> None:
    cache = await make()  # flush delay 60 s: only the queue size can trigger a write below
    cache.put("first", "v")
    for _ in range(20):  # loop iterations, not time
        await asyncio.sleep(0)
    assert cache.stats().pending == 1  # not one write per put
    assert mode(db) is None or rows(db) == {}
    for i in range(disk._BATCH_ROWS - 1):
        cache.put(f"k{i}", "v")
    for _ in range(100):  # loop iterations, not time
        if cache.stats().pending == 0:
            break
        await asyncio.sleep(0)
    assert cache.stats().pending == 0
    await cache.flush()  # waits for the write under way
    assert len(rows(db)) == disk._BATCH_ROWS
    assert cache.stats().writes == disk._BATCH_ROWS

    eager = await make(flush_delay_s=0.0)
    eager.put(KEY, "soon")
    for _ in range(100):
        if eager.stats().pending == 0:
            break
        await asyncio.sleep(0)
    assert eager.stats().pending == 0


async def test_recency_and_expiry_updates_waiting_for_the_writer_stay_bounded(
    make: Make, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the writer not keeping up (here: a flush delay longer than the test), each read
    queues a recency update and each expired read a deletion; both queues stop at
    ``_MAX_QUEUED`` keys and the reads still answer."""
    clock = FakeClock()
    cache = await make(clock=clock)
    for i in range(20):
        cache.put(f"k{i}", f"v{i}")
    await cache.flush()
    monkeypatch.setattr(disk, "_MAX_QUEUED", 8)
    assert [await cache.get(f"k{i}") for i in range(20)] == [f"v{i}" for i in range(20)]
    queued = cache._batch  # what the next flush writes (status counts only its puts)
    assert len(queued.touched) == 8
    clock.now += 3_601.0
    assert [await cache.get(f"k{i}") for i in range(20)] == [None] * 20
    assert len(queued.touched) == len(queued.expired) == 8
    await cache.flush()  # what was queued is written: 8 expired rows deleted
    assert len(rows(db)) == 12


# -- off the loop ---------------------------------------------------------------------------


async def test_reads_and_writes_run_off_the_event_loop(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sqlite work waits for a gate only the event loop can open: a get or flush that ran
    on the loop thread would block the loop, so the gate would never open (and the test fails)."""
    cache = await make()
    cache.put(KEY, "v")
    await cache.flush()
    loop_thread = threading.get_ident()
    gate, entered = threading.Event(), threading.Event()
    threads: list[int] = []

    def gated(real: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            threads.append(threading.get_ident())
            entered.set()
            assert gate.wait(5), "the event loop was blocked"
            return real(*args)

        return run

    monkeypatch.setattr(disk, "_select", gated(disk._select))
    monkeypatch.setattr(DiskCache, "_write", gated(DiskCache._write))
    for work in (cache.get("cd" * 32), cache.flush()):
        cache.put("other", "w")
        gate.clear()
        entered.clear()
        task = asyncio.ensure_future(work)
        assert await asyncio.to_thread(entered.wait, 5)  # the worker has reached the gate
        for _ in range(10):  # the loop keeps turning while the worker thread waits
            await asyncio.sleep(0)
        assert not task.done()
        gate.set()
        await task
        assert threads.pop() != loop_thread
    assert cache.stats().errors == 0


# -- sharing the file ------------------------------------------------------------------------


async def test_two_instances_write_the_same_file_at_once(make: Make, db: Path) -> None:
    one, two = await make(), await make()

    async def write(cache: DiskCache, name: str) -> None:
        for i in range(100):
            cache.put(f"{name}{i}", name)
            if i % 5 == 0:
                await cache.flush()
        await cache.flush()

    await asyncio.gather(write(one, "one"), write(two, "two"))
    assert len(rows(db)) == 200
    assert one.stats().errors == two.stats().errors == 0
    third = await make()
    assert await third.get("one99") == "one"
    assert await third.get("two0") == "two"
    assert third.stats().entries == 200


CHILD = """
import asyncio, sys
from pathlib import Path
from crucible.cache.disk import DiskCache

async def main():
    cache = DiskCache(Path(sys.argv[1]), max_bytes=10**7, ttl_s=3600)
    await cache.open()
    for i in range(200):
        cache.put(f"child{i}", "c")
        await cache.flush()
    await cache.close()
    print(cache.stats().errors, cache.stats().writes)

asyncio.run(main())
"""


async def test_another_process_writes_the_same_file_at_the_same_time(make: Make, db: Path) -> None:
    parent = await make(busy_timeout_s=5.0)
    parent.put("parent-first", "p")
    await parent.flush()  # the file exists before the child opens it
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(db), stdout=asyncio.subprocess.PIPE
    )
    done = asyncio.ensure_future(child.communicate())
    i = 0
    while i < 200 or not done.done():  # keep writing for as long as the child does
        parent.put(f"parent{i}", "p")
        await parent.flush()
        i += 1
    out, _ = await done
    assert child.returncode == 0
    assert out.split() == [b"0", b"200"]  # no errors in the child
    assert parent.stats().errors == 0
    on_disk = rows(db)
    assert sum(k.startswith("child") for k in on_disk) == 200
    assert sum(k.startswith("parent") for k in on_disk) == i + 1


async def test_a_locked_file_neither_crashes_nor_hangs(make: Make, db: Path) -> None:
    cache = await make(busy_timeout_s=0.05)
    cache.put("old", "1")
    await cache.flush()
    with raw(db) as other:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        cache.put("new", "2")
        await cache.flush()  # gives up after busy_timeout_s, drops the batch
        assert cache.stats().errors == 1
        assert await cache.get("old") == "1"  # WAL: reads carry on beside the writer
        other.execute("ROLLBACK")
    cache.put("new", "2")
    await cache.flush()
    assert rows(db) == {"old": "1", "new": "2"}


# -- schema and broken files ---------------------------------------------------------------


@pytest.mark.parametrize("version", [SCHEMA_VERSION - 1, SCHEMA_VERSION + 1])
async def test_another_schema_version_is_recreated(
    make: Make, db: Path, caplog: pytest.LogCaptureFixture, version: int
) -> None:
    db.parent.mkdir(parents=True)
    with raw(db) as conn:
        conn.execute("CREATE TABLE entries (k BLOB, v BLOB, extra INTEGER)")
        conn.execute("INSERT INTO entries VALUES (1, 2, 3)")
        conn.execute(f"PRAGMA application_id = {sqlite_file._APP_ID}")
        conn.execute(f"PRAGMA user_version = {version}")
    with caplog.at_level(logging.INFO, logger="crucible.cache.sqlite_file"):
        cache = await make()
    assert any(
        r.levelno == logging.INFO and str(db) in r.getMessage() and "schema" in r.getMessage()
        for r in caplog.records
    )
    cache.put(KEY, "v")
    await cache.flush()
    assert rows(db) == {KEY: "v"}
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert cache.stats().recoveries == 0


def warnings_naming(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and str(path) in r.getMessage()
    ]


async def test_a_file_that_is_not_a_crucible_cache_is_left_untouched_at_open(
    make: Make, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db.parent.mkdir(parents=True)
    garbage = b"this is not sqlite" * 300
    db.write_bytes(garbage)  # noqa: ASYNC240 (setup, before anything runs)
    cache = await make(clock=FakeClock(1_700_000_000.0))
    assert db.read_bytes() == garbage  # noqa: ASYNC240 (not renamed, truncated or written)
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]
    (warning,) = warnings_naming(caplog, db)
    assert "not a Crucible cache" in warning and "move or delete it" in warning
    s = cache.stats()
    assert (s.enabled, s.recoveries) == (False, 0)
    cache.put(KEY, "v")
    await cache.flush()
    assert await cache.get(KEY) is None


async def test_a_corrupt_cache_of_ours_is_moved_aside_and_recreated_at_open(
    make: Make, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = await make()
    first.put(KEY, "old")
    await first.flush()
    await first.close()
    checkpoint(db)
    with open(db, "r+b") as f:  # noqa: ASYNC230 (setup): the header (ours) stays, pages break
        f.seek(100)
        f.write(b"\xff" * 8000)
    broken = db.read_bytes()  # noqa: ASYNC240
    cache = await make(clock=FakeClock(1_700_000_000.0))
    aside = db.with_name(f"{db.name}.corrupt-1700000000")
    assert aside.read_bytes() == broken
    assert len(warnings_naming(caplog, db)) == 1
    s = cache.stats()
    assert (s.enabled, s.recoveries) == (True, 1)
    cache.put(KEY, "v")
    await cache.flush()
    assert rows(db) == {KEY: "v"}
    assert mode(db) == 0o600


async def test_someone_elses_sqlite_file_is_left_untouched(
    make: Make, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db.parent.mkdir(parents=True)
    with raw(db) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('precious')")
    before = db.read_bytes()  # noqa: ASYNC240
    cache = await make(clock=FakeClock(1_700_000_000.0))
    assert db.read_bytes() == before  # noqa: ASYNC240
    with raw(db) as conn:
        assert conn.execute("SELECT text FROM notes").fetchall() == [("precious",)]
    assert len(warnings_naming(caplog, db)) == 1
    assert cache.stats().enabled is False


async def test_a_file_replaced_while_open_by_one_not_ours_is_left_untouched(
    make: Make, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = await make(clock=FakeClock(1_700_000_000.0))
    cache.put("k1", "v")
    await cache.flush()
    checkpoint(db)
    garbage = break_file(db, "replaced")  # a user's mv over the path, a sync tool
    assert await cache.get("k2") is None  # a miss, not an exception
    cache.put(KEY, "fresh")
    await cache.flush()
    assert db.read_bytes() == garbage  # noqa: ASYNC240
    assert not [p for p in db.parent.iterdir() if ".corrupt-" in p.name]
    assert cache.stats().recoveries == 0
    assert len(warnings_naming(caplog, db)) == 1


async def test_a_file_of_ours_broken_while_open_is_recovered_and_serving_goes_on(
    make: Make, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its bytes destroyed under the open file: still the file this cache created, so moving
    it aside takes nothing from anyone."""
    cache = await make(clock=FakeClock(1_700_000_000.0))
    other = await make(clock=FakeClock(1_700_000_005.0))  # another server on the same file
    for i in range(50):
        cache.put(f"k{i}", "v" * 100)
    await cache.flush()
    assert await cache.get("k1") == "v" * 100
    assert await other.get("k1") == "v" * 100
    checkpoint(db)
    garbage = break_file(db, "overwritten")

    assert await cache.get("k2") is None  # a miss, not an exception
    assert db.with_name(f"{db.name}.corrupt-1700000000").read_bytes()[:8] == garbage[:8]
    assert len(warnings_naming(caplog, db)) == 1
    assert cache.stats().recoveries == 1
    cache.put(KEY, "fresh")
    await cache.flush()
    assert await cache.get(KEY) == "fresh"
    # the other server follows to the new file instead of moving it aside again
    other.put("from-other", "o")
    await other.flush()
    assert await cache.get("from-other") == "o"
    assert await other.get(KEY) == "fresh"
    assert other.stats().recoveries == 0
    assert rows(db) == {KEY: "fresh", "from-other": "o"}
    assert sorted(p.name for p in db.parent.iterdir() if ".corrupt-" in p.name) == [
        f"{db.name}.corrupt-1700000000{suffix}" for suffix in ("", "-shm", "-wal")
    ]
    assert mode(db) == 0o600


def test_a_broken_file_someone_else_already_replaced_is_left_alone(db: Path) -> None:
    """Two processes can find the same broken file; only the first moves it aside. (A race
    the public interface cannot stage deterministically, so this drives the step itself.)"""
    db.parent.mkdir(parents=True)
    db.write_bytes(b"broken")
    broken = db.stat()
    fresh = db.with_name("fresh")
    fresh.write_bytes(b"")
    os.replace(fresh, db)  # the other process's new file
    file = sqlite_file.SqliteFile(db, FakeClock(1_700_000_000.0))
    file.recover((broken.st_dev, broken.st_ino), sqlite3.DatabaseError("not a database"))
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]
    assert file.recoveries == 0
    now = db.stat()
    file.recover((now.st_dev, now.st_ino), sqlite3.DatabaseError("not a database"))
    assert sorted(p.name for p in db.parent.iterdir()) == [f"{db.name}.corrupt-1700000000"]
    assert file.recoveries == 1


async def test_a_file_deleted_while_open_is_recreated(make: Make, db: Path) -> None:
    cache = await make()
    cache.put("a", "1")
    await cache.flush()
    checkpoint(db)
    break_file(db, "deleted")
    assert await cache.get("a") is None
    cache.put("b", "2")
    await cache.flush()
    assert rows(db) == {"b": "2"}
    assert cache.stats().recoveries == 0


@pytest.mark.parametrize("how", ["not a directory", "read-only directory"])
async def test_an_unusable_directory_turns_the_cache_off(
    make: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    if how == "not a directory":
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where the cache directory should be")
        path = blocker / "crucible" / "completions.sqlite3"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        path = ro / "crucible" / "completions.sqlite3"
    cache = await make(path)
    assert len(warnings_naming(caplog, path)) == 1
    cache.put(KEY, "v")
    await cache.flush()
    assert await cache.get(KEY) is None
    assert await cache.clear() == 0
    s = cache.stats()
    assert (s.enabled, s.writes, s.entries) == (False, 0, 0)
    await cache.close()
    assert mode(path) is None


async def test_a_cache_whose_mark_is_still_in_the_write_ahead_log_is_recognised(
    make: Make, db: Path
) -> None:
    """Another server made the file and has not checkpointed: the main file's header has no
    application_id yet, the log has it. Still ours, not someone else's."""
    db.parent.mkdir(parents=True)
    with raw(db) as other:
        other.execute("PRAGMA journal_mode = WAL")
        other.execute("PRAGMA wal_autocheckpoint = 0")
        for statement in sqlite_file._SCHEMA:
            other.execute(statement)
        other.execute("INSERT INTO entries VALUES (?, 'v', 1, 1000.0, 1000.0)", (KEY,))
        assert db.read_bytes()[68:72] == b"\0\0\0\0"  # noqa: ASYNC240 (only the log has it)
        cache = await make()
        assert cache.stats().enabled is True
        assert await cache.get(KEY) == "v"
