"""AdaptiveLimiter: AIMD bounds and signals, interactive-first queueing, cancellation safety."""

from __future__ import annotations

import asyncio

import pytest
from tests.fakes.clock import FakeTime

from crucible.resilience.clock import Clock
from crucible.resilience.limiter import AdaptiveLimiter, ConcurrencyPermit, LimiterStatus
from crucible.resilience.policy import LimiterPolicy


def limiter(**overrides: float) -> AdaptiveLimiter:
    return AdaptiveLimiter("local", LimiterPolicy(**overrides))  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def hold(lim: AdaptiveLimiter, n: int) -> list[ConcurrencyPermit]:
    slots = [lim.try_acquire() for _ in range(n)]
    assert all(slots), "expected free slots"
    return [s for s in slots if s is not None]


async def test_admits_up_to_the_limit_then_queues() -> None:
    lim = limiter(initial=2)
    first, second = hold(lim, 2)
    assert lim.try_acquire() is None
    waiter = asyncio.ensure_future(lim.acquire())
    await settle()
    assert not waiter.done()
    assert lim.status() == LimiterStatus(limit=2, in_flight=2, queued=1, baseline=None)
    first.release()
    await settle()
    assert waiter.done()
    assert (lim.in_flight, lim.queued) == (2, 0)
    second.release()
    waiter.result().release()
    assert lim.in_flight == 0


async def test_interactive_waiters_go_before_background_ones() -> None:
    lim = limiter(initial=1, minimum=1)
    (held,) = hold(lim, 1)
    order: list[str] = []

    async def take(label: str, background: bool) -> None:
        slot = await lim.acquire(background=background)
        order.append(label)
        await asyncio.sleep(0)
        slot.release()

    # Background work arrived first; interactive work still goes first, FIFO within a class.
    tasks = [
        asyncio.ensure_future(take("prefetch-1", True)),
        asyncio.ensure_future(take("review", True)),
        asyncio.ensure_future(take("inline-1", False)),
        asyncio.ensure_future(take("inline-2", False)),
    ]
    await settle()
    assert lim.queued == 4
    held.release()
    await asyncio.gather(*tasks)
    assert order == ["inline-1", "inline-2", "prefetch-1", "review"]
    assert (lim.in_flight, lim.queued) == (0, 0)


async def test_additive_increase_on_fast_successes_while_the_limit_is_used() -> None:
    lim = limiter(initial=2, maximum=4)
    for _ in range(2):  # +1/limit per success with the whole limit in use
        a, b = hold(lim, 2)
        a.succeeded(0.2)
        b.release()
    assert lim.limit == 2  # 2 + 1/2 + 1/2.5 = 2.9
    a, b = hold(lim, 2)
    a.succeeded(0.2)
    b.release()
    assert lim.limit == 3  # about +1 per window of `limit` successes, as TCP
    for _ in range(30):
        slots = hold(lim, lim.limit)
        slots[0].succeeded(0.2)
        for s in slots[1:]:
            s.release()
    assert lim.limit == 4  # the maximum


async def test_no_increase_when_the_limit_was_not_the_constraint() -> None:
    lim = limiter(initial=4)
    for _ in range(50):
        (slot,) = hold(lim, 1)  # 1 of 4 in use
        slot.succeeded(0.2)
    assert lim.limit == 4


async def test_multiplicative_decrease_on_rate_limit_down_to_the_minimum() -> None:
    lim = limiter(initial=8, maximum=8, minimum=2)
    (slot,) = hold(lim, 1)
    slot.throttled()
    assert lim.limit == 4
    for _ in range(5):
        (slot,) = hold(lim, 1)
        slot.throttled()
    assert lim.limit == 2


async def test_slow_first_byte_decreases_gently() -> None:
    lim = limiter(initial=8, maximum=8)
    for _ in range(5):
        (slot,) = hold(lim, 1)
        slot.succeeded(0.2)
    assert lim.status().baseline == pytest.approx(0.2)
    (slot,) = hold(lim, 1)
    slot.succeeded(0.39)  # under 2x the baseline: not slow
    assert lim.limit == 8
    (slot,) = hold(lim, 1)
    slot.succeeded(1.0)  # 5x the baseline
    assert lim.limit == 7  # 8 x 0.9
    (slot,) = hold(lim, 1)
    slot.timed_out()
    assert lim.limit == 6  # 7.2 x 0.9


async def test_a_raised_limit_admits_waiters_at_once() -> None:
    lim = limiter(initial=1, maximum=2, increase=1.0)
    (slot,) = hold(lim, 1)
    waiter = asyncio.ensure_future(lim.acquire())
    await settle()
    assert not waiter.done()
    slot.succeeded(0.1)  # in use 1 of 1 -> limit 2, and the slot is freed
    await settle()
    assert waiter.done() and lim.limit == 2
    waiter.result().release()


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    lim = limiter(initial=1)
    (slot,) = hold(lim, 1)
    waiter = asyncio.ensure_future(lim.acquire())
    await settle()
    assert lim.queued == 1
    waiter.cancel()
    await settle()
    assert waiter.cancelled()
    assert lim.queued == 0
    slot.release()
    assert lim.in_flight == 0


async def test_cancelled_right_after_admission_hands_the_slot_on() -> None:
    lim = limiter(initial=1)
    (slot,) = hold(lim, 1)
    first = asyncio.ensure_future(lim.acquire())
    second = asyncio.ensure_future(lim.acquire())
    await settle()
    slot.release()  # admits `first` (its future resolved) ...
    first.cancel()  # ... which is cancelled before it could run
    await settle()
    assert first.cancelled()
    assert second.done(), "the slot leaked with the cancelled waiter"
    assert lim.in_flight == 1
    second.result().release()
    assert lim.in_flight == 0


async def test_acquire_until_gives_up_at_its_time_limit_without_a_trace() -> None:
    time = FakeTime()
    clock = Clock(time.clock, time.sleep)
    lim = limiter(initial=1)
    (slot,) = hold(lim, 1)
    assert await time.run(lim.acquire_until(clock, time.now + 1.5)) is None
    assert time.now == 1001.5
    assert (lim.in_flight, lim.queued) == (1, 0)
    waiting = asyncio.ensure_future(lim.acquire_until(clock, time.now + 1.5, background=True))
    await time.settle()
    slot.release()
    got = await waiting
    assert got is not None and lim.in_flight == 1
    got.release()
    assert lim.in_flight == 0


def test_ending_a_slot_twice_counts_once() -> None:
    lim = limiter(initial=2)
    slot = lim.try_acquire()
    assert slot is not None and lim.in_flight == 1
    slot.throttled()
    slot.release()
    slot.succeeded(0.1)
    assert lim.in_flight == 0  # freed once: the permit is no longer held
    assert lim.limit == 1  # one decrease (2 x 0.5), not three effects


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        LimiterPolicy(minimum=4, initial=2)
    with pytest.raises(ValueError):
        LimiterPolicy(decrease=1.5)
