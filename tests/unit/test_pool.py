"""ProviderPool routing on fake time: tiers, latency, open circuits, failover, retries, deadlines.

Lifecycle behaviour (hedging, concurrency, probes, cancellation, status) is in
``test_pool_lifecycle.py``. Providers are :class:`tests.fakes.scripted.ScriptedProvider`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider

from crucible.providers.base import ChatMessage, ChatRequest, FimRequest, Provider
from crucible.providers.errors import (
    AuthError,
    BadRequest,
    BadResponse,
    ModelNotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from crucible.resilience.errors import DeadlineExceeded, NoFirstByte, NoProviderAvailable
from crucible.resilience.policy import BreakerPolicy, ResiliencePolicy, RetryPolicy
from crucible.resilience.pool import ProviderPool

FIM = FimRequest(prefix="def f(", suffix="", language_id="python", path="a.py")
CHAT = ChatRequest(messages=(ChatMessage("user", "why?"),))
DOWN = Reply(chunks=(), error=ProviderUnavailable("x", "HTTP 503"))
HANG = Reply(chunks=(), hang=True)
ROOMY = RetryPolicy(budget_min_per_second=100.0)  # budget out of the way unless tested


def make_pool(
    time: FakeTime, *members: tuple[ScriptedProvider, int], **policy: Any
) -> ProviderPool:
    policy.setdefault("probes", False)
    policy.setdefault("retry", ROOMY)
    policy.setdefault("fim_deadline", 3.0)  # the figures below are worked out for 3 s
    return ProviderPool(
        list(members),
        ResiliencePolicy(**policy),
        clock=time.clock,
        sleep=time.sleep,
        random=lambda: 0.5,
    )


async def collect(time: FakeTime, stream: AsyncGenerator[str, None]) -> list[str]:
    async def drain() -> list[str]:
        return [chunk async for chunk in stream]

    return await time.run(drain())


def member(pool: ProviderPool, name: str) -> Any:
    return next(m for m in pool.snapshot() if m.name == name)


async def test_name_and_model_follow_priority_order() -> None:
    time = FakeTime()
    b = ScriptedProvider("remote", time, model="big")
    a = ScriptedProvider("local", time, model="small")
    pool: Provider = make_pool(time, (b, 1), (a, 0))  # mypy: the pool is a Provider
    assert isinstance(pool, ProviderPool)
    assert (pool.name, pool.model) == ("local", "small")
    with pytest.raises(ValueError):
        make_pool(time)
    with pytest.raises(ValueError):
        make_pool(time, (a, 0), (ScriptedProvider("local", time), 1))
    with pytest.raises(ValueError):
        pool.stream_fim(FIM, timeout=0.0)


async def test_the_highest_priority_tier_serves_while_healthy() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, Reply(("A",)))
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (b, 1), (a, 0))
    for _ in range(3):
        assert await collect(time, pool.stream_fim(FIM)) == ["A"]
    assert (len(a.calls), len(b.calls)) == (3, 0)


async def test_fim_fails_over_to_the_next_tier_and_never_retries() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, DOWN)
    b = ScriptedProvider("b", time, Reply(("B",)))
    c = ScriptedProvider("c", time, Reply(("C",)))
    pool = make_pool(time, (a, 0), (b, 1), (c, 2))
    assert await collect(time, pool.stream_fim(FIM)) == ["B"]
    assert (len(a.calls), len(b.calls), len(c.calls)) == (1, 1, 0)
    assert time.now == 1000.0  # no backoff for inline completions
    snap = member(pool, "a")
    assert (snap.calls, snap.failures, snap.last_error) == (1, 1, "ProviderUnavailable")


async def test_within_a_tier_the_fastest_recent_first_byte_wins() -> None:
    time = FakeTime()
    slow = ScriptedProvider("slow", time, Reply(("S",), first_byte=0.5))
    fast = ScriptedProvider("fast", time, Reply(("F",), first_byte=0.1))
    faster_but_lower = ScriptedProvider("backup", time, Reply(("X",), first_byte=0.01))
    pool = make_pool(time, (slow, 0), (fast, 0), (faster_but_lower, 1))
    answers = [await collect(time, pool.stream_fim(FIM)) for _ in range(5)]
    # Each member of the tier is measured once (listed order), then the faster one serves.
    assert answers == [["S"], ["F"], ["F"], ["F"], ["F"]]
    assert len(faster_but_lower.calls) == 0


async def test_an_open_circuit_is_skipped_without_a_call() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, DOWN)
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1))
    for _ in range(8):
        assert await collect(time, pool.stream_fim(FIM)) == ["B"]
    assert len(a.calls) == 5  # the 5th consecutive failure opened it
    assert len(b.calls) == 8
    assert member(pool, "a").state == "open"


async def test_no_provider_available_when_every_circuit_is_open() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, DOWN)
    pool = make_pool(time, (a, 0))
    for _ in range(5):
        with pytest.raises(ProviderUnavailable):
            await collect(time, pool.stream_fim(FIM))
    with pytest.raises(NoProviderAvailable, match="a open"):
        await collect(time, pool.stream_fim(FIM))
    assert len(a.calls) == 5
    assert time.now == 1000.0  # fast fail


async def test_a_broken_stream_before_the_first_chunk_counts_and_fails_over() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, Reply(chunks=(), error=BadResponse("a", "malformed JSON")))
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1))
    assert await collect(time, pool.stream_fim(FIM)) == ["B"]
    snap = member(pool, "a")
    assert (snap.failures, snap.consecutive_failures, snap.last_error) == (1, 1, "BadResponse")


async def test_after_the_first_chunk_a_broken_stream_raises_to_the_caller() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, Reply(("x", "y"), error=BadResponse("a", "cut")))
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1))
    got: list[str] = []

    async def read() -> None:
        async for chunk in pool.stream_fim(FIM):
            got.append(chunk)

    with pytest.raises(BadResponse):
        await time.run(read())
    assert got == ["x", "y"]
    assert len(b.calls) == 0  # text already reached the caller: no failover
    assert member(pool, "a").consecutive_failures == 1
    assert member(pool, "a").in_flight == 0


async def test_an_empty_answer_is_a_success() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, Reply(chunks=()))
    b = ScriptedProvider("b", time)
    pool = make_pool(time, (a, 0), (b, 1))
    assert await collect(time, pool.stream_fim(FIM)) == []
    assert len(b.calls) == 0
    assert member(pool, "a").failures == 0


async def test_the_deadline_ends_a_dripping_stream_mid_way() -> None:
    time = FakeTime()
    drip = ScriptedProvider("drip", time, Reply(tuple(f"c{i}" for i in range(100)), gap=0.8))
    pool = make_pool(time, (drip, 0))
    got: list[str] = []

    async def read() -> None:
        async for chunk in pool.stream_fim(FIM):
            got.append(chunk)

    with pytest.raises(DeadlineExceeded, match="mid-stream"):
        await time.run(read())
    assert time.now - 1000.0 == pytest.approx(3.0)  # fim_deadline, not 100 x 0.8 s
    assert got == ["c0", "c1", "c2", "c3"]
    assert drip.endings() == ["cancelled"]
    assert drip.open_streams == 0
    snap = member(pool, "drip")
    assert (snap.failures, snap.in_flight) == (1, 0)


async def test_a_caller_timeout_replaces_the_policy_deadline() -> None:
    time = FakeTime()
    drip = ScriptedProvider("drip", time, Reply(tuple("abcdefgh"), gap=1.0))
    pool = make_pool(time, (drip, 0))
    with pytest.raises(DeadlineExceeded):
        await collect(time, pool.stream_chat(CHAT, timeout=2.5))
    assert time.now - 1000.0 == pytest.approx(2.5)


async def test_no_first_byte_in_time_fails_over() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, HANG)
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1))
    assert await collect(time, pool.stream_fim(FIM)) == ["B"]
    assert time.now - 1000.0 == pytest.approx(1.5)  # fim_first_byte
    # Cut for the request, not yet judged: it runs on (warming) with its slot...
    assert a.endings() == ["open"]
    snap = member(pool, "a")
    assert (snap.failures, snap.in_flight, snap.warming) == (0, 1, 1)
    # ...until warm_limit after it started, when no first byte means it failed.
    await time.advance(15.0)
    assert a.endings() == ["cancelled"]
    snap = member(pool, "a")
    assert (snap.failures, snap.last_error, snap.in_flight) == (1, "NoFirstByte", 0)
    assert snap.concurrency_limit == 3  # 4 x 0.9: a timeout is the slowest response


async def test_warming_attempts_cancelled_under_memory_pressure_close_with_no_verdict() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, HANG)
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1))
    assert await collect(time, pool.stream_fim(FIM)) == ["B"]
    assert member(pool, "a").warming == 1
    assert pool.cancel_warming() == 1
    await time.advance(0.0)
    assert a.endings() == ["cancelled"]
    snap = member(pool, "a")
    assert (snap.failures, snap.in_flight, snap.warming) == (0, 0, 0)
    assert pool.cancel_warming() == 0


async def test_a_sole_provider_that_never_answers_fails_once_its_warming_ends() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, HANG)
    pool = make_pool(time, (a, 0))
    with pytest.raises(DeadlineExceeded):
        await collect(time, pool.stream_fim(FIM, timeout=1.0))
    assert time.now - 1000.0 == pytest.approx(1.0)
    assert member(pool, "a").failures == 0  # maybe slow: the verdict waits for warming
    await time.advance(14.0)
    assert a.endings() == ["cancelled"]
    snap = member(pool, "a")
    assert (snap.failures, snap.consecutive_failures, snap.in_flight) == (1, 1, 0)


async def test_chat_retries_the_same_provider_with_full_jitter_backoff() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, [DOWN, DOWN, Reply(("A",))])
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1))
    assert await collect(time, pool.stream_chat(CHAT)) == ["A"]
    # random() = 0.5: retry 1 waits 0.5 x 0.1 s, retry 2 waits 0.5 x 0.2 s.
    starts = [call.started - 1000.0 for call in a.calls]
    assert starts == pytest.approx([0.0, 0.05, 0.15])
    assert len(b.calls) == 0


async def test_chat_fails_over_once_its_retries_are_spent() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, DOWN)
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1))
    assert await collect(time, pool.stream_chat(CHAT)) == ["B"]
    assert (len(a.calls), len(b.calls)) == (3, 1)  # 1 + max_retries 2


async def test_chat_honours_retry_after() -> None:
    time = FakeTime()
    limited = Reply(chunks=(), error=RateLimited("a", "HTTP 429", retry_after=1.5))
    a = ScriptedProvider("a", time, [limited, Reply(("A",))])
    pool = make_pool(time, (a, 0))
    assert await collect(time, pool.stream_chat(CHAT)) == ["A"]
    assert a.calls[1].started - a.calls[0].started == pytest.approx(1.5)
    assert member(pool, "a").concurrency_limit == 2  # a 429 halves the limit


async def test_a_retry_after_over_the_cap_parks_the_provider_and_fails_over() -> None:
    time = FakeTime()
    limited = Reply(chunks=(), error=RateLimited("a", "HTTP 429", retry_after=30.0))
    a = ScriptedProvider("a", time, [limited, Reply(("A",))])
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1))
    assert await collect(time, pool.stream_chat(CHAT)) == ["B"]
    assert time.now == 1000.0  # no 30 s wait
    assert member(pool, "a").parked_remaining_s == pytest.approx(30.0)
    assert await collect(time, pool.stream_fim(FIM)) == ["B"]  # still parked
    assert len(a.calls) == 1
    await time.advance(30.0)
    assert await collect(time, pool.stream_fim(FIM)) == ["A"]


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (BadRequest("a", "HTTP 400"), 0),
        (AuthError("a", "HTTP 401"), 1),
        (AuthError("a", "HTTP 403"), 1),
        (ModelNotFound("a", "HTTP 404"), 1),
    ],
)
async def test_chat_never_retries_a_4xx_that_will_not_change(
    error: ProviderError, counts: int
) -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, Reply(chunks=(), error=error))
    pool = make_pool(time, (a, 0))
    with pytest.raises(type(error)):
        await collect(time, pool.stream_chat(CHAT))
    assert len(a.calls) == 1
    assert time.now == 1000.0
    # A bad request says nothing about the provider's health; a bad key or model does.
    assert member(pool, "a").consecutive_failures == counts


async def test_the_retry_budget_stops_a_retry_storm() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, DOWN)
    b = ScriptedProvider("b", time, DOWN)
    never_trips = BreakerPolicy(consecutive_failures=1000, window_size=1000, minimum_calls=1000)
    pool = make_pool(time, (a, 0), (b, 1), breaker=never_trips, retry=RetryPolicy())
    for _ in range(10):
        with pytest.raises(ProviderUnavailable):
            await collect(time, pool.stream_chat(CHAT))
    # Unbudgeted, each request would make 3 attempts on each provider (60 in all). The budget,
    # 20 % of 10 requests + a floor of 0.3/s x 10 s, allows 5 retries; failing over to a
    # provider the request has not tried yet is free.
    assert len(a.calls) + len(b.calls) == 2 * 10 + 5
    assert (len(a.calls), len(b.calls)) == (14, 11)
    await time.advance(10.0)  # the window slides: retries are allowed again
    with pytest.raises(ProviderUnavailable):
        await collect(time, pool.stream_chat(CHAT))
    assert (len(a.calls), len(b.calls)) == (17, 13)


async def test_failover_to_an_untried_provider_needs_no_budget() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, DOWN)
    b = ScriptedProvider("b", time, Reply(("B",)))
    no_retries = RetryPolicy(budget_ratio=0.0, budget_min_per_second=0.0)
    pool = make_pool(time, (a, 0), (b, 1), retry=no_retries)
    for _ in range(3):
        assert await collect(time, pool.stream_fim(FIM)) == ["B"]
        assert await collect(time, pool.stream_chat(CHAT)) == ["B"]  # no retry of a: failover
    assert (len(a.calls), len(b.calls)) == (5, 6)  # a's circuit opened at its 5th failure


async def test_the_budget_also_caps_chat_retries() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, DOWN)
    budget = RetryPolicy(budget_ratio=0.0, budget_min_per_second=0.1)  # 1 retry per 10 s
    pool = make_pool(time, (a, 0), retry=budget)
    with pytest.raises(ProviderUnavailable):
        await collect(time, pool.stream_chat(CHAT))
    assert len(a.calls) == 2  # not 3


async def test_chat_gives_up_on_backoff_that_would_pass_the_deadline() -> None:
    time = FakeTime()
    limited = Reply(chunks=(), error=RateLimited("a", "HTTP 429", retry_after=5.0))
    a = ScriptedProvider("a", time, limited)
    pool = make_pool(time, (a, 0))
    with pytest.raises(RateLimited):
        await collect(time, pool.stream_chat(CHAT, timeout=4.0))
    assert len(a.calls) == 1
    assert time.now == 1000.0  # did not sleep into a wait it could not finish


async def test_first_byte_timeout_in_chat_fails_over_instead_of_retrying() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, HANG)
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1), chat_first_byte=2.0)
    assert await collect(time, pool.stream_chat(CHAT)) == ["B"]
    assert len(a.calls) == 1
    await time.advance(15.0)  # the cut attempt's warming ends without a first byte
    assert len(a.calls) == 1
    assert member(pool, "a").last_error == NoFirstByte.__name__
