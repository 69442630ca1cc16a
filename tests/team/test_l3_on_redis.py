"""L3 (``cache/team.py``) in the tiered cache, against a real redis-server: a stored answer
found by another cache, the format checked on read (garbage ignored and counted), TTL, the
size budget trimming the oldest, and a Redis flushed, full, slowed or stopped: the lookup is a
miss (the provider is asked), never an error or a wait past the budget."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from tests.redis_server import RedisServer

from crucible.cache.team import FORMAT_VERSION, TeamCache, pack
from crucible.cache.tiered import TieredCache
from crucible.completion.suggestion import Suggestion
from crucible.team.redis_link import LinkState, RedisLink, TeamRedis

KEY = "0123456789abcdef0123456789abcdef"  # a completion key: a hex digest


async def _team(
    server: RedisServer, *, ttl_s: float = 60, max_bytes: int = 1 << 20, timeout_s: float = 0.05
) -> TeamCache:
    link = RedisLink(TeamRedis(server.url, "", "team-a"), {})
    await link.warm()
    assert link.state is LinkState.UP
    return TeamCache(link, timeout_s=timeout_s, ttl_s=ttl_s, max_bytes=max_bytes)


def _tiered(team: TeamCache) -> TieredCache:
    return TieredCache(memory_bytes=1 << 20, ttl_s=60, disk=None, team=team)


async def _close(*teams: TeamCache) -> None:
    for team in teams:
        await team.aclose()
        await team.link.aclose()


async def test_an_answer_stored_by_one_cache_is_found_by_another(
    redis_server: RedisServer,
) -> None:
    first, second = await _team(redis_server), await _team(redis_server)
    writer, reader = _tiered(first), _tiered(second)
    writer.store(KEY, Suggestion("return a + b", 1))
    await first.flush()
    assert first.counts["writes"] == 1

    # The key is the namespaced digest: no code, no path.
    assert redis_server.command("EXISTS", f"crucible:team-a:l3:{KEY}") == b":1\r\n"
    assert await reader.lookup(KEY) == Suggestion("return a + b", 1)
    stats = reader.stats()
    assert stats["levels"]["l3"]["hits"] == 1 and stats["hits"] == 1
    assert stats["levels"]["l3"]["hit_rate"] == 1.0
    assert stats["levels"]["l3"]["latency_ms"]["p50"] is not None
    # Copied into L1: the next lookup does not ask Redis.
    assert reader.in_memory(KEY) == Suggestion("return a + b", 1)
    assert await reader.lookup("f" * 32) is None
    assert reader.stats()["misses"] == 1 and second.counts["misses"] == 1
    await _close(first, second)


async def test_garbage_under_a_key_is_ignored_and_counted(redis_server: RedisServer) -> None:
    team = await _team(redis_server)
    cache = _tiered(team)
    redis_key = team.redis_key(KEY)
    other_version = bytearray(pack(redis_key, Suggestion("old format")))
    other_version[4] = FORMAT_VERSION + 1
    corrupt = bytearray(pack(redis_key, Suggestion("flipped")))
    corrupt[-2] ^= 0x20
    values = [
        bytes(other_version),
        bytes(corrupt),
        pack(team.redis_key("e" * 32), Suggestion("another key's answer")),
        b"\x00\xffrandom bytes",
        b"",
    ]
    for value in values:
        await team.link.run(lambda r, v=value: r.set(redis_key, v), budget_s=1, what="set")
        assert await cache.lookup(KEY) is None
    assert team.counts["garbage"] == len(values) and team.counts["hits"] == 0
    assert cache.stats()["misses"] == len(values)
    await _close(team)


async def test_answers_expire_after_the_ttl(redis_server: RedisServer) -> None:
    team = await _team(redis_server, ttl_s=1)
    team.put(KEY, Suggestion("x = 1"))
    await team.flush()
    pttl = int(redis_server.command("PTTL", team.redis_key(KEY))[1:-2])
    assert 0 < pttl <= 1000
    await asyncio.sleep(1.1)  # Redis' own clock expires it
    assert redis_server.command("EXISTS", team.redis_key(KEY)) == b":0\r\n"
    assert await team.get(KEY) is None and team.counts["misses"] == 1
    await _close(team)


async def test_the_size_budget_trims_the_oldest_answers(redis_server: RedisServer) -> None:
    one = len(pack("crucible:team-a:l3:" + KEY, Suggestion("y" * 200))) + 2 * 32 + 19 + 64 + 32
    team = await _team(redis_server, max_bytes=3 * one)
    keys = [f"{n:032x}" for n in range(6)]
    for key in keys:
        team.put(key, Suggestion("y" * 200))
        await team.flush()
    present = [redis_server.command("EXISTS", team.redis_key(k)) == b":1\r\n" for k in keys]
    assert present == [False, False, False, True, True, True]
    assert team.counts["trimmed"] == 3
    total = int(redis_server.command("GET", "crucible:team-a:l3-bytes").split(b"\r\n")[1])
    assert 0 < total <= 3 * one
    assert redis_server.command("ZCARD", "crucible:team-a:l3-index") == b":3\r\n"
    await _close(team)


async def test_a_flushed_redis_is_a_miss_then_filled_again(redis_server: RedisServer) -> None:
    team = await _team(redis_server)
    cache = _tiered(team)
    cache.store(KEY, Suggestion("kept"))
    await team.flush()
    redis_server.command("FLUSHALL")
    other = _tiered(team)  # a fresh L1: only L3 could answer
    assert await other.lookup(KEY) is None
    other.store(KEY, Suggestion("kept"))  # the provider answered again
    await team.flush()
    assert await _tiered(team).lookup(KEY) == Suggestion("kept")
    assert redis_server.command("ZCARD", "crucible:team-a:l3-index") == b":1\r\n"
    await _close(team)


async def test_a_full_redis_refuses_writes_and_lookups_go_on(redis_server: RedisServer) -> None:
    team = await _team(redis_server)
    team.put(KEY, Suggestion("stored before it filled up"))
    await team.flush()
    redis_server.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
    redis_server.command("CONFIG", "SET", "maxmemory", "1")
    for n in range(4):
        team.put(f"{n:032x}", Suggestion("z"))
    await team.flush()
    assert team.counts["write_errors"] == 4 and team.counts["writes"] == 1
    # Redis answered (OOM): it is up, and reads still work.
    assert team.link.state is LinkState.UP and team.link.refused == 4
    assert await team.get(KEY) == Suggestion("stored before it filled up")
    await _close(team)


async def test_a_slow_redis_costs_the_budget_and_counts_a_timeout(
    redis_server: RedisServer,
) -> None:
    team = await _team(redis_server, timeout_s=0.02)
    cache = _tiered(team)
    redis_server.command("CLIENT", "PAUSE", "20000", "ALL")
    started = time.monotonic()
    assert await cache.lookup(KEY) is None
    # A behaviour bound: waiting for Redis would take the rest of its 20 s pause, the 20 ms
    # budget a few milliseconds (more under load); half-way between the two.
    assert time.monotonic() - started < 10.0
    assert team.counts["timeouts"] == 1 and cache.stats()["misses"] == 1
    await _close(team)


async def test_a_stopped_redis_is_a_miss_and_then_not_asked(redis_server: RedisServer) -> None:
    team = await _team(redis_server)
    cache = _tiered(team)
    redis_server.stop()
    for n in range(5):
        assert await cache.lookup(f"{n:032x}") is None
    assert team.link.state is LinkState.DOWN
    assert team.counts["errors"] + team.counts["timeouts"] == 3  # the breaker opened
    assert team.counts["skipped"] == 2
    cache.store(KEY, Suggestion("only here"))  # kept in L1; the write is not attempted
    await team.flush()
    assert team.counts["write_errors"] == 1
    assert cache.in_memory(KEY) == Suggestion("only here")
    stats = cache.stats()["levels"]["l3"]
    assert stats["state"] == "down" and stats["reason"]
    await _close(team)


async def test_a_full_write_queue_drops_and_counts(redis_server: RedisServer) -> None:
    team = await _team(redis_server)
    small = TeamCache(team.link, timeout_s=0.05, ttl_s=60, max_bytes=1 << 20, queue=2)
    for n in range(5):  # queued in one loop turn: the writer has not run yet
        small.put(f"{n:032x}", Suggestion("q"))
    assert small.counts["dropped_writes"] == 3
    await small.flush()
    assert small.counts["writes"] == 2
    await _close(small)


async def test_a_writer_that_fails_is_logged_not_lost(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = await _team(redis_server)

    def broken(redis_key: str, answer: Suggestion) -> bytes:
        raise ValueError("a bug in the writer")

    monkeypatch.setattr("crucible.cache.team.pack", broken)
    team.put(KEY, Suggestion("never written"))
    assert team.background_tasks() == 1
    await team.flush()
    assert team.background_tasks() == 0
    failed = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("write to the team cache" in m and "a bug in the writer" in m for m in failed)
    await _close(team)
