"""Member: one provider inside a ProviderPool, with everything the pool knows about it.

A member owns its provider's circuit breaker, adaptive concurrency limiter, recent latencies
(whole call and first byte), counters, a "parked until" time set by a long Retry-After, and a
"disabled" reason once the provider rejected its credentials (401/403: no call can succeed
until the configuration changes, so none is made). It records outcomes and tells the pool's
``on_outcome`` listener; it does not decide routing (``routing.py``) and raises nothing.

Its health, as status pages and the editor's status bar show it (:class:`Health`)::

    disabled   credentials rejected; no calls until the configuration changes
    offline    circuit open or half-open, or parked by a Retry-After
    failing    its last call failed (the circuit is still closed)
    slow       answering, but its first bytes take longer than the failover cut-off
    ready      otherwise

:class:`MemberSnapshot` is the frozen view ``crucible/status`` shows. It names error *types*
only: messages can quote the server, and status must never carry a secret.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crucible.providers.base import Provider
from crucible.providers.errors import BadRequest, ProviderError
from crucible.resilience.breaker import BreakerState, CircuitBreaker
from crucible.resilience.limiter import AdaptiveLimiter
from crucible.runtime.samples import RecentSamples


class Health(StrEnum):
    READY = "ready"
    SLOW = "slow"
    FAILING = "failing"
    OFFLINE = "offline"
    DISABLED = "disabled"


# Told of every verdict on a call: the member, and the error (None: it answered).
OutcomeListener = Callable[["Member", ProviderError | None], None]


@dataclass(frozen=True, slots=True)
class MemberSnapshot:
    """One member, for status. Latencies are milliseconds over the recent window, or None."""

    name: str
    model: str
    priority: int
    state: str
    calls: int
    failures: int
    last_error: str | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    first_byte_p50_ms: float | None
    first_byte_p95_ms: float | None
    first_byte_p99_ms: float | None
    concurrency_limit: int
    in_flight: int
    queued: int
    trips: int
    consecutive_failures: int
    failure_rate: float
    cooldown_remaining_s: float
    parked_remaining_s: float
    health: Health
    disabled: str | None
    warming: int


def counts_against_breaker(error: ProviderError) -> bool:
    """BadRequest is about this request (too long, bad parameter), not the provider's health.

    Auth and model errors do count: the provider is unusable as configured, the circuit routes
    around it, and the background probe (which checks the key and the model) lets it back in
    once the configuration is fixed.
    """
    return not isinstance(error, BadRequest)


class Member:
    def __init__(
        self,
        provider: Provider,
        priority: int,
        index: int,
        breaker: CircuitBreaker,
        limiter: AdaptiveLimiter,
        latency_window: int,
        *,
        slow_after: float = math.inf,
        on_outcome: OutcomeListener | None = None,
    ) -> None:
        self.provider = provider
        self.priority = priority
        self.index = index  # listed order: the tie-break after priority and latency
        self.breaker = breaker
        self.limiter = limiter
        self.latency = RecentSamples(latency_window)
        self.first_byte = RecentSamples(latency_window)
        self.calls = 0
        self.failures = 0
        self.last_error: str | None = None
        self.parked_until = 0.0
        self.probe_task: asyncio.Task[Any] | None = None
        self.disabled: str | None = None  # why no call is made until the configuration changes
        self.last_failed = False
        self.warming = 0  # attempts cut before their first byte, still running to it
        self._slow_after = slow_after  # a first-byte p50 above this (seconds) is "slow"
        self._on_outcome = on_outcome

    @property
    def name(self) -> str:
        return self.provider.name

    def selectable(self, now: float) -> bool:
        """Not disabled, not parked by a Retry-After, and its circuit would let a call through."""
        return self.disabled is None and now >= self.parked_until and self.breaker.available()

    def rank(self) -> tuple[int, bool, float, int]:
        """Sort key within the pool: tier, then a free slot, then the fastest recent first byte.

        A member with no samples yet ranks as fastest, so every member gets measured once.
        """
        p50 = self.first_byte.percentile(0.5)
        return (self.priority, self.limiter.saturated(), -1.0 if p50 is None else p50, self.index)

    def park(self, now: float, seconds: float) -> None:
        self.parked_until = max(self.parked_until, now + seconds)

    def disable(self, reason: str) -> None:
        """No more calls (a rejected key): until the pool is rebuilt or :meth:`enable`."""
        self.disabled = reason

    def enable(self) -> None:
        self.disabled = None

    def note_success(self) -> None:
        self.last_failed = False
        if self._on_outcome is not None:
            self._on_outcome(self, None)

    def note_failure(self, error: ProviderError) -> None:
        self.failures += 1
        self.last_error = type(error).__name__
        # A request the provider refused as sent says nothing about its health (as for the
        # breaker, ``counts_against_breaker``).
        self.last_failed = self.last_failed or counts_against_breaker(error)
        if self._on_outcome is not None:
            self._on_outcome(self, error)

    def health(self, now: float) -> Health:
        if self.disabled is not None:
            return Health.DISABLED
        if now < self.parked_until or self.breaker.state is not BreakerState.CLOSED:
            return Health.OFFLINE
        if self.last_failed:
            return Health.FAILING
        p50 = self.first_byte.percentile(0.5)
        if p50 is not None and p50 > self._slow_after:
            return Health.SLOW
        return Health.READY

    def snapshot(self, now: float) -> MemberSnapshot:
        status = self.breaker.status()
        limiter = self.limiter.status()
        return MemberSnapshot(
            name=self.provider.name,
            model=self.provider.model,
            priority=self.priority,
            state=str(status.state),
            calls=self.calls,
            failures=self.failures,
            last_error=self.last_error,
            latency_p50_ms=_ms(self.latency.percentile(0.5)),
            latency_p95_ms=_ms(self.latency.percentile(0.95)),
            latency_p99_ms=_ms(self.latency.percentile(0.99)),
            first_byte_p50_ms=_ms(self.first_byte.percentile(0.5)),
            first_byte_p95_ms=_ms(self.first_byte.percentile(0.95)),
            first_byte_p99_ms=_ms(self.first_byte.percentile(0.99)),
            concurrency_limit=limiter.limit,
            in_flight=limiter.in_flight,
            queued=limiter.queued,
            trips=status.trips,
            consecutive_failures=status.consecutive_failures,
            failure_rate=status.failure_rate,
            cooldown_remaining_s=status.cooldown_remaining,
            parked_remaining_s=max(0.0, self.parked_until - now),
            health=self.health(now),
            disabled=self.disabled,
            warming=self.warming,
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)
