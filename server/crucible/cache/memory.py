"""MemoryCache (L1): answers in memory, bounded by bytes, expiring after a TTL, LRU within it.

Built on ``cachetools.TTLCache`` with a ``getsizeof``, so the bound is the memory the entries
take, not their count: ten thousand one-line answers and ten 4 KB ones weigh what they weigh.

The bound has two parts. ``max_bytes`` is the configured ceiling. The *budget* is what may be
used now; it starts at the ceiling and can be shrunk and restored while running (the memory
supervisor does so under pressure). Shrinking evicts least recently used entries at once until
the cache fits; restoring only raises the limit (nothing evicted comes back).

Time comes from an injected clock (seconds), so TTL tests never sleep. Not thread-safe: it
lives on the event loop, where a lookup costs a few µs (``benchmarks/cache_replay.py``
measures it: ~4 µs for a hit, with cachetools' expiry and LRU bookkeeping).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import TTLCache

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class MemoryStats:
    entries: int
    bytes: int
    budget_bytes: int
    max_bytes: int
    evictions: int  # pushed out to stay within the budget (expiry is not eviction)
    expirations: int


class _Entries(TTLCache[str, tuple[V, int]]):
    """TTLCache of (value, size in bytes) that counts the entries it evicts to make room."""

    evictions = 0

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
    ) -> None:
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

    def set_budget(self, budget_bytes: int) -> None:
        """Use at most ``budget_bytes`` (never more than the configured ceiling) from now on,
        evicting least recently used entries until the cache fits."""
        self._budget = min(max(0, int(budget_bytes)), self._max_bytes)
        self._fit()

    def restore_budget(self) -> None:
        """Back to the configured ceiling."""
        self._budget = self._max_bytes

    def stats(self) -> MemoryStats:
        self._expire()
        return MemoryStats(
            entries=len(self._entries),
            bytes=int(self._entries.currsize),
            budget_bytes=self._budget,
            max_bytes=self._max_bytes,
            evictions=self._entries.evictions,
            expirations=self._expirations,
        )

    def _fit(self) -> None:
        while self._entries.currsize > self._budget and len(self._entries):
            self._entries.popitem()

    def _expire(self) -> None:
        self._expirations += len(self._entries.expire())
