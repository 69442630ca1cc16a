"""What the composition root relies on: the policy built from ``[resilience]``, a pool that
shares its providers (and leaves closing them to its owner), and the queue-time hook."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider

from crucible.app import App
from crucible.config.settings import (
    CompletionSettings,
    ProviderSettings,
    ResilienceConstants,
    ResilienceSettings,
    Role,
    Settings,
)
from crucible.providers.base import FimRequest
from crucible.resilience.policy import LimiterPolicy, ResiliencePolicy, policy_for
from crucible.resilience.pool import ProviderPool

FIM = FimRequest(prefix="def f(", suffix="", language_id="python", path="a.py")


def test_the_policy_follows_the_settings() -> None:
    settings = ResilienceSettings(
        first_byte_timeout_ms=700,
        failure_threshold=3,
        failure_rate=0.4,
        cooldown_ms=2000,
        cooldown_max_ms=20_000,
        hedging=True,
        max_retries=1,
        retry_budget=0.1,
        max_concurrency=6,
        health_probes=False,
    )
    policy = policy_for(
        Settings(resilience=settings, completion=CompletionSettings(timeout_ms=3000))
    )
    assert (policy.fim_deadline, policy.fim_first_byte) == (3.0, 0.7)
    breaker = policy.breaker
    assert (breaker.consecutive_failures, breaker.failure_rate) == (3, 0.4)
    assert (breaker.cooldown, breaker.cooldown_cap) == (2.0, 20.0)
    assert (policy.retry.max_retries, policy.retry.budget_ratio) == (1, 0.1)
    assert policy.limiter.maximum == 6
    assert policy.hedging and not policy.probes


def test_the_defaults_are_the_researched_ones() -> None:
    # One source: the policy of default settings is the policy's own default, and both are
    # the numbers in config/settings.py (the test used to pass 3000 ms and 8 connections).
    policy = policy_for(Settings())
    assert policy == ResiliencePolicy()
    assert policy.fim_deadline == CompletionSettings().timeout_ms / 1000
    assert policy.fim_first_byte == ResilienceSettings().first_byte_timeout_ms / 1000
    assert policy.limiter.maximum == ResilienceSettings().max_concurrency
    assert policy.retry.budget_window == ResilienceConstants().budget_window_s


def app_with(tmp_path: Path, toml: str) -> App:
    config = tmp_path / "config.toml"
    config.write_text(toml)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return App(config_path=config, env=env)


def providers_status(app: App) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in app.status()["providers"]}


async def test_the_app_runs_the_policy_of_its_settings(tmp_path: Path) -> None:
    app = app_with(tmp_path, "")  # default settings: one local provider
    try:
        pool = app.pool(Role.COMPLETION)
        assert pool is not None
        # The completion deadline in force is completion.timeout_ms (4 s), not a 3 s of
        # resilience's own; the concurrency in force is the provider's max_connections (4)
        # under resilience.max_concurrency (8).
        assert pool.policy == policy_for(Settings())
        assert pool.policy.fim_deadline == 4.0
        (local,) = providers_status(app).values()
        assert local["concurrency_limit"] == ProviderSettings().max_connections == 4
    finally:
        await app.aclose()


async def test_each_provider_keeps_its_own_max_connections(tmp_path: Path) -> None:
    # A local Ollama at 1 used to hold a hosted provider at 16 down to 1 (the pool took the
    # smallest max_connections of its members).
    app = app_with(
        tmp_path,
        "[resilience]\nmax_concurrency = 64\n"
        '[[providers]]\nname = "local"\nmax_connections = 1\n'
        '[[providers]]\nname = "hosted"\nkind = "openai"\nbase_url = "https://api.example.com/v1"\n'
        'model = "m"\nmax_connections = 16\npriority = 1\n',
    )
    try:
        status = providers_status(app)
        assert status["local"]["concurrency_limit"] == 1
        assert status["hosted"]["concurrency_limit"] == 16
    finally:
        await app.aclose()


async def test_a_member_runs_as_many_streams_as_its_own_connections() -> None:
    time = FakeTime()
    local = ScriptedProvider("local", time, Reply(("l",), hang=True))
    hosted = ScriptedProvider("hosted", time, Reply(("h",), hang=True))
    policy = replace(
        policy_for(Settings(resilience=ResilienceSettings(max_concurrency=64))), probes=False
    )
    pool = ProviderPool(
        [(local, 0), (hosted, 1)],
        policy,
        clock=time.clock,
        sleep=time.sleep,
        max_connections={"local": 1, "hosted": 16},
    )
    streams = [pool.stream_fim(FIM, exclude={"local"}) for _ in range(17)]
    streams += [pool.stream_fim(FIM, exclude={"hosted"}) for _ in range(2)]
    reads = [asyncio.ensure_future(anext(stream)) for stream in streams]
    await time.settle()
    # Sixteen streams at once at the hosted provider (the 17th waits for a slot), one at the
    # local one (the second waits).
    assert (hosted.open_streams, local.open_streams) == (16, 1)
    assert sum(read.done() for read in reads) == 17
    for read in reads:
        read.cancel()
    await asyncio.wait(reads)
    for stream in streams:
        await stream.aclose()
    await pool.aclose()


def test_contradictions_are_reconciled_not_refused() -> None:
    settings = ResilienceSettings(
        first_byte_timeout_ms=9000, cooldown_ms=90_000, cooldown_max_ms=1000, max_concurrency=64
    )
    policy = policy_for(
        Settings(resilience=settings, completion=CompletionSettings(timeout_ms=2000))
    )
    assert policy.fim_first_byte == 2.0  # never past the request's own deadline
    assert policy.breaker.cooldown_cap == 90.0  # the cap rises to the cooldown
    # No more concurrency than the provider's connection pool, or requests queue in httpx.
    assert policy.limiter.for_connections(2) == LimiterPolicy(initial=2, maximum=2)


async def test_a_pool_that_does_not_own_its_providers_leaves_them_open() -> None:
    time = FakeTime()
    shared = ScriptedProvider("local", time)
    owned = ScriptedProvider("other", time)
    await ProviderPool([(shared, 0)], owns_providers=False).aclose()
    await ProviderPool([(owned, 0)]).aclose()
    assert not shared.closed
    assert owned.closed


async def test_queue_time_is_reported_per_attempt() -> None:
    time = FakeTime()
    slow = ScriptedProvider("local", time, Reply(chunks=("a", "b"), first_byte=1.0))
    waits: list[float] = []
    policy = ResiliencePolicy(limiter=LimiterPolicy(initial=1, maximum=1), probes=False)
    pool = ProviderPool(
        [(slow, 0)], policy, clock=time.clock, sleep=time.sleep, on_queued=waits.append
    )

    async def read() -> list[str]:
        return [chunk async for chunk in pool.stream_fim(FIM)]

    # Two requests, one slot: the second waits for the first to finish (1 s on fake time).
    results = await time.run(asyncio.gather(read(), read()))
    assert results == [["a", "b"], ["a", "b"]]
    assert waits == [0.0, 1.0]


async def test_excluded_members_are_not_asked() -> None:
    time = FakeTime()
    first = ScriptedProvider("first", time, Reply(chunks=("1",)))
    second = ScriptedProvider("second", time, Reply(chunks=("2",)))
    pool = ProviderPool([(first, 0), (second, 1)], ResiliencePolicy(probes=False))

    async def read(exclude: frozenset[str]) -> list[str]:
        return [chunk async for chunk in pool.stream_fim(FIM, exclude=exclude)]

    assert await time.run(read(frozenset())) == ["1"]
    assert await time.run(read(frozenset({"first"}))) == ["2"]
    assert (len(first.calls), len(second.calls)) == (1, 1)


async def test_each_role_has_a_pool_of_the_providers_that_serve_it(tmp_path: Path) -> None:
    app = app_with(
        tmp_path,
        '[[providers]]\nname = "fim"\nroles = ["completion"]\n'
        '[[providers]]\nname = "both"\nkind = "openai"\nbase_url = "https://api.example.com/v1"\n'
        'model = "m"\npriority = 1\n'
        '[[providers]]\nname = "talker"\nkind = "anthropic"\nmodel = "m"\nroles = ["chat"]\n',
    )
    try:
        completion, chat = app.pool(Role.COMPLETION), app.pool(Role.CHAT)
        assert completion is not None and chat is not None
        assert [m.name for m in completion.snapshot()] == ["fim", "both"]
        assert [m.name for m in chat.snapshot()] == ["talker", "both"]  # by priority
        # Every provider has a status entry, a chat-only one too.
        assert set(providers_status(app)) == {"fim", "both", "talker"}
    finally:
        await app.aclose()


async def test_no_chat_pool_without_a_chat_provider(tmp_path: Path) -> None:
    app = app_with(tmp_path, '[[providers]]\nname = "fim"\nroles = ["completion"]\n')
    try:
        assert app.pool(Role.CHAT) is None
        assert app.pool(Role.COMPLETION) is not None
    finally:
        await app.aclose()
