"""RedisLink against a real redis-server: a call within its budget, a Redis stopped, paused
or unreachable (the breaker stops asking), the library missing, the password from the
environment and never shown."""

from __future__ import annotations

import asyncio
import importlib
import shutil
import tempfile
from pathlib import Path

import pytest
from tests.redis_server import MISSING_REASON, REDIS_SERVER, RedisServer

from crucible.runtime.samples import RecentSamples
from crucible.team.redis_link import (
    LinkScript,
    LinkState,
    RedisLink,
    RedisUnavailable,
    TeamRedis,
    latency_ms,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_latency_block_is_p50_and_p99_in_ms_none_before_a_round_trip() -> None:
    """The one ``latency_ms`` block of the link's status and of L3's (``cache/team.py``)."""
    round_trips = RecentSamples(256)
    assert latency_ms(round_trips) == {"p50": None, "p99": None}
    for seconds in [0.0001234] * 98 + [0.002, 0.0456789]:
        round_trips.add(seconds)
    assert latency_ms(round_trips) == {"p50": 0.123, "p99": 2.0}


async def _up(server: RedisServer, **kwargs: object) -> RedisLink:
    link = RedisLink(TeamRedis(server.url, "", "team-a"), {}, **kwargs)  # type: ignore[arg-type]
    await link.warm()
    assert link.state is LinkState.UP
    return link


async def test_a_call_within_its_budget_reaches_redis(redis_server: RedisServer) -> None:
    link = await _up(redis_server)
    key = link.key("test", "k")
    assert key == "crucible:team-a:test:k"
    await link.run(lambda r: r.set(key, b"v"), budget_s=1.0, what="set")
    assert await link.run(lambda r: r.get(key), budget_s=1.0, what="get") == b"v"
    status = link.status()
    assert status["calls"] == 3 and status["failures"] == 0  # warm() pings once
    assert status["latency_ms"]["p50"] is not None
    await link.aclose()
    assert link.state is LinkState.CLOSED


async def _script_loads(link: RedisLink) -> int:
    """How many SCRIPT commands (LOAD, FLUSH, EXISTS) Redis has served."""
    stats = await link.run(lambda r: r.info("commandstats"), budget_s=1.0, what="info")
    # "cmdstat_script" before Redis 7, "cmdstat_script|load" … since.
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_script"))


async def test_a_script_loaded_ahead_costs_its_first_call_one_evalsha_and_survives_a_flush(
    redis_server: RedisServer,
) -> None:
    link = await _up(redis_server)
    script = LinkScript(link, "return ARGV[1] .. KEYS[1]")
    try:
        await script.load(budget_s=1.0, what="load")
        loads = await _script_loads(link)
        assert loads >= 1
        assert await script.run(["k"], ["v"], bytes, budget_s=1.0, what="run") == b"vk"
        assert await _script_loads(link) == loads  # EVALSHA found it: no SCRIPT LOAD again
        await link.run(lambda r: r.script_flush(), budget_s=1.0, what="flush")
        # NOSCRIPT (a restarted or flushed Redis): loaded again and run, not a failure.
        assert await script.run(["k2"], ["w"], bytes, budget_s=1.0, what="run") == b"wk2"
        assert link.failures == 0
    finally:
        await link.aclose()


async def test_a_script_not_loaded_ahead_runs_on_its_first_call_and_its_reply_is_read(
    redis_server: RedisServer,
) -> None:
    link = await _up(redis_server)
    try:
        script = LinkScript(link, "return 7")
        assert await script.run([], [], int, budget_s=1.0, what="run") == 7
        # A reply its reader cannot read is garbage: the link's failure, not the caller's.
        garbage = LinkScript(link, "return 'not a number'")
        with pytest.raises(RedisUnavailable):
            await garbage.run([], [], int, budget_s=1.0, what="run")
        assert link.failures == 1
    finally:
        await link.aclose()


async def test_a_redis_stopped_opens_the_breaker_and_is_not_asked(
    redis_server: RedisServer,
) -> None:
    clock = FakeClock()
    link = await _up(redis_server, clock=clock)
    changes: list[LinkState] = []
    link.add_listener(lambda state, reason: changes.append(state))
    redis_server.stop()
    for _ in range(3):
        with pytest.raises(RedisUnavailable):
            await link.run(lambda r: r.get("x"), budget_s=0.5, what="get")
    assert link.state is LinkState.DOWN and changes == [LinkState.DOWN]
    assert link.status()["reason"]
    calls = link.calls
    with pytest.raises(RedisUnavailable):
        await link.run(lambda r: r.get("x"), budget_s=0.5, what="get")
    assert link.calls == calls and link.skipped == 1  # not asked while open

    redis_server.start()
    clock.now += 10  # past the first cooldown (5 s ± 10 %)
    assert await link.run(lambda r: r.ping(), budget_s=1.0, what="ping")
    assert link.state is LinkState.UP and changes == [LinkState.DOWN, LinkState.UP]
    await link.aclose()


async def test_a_paused_redis_costs_the_budget_not_more(redis_server: RedisServer) -> None:
    link = await _up(redis_server)
    redis_server.command("CLIENT", "PAUSE", "2000", "ALL")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RedisUnavailable):
        await link.run(lambda r: r.get("x"), budget_s=0.02, what="get")
    assert loop.time() - started < 1.0  # a behaviour bound (the pause is 2 s), not a timing
    assert link.timeouts == 1
    await link.aclose()


