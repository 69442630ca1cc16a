"""ProviderPool lifecycle on fake time: hedging, adaptive concurrency and its queue, health
probes, cancellation, early close, status snapshots."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator
from contextlib import aclosing
from time import monotonic
from time import sleep as block
from typing import Any, cast

import pytest
from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider

from crucible.providers.base import ChatMessage, ChatRequest, FimRequest
from crucible.providers.errors import ProviderUnavailable, RateLimited
from crucible.resilience.breaker import Transition
from crucible.resilience.errors import NoProviderAvailable
from crucible.resilience.member import Health, MemberSnapshot
from crucible.resilience.policy import BreakerPolicy, LimiterPolicy, ResiliencePolicy, RetryPolicy
from crucible.resilience.pool import ProviderPool

FIM = FimRequest(prefix="def f(", suffix="", language_id="python", path="a.py")
CHAT = ChatRequest(messages=(ChatMessage("user", "why?"),))
DOWN = Reply(chunks=(), error=ProviderUnavailable("x", "HTTP 503"))
HANG = Reply(chunks=(), hang=True)


def make_pool(
    time: FakeTime, *members: tuple[ScriptedProvider, int], **policy: Any
) -> ProviderPool:
    policy.setdefault("probes", False)
    policy.setdefault("retry", RetryPolicy(budget_min_per_second=100.0))
    return ProviderPool(
        list(members),
        ResiliencePolicy(**policy),
        clock=time.clock,
        sleep=time.sleep,
        random=lambda: 0.5,
    )


async def drain(stream: AsyncGenerator[str, None]) -> list[str]:
    """Read a whole stream; time moves only when the test moves it."""
    return [chunk async for chunk in stream]


async def collect(time: FakeTime, stream: AsyncGenerator[str, None]) -> list[str]:
    """Read a whole stream, jumping the fake clock whenever everything waits on it."""
    return await time.run(drain(stream))


def member(pool: ProviderPool, name: str) -> MemberSnapshot:
    return next(m for m in pool.snapshot() if m.name == name)


def fim(prefix: str) -> FimRequest:
    return dataclasses.replace(FIM, prefix=prefix)


# -- hedging ---------------------------------------------------------------------------------


async def warm(time: FakeTime, pool: ProviderPool, n: int = 10) -> None:
    for _ in range(n):
        await collect(time, pool.stream_fim(FIM))


@pytest.mark.parametrize("hedging", [True, False])
async def test_a_hedge_wins_after_the_primarys_p95_and_the_loser_is_closed(hedging: bool) -> None:
    time = FakeTime()
    a = ScriptedProvider(
        "a", time, [Reply(("A",), first_byte=0.2)] * 10 + [Reply(("late",), first_byte=1.0)]
    )
    b = ScriptedProvider("b", time, Reply(("B",), first_byte=0.1))
    pool = make_pool(time, (a, 0), (b, 1), hedging=hedging)
    await warm(time, pool)
    start = time.now
    answer = await collect(time, pool.stream_fim(FIM))
    if hedging:
        # p95 of a's first bytes is 0.2 s: b starts then and answers 0.1 s later.
        assert answer == ["B"]
        assert time.now - start == pytest.approx(0.3)
        assert b.calls[0].started - start == pytest.approx(0.2)
        assert a.endings()[-1] == "cancelled"  # the loser's stream was closed
        assert a.open_streams == 0
        snap = member(pool, "a")
        assert (snap.failures, snap.consecutive_failures, snap.in_flight) == (0, 0, 0)
    else:
        assert answer == ["late"]
        assert time.now - start == pytest.approx(1.0)
        assert len(b.calls) == 0


async def test_the_primary_can_still_win_a_hedge() -> None:
    time = FakeTime()
    a = ScriptedProvider(
        "a", time, [Reply(("A",), first_byte=0.2)] * 10 + [Reply(("A2",), first_byte=0.25)]
    )
    b = ScriptedProvider("b", time, Reply(("B",), first_byte=0.1))
    pool = make_pool(time, (a, 0), (b, 1), hedging=True)
    await warm(time, pool)
    assert await collect(time, pool.stream_fim(FIM)) == ["A2"]
    assert b.endings() == ["cancelled"]
    assert member(pool, "b").in_flight == 0


async def test_no_hedge_once_the_retry_budget_is_spent() -> None:
    time = FakeTime()
    a = ScriptedProvider(
        "a", time, [Reply(("A",), first_byte=0.2)] * 10 + [Reply(("late",), first_byte=1.0)]
    )
    b = ScriptedProvider("b", time, Reply(("B",), first_byte=0.1))
    no_budget = RetryPolicy(budget_ratio=0.0, budget_min_per_second=0.0)
    pool = make_pool(time, (a, 0), (b, 1), hedging=True, retry=no_budget)
    await warm(time, pool)
    assert await collect(time, pool.stream_fim(FIM)) == ["late"]
    assert len(b.calls) == 0
    assert member(pool, "b").in_flight == 0


async def test_no_hedge_without_enough_samples() -> None:
    time = FakeTime()
    a = ScriptedProvider(
        "a", time, [Reply(("A",), first_byte=0.2)] * 5 + [Reply(("A2",), first_byte=1.0)]
    )
    b = ScriptedProvider("b", time, Reply(("B",), first_byte=0.1))
    pool = make_pool(time, (a, 0), (b, 1), hedging=True)
    await warm(time, pool, 5)
    assert await collect(time, pool.stream_fim(FIM)) == ["A2"]
    assert len(b.calls) == 0


async def test_a_hedge_skips_a_candidate_whose_circuit_is_open() -> None:
    time = FakeTime()
    slow = Reply(("late",), first_byte=1.0)
    a = ScriptedProvider("a", time, [Reply(("A",), first_byte=0.2)] * 20 + [slow])
    b = ScriptedProvider("b", time, DOWN)
    c = ScriptedProvider("c", time, Reply(("C",), first_byte=0.1))
    trip_at_once = BreakerPolicy(consecutive_failures=1)
    pool = make_pool(time, (a, 0), (b, 1), (c, 2), hedging=True, breaker=trip_at_once)
    await warm(time, pool, 20)  # enough samples that one slow call does not move the p95
    # The first hedge goes to b, which fails (and opens); a still answers.
    assert await collect(time, pool.stream_fim(FIM)) == ["late"]
    assert member(pool, "b").state == "open"
    # The next hedge passes over b's open circuit to c.
    assert await collect(time, pool.stream_fim(FIM)) == ["C"]
    assert (len(b.calls), len(c.calls)) == (1, 1)


async def test_cancelled_as_a_slot_is_granted_leaks_nothing() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, [Reply(("held",), hang=True), Reply(("A",))])
    pool = make_pool(time, (a, 0), limiter=LimiterPolicy(initial=1, maximum=1))
    holder = pool.stream_fim(FIM)
    await time.run(anext(holder))
    task = asyncio.ensure_future(drain(pool.stream_fim(FIM)))
    await time.settle()
    await holder.aclose()  # hands the slot to the queued request ...
    task.cancel()  # ... which is cancelled in the same tick
    with pytest.raises(asyncio.CancelledError):
        await task
    snap = member(pool, "a")
    assert (snap.in_flight, snap.queued) == (0, 0)
    assert len(a.calls) == 1


# -- adaptive concurrency ----------------------------------------------------------------------


async def test_rate_limits_shrink_and_fast_successes_grow_the_limit() -> None:
    time = FakeTime()
    limited = Reply(chunks=(), error=RateLimited("a", "HTTP 429"))
    a = ScriptedProvider("a", time, [limited, limited, Reply(("A",), first_byte=0.1)])
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1), limiter=LimiterPolicy(initial=4, maximum=8))
    await collect(time, pool.stream_fim(FIM))
    await collect(time, pool.stream_fim(FIM))
    assert member(pool, "a").concurrency_limit == 1  # 4 -> 2 -> 1
    for _ in range(3):  # one stream at a time fills a limit of 1
        await collect(time, pool.stream_fim(FIM))
    assert member(pool, "a").concurrency_limit == 2  # 1 + 1/1, then 2 + 1/2 + ...


async def test_interactive_requests_jump_the_queue_ahead_of_background_ones() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, [Reply(("held",), hang=True), Reply(("ok",))])
    pool = make_pool(time, (a, 0), limiter=LimiterPolicy(initial=1, maximum=1))
    holder = pool.stream_fim(fim("holder"))
    assert await time.run(anext(holder)) == "held"
    background = asyncio.ensure_future(drain(pool.stream_fim(fim("bg"), background=True)))
    await time.settle()
    interactive = asyncio.ensure_future(drain(pool.stream_fim(fim("fg"))))
    await time.settle()
    assert (member(pool, "a").in_flight, member(pool, "a").queued) == (1, 2)
    await holder.aclose()
    assert await interactive == ["ok"]
    assert await background == ["ok"]
    assert [getattr(call.request, "prefix", None) for call in a.calls] == ["holder", "fg", "bg"]


async def test_a_full_provider_is_a_failover_after_the_first_byte_allowance() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, [Reply(("held",), hang=True), Reply(("A",))])
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1), limiter=LimiterPolicy(initial=1, maximum=1))
    holder = pool.stream_fim(FIM)
    assert await time.run(anext(holder)) == "held"
    # A member with a free slot ranks first within a tier, but b is a lower tier: a is tried,
    # the wait for its slot is bounded by the first-byte allowance, then b answers.
    start = time.now
    assert await collect(time, pool.stream_fim(FIM)) == ["B"]
    assert time.now - start == pytest.approx(1.5)
    snap = member(pool, "a")
    assert (snap.queued, snap.in_flight, snap.failures) == (0, 1, 0)  # queueing is not a failure
    await holder.aclose()
    assert member(pool, "a").in_flight == 0


# -- health probes -----------------------------------------------------------------------------


async def test_probes_bring_an_open_circuit_back_without_user_traffic() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, [DOWN] * 5 + [Reply(("A",))], probe_ok=[False, True])
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1), probes=True)
    seen: list[Transition] = []
    pool.add_listener(seen.append)
    for _ in range(5):
        assert await collect(time, pool.stream_fim(FIM)) == ["B"]
    tripped = time.now
    assert member(pool, "a").state == "open"
    assert time.next_wake() == tripped + 5.0  # the probe sleeps out the cooldown, no polling
    await time.advance(5.0)  # the cooldown: one probe, which fails -> open for 10 s
    assert a.probes == [tripped + 5.0]
    assert member(pool, "a").state == "open"
    assert member(pool, "a").cooldown_remaining_s == pytest.approx(10.0)
    await time.advance(9.0)
    assert len(a.probes) == 1  # one probe per open window, nothing in between
    await time.advance(1.0)
    assert a.probes == [tripped + 5.0, tripped + 15.0]
    assert member(pool, "a").state == "half_open"  # probe ok: the next request is the trial
    assert len(a.calls) == 5  # no user request was spent on the outage
    assert await collect(time, pool.stream_fim(FIM)) == ["A"]
    assert member(pool, "a").state == "closed"
    assert [(str(t.from_state), str(t.to_state)) for t in seen] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    await pool.aclose()


async def test_aclose_stops_probes_and_closes_every_provider() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, DOWN, probe_ok=False)
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1), probes=True)
    for _ in range(5):
        await collect(time, pool.stream_fim(FIM))
    await time.settle()
    assert time.pending_sleepers() == 1  # the probe loop, waiting out the cooldown
    await pool.aclose()
    assert time.pending_sleepers() == 0
    assert a.closed and b.closed
    await time.advance(100.0)
    assert a.probes == []
    with pytest.raises(NoProviderAvailable):
        await collect(time, pool.stream_fim(FIM))


# -- cancellation and early close ------------------------------------------------------------


async def test_cancelling_before_the_first_chunk_closes_the_stream_and_counts_nothing() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, HANG)
    pool = make_pool(time, (a, 0))
    task = asyncio.ensure_future(drain(pool.stream_fim(FIM)))
    await time.settle()
    assert (member(pool, "a").in_flight, a.open_streams) == (1, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.endings() == ["cancelled"]
    snap = member(pool, "a")
    assert (snap.in_flight, snap.failures, snap.consecutive_failures) == (0, 0, 0)
    assert a.open_streams == 0


async def test_cancelling_mid_stream_closes_the_stream_and_releases_the_slot() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, Reply(("x",), hang=True))
    pool = make_pool(time, (a, 0))
    stream = pool.stream_fim(FIM)
    assert await time.run(anext(stream)) == "x"
    task = asyncio.ensure_future(anext(stream))
    await time.settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.endings() == ["cancelled"]
    snap = member(pool, "a")
    assert (snap.in_flight, snap.failures) == (0, 0)


async def test_a_cancellation_after_the_deadline_still_fails_a_dripping_stream() -> None:
    """On a loaded machine the caller's own timeout (the completion path's backstop) can fire in
    the same event-loop turn as the pool's deadline timer, before the pool has woken to judge
    the stream. The dripping provider still gets the deadline's failure, so its circuit opens
    after as many requests as without load."""
    time = FakeTime()
    drip = ScriptedProvider("drip", time, Reply(tuple(f"c{i}" for i in range(100)), gap=0.8))
    pool = make_pool(time, (drip, 0), fim_deadline=3.0)
    stream = pool.stream_fim(FIM)
    assert await time.run(anext(stream)) == "c0"
    task = asyncio.ensure_future(anext(stream))
    await time.settle()
    time.now += 3.5  # past the deadline, with no sleeper woken: the pool's timer has not run
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert drip.endings() == ["cancelled"]
    snap = member(pool, "drip")
    assert (snap.in_flight, snap.failures, snap.last_error) == (0, 1, "DeadlineExceeded")


class _RealTime:
    """A ScriptedProvider's clock and sleep on real time, for the one test that needs the
    event loop's own timers."""

    @property
    def now(self) -> float:
        return monotonic()

    sleep = staticmethod(asyncio.sleep)


