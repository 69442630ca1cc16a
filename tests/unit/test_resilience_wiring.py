"""What the composition root relies on: the policy built from ``[resilience]``, a pool that
shares its providers (and leaves closing them to its owner), and the queue-time hook."""

from __future__ import annotations

import asyncio

from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider

from crucible.config.settings import ResilienceSettings
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
    policy = policy_for(settings, fim_deadline_ms=3000, max_connections=16)
    assert (policy.fim_deadline, policy.fim_first_byte) == (3.0, 0.7)
    breaker = policy.breaker
    assert (breaker.consecutive_failures, breaker.failure_rate) == (3, 0.4)
    assert (breaker.cooldown, breaker.cooldown_cap) == (2.0, 20.0)
    assert (policy.retry.max_retries, policy.retry.budget_ratio) == (1, 0.1)
    assert policy.limiter.maximum == 6
    assert policy.hedging and not policy.probes


def test_the_defaults_are_the_researched_ones() -> None:
    policy = policy_for(ResilienceSettings(), fim_deadline_ms=3000, max_connections=8)
    assert policy == ResiliencePolicy()


def test_contradictions_are_reconciled_not_refused() -> None:
    settings = ResilienceSettings(
        first_byte_timeout_ms=9000, cooldown_ms=90_000, cooldown_max_ms=1000, max_concurrency=64
    )
    policy = policy_for(settings, fim_deadline_ms=2000, max_connections=2)
    assert policy.fim_first_byte == 2.0  # never past the request's own deadline
    assert policy.breaker.cooldown_cap == 90.0  # the cap rises to the cooldown
    # No more concurrency than the provider's connection pool, or requests queue in httpx.
    assert policy.limiter == LimiterPolicy(initial=2, maximum=2)


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
