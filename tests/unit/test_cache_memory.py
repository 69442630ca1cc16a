"""MemoryCache (L1): the byte bound, LRU order, the TTL on an injected clock, the runtime
budget, and the statistics."""

from __future__ import annotations

from crucible.cache.memory import MemoryCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def size(key: str, value: str) -> int:
    return len(key) + len(value)


def make(max_bytes: int = 100, ttl_s: float = 60.0) -> tuple[MemoryCache[str], Clock]:
    clock = Clock()
    # Toy sizes: the dicts' tables (hundreds of bytes) are left out of the budget here.
    return MemoryCache(max_bytes, ttl_s, size_of=size, clock=clock, count_tables=False), clock


def test_get_put_and_counts() -> None:
    cache, _ = make()
    assert cache.get("a") is None
    cache.put("a", "x" * 9)
    assert cache.get("a") == "x" * 9
    stats = cache.stats()
    assert (stats.entries, stats.bytes) == (1, 10)


def test_bounded_by_bytes_not_by_count() -> None:
    cache, _ = make(max_bytes=100)
    for index in range(10):
        cache.put(f"k{index}", "v" * 18)  # 20 bytes each: five fit
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (5, 100, 5)
    assert [cache.get(f"k{i}") is not None for i in range(10)] == [False] * 5 + [True] * 5
    cache.put("big", "v" * 77)  # 80 bytes: four of the five small ones go
    assert cache.stats().bytes <= 100
    assert cache.get("big") == "v" * 77


def test_least_recently_used_goes_first() -> None:
    cache, _ = make(max_bytes=60)
    for name in ("a", "b", "c"):
        cache.put(name, "v" * 19)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", "v" * 19)
    assert "b" not in cache
    assert all(name in cache for name in ("a", "c", "d"))


def test_a_value_larger_than_the_budget_is_not_kept_and_drops_its_older_version() -> None:
    cache, _ = make(max_bytes=50)
    cache.put("a", "small")
    cache.put("a", "v" * 100)
    assert cache.get("a") is None
    assert cache.stats().bytes == 0


def test_entries_expire_after_the_ttl() -> None:
    cache, clock = make(ttl_s=10)
    cache.put("a", "old")
    clock.now += 9.9
    assert cache.get("a") == "old"
    clock.now += 0.2
    assert cache.get("a") is None
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.expirations, stats.evictions) == (0, 0, 1, 0)


def test_the_budget_shrinks_at_once_and_restores() -> None:
    cache, _ = make(max_bytes=100)
    for index in range(5):
        cache.put(f"k{index}", "v" * 18)
    cache.get("k0")  # keep k0 warm
    cache.set_budget(40)
    stats = cache.stats()
    assert (stats.budget_bytes, stats.max_bytes) == (40, 100)
    assert stats.bytes <= 40 and stats.entries == 2
    assert "k0" in cache and "k4" in cache
    cache.put("k5", "v" * 18)  # the shrunk budget holds for new entries too
    assert cache.stats().bytes <= 40
    cache.restore_budget()
    for index in range(6, 9):
        cache.put(f"k{index}", "v" * 18)
    assert cache.stats().entries == 5
    assert cache.stats().budget_bytes == 100


def test_a_shrink_in_steps_evicts_in_lru_order_and_puts_meanwhile_evict_only_a_few() -> None:
    cache, _ = make(max_bytes=10_000)
    for index in range(400):
        cache.put(f"k{index:03}", "v" * 16)  # 20 bytes each: 8,000 bytes
    cache.get("k000")  # the least recently used now is k001
    assert cache.set_budget(2_000, most=100) is False  # 100 of the 300 evictions done
    assert cache.stats().entries == 300 and "k000" in cache and "k100" not in cache
    cache.put("new", "v" * 17)  # over budget meanwhile: a put evicts 64 at most
    assert cache.stats().entries == 300 + 1 - 64
    steps = 1
    while not cache.fit_step(50):
        steps += 1
    stats = cache.stats()
    assert stats.bytes <= 2_000 and stats.entries == 100 and steps >= 3
    assert "k000" in cache and "new" in cache and "k399" in cache and "k300" not in cache
    assert cache.set_budget(2_000, most=1) is True  # already fits: nothing to do


def test_the_budget_never_exceeds_the_configured_ceiling_and_zero_keeps_nothing() -> None:
    cache, _ = make(max_bytes=100)
    cache.set_budget(10_000)
    assert cache.stats().budget_bytes == 100
    cache.put("a", "x")
    cache.set_budget(0)
    assert cache.stats().entries == 0
    cache.put("b", "y")
    assert cache.get("b") is None


def test_a_zero_sized_cache_keeps_nothing() -> None:
    cache, _ = make(max_bytes=0)
    cache.put("a", "x")
    assert cache.get("a") is None


def test_clear() -> None:
    cache, _ = make()
    cache.put("a", "x")
    cache.put("b", "y")
    assert cache.clear() == 2
    assert cache.stats().entries == 0 and cache.stats().bytes == 0
