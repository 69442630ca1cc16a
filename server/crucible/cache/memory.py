"""MemoryCache (L1): answers in memory, bounded by bytes, expiring after a TTL, LRU within it.

Built on ``cachetools.TTLCache`` with a ``getsizeof``, so the bound is the memory the entries
take, not their count: ten thousand one-line answers and ten 4 KB ones weigh what they weigh.

The bound has two parts. ``max_bytes`` is the configured ceiling. The *budget* is what may be
used now; it starts at the ceiling and can be shrunk and restored while running (the memory
supervisor does so under pressure). Shrinking evicts least recently used entries at once until
the cache fits; restoring only raises the limit (nothing evicted comes back).

What an entry weighs is ``size_of``'s answer (the caller's): the key and value objects it
stores plus ``ENTRY_OVERHEAD``, what this cache keeps itself per entry, so the budget
bounds what the process really holds (``tests/unit/test_memory_accounting.py`` checks both
against ``tracemalloc``).

Time comes from an injected clock (seconds), so TTL tests never sleep. Not thread-safe: it
lives on the event loop, where a lookup costs a few µs (``benchmarks/cache_replay.py``
measures it: ~4 µs for a hit, with cachetools' expiry and LRU bookkeeping).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cachetools import TTLCache

V = TypeVar("V")

_LARGE = 1 << 20  # an int past the small-int cache, as every entry's size is
_PUT_EVICTIONS = 64  # the most a put evicts while a shrink is under way (``_fit``)

# What one entry costs inside the cache besides its key and value objects and its slots in the
# dicts (which ``_Entries.tables_bytes`` counts as they are): the (value, size) tuple (56 bytes)
# and its size int (28), cachetools' TTL ``_Link`` (64) and its expiry float (24). Taken from
# the real objects; CPython 3.11.7 / cachetools 8.0: 172 bytes.
ENTRY_OVERHEAD = (
    sys.getsizeof((None, _LARGE))
    + sys.getsizeof(_LARGE)
    + sys.getsizeof(TTLCache._Link())  # type: ignore[attr-defined]  # not in the stubs
    + sys.getsizeof(0.5)
)


@dataclass(frozen=True, slots=True)
class MemoryStats:
    entries: int
    bytes: int
    budget_bytes: int
    max_bytes: int
    evictions: int  # pushed out to stay within the budget (expiry is not eviction)
    expirations: int


class _Entries(TTLCache[str, tuple[V, int]]):
    """TTLCache of (value, size in bytes) that counts the entries it evicts to make room, and
    the bytes of its dicts' tables."""

    evictions = 0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tables = self._find_tables()

    def _find_tables(self) -> list[dict[Any, Any]]:
        """cachetools' three dicts (values, sizes, and the OrderedDict of TTL links, whose
        size includes its LRU nodes), whatever cachetools names them."""
        return [table for table in vars(self).values() if isinstance(table, dict)]

    def tables_bytes(self) -> int:
        """The dicts as they are now (O(1)). A dict's table grows by doubling and never shrinks
        when entries leave, only when it is rebuilt for more room: under churn it is sized for
        about three times its entries, so it is counted as it is, not per entry."""
        return sum(sys.getsizeof(table) for table in self._tables)

    def compact(self) -> None:
        """Rebuild the dicts for the entries they hold now (O(entries); order kept), freeing
        the room left by those that left."""
        for name, table in list(vars(self).items()):
            if isinstance(table, dict):
                setattr(self, name, type(table)(table))
        self._tables = self._find_tables()

    def popitem(self) -> tuple[str, tuple[V, int]]:
        item = super().popitem()
        self.evictions += 1
        return item