async def test_a_loop_held_across_the_deadline_still_fails_a_dripping_stream() -> None:
    """The same race on the real event loop, forced: the loop is held from just before the
    deadline to past the caller's backstop (completion/fetch.py: 50 ms after it), as a loaded
    machine holds it, so both timers come due in one turn."""
    drip = ScriptedProvider("drip", cast(FakeTime, _RealTime()), Reply(("a", "b"), gap=5.0))
    pool = ProviderPool([(drip, 0)], ResiliencePolicy(probes=False))
    loop = asyncio.get_running_loop()
    ends = loop.time() + 0.2
    loop.call_at(ends - 0.01, block, 0.1)  # held until ~60 ms past the backstop
    with pytest.raises(TimeoutError):
        async with asyncio.timeout_at(ends + 0.05):
            async with aclosing(pool.stream_fim(FIM, timeout=0.2)) as stream:
                async for _ in stream:
                    pass
    snap = member(pool, "drip")
    assert (snap.in_flight, snap.failures, snap.last_error) == (0, 1, "DeadlineExceeded")
    await pool.aclose()


async def test_a_cancellation_after_the_deadline_before_a_first_byte_is_the_deadline() -> None:
    """The same race before the first byte: the attempt is given up on as at the deadline (a
    provider with no history left warming to its first byte), not closed unheard."""
    time = FakeTime()
    cold = ScriptedProvider("cold", time, Reply(("C",), first_byte=6.0))
    pool = make_pool(time, (cold, 0), fim_deadline=3.0)
    task = asyncio.ensure_future(drain(pool.stream_fim(FIM)))
    await time.settle()
    time.now += 3.5  # past the deadline, with no sleeper woken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await time.advance(3.0)
    snap = member(pool, "cold")
    assert (snap.in_flight, snap.failures, snap.first_byte_p50_ms) == (0, 0, 6000.0)
    assert cold.endings() == ["closed"]


