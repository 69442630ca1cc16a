"""Member: what a ProviderPool knows about one of its providers, as a plain record.

A member holds its provider, its circuit breaker and concurrency limiter (each with its own
rules), its recent latencies (whole call and first byte, ``runtime/samples.py``), counters, a
"parked until" time set by a Retry-After or a gateway's spent quota (and why), a "disabled"
reason once the provider rejected its credentials, and how many of its attempts are warming.
The pool (``pool.py``) is the only writer of these fields, from one place per event; this
module only reads them: whether the member can be asked now (:meth:`Member.selectable`), its
place in the order of candidates (:meth:`Member.rank`), its :class:`Health` and its
:class:`MemberSnapshot`. It raises nothing.

Its health, as status pages and the editor's status bar show it (:class:`Health`)::

    disabled      credentials rejected; no calls until the configuration changes
    offline       circuit open or half-open
    rate_limited  parked until a rate limit resets (a 429's Retry-After or reset, a gateway's
                  spent quota, the team's month spent); nothing is wrong with it, it waits
    failing       its last call failed (the circuit is still closed)
    slow          answering, but its first bytes take longer than the failover cut-off
    ready         otherwise

:class:`MemberSnapshot` is the frozen view ``crucible/status`` shows. It names error *types*
only: messages can quote the server, and status must never carry a secret.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from crucible.providers.base import Provider
from crucible.providers.errors import ProviderError
from crucible.resilience.breaker import BreakerState, CircuitBreaker
from crucible.resilience.limiter import AdaptiveLimiter
from crucible.runtime.samples import RecentSamples


class Health(StrEnum):
    READY = "ready"
    SLOW = "slow"
    FAILING = "failing"
    OFFLINE = "offline"
    RATE_LIMITED = "rate_limited"
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
    first_byte_baseline_ms: float | None  # what the limiter calls slow is a multiple of this
    in_flight: int
    queued: int
    trips: int
    consecutive_failures: int
    failure_rate: float
    calls_in_window: int  # the calls ``failure_rate`` is over
    cooldown_remaining_s: float
    parked_remaining_s: float
    health: Health
    disabled: str | None
    warming: int
    parked_reason: str | None = None  # why it is parked, while it is

    def latency_percentiles(self) -> dict[str, float]:
        """Whole calls, as ``crucible/status`` shows them: ``{p50, p95, p99}``, measured only."""
        return _measured(self.latency_p50_ms, self.latency_p95_ms, self.latency_p99_ms)

    def first_byte_percentiles(self) -> dict[str, float]:
        """Time to the first chunk, as ``crucible/status`` shows it."""
        return _measured(self.first_byte_p50_ms, self.first_byte_p95_ms, self.first_byte_p99_ms)


def _measured(p50: float | None, p95: float | None, p99: float | None) -> dict[str, float]:
    found = {"p50": p50, "p95": p95, "p99": p99}
    return {name: value for name, value in found.items() if value is not None}


@dataclass(eq=False, slots=True, kw_only=True)
class Member:
    """One provider in the pool. Identity equality: members are keys of per-request sets."""

    provider: Provider
    priority: int
    index: int  # listed order: the tie-break after priority and latency
    breaker: CircuitBreaker
    limiter: AdaptiveLimiter
    latency: RecentSamples  # whole successful calls, seconds
    first_byte: RecentSamples  # seconds from the start of an attempt to its first chunk
    slow_after: float = math.inf  # a first-byte p50 above this (seconds) is "slow"
    calls: int = 0
    failures: int = 0
    last_error: str | None = None  # the type name of the last error
    last_failed: bool = False  # the last verdict was a failure that says something of health
    parked_until: float = 0.0  # a Retry-After or a spent quota: not asked before this time
    parked_reason: str | None = None  # what parked it, in words for status
    disabled: str | None = None  # why no call is made until the configuration changes
    warming: int = 0  # attempts cut before their first byte, still running to it

    @property
    def name(self) -> str:
        return self.provider.name

    def memory_bytes(self) -> int:
        """What this member's record holds that grows with use (O(queued)): its two latency
        windows, its breaker's outcome window, its limiter's queues."""
        windows = self.latency.memory_bytes() + self.first_byte.memory_bytes()
        return windows + self.breaker.memory_bytes() + self.limiter.memory_bytes()

    def selectable(self, now: float) -> bool:
        """Not disabled, not parked by a Retry-After, and its circuit would let a call through."""
        return self.disabled is None and now >= self.parked_until and self.breaker.available()

    def rank(self) -> tuple[int, bool, float, int]:
        """Sort key within the pool: tier, then a free slot, then the fastest recent first byte.

        A member with no samples yet ranks as fastest, so every member gets measured once.
        """
        p50 = self.first_byte.percentile(0.5)
        return (self.priority, self.limiter.saturated(), -1.0 if p50 is None else p50, self.index)

    def health(self, now: float) -> Health:
        if self.disabled is not None:
            return Health.DISABLED
        if self.breaker.state is not BreakerState.CLOSED:
            return Health.OFFLINE
        if now < self.parked_until:
            return Health.RATE_LIMITED  # before failing: a 429 that parked it is a wait
        if self.last_failed:
            return Health.FAILING
        p50 = self.first_byte.percentile(0.5)
        if p50 is not None and p50 > self.slow_after:
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
            first_byte_baseline_ms=_ms(limiter.baseline),
            in_flight=limiter.in_flight,
            queued=limiter.queued,
            trips=status.trips,
            consecutive_failures=status.consecutive_failures,
            failure_rate=status.failure_rate,
            calls_in_window=status.calls_in_window,
            cooldown_remaining_s=status.cooldown_remaining,
            parked_remaining_s=max(0.0, self.parked_until - now),
            parked_reason=self.parked_reason if now < self.parked_until else None,
            health=self.health(now),
            disabled=self.disabled,
            warming=self.warming,
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)