async def test_a_call_past_its_budget_is_left_to_finish_on_its_connection(
    redis_server: RedisServer,
) -> None:
    link = await _up(redis_server)
    first = await link.run(lambda r: r.client_id(), budget_s=1.0, what="id")
    redis_server.command("CLIENT", "PAUSE", "300", "ALL")
    with pytest.raises(RedisUnavailable):
        await link.run(lambda r: r.get("x"), budget_s=0.02, what="get")
    assert link.timeouts == 1 and link.held == 1
    await asyncio.sleep(0.6)  # the pause ends; the call left running gets its answer
    # The same connection: not dropped mid-reply, so no new handshake for the next call.
    assert await link.run(lambda r: r.client_id(), budget_s=1.0, what="id") == first
    await link.aclose()


async def test_without_the_library_the_link_says_so_once(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.import_module

    def without_redis(name: str, package: str | None = None) -> object:
        if name.startswith("redis"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_redis)
    link = RedisLink(TeamRedis(redis_server.url, "", "t"), {})
    changes: list[tuple[LinkState, str]] = []
    link.add_listener(lambda state, reason: changes.append((state, reason)))
    await link.warm()
    assert link.state is LinkState.MISSING and not link.enabled
    assert len(changes) == 1 and "crucible-lsp[team]" in changes[0][1]
    with pytest.raises(RedisUnavailable):
        await link.run(lambda r: r.ping(), budget_s=1.0, what="ping")


async def test_the_password_comes_from_the_environment_and_is_never_shown() -> None:
    if REDIS_SERVER is None:
        pytest.skip(MISSING_REASON)
    directory = Path(tempfile.mkdtemp(prefix="crucible-redis-"))
    server = RedisServer(directory, password="s3cret-team-pw")
    server.start()
    try:
        target = TeamRedis(server.url, "TEAM_REDIS_PW", "t")
        wrong = RedisLink(target, {"TEAM_REDIS_PW": "nope"})
        await wrong.warm()
        with pytest.raises(RedisUnavailable):
            await wrong.run(lambda r: r.ping(), budget_s=1.0, what="ping")
        assert "s3cret" not in repr(wrong.status()) and "nope" not in repr(wrong.status())
        await wrong.aclose()

        right = RedisLink(target, {"TEAM_REDIS_PW": "s3cret-team-pw"})
        await right.warm()
        assert await right.run(lambda r: r.ping(), budget_s=1.0, what="ping")
        assert "s3cret" not in repr(right.status())
        await right.aclose()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