async def test_cancelling_a_queued_request_leaves_no_trace() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, [Reply(("held",), hang=True), Reply(("A",))])
    pool = make_pool(time, (a, 0), limiter=LimiterPolicy(initial=1, maximum=1))
    holder = pool.stream_fim(FIM)
    await time.run(anext(holder))
    task = asyncio.ensure_future(drain(pool.stream_fim(FIM)))
    await time.settle()
    assert member(pool, "a").queued == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (member(pool, "a").queued, member(pool, "a").in_flight) == (0, 1)
    await holder.aclose()
    assert member(pool, "a").in_flight == 0
    assert len(a.calls) == 1


async def test_cancelling_during_chat_backoff_makes_no_further_call() -> None:
    time = FakeTime()
    limited = Reply(chunks=(), error=RateLimited("a", "HTTP 429", retry_after=2.0))
    a = ScriptedProvider("a", time, [limited, Reply(("A",))])
    pool = make_pool(time, (a, 0))
    task = asyncio.ensure_future(drain(pool.stream_chat(CHAT)))
    await time.settle()
    assert len(a.calls) == 1
    assert time.pending_sleepers() == 1  # waiting out the Retry-After
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await time.advance(5.0)
    assert len(a.calls) == 1
    assert member(pool, "a").in_flight == 0


