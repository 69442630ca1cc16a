"""Slow providers on fake time: the first-byte allowance, warming, "slow" is not "failed",
and rejected credentials stopping calls.

A local model on a CPU takes seconds to process a new prompt and milliseconds for the same
prompt again (its prompt cache). These tests pin what the pool does for it: the last candidate
is never cut before the deadline, a provider cut for failover runs on to its first byte and is
judged by it, a known-slow provider is given its usual time, and an abandoned prompt the next
request shares is left to warm the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider

from crucible.providers.base import FimRequest
from crucible.providers.errors import AuthError, ProviderError
from crucible.resilience.errors import DeadlineExceeded, NoProviderAvailable
from crucible.resilience.member import Health, Member
from crucible.resilience.policy import ResiliencePolicy, RetryPolicy
from crucible.resilience.pool import ProviderPool

FIM = FimRequest(prefix="def f(", suffix="", language_id="python", path="a.py")
SLOW = Reply(("S",), first_byte=2.5)  # a cold prompt on a CPU model
HANG = Reply(chunks=(), hang=True)


def make_pool(
    time: FakeTime, *members: tuple[ScriptedProvider, int], **options: Any
) -> ProviderPool:
    listeners = {k: options.pop(k) for k in ("on_outcome", "on_activity") if k in options}
    options.setdefault("probes", False)
    options.setdefault("retry", RetryPolicy(budget_min_per_second=100.0))
    return ProviderPool(
        list(members),
        ResiliencePolicy(fim_deadline=4.0, **options),
        clock=time.clock,
        sleep=time.sleep,
        random=lambda: 0.5,
        **listeners,
    )


async def collect(time: FakeTime, stream: AsyncGenerator[str, None]) -> list[str]:
    async def drain() -> list[str]:
        return [chunk async for chunk in stream]

    return await time.run(drain())


def snapshot(pool: ProviderPool, name: str) -> Any:
    return next(m for m in pool.snapshot() if m.name == name)


async def test_a_sole_slow_provider_is_waited_for_until_the_deadline() -> None:
    time = FakeTime()
    local = ScriptedProvider("local", time, SLOW)
    pool = make_pool(time, (local, 0))
    assert await collect(time, pool.stream_fim(FIM)) == ["S"]
    assert time.now - 1000.0 == pytest.approx(
        2.5
    )  # past the 1.5 s cut-off: nothing to fail over to
    snap = snapshot(pool, "local")
    assert (snap.state, snap.failures, snap.consecutive_failures) == ("closed", 0, 0)
    assert snap.health is Health.SLOW  # first byte p50 2.5 s > the 1.5 s cut-off
    assert snap.first_byte_p50_ms == pytest.approx(2500.0)


async def test_a_slow_provider_never_trips_its_breaker() -> None:
    time = FakeTime()
    local = ScriptedProvider("local", time, SLOW)
    pool = make_pool(time, (local, 0))
    for _ in range(12):  # more than the threshold (5) and the rate window's minimum (10)
        assert await collect(time, pool.stream_fim(FIM)) == ["S"]
    snap = snapshot(pool, "local")
    assert (snap.state, snap.trips, snap.failures) == ("closed", 0, 0)


async def test_a_slow_primary_cut_for_failover_is_judged_slow_not_failed() -> None:
    time = FakeTime()
    local = ScriptedProvider("local", time, SLOW)
    hosted = ScriptedProvider("hosted", time, Reply(("H",), first_byte=0.1))
    pool = make_pool(time, (local, 0), (hosted, 1))
    assert await collect(time, pool.stream_fim(FIM)) == ["H"]
    assert time.now - 1000.0 == pytest.approx(1.6)  # cut at 1.5 s, then the fallback's 0.1 s
    assert local.endings() == ["open"]  # still processing its prompt
    await time.advance(1.0)  # its first byte at 2.5 s
    assert local.endings() == ["closed"]  # closed right after it: the prompt cache is warm
    snap = snapshot(pool, "local")
    assert (snap.failures, snap.consecutive_failures, snap.in_flight, snap.warming) == (0, 0, 0, 0)
    assert snap.first_byte_p50_ms == pytest.approx(2500.0)


async def test_a_provider_known_to_be_slow_gets_twice_its_usual_time() -> None:
    time = FakeTime()
    local = ScriptedProvider("local", time, SLOW)
    hosted = ScriptedProvider("hosted", time, Reply(("H",), first_byte=0.1))
    pool = make_pool(time, (local, 0), (hosted, 1))
    for _ in range(3):  # three cold samples (first_byte_min_samples)
        assert await collect(time, pool.stream_fim(FIM)) == ["H"]
        await time.advance(2.0)
    # Allowance max(1.5, 2 x p95 2.5) = 5 s, within the 4 s deadline: the primary is waited for.
    assert await collect(time, pool.stream_fim(FIM)) == ["S"]
    assert len(hosted.calls) == 3


async def test_a_hung_primary_with_a_fallback_is_cut_at_the_configured_time() -> None:
    time = FakeTime()
    hung = ScriptedProvider("hung", time, HANG)
    hosted = ScriptedProvider("hosted", time, Reply(("H",)))
    pool = make_pool(time, (hung, 0), (hosted, 1), fim_first_byte=0.5)
    assert await collect(time, pool.stream_fim(FIM)) == ["H"]
    assert time.now - 1000.0 == pytest.approx(0.5)


async def test_hung_attempts_trip_the_breaker_when_their_warming_ends() -> None:
    time = FakeTime()
    hung = ScriptedProvider("hung", time, HANG)
    hosted = ScriptedProvider("hosted", time, Reply(("H",)))
    pool = make_pool(time, (hung, 0), (hosted, 1))
    for _ in range(3):
        assert await collect(time, pool.stream_fim(FIM)) == ["H"]
    # One warming at a time: the later cut attempts are closed at once, with no verdict,
    # so they do not queue on the server behind the first.
    assert hung.endings() == ["open", "cancelled", "cancelled"]
    assert (snapshot(pool, "hung").warming, snapshot(pool, "hung").failures) == (1, 0)
    await time.advance(15.0)
    assert snapshot(pool, "hung").failures == 1  # NoFirstByte: the warming ran out
    for _ in range(4):
        assert await collect(time, pool.stream_fim(FIM)) == ["H"]
        await time.advance(15.0)
    snap = snapshot(pool, "hung")
    assert (snap.state, snap.failures, snap.warming, snap.in_flight) == ("open", 5, 0, 0)
    assert snap.last_error == "NoFirstByte"
    assert snap.health is Health.OFFLINE


async def test_only_one_abandoned_prompt_warms_at_a_time() -> None:
    time = FakeTime()
    local = ScriptedProvider("local", time, Reply(("S",), first_byte=5.0))
    pool = make_pool(time, (local, 0))

    async def abandon_three() -> None:
        for _ in range(3):
            stream = pool.stream_fim(FIM, warm=lambda: True)
            task = asyncio.ensure_future(anext(stream))
            await time.sleep(0.5)
            task.cancel()
            await asyncio.wait((task,))

    await time.run(abandon_three())
    assert local.endings() == ["open", "cancelled", "cancelled"]
    assert snapshot(pool, "local").warming == 1


async def test_an_abandoned_prompt_runs_on_to_its_first_byte_when_asked_to_warm() -> None:
    time = FakeTime()
    local = ScriptedProvider("local", time, SLOW)
    pool = make_pool(time, (local, 0))

    async def leave_after(seconds: float, warm: bool) -> None:
        stream = pool.stream_fim(FIM, warm=lambda: warm)
        task = asyncio.ensure_future(anext(stream))
        await time.sleep(seconds)
        task.cancel()
        await asyncio.wait((task,))

    await time.run(leave_after(1.0, warm=False))
    assert local.endings() == ["cancelled"]  # not shared by anything newer: cut at once

    await time.run(leave_after(1.0, warm=True))
    assert local.endings()[1] == "open"
    await time.advance(1.5)
    assert local.endings()[1] == "closed"  # the first byte came, then it was closed
    snap = snapshot(pool, "local")
    assert (snap.failures, snap.in_flight, snap.first_byte_p50_ms) == (0, 0, 2500.0)


async def test_the_next_request_waits_for_the_warming_prompt_instead_of_starting_over() -> None:
    time = FakeTime()
    # One slot, as Ollama and a default llama.cpp server have: the new request queues behind
    # the prompt being processed, and that prompt's cache makes the new one fast.
    local = ScriptedProvider("local", time, [SLOW, Reply(("W",), first_byte=0.05)])
    pool = make_pool(time, (local, 0), limiter=_one_slot())

    async def supersede() -> list[str]:
        old = pool.stream_fim(FIM, warm=lambda: True)
        first = asyncio.ensure_future(anext(old))
        await time.sleep(1.0)
        first.cancel()
        await asyncio.wait((first,))
        return [chunk async for chunk in pool.stream_fim(FIM)]

    assert await time.run(supersede()) == ["W"]
    assert time.now - 1000.0 == pytest.approx(2.55)  # 2.5 s (one prompt), not 1.0 + 2.5
    assert local.endings() == ["closed", "completed"]


async def test_the_deadline_passing_before_a_first_byte_lets_the_prompt_finish() -> None:
    time = FakeTime()
    cold = ScriptedProvider("cold", time, Reply(("C",), first_byte=6.0))
    pool = make_pool(time, (cold, 0))
    with pytest.raises(DeadlineExceeded):
        await collect(time, pool.stream_fim(FIM))
    assert snapshot(pool, "cold").health is Health.READY  # no verdict yet
    await time.advance(2.0)
    snap = snapshot(pool, "cold")
    assert (snap.failures, snap.first_byte_p50_ms) == (0, 6000.0)
    assert cold.endings() == ["closed"]


async def test_rejected_credentials_stop_calls_until_the_configuration_changes() -> None:
    time = FakeTime()
    outcomes: list[tuple[str, str | None]] = []

    def on_outcome(member: Member, error: ProviderError | None) -> None:
        outcomes.append((member.name, type(error).__name__ if error else None))

    hosted = ScriptedProvider("hosted", time, Reply((), error=AuthError("hosted", "HTTP 401")))
    pool = make_pool(time, (hosted, 0), on_outcome=on_outcome)
    with pytest.raises(AuthError):
        await collect(time, pool.stream_fim(FIM))
    for _ in range(3):
        with pytest.raises(NoProviderAvailable):
            await collect(time, pool.stream_fim(FIM))
        await time.advance(120.0)  # longer than any cooldown: still no call
    assert len(hosted.calls) == 1
    snap = snapshot(pool, "hosted")
    assert snap.health is Health.DISABLED and "401" in snap.disabled
    assert outcomes == [("hosted", "AuthError")]
    pool.enable_all()
    with pytest.raises(AuthError):
        await collect(time, pool.stream_fim(FIM))
    assert len(hosted.calls) == 2


async def test_activity_counts_the_requests_a_user_waits_for() -> None:
    time = FakeTime()
    seen: list[int] = []
    local = ScriptedProvider("local", time, Reply(("A",), first_byte=0.2))
    pool = make_pool(time, (local, 0), on_activity=seen.append)
    assert await collect(time, pool.stream_fim(FIM)) == ["A"]
    assert await collect(time, pool.stream_fim(FIM, background=True)) == ["A"]  # prefetch
    assert seen == [1, 0]


def _one_slot() -> Any:
    from crucible.resilience.policy import LimiterPolicy

    return LimiterPolicy(initial=1, minimum=1, maximum=1)


async def test_a_fast_provider_gone_silent_has_failed_at_once() -> None:
    time = FakeTime()
    # Known to answer in 0.1 s, then silent: 1.5 s is 15 times its usual, not "slow".
    primary = ScriptedProvider("primary", time, [Reply(("P",), first_byte=0.1), HANG])
    fallback = ScriptedProvider("fallback", time, Reply(("F",)))
    pool = make_pool(time, (primary, 0), (fallback, 1))
    assert await collect(time, pool.stream_fim(FIM)) == ["P"]
    assert await collect(time, pool.stream_fim(FIM)) == ["F"]
    assert primary.endings() == ["completed", "cancelled"]  # closed at once, not warming
    snap = snapshot(pool, "primary")
    assert (snap.failures, snap.last_error, snap.warming, snap.in_flight) == (
        1,
        "FirstByteTimeout",
        0,
        0,
    )
