"""CircuitBreaker on a fake clock: every transition, cooldown growth and cap (RES-01 in
docs/reliability.md)."""

from __future__ import annotations

import logging

import pytest
from tests.fakes.clock import FakeTime

from crucible.resilience.breaker import (
    BreakerAdmission,
    BreakerState,
    CircuitBreaker,
    Transition,
)
from crucible.resilience.policy import BreakerPolicy

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def make(
    time: FakeTime, random: float = 0.5, **overrides: float
) -> tuple[CircuitBreaker, list[Transition]]:
    policy = BreakerPolicy(**overrides)  # type: ignore[arg-type]
    breaker = CircuitBreaker("local", policy, clock=time.clock, random=lambda: random)
    seen: list[Transition] = []
    breaker.add_listener(seen.append)
    return breaker, seen


def call(breaker: CircuitBreaker, ok: bool, reason: str = "ProviderUnavailable") -> None:
    ticket = breaker.acquire()
    assert ticket is not None, f"refused while {breaker.state}"
    if ok:
        breaker.record_success(ticket)
    else:
        breaker.record_failure(ticket, reason)


def trip(breaker: CircuitBreaker) -> None:
    while breaker.state is CLOSED:
        call(breaker, ok=False)


def test_opens_on_the_fifth_consecutive_failure_not_before() -> None:
    time = FakeTime()
    breaker, seen = make(time)
    for _ in range(4):
        call(breaker, ok=False)
    assert breaker.state is CLOSED
    assert breaker.status().consecutive_failures == 4
    call(breaker, ok=False, reason="ProviderTimeout")
    assert breaker.state is OPEN
    assert [(t.from_state, t.to_state) for t in seen] == [(CLOSED, OPEN)]
    assert "5 consecutive failures (last: ProviderTimeout)" in seen[0].reason
    assert seen[0].name == "local"


def test_a_success_resets_the_consecutive_count() -> None:
    time = FakeTime()
    breaker, _ = make(time)
    for _ in range(4):
        call(breaker, ok=False)
    call(breaker, ok=True)
    for _ in range(4):
        call(breaker, ok=False)
    assert breaker.state is CLOSED


def test_opens_on_failure_rate_once_the_window_has_minimum_calls() -> None:
    time = FakeTime()
    breaker, seen = make(time, consecutive_failures=100)
    # F S F S ...: never two failures in a row, 50 % failures.
    for i in range(9):
        call(breaker, ok=i % 2 == 1)
        assert breaker.state is CLOSED, f"tripped after {i + 1} calls, below minimum_calls"
    call(breaker, ok=True)  # 10 calls, 5 failures: 50 % but the last call succeeded
    assert breaker.state is CLOSED
    call(breaker, ok=False)  # 11 calls, 6 failures
    assert breaker.state is OPEN
    assert "failure rate 55% over the last 11 calls" in seen[0].reason


def test_rate_below_threshold_stays_closed() -> None:
    time = FakeTime()
    breaker, _ = make(time, consecutive_failures=100)
    for i in range(40):
        call(breaker, ok=i % 3 != 0)  # a third fail
    assert breaker.state is CLOSED
    assert breaker.status().failure_rate == pytest.approx(7 / 20)


def test_rate_window_slides_old_failures_out() -> None:
    time = FakeTime()
    breaker, _ = make(time, consecutive_failures=100, window_size=10, minimum_calls=10)
    for _ in range(4):
        call(breaker, ok=False)
    for _ in range(6):
        call(breaker, ok=True)
    assert breaker.status().failure_rate == pytest.approx(0.4)
    for _ in range(4):
        call(breaker, ok=True)  # the four failures fall out of the window of 10
    assert breaker.status().failure_rate == 0.0
    for _ in range(4):
        call(breaker, ok=False)
    assert breaker.state is CLOSED  # 4 of the last 10, not 8 of the last 18


async def test_open_refuses_until_the_cooldown_then_half_open_allows_one_trial() -> None:
    time = FakeTime()
    breaker, seen = make(time, cooldown_jitter=0.0)
    trip(breaker)
    assert breaker.acquire() is None
    assert not breaker.available()
    assert breaker.status().cooldown_remaining == pytest.approx(5.0)
    await time.advance(4.5)
    assert breaker.acquire() is None
    await time.advance(0.5)
    assert breaker.available()
    trial = breaker.acquire()
    assert isinstance(trial, BreakerAdmission) and trial.trial
    assert breaker.state is HALF_OPEN
    # Concurrent callers while the trial is out are refused.
    assert breaker.acquire() is None
    assert breaker.acquire() is None
    assert not breaker.available()
    assert seen[-1].from_state is OPEN and seen[-1].to_state is HALF_OPEN
    assert seen[-1].reason == "cooldown elapsed"


async def test_trial_success_closes_with_a_fresh_count() -> None:
    time = FakeTime()
    breaker, seen = make(time)
    trip(breaker)
    await time.advance(10.0)
    trial = breaker.acquire()
    assert trial is not None
    breaker.record_success(trial)
    assert breaker.state is CLOSED
    assert seen[-1].reason == "trial succeeded"
    status = breaker.status()
    assert (status.consecutive_failures, status.calls_in_window, status.trips) == (0, 0, 1)


