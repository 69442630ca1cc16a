"""TieredCache: memory then disk (a real sqlite file), promotion, type-through remainders,
clear, the runtime budget, and statistics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crucible.cache import tiered as tiered_module
from crucible.cache.disk import DiskCache
from crucible.cache.tiered import TieredCache
from crucible.completion.suggestion import Suggestion


def tiered(path: Path, memory_bytes: int = 1_000_000) -> TieredCache:
    disk = DiskCache(path, max_bytes=1_000_000, ttl_s=3600)
    return TieredCache(memory_bytes=memory_bytes, ttl_s=3600, disk=disk)


async def test_an_answer_is_found_in_memory_then_on_disk_after_a_restart(tmp_path: Path) -> None:
    first = tiered(tmp_path / "c.sqlite3")
    await first.open()
    first.store("k", Suggestion("return a + b", 1))
    assert await first.lookup("k") == Suggestion("return a + b", 1)
    await first.aclose()

    second = tiered(tmp_path / "c.sqlite3")
    await second.open()
    assert second.in_memory("k") is None
    assert await second.lookup("k") == Suggestion("return a + b", 1)  # from disk, promoted
    assert second.in_memory("k") == Suggestion("return a + b", 1)
    stats = second.stats()
    assert (stats["levels"]["l1"]["hits"], stats["levels"]["l2"]["hits"]) == (1, 1)
    assert await second.lookup("missing") is None
    assert second.stats()["misses"] == 1
    await second.aclose()


async def test_an_empty_answer_is_an_answer(tmp_path: Path) -> None:
    cache = tiered(tmp_path / "c.sqlite3")
    await cache.open()
    cache.store("k", Suggestion(""))
    assert await cache.lookup("k") == Suggestion("")
    await cache.aclose()


def test_answers_decode_only_from_what_encode_wrote() -> None:
    assert Suggestion.decode(Suggestion("x\n", 2).encode()) == Suggestion("x\n", 2)
    assert Suggestion.decode("not json") is None
    assert Suggestion.decode('{"text": 1}') is None
    assert Suggestion.decode("[1, 2]") is None


async def test_type_through_gives_the_remainder_with_the_same_replaced_suffix(
    tmp_path: Path,
) -> None:
    cache = TieredCache(memory_bytes=1_000_000, ttl_s=3600, disk=None)
    before, after = "foo(", ")\n"
    cache.shown("doc", len(before), before, after, Suggestion("a, b)", 1))
    text = before + "a, " + after
    assert cache.type_through("doc", text, len(before) + 3, after) == Suggestion("b)", 1)
    assert cache.stats()["type_through_hits"] == 1
    cache.forget("doc")
    assert cache.type_through("doc", text, len(before) + 3, after) is None


def test_type_through_over_an_auto_closed_bracket_replaces_it() -> None:
    cache = TieredCache(memory_bytes=1_000_000, ttl_s=3600, disk=None)
    cache.shown("doc", 0, "", "\n", Suggestion("call(a, b)"))
    text = "call(" + ")" + "\n"
    assert cache.type_through("doc", text, 5, ")\n") == Suggestion("a, b)", 1)


async def test_clear_empties_every_level(tmp_path: Path) -> None:
    cache = tiered(tmp_path / "c.sqlite3")
    await cache.open()
    cache.store("k", Suggestion("x"))
    cache.shown("doc", 0, "", "", Suggestion("x"))
    assert await cache.clear() == {"l1": 1, "type_through": 1, "l2": 1}
    assert await cache.lookup("k") is None
    await cache.aclose()


async def test_the_memory_budget_shrinks_and_restores_at_runtime(tmp_path: Path) -> None:
    cache = TieredCache(memory_bytes=100_000, ttl_s=3600, disk=None)
    for index in range(100):
        cache.store(f"key-{index}", Suggestion("x" * 200))
    full = cache.stats()["levels"]["l1"]
    assert full["bytes"] <= 100_000 and full["entries"] > 50
    cache.set_memory_budget(10_000)
    shrunk = cache.stats()["levels"]["l1"]
    assert shrunk["bytes"] <= 10_000 and shrunk["budget_bytes"] == 10_000
    assert cache.in_memory("key-99") is not None  # the most recent survive
    assert cache.in_memory("key-0") is None
    cache.restore_memory_budget()
    for index in range(100, 200):
        cache.store(f"key-{index}", Suggestion("x" * 200))
    assert cache.stats()["levels"]["l1"]["bytes"] > 10_000


async def test_a_large_shrink_yields_to_the_event_loop_between_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tiered_module, "_SHRINK_STEP", 100)
    cache = TieredCache(memory_bytes=4_000_000, ttl_s=3600, disk=None)
    for index in range(5_000):
        cache.store(f"key-{index}", Suggestion("x" * 200))
    assert cache.shrink_memory(3_900_000) is None  # a few evictions: done at once
    rest = cache.shrink_memory(400_000)
    assert rest is not None
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await rest
    other.cancel()
    levels = cache.stats()["levels"]["l1"]
    assert levels["bytes"] <= 400_000 and levels["entries"] > 100
    assert turns >= 10  # the loop ran other work between the steps
    assert cache.in_memory("key-4999") is not None and cache.in_memory("key-0") is None


async def test_without_a_disk_level_the_cache_still_works(tmp_path: Path) -> None:
    cache = TieredCache(memory_bytes=100_000, ttl_s=3600, disk=None)
    await cache.open()
    cache.store("k", Suggestion("x"))
    assert await cache.lookup("k") == Suggestion("x")
    assert cache.stats()["levels"]["l2"]["enabled"] is False
    await cache.aclose()


async def test_text_answers_live_beside_completions_under_their_own_keys(tmp_path: Path) -> None:
    first = tiered(tmp_path / "c.sqlite3")
    await first.open()
    first.store("k", Suggestion("return a + b"))
    first.store_text("hover:k", "an explanation")
    assert first.text_in_memory("hover:k") == "an explanation"
    # Neither kind is read as the other.
    assert first.in_memory("hover:k") is None
    assert first.text_in_memory("k") is None
    before = first.stats()
    assert await first.lookup_text("hover:k") == "an explanation"
    assert first.stats()["hits"] == before["hits"]  # completion counts stay completions'
    await first.aclose()

    second = tiered(tmp_path / "c.sqlite3")
    await second.open()
    assert second.text_in_memory("hover:k") is None
    assert await second.lookup_text("hover:k") == "an explanation"  # from disk, promoted
    assert second.text_in_memory("hover:k") == "an explanation"
    assert await second.lookup_text("hover:missing") is None
    await second.aclose()
