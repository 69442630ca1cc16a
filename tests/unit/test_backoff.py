"""Full-jitter backoff, Retry-After, and the retry budget (RES-14, RES-05, RES-04 in
docs/reliability.md)."""

from __future__ import annotations

import random
import statistics

import pytest
from tests.fakes.clock import FakeTime

from crucible.providers.errors import (
    AuthError,
    BadRequest,
    BadResponse,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from crucible.resilience.backoff import RetryBudget, full_jitter, is_retryable, retry_wait
from crucible.resilience.policy import RetryPolicy

POLICY = RetryPolicy()  # base 0.1 s, cap 2 s, Retry-After cap 10 s


@pytest.mark.parametrize("retry", [1, 2, 3, 4, 5, 6, 8, 30])
def test_full_jitter_stays_in_bounds_and_averages_half_the_bound(retry: int) -> None:
    rng = random.Random(1234 + retry)
    bound = min(2.0, 0.1 * 2 ** (retry - 1))
    draws = [full_jitter(retry, base=0.1, cap=2.0, random=rng.random) for _ in range(10_000)]
    assert all(0.0 <= d < bound for d in draws)
    assert statistics.fmean(draws) == pytest.approx(bound / 2, rel=0.05)
    # Full jitter uses the whole interval, not just its top (as "equal jitter" would).
    assert min(draws) < 0.05 * bound
    assert max(draws) > 0.95 * bound


def test_bounds_double_per_retry_until_the_cap() -> None:
    top = [full_jitter(n, base=0.1, cap=2.0, random=lambda: 1.0) for n in range(1, 8)]
    assert top == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    # A huge retry number neither overflows nor escapes the cap.
    assert full_jitter(5000, base=0.1, cap=2.0, random=lambda: 0.5) == pytest.approx(1.0)


def test_retry_numbers_count_from_one() -> None:
    with pytest.raises(ValueError):
        full_jitter(0, base=0.1, cap=2.0, random=lambda: 0.5)


def test_clients_with_different_seeds_are_not_in_lockstep() -> None:
    a, b = random.Random(1), random.Random(2)
    waits_a = [full_jitter(3, base=0.1, cap=2.0, random=a.random) for _ in range(100)]
    waits_b = [full_jitter(3, base=0.1, cap=2.0, random=b.random) for _ in range(100)]
    close = sum(abs(x - y) < 0.01 for x, y in zip(waits_a, waits_b, strict=True))
    assert close < 10  # ~5 expected by chance for uniform draws on [0, 0.4)


@pytest.mark.parametrize(
    "error",
    [
        BadRequest("p", "HTTP 400"),
        AuthError("p", "HTTP 401"),
        AuthError("p", "HTTP 403"),
        ModelNotFound("p", "HTTP 404"),
    ],
)
def test_no_retry_on_4xx_that_will_not_change(error: ProviderError) -> None:
    assert not is_retryable(error)
    assert retry_wait(1, error, POLICY, lambda: 0.5) is None


@pytest.mark.parametrize(
    "error",
    [
        ProviderUnavailable("p", "HTTP 503"),
        ProviderTimeout("p", "t"),
        BadResponse("p", "cut"),
        RateLimited("p", "HTTP 429"),
    ],
)
def test_transient_errors_wait_full_jitter(error: ProviderError) -> None:
    assert is_retryable(error)
    assert retry_wait(2, error, POLICY, lambda: 0.5) == pytest.approx(0.1)


def test_retry_after_is_honoured_over_a_shorter_backoff() -> None:
    error = RateLimited("p", "HTTP 429", retry_after=1.5)
    assert retry_wait(1, error, POLICY, lambda: 0.99) == pytest.approx(1.5)


def test_backoff_still_applies_when_retry_after_is_shorter() -> None:
    error = RateLimited("p", "HTTP 429", retry_after=0.0)
    assert retry_wait(5, error, POLICY, lambda: 0.5) == pytest.approx(0.8)


def test_retry_after_over_the_cap_means_do_not_wait_for_this_provider() -> None:
    at_cap = RateLimited("p", "HTTP 429", retry_after=10.0)
    over = RateLimited("p", "HTTP 429", retry_after=10.5)
    assert retry_wait(1, at_cap, POLICY, lambda: 0.5) == pytest.approx(10.0)
    assert retry_wait(1, over, POLICY, lambda: 0.5) is None


def test_budget_floor_lets_an_idle_client_retry_a_few_times() -> None:
    time = FakeTime()
    budget = RetryBudget(ratio=0.2, min_per_second=0.3, window=10.0, clock=time.clock)
    budget.record_request()
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


def test_budget_grows_with_requests_at_the_ratio() -> None:
    time = FakeTime()
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, window=10.0, clock=time.clock)
    for _ in range(50):
        budget.record_request()
    spent = 0
    while budget.try_spend():
        spent += 1
    assert spent == 10  # 20 % of 50


async def test_budget_recovers_when_the_window_slides() -> None:
    time = FakeTime()
    budget = RetryBudget(ratio=0.0, min_per_second=0.3, window=10.0, clock=time.clock)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
    await time.advance(9.9)
    assert not budget.try_spend()
    await time.advance(0.2)
    assert budget.try_spend()


def test_budget_from_policy_uses_the_policy_numbers() -> None:
    time = FakeTime()
    budget = RetryBudget.from_policy(RetryPolicy(), time.clock)
    for _ in range(10):
        budget.record_request()
    assert budget.allowance() == pytest.approx(0.2 * 10 + 0.3 * 10.0)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(base=3.0, cap=2.0)
    with pytest.raises(ValueError):
        RetryPolicy(retry_after_cap=400.0)


def held(budget: RetryBudget) -> int:
    """Timestamps the budget holds. Private on purpose: nothing the server shows depends on
    this memory, and ``allowance()`` expires what it counts, so it cannot show a leak."""
    return len(budget._requests) + len(budget._retries)


def test_budget_forgets_requests_that_left_the_window_without_being_asked() -> None:
    # Completions never retry, so only record_request runs: 5,000 of them, 10 ms apart, used
    # to leave 5,000 timestamps where the 10 s window holds about 1,000.
    time = FakeTime()
    budget = RetryBudget(ratio=0.2, min_per_second=0.3, window=10.0, clock=time.clock)
    for _ in range(5000):
        budget.record_request()
        time.now += 0.01  # nothing sleeps on this clock: no need to settle the loop
    assert held(budget) <= 1001
    assert budget.allowance() == pytest.approx(0.2 * held(budget) + 3.0)


def test_budget_holds_a_bounded_count_within_one_window() -> None:
    time = FakeTime()
    budget = RetryBudget(ratio=0.2, min_per_second=0.3, window=10.0, clock=time.clock, max_held=64)
    for _ in range(10_000):
        budget.record_request()
        budget.try_spend()
    assert held(budget) <= 128