async def test_trial_failure_reopens_and_cooldowns_grow_to_the_cap() -> None:
    time = FakeTime()
    breaker, seen = make(time, cooldown_jitter=0.0)
    trip(breaker)
    cooldowns = [breaker.cooldown_remaining()]
    for _ in range(6):
        await time.advance(cooldowns[-1])
        trial = breaker.acquire()
        assert trial is not None and trial.trial
        breaker.record_failure(trial, "ProviderUnavailable")
        assert breaker.state is OPEN
        cooldowns.append(breaker.cooldown_remaining())
    assert cooldowns == pytest.approx([5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0])
    assert breaker.status().trips == 7
    assert seen[-1].from_state is HALF_OPEN and seen[-1].to_state is OPEN
    assert seen[-1].reason.startswith("trial failed (ProviderUnavailable)")


async def test_cooldown_growth_resets_after_a_healthy_stretch() -> None:
    time = FakeTime()
    breaker, _ = make(time, cooldown_jitter=0.0)

    async def outage_then_recover(healthy_for: float) -> float:
        trip(breaker)
        cooldown = breaker.cooldown_remaining()
        await time.advance(cooldown)
        trial = breaker.acquire()
        assert trial is not None
        breaker.record_success(trial)
        await time.advance(healthy_for)
        return cooldown

    # Flapping (closed for less than the 60 s cap between trips) keeps growing...
    assert [await outage_then_recover(1.0) for _ in range(3)] == [5.0, 10.0, 20.0]
    # ...a provider that stayed healthy for the cap starts again from the base.
    await time.advance(60.0)
    assert await outage_then_recover(1.0) == 5.0


def test_cooldown_jitter_is_bounded_and_the_cap_is_hard() -> None:
    low, _ = make(FakeTime(), random=0.0)
    trip(low)
    assert low.cooldown_remaining() == pytest.approx(4.5)  # 5 s - 10 %
    high, _ = make(FakeTime(), random=0.999, cooldown=60.0)
    trip(high)
    assert high.cooldown_remaining() == pytest.approx(60.0)  # +10 % would pass the cap


async def test_release_gives_the_trial_back_without_a_verdict() -> None:
    time = FakeTime()
    breaker, _ = make(time)
    trip(breaker)
    await time.advance(10.0)
    trial = breaker.acquire()
    assert trial is not None
    breaker.release(trial)  # e.g. the caller was cancelled
    assert breaker.state is HALF_OPEN
    again = breaker.acquire()
    assert again is not None and again.trial


async def test_verdicts_from_an_earlier_state_are_ignored() -> None:
    time = FakeTime()
    breaker, _ = make(time)
    early = breaker.acquire()  # admitted while closed, answers after the trip
    assert early is not None
    trip(breaker)
    breaker.record_success(early)
    assert breaker.state is OPEN
    await time.advance(10.0)
    trial = breaker.acquire()
    assert trial is not None
    breaker.record_failure(early, "late")  # only the trial decides a half-open circuit
    breaker.release(early)  # and a stale release does not free the trial
    assert breaker.state is HALF_OPEN
    assert breaker.acquire() is None
    breaker.record_success(trial)
    assert breaker.state is CLOSED


def test_status_reports_what_crucible_status_shows() -> None:
    time = FakeTime()
    breaker, _ = make(time, cooldown_jitter=0.0)
    call(breaker, ok=True)
    call(breaker, ok=False)
    call(breaker, ok=False)
    status = breaker.status()
    assert str(status.state) == "closed"
    assert (status.consecutive_failures, status.calls_in_window) == (2, 3)
    assert status.failure_rate == pytest.approx(2 / 3)
    assert (status.trips, status.cooldown_remaining) == (0, 0.0)
    trip(breaker)
    status = breaker.status()
    assert str(status.state) == "open"
    assert (status.trips, status.cooldown_remaining) == (1, 5.0)
    assert [str(s) for s in BreakerState] == ["closed", "open", "half_open"]


async def test_transitions_are_logged_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    breaker, _ = make(time)
    with caplog.at_level(logging.INFO, logger="crucible.resilience.breaker"):
        trip(breaker)
        await time.advance(10.0)
        trial = breaker.acquire()
        assert trial is not None
        breaker.record_success(trial)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO, logging.INFO]
    assert lines[0][1].startswith("circuit local: closed -> open (5 consecutive failures")
    assert lines[1][1] == "circuit local: open -> half_open (cooldown elapsed)"
    assert lines[2][1] == "circuit local: half_open -> closed (trial succeeded)"
    assert all("\n" not in message for _, message in lines)


def test_a_failing_listener_does_not_break_the_breaker(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    breaker, seen = make(time)

    def broken(change: Transition) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    later: list[Transition] = []
    breaker.add_listener(later.append)
    trip(breaker)
    assert breaker.state is OPEN
    assert len(seen) == len(later) == 1
    assert "transition listener failed" in caplog.text


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(minimum_calls=30, window_size=20)
    with pytest.raises(ValueError):
        BreakerPolicy(cooldown=90.0, cooldown_cap=60.0)
    with pytest.raises(ValueError):
        BreakerPolicy(failure_rate=0.0)
