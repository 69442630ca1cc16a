"""AdaptiveLimiter: how many requests one provider may have in flight, learned with AIMD.

The limit grows by ``increase / limit`` for each fast success while the limit was actually in
use (about +1 per window of successes, like TCP congestion avoidance), and shrinks
multiplicatively on an explicit overload signal (RateLimited: ×``decrease``) or when a first
byte took more than ``slow_factor`` × the provider's baseline, or never came
(×``slow_decrease``). It stays within ``[minimum, maximum]``. The baseline is an EWMA of
first-byte latency, the part of a call that reflects the provider's queue rather than the
length of the answer. Defaults and reasoning: ``config/settings.py`` (``ResilienceConstants``).

Waiters queue in two classes: interactive work (an inline completion the user is waiting for)
is always admitted before background work (prefetch, reviews); FIFO within a class. A waiter
that is cancelled leaves the queue, and one cancelled just after being admitted hands its permit
back, so cancellation never leaks capacity.

Raises nothing of its own; ``CancelledError`` propagates from :meth:`AdaptiveLimiter.acquire`
and :meth:`AdaptiveLimiter.acquire_until` (whose time limit uses the injected ``Clock``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import deque
from dataclasses import dataclass

from crucible.resilience.clock import Clock
from crucible.resilience.policy import LimiterPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LimiterStatus:
    limit: int
    in_flight: int
    queued: int
    # The EWMA of first-byte latency, seconds (None before the first success): a first byte
    # over ``slow_factor`` times this lowers the limit, so status shows it next to the limit.
    baseline: float | None


class ConcurrencyPermit:
    """One unit of a provider's concurrency (a slot), held for the whole of a call, stream
    included.

    End it with exactly one of :meth:`succeeded`, :meth:`throttled`, :meth:`timed_out` or
    :meth:`release`; the first call wins and later ones do nothing, so cleanup paths may call
    :meth:`release` unconditionally.
    """

    __slots__ = ("_done", "_limiter")

    def __init__(self, limiter: AdaptiveLimiter) -> None:
        self._limiter = limiter
        self._done = False

    def succeeded(self, first_byte: float) -> None:
        """The call succeeded and its first byte took ``first_byte`` seconds."""
        if self._end():
            self._limiter._on_success(first_byte)
            self._limiter._free()

    def throttled(self) -> None:
        """The provider said it is overloaded (429)."""
        if self._end():
            self._limiter._on_drop(self._limiter.policy.decrease, "rate limited")
            self._limiter._free()

    def timed_out(self) -> None:
        """No first byte in time: the slowest kind of slow."""
        if self._end():
            self._limiter._on_drop(self._limiter.policy.slow_decrease, "first byte timed out")
            self._limiter._free()

    def release(self) -> None:
        """Give the slot back without telling the limiter anything (cancelled, other errors)."""
        if self._end():
            self._limiter._free()

    def _end(self) -> bool:
        if self._done:
            return False
        self._done = True
        return True


class AdaptiveLimiter:
    """The concurrency limit of one provider. Not thread-safe; lives on the event loop."""

    def __init__(self, name: str, policy: LimiterPolicy | None = None) -> None:
        self.name = name
        self.policy = policy or LimiterPolicy()
        self._limit = float(self.policy.initial)
        self._in_flight = 0
        self._baseline: float | None = None
        self._interactive: deque[asyncio.Future[None]] = deque()
        self._background: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return max(self.policy.minimum, min(self.policy.maximum, int(self._limit)))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return len(self._interactive) + len(self._background)

    def memory_bytes(self) -> int:
        """What grows with use (O(queued)): the two wait queues and their waiting futures;
        not the waiters' own coroutines (the requests' memory) nor this fixed object."""
        queues = sys.getsizeof(self._interactive) + sys.getsizeof(self._background)
        waiters = (*self._interactive, *self._background)
        return queues + sum(sys.getsizeof(waiter) for waiter in waiters)

    def saturated(self) -> bool:
        return self._in_flight >= self.limit

    def status(self) -> LimiterStatus:
        return LimiterStatus(self.limit, self._in_flight, self.queued, self._baseline)

    def try_acquire(self) -> ConcurrencyPermit | None:
        """A slot now if one is free (nobody can be queued then), else None. Never waits."""
        if self._in_flight >= self.limit:
            return None
        self._in_flight += 1
        return ConcurrencyPermit(self)

    async def acquire(self, *, background: bool = False) -> ConcurrencyPermit:
        """Wait for a slot; interactive callers are admitted before any background caller."""
        slot = self.try_acquire()
        if slot is not None:
            return slot
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._background if background else self._interactive
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._free()  # admitted and cancelled in the same tick: pass the slot on
            else:
                queue.remove(waiter)
            raise
        return ConcurrencyPermit(self)

    async def acquire_until(
        self, clock: Clock, until: float, *, background: bool = False
    ) -> ConcurrencyPermit | None:
        """:meth:`acquire`, giving up (None) when ``clock`` reaches ``until``."""
        slot = self.try_acquire()
        if slot is not None:
            return slot
        task = asyncio.get_running_loop().create_task(self.acquire(background=background))
        granted = False
        try:
            await clock.wait([task], until)
            granted = task.done()
            return task.result() if granted else None
        finally:
            if not granted:
                task.cancel()
                await asyncio.wait((task,))
                if not task.cancelled() and task.exception() is None:
                    task.result().release()  # admitted while we were giving up (or cancelled)

    def _free(self) -> None:
        self._in_flight -= 1
        self._admit()

    def _admit(self) -> None:
        # The admitted waiter is counted at once, so a caller arriving before it runs cannot
        # take the same slot.
        while self._in_flight < self.limit and (self._interactive or self._background):
            queue = self._interactive or self._background
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._in_flight += 1

    def _on_success(self, first_byte: float) -> None:
        policy = self.policy
        baseline = self._baseline
        self._baseline = (
            first_byte
            if baseline is None
            else baseline + policy.baseline_weight * (first_byte - baseline)
        )
        if baseline is not None and first_byte > policy.slow_factor * baseline:
            self._on_drop(policy.slow_decrease, f"first byte {first_byte * 1000:.0f} ms, slow")
            return
        # Only a limit that was the constraint has been tested; an idle limit must not creep
        # up to the maximum and then let a burst through all at once. In flight includes us.
        if self._in_flight * 2 >= self._limit:
            self._limit = min(float(policy.maximum), self._limit + policy.increase / self._limit)
            self._admit()

    def _on_drop(self, factor: float, why: str) -> None:
        before = self.limit
        self._limit = max(float(self.policy.minimum), self._limit * factor)
        if self.limit != before:
            log.info(
                "provider %s: concurrency limit %d -> %d (%s)", self.name, before, self.limit, why
            )