async def test_a_cancelled_half_open_trial_is_given_back() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, [DOWN] * 5 + [HANG, Reply(("A",))])
    b = ScriptedProvider("b", time, Reply(("B",)))
    pool = make_pool(time, (a, 0), (b, 1))
    for _ in range(5):
        await collect(time, pool.stream_fim(FIM))
    await time.advance(5.0)
    task = asyncio.ensure_future(drain(pool.stream_fim(FIM)))  # takes the trial, hangs
    await time.settle()
    assert member(pool, "a").state == "half_open"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert member(pool, "a").state == "half_open"
    assert await collect(time, pool.stream_fim(FIM)) == ["A"]  # the trial was free again
    assert member(pool, "a").state == "closed"


async def test_closing_early_is_a_success_without_a_latency_sample() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, Reply(("x", "y", "z"), first_byte=0.2, gap=0.1))
    pool = make_pool(time, (a, 0))
    stream = pool.stream_fim(FIM)
    assert await time.run(anext(stream)) == "x"
    await stream.aclose()
    assert a.endings() == ["closed"]
    snap = member(pool, "a")
    assert (snap.in_flight, snap.failures, snap.calls) == (0, 0, 1)
    assert snap.first_byte_p50_ms == pytest.approx(200.0)
    assert snap.latency_p50_ms is None