class MemoryCache(Generic[V]):
    """The in-memory level: ``get``/``put`` by key, bounded by bytes, with a TTL."""

    def __init__(
        self,
        max_bytes: int,
        ttl_s: float,
        *,
        size_of: Callable[[str, V], int],
        clock: Callable[[], float] = time.monotonic,
        count_tables: bool = True,
    ) -> None:
        """``size_of`` is an entry's bytes (its key and value objects and ``ENTRY_OVERHEAD``);
        ``count_tables`` adds the cache's dict tables to what the budget bounds (off only
        for tests of the eviction order with toy sizes)."""
        self._count_tables = count_tables
        self._max_bytes = max(0, int(max_bytes))
        self._budget = self._max_bytes
        self._size_of = size_of
        # cachetools rejects maxsize 0; a zero budget is expressed by refusing every put.
        # Each value is stored with its size, measured once, so cachetools' accounting is exact.
        self._entries: _Entries[V] = _Entries(
            maxsize=max(1, self._max_bytes),
            ttl=ttl_s,
            timer=clock,
            getsizeof=lambda item: item[1],
        )
        self._expirations = 0
        self._shrinking = False  # over a shrunk budget, brought down by ``fit_step`` calls

    def get(self, key: str) -> V | None:
        self._expire()
        item = self._entries.get(key)
        return None if item is None else item[0]

    def put(self, key: str, value: V) -> None:
        size = self._size_of(key, value)
        if size > self._budget:
            self._entries.pop(key, None)  # an older, smaller answer would now be wrong
            return
        self._expire()
        self._entries.pop(key, None)
        self._entries[key] = (value, size)
        self._fit()

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def clear(self) -> int:
        """Drop every entry; returns how many there were."""
        count = len(self._entries)
        self._entries.clear()
        return count

    def memory_bytes(self) -> int:
        """The bytes the cache holds, as its budget counts them (O(1)): its entries and, with
        ``count_tables``, its dicts' tables."""
        held = int(self._entries.currsize)
        return held + self._entries.tables_bytes() if self._count_tables else held

    def set_budget(self, budget_bytes: int, *, most: int | None = None) -> bool:
        """Use at most ``budget_bytes`` (never more than the configured ceiling) from now on,
        evicting least recently used entries until the cache fits: at most ``most`` of them
        now (None: as many as it takes). Returns whether it fits; one that does not is
        brought there by ``fit_step`` (each ``put`` meanwhile evicts a few more)."""
        self._budget = min(max(0, int(budget_bytes)), self._max_bytes)
        return self.fit_step(most)

    def fit_step(self, most: int | None) -> bool:
        """Evict up to ``most`` least recently used entries (None: no limit) towards the
        budget; once the entries fit, rebuild the tables for what is left. Returns whether
        the cache fits its budget."""
        evicted = 0
        # Evict for the entries first, then rebuild the tables for what is left: a shrink
        # must not empty the cache to pay for tables sized for what it held before.
        while self._entries.currsize > self._budget and len(self._entries):
            if most is not None and evicted >= most:
                self._shrinking = True
                return False
            self._entries.popitem()
            evicted += 1
        if self._count_tables and self.memory_bytes() > self._budget:
            self._entries.compact()
        self._shrinking = False
        self._fit()
        return True

    def restore_budget(self) -> None:
        """Back to the configured ceiling."""
        self._budget = self._max_bytes

    def stats(self) -> MemoryStats:
        self._expire()
        return MemoryStats(
            entries=len(self._entries),
            bytes=self.memory_bytes(),
            budget_bytes=self._budget,
            max_bytes=self._max_bytes,
            evictions=self._entries.evictions,
            expirations=self._expirations,
        )

    def _fit(self) -> None:
        # While a shrink goes in steps, a put evicts only a few entries (and the tables are
        # still sized for what the cache held): the steps do the rest, yielding in between.
        most = _PUT_EVICTIONS if self._shrinking else None
        evicted = 0
        while self.memory_bytes() > self._budget and len(self._entries):
            if most is not None and evicted >= most:
                return
            self._entries.popitem()
            evicted += 1
        if not len(self._entries):
            # Emptied by evictions: the dicts' tables are still sized for what they held
            # until cleared (a dict never shrinks on deletion).
            self._entries.clear()

    def _expire(self) -> None:
        self._expirations += len(self._entries.expire())
