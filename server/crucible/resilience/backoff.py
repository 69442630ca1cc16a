"""Retry pacing: which errors are worth a retry, how long to wait, and the retry budget.

Waits are full jitter (AWS "Exponential Backoff And Jitter", gRPC A6; reliability §2.2): for retry
n (1-based) the wait is uniform in ``[0, min(cap, base·2^(n−1)))``. Full jitter spreads clients
that failed together over the whole interval, so they do not come back in lockstep; it beats
"no jitter" on both total work and completion time under contention.

A Retry-After the provider sent is honoured (the backoff is then only a floor) up to
``RetryPolicy.retry_after_cap``; a longer one means "not this provider, not now", and the caller
moves on instead of waiting (reliability §2.6).

:class:`RetryBudget` caps retries as a share of requests over a sliding window, plus a small
floor per second (Envoy ``retry_budget``, Finagle's RetryBudget; reliability §2.1/§2.6), so an
outage of every provider cannot multiply the load by the number of attempts.

No exceptions of its own: decisions are values (``None`` = do not retry, ``False`` = no budget).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable

from crucible.providers.errors import (
    AuthError,
    BadRequest,
    ModelNotFound,
    ProviderError,
    RateLimited,
)
from crucible.resilience.policy import RetryPolicy

# 4xx that will not change on a second try: the request itself, the key, or the model is wrong.
FINAL_ERRORS: tuple[type[ProviderError], ...] = (BadRequest, AuthError, ModelNotFound)


def is_retryable(error: ProviderError) -> bool:
    """Whether the same request to the same provider could succeed a moment later."""
    return not isinstance(error, FINAL_ERRORS)


def full_jitter(retry: int, *, base: float, cap: float, random: Callable[[], float]) -> float:
    """The wait before retry ``retry`` (1 for the first): uniform in [0, min(cap, base·2^(n−1)))."""
    if retry < 1:
        raise ValueError("retry counts from 1")
    # min() before the power would overflow: 2**1100 is fine as an int but not as a float.
    exponent = min(retry - 1, 64)
    return random() * min(cap, base * 2.0**exponent)


def retry_wait(
    retry: int, error: ProviderError, policy: RetryPolicy, random: Callable[[], float]
) -> float | None:
    """How long to wait before retrying the same provider after ``error``; None: do not.

    None when the error is final (4xx that will not change) or when the provider asked for a
    pause longer than ``policy.retry_after_cap``.
    """
    if not is_retryable(error):
        return None
    wait = full_jitter(retry, base=policy.base, cap=policy.cap, random=random)
    if isinstance(error, RateLimited) and error.retry_after is not None:
        if error.retry_after > policy.retry_after_cap:
            return None
        wait = max(wait, error.retry_after)
    return wait


class RetryBudget:
    """Retries allowed: ``ratio`` × requests in the last ``window`` s + ``min_per_second`` × window.

    Every request calls :meth:`record_request` once; every attempt that adds load a provider
    would not otherwise see (a retry of a provider the request already tried, a hedge) must win
    :meth:`try_spend`. Memory is one timestamp per request and per retry in the window, and
    at most ``max_held`` of each: both are expired on every record, since most requests never
    retry and so never read the allowance. Past ``max_held`` requests in one window (hundreds
    a second, far beyond one editor) the oldest are forgotten, which only lowers the allowance.
    """

    def __init__(
        self,
        *,
        ratio: float,
        min_per_second: float,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_held: int = 4096,
    ) -> None:
        self._ratio = ratio
        self._floor = min_per_second * window
        self._window = window
        self._clock = clock
        self._requests: deque[float] = deque(maxlen=max_held)
        self._retries: deque[float] = deque(maxlen=max_held)

    @classmethod
    def from_policy(
        cls, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic
    ) -> RetryBudget:
        return cls(
            ratio=policy.budget_ratio,
            min_per_second=policy.budget_min_per_second,
            window=policy.budget_window,
            clock=clock,
        )

    def record_request(self) -> None:
        self._expire()
        self._requests.append(self._clock())

    def allowance(self) -> float:
        """Retries still allowed in the current window (may be fractional)."""
        self._expire()
        return self._ratio * len(self._requests) + self._floor - len(self._retries)

    def try_spend(self) -> bool:
        """Take one retry from the budget if there is one."""
        if self.allowance() < 1.0:
            return False
        self._retries.append(self._clock())
        return True

    def memory_bytes(self) -> int:
        """The two windows of timestamps (O(1)): their deques and a float each (24 bytes);
        at most ``max_held`` of each, ~260 KB when both are full."""
        stamps = len(self._requests) + len(self._retries)
        deques = sys.getsizeof(self._requests) + sys.getsizeof(self._retries)
        return deques + stamps * sys.getsizeof(0.0)

    def _expire(self) -> None:
        horizon = self._clock() - self._window
        for stamps in (self._requests, self._retries):
            while stamps and stamps[0] <= horizon:
                stamps.popleft()