# -- status ----------------------------------------------------------------------------------


async def test_snapshot_reports_each_member() -> None:
    time = FakeTime()
    a = ScriptedProvider(
        "a", time, [Reply(("x", "y", "z"), first_byte=0.2, gap=0.1), DOWN], model="small"
    )
    b = ScriptedProvider("b", time, Reply(("B",)), model="big")
    pool = make_pool(time, (a, 0), (b, 1))
    await collect(time, pool.stream_fim(FIM))
    await collect(time, pool.stream_fim(FIM))  # a fails, b answers
    snap_a, snap_b = pool.snapshot()
    assert snap_a == MemberSnapshot(
        name="a",
        model="small",
        priority=0,
        state="closed",
        calls=2,
        failures=1,
        last_error="ProviderUnavailable",
        latency_p50_ms=400.0,
        latency_p95_ms=400.0,
        latency_p99_ms=400.0,
        first_byte_p50_ms=200.0,
        first_byte_p95_ms=200.0,
        first_byte_p99_ms=200.0,
        concurrency_limit=4,
        first_byte_baseline_ms=200.0,  # its one success
        in_flight=0,
        queued=0,
        trips=0,
        consecutive_failures=1,
        failure_rate=0.5,
        calls_in_window=2,
        cooldown_remaining_s=0.0,
        parked_remaining_s=0.0,
        health=Health.FAILING,  # its last call failed
        disabled=None,
        warming=0,
    )
    assert (snap_b.name, snap_b.calls, snap_b.failures, snap_b.last_error) == ("b", 1, 0, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap_a.state = "open"  # type: ignore[misc]


async def test_pool_probe_reports_every_member() -> None:
    time = FakeTime()
    a = ScriptedProvider("a", time, probe_ok=False)
    b = ScriptedProvider("b", time, probe_ok=True)
    pool = make_pool(time, (a, 0), (b, 1))
    result = await pool.probe()
    assert result.ok
    assert result.detail == "a: down; b: ok"


# -- bounded history ---------------------------------------------------------------------------


async def test_what_the_pool_remembers_per_request_stays_bounded_over_many_requests() -> None:
    # Every completion used to leave a timestamp in the retry budget for good: it expired only
    # when a retry or a hedge asked for the budget, which completions never do.
    time = FakeTime()
    a = ScriptedProvider("a", time, Reply(("ok",), first_byte=0.005))
    pool = make_pool(time, (a, 0))
    for _ in range(1500):
        assert await collect(time, pool.stream_fim(FIM)) == ["ok"]
        await time.advance(0.005)
    # 10 ms a request: the 10 s budget window holds about 1,000 of the 1,500.
    budget = pool._budget  # private: no status shows the budget's memory
    assert len(budget._requests) + len(budget._retries) <= 1001
    snap = member(pool, "a")
    assert snap.calls == 1500
    assert (snap.in_flight, snap.queued, snap.warming) == (0, 0, 0)
    assert len(pool._warming) == 0
