"""CircuitBreaker: stop sending requests to a provider that keeps failing, and let it back in.

::

    closed ──(N consecutive failures, or failure rate over the last calls)──▶ open
    open ──(cooldown elapsed: the next acquire takes the single trial)──▶ half_open
    half_open ──(trial succeeded)──▶ closed
    half_open ──(trial failed)──▶ open, with a longer cooldown (×multiplier, up to the cap)

A call asks :meth:`CircuitBreaker.acquire` for a :class:`BreakerAdmission` and reports how it
went with exactly one of :meth:`~CircuitBreaker.record_success`,
:meth:`~CircuitBreaker.record_failure` or :meth:`~CircuitBreaker.release` (no verdict:
cancelled, or a request-specific error). A verdict counts only in the state its admission was
issued in: a call admitted while closed that fails after the circuit opened tells nothing new,
and only the trial decides a half-open circuit.

The breaker raises nothing of its own; refusal is ``acquire() -> None``. Time comes from an
injected monotonic clock and cooldown jitter from an injected random source (reliability §2.4:
Polly and Resilience4j test their breakers on a fake clock the same way). Defaults and their
sources: ``config/settings.py`` (``ResilienceSettings``, ``ResilienceConstants``).
"""

from __future__ import annotations

import logging
import random as _random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from crucible.resilience.policy import BreakerPolicy

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerAdmission:
    """Permission for one call; ``trial`` is the single call a half-open circuit lets through."""

    generation: int
    trial: bool


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, as logged and as passed to listeners."""

    name: str
    from_state: BreakerState
    to_state: BreakerState
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """What ``crucible/status`` shows about one circuit."""

    state: BreakerState
    trips: int
    cooldown_remaining: float
    consecutive_failures: int
    failure_rate: float
    calls_in_window: int  # the calls ``failure_rate`` is over


TransitionListener = Callable[[Transition], None]


class CircuitBreaker:
    """The circuit of one provider. Not thread-safe; lives on the event loop."""

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.name = name
        self._policy = policy or BreakerPolicy()
        self._clock = clock
        self._random = random
        self._state = BreakerState.CLOSED
        # Bumped on every transition: admissions from an earlier generation carry no verdict.
        self._generation = 0
        self._window: deque[bool] = deque(maxlen=self._policy.window_size)  # True = failure
        self._consecutive = 0
        self._trips = 0  # total, for status
        self._streak = 0  # trips since the circuit last stayed healthy; drives the cooldown
        self._open_until = 0.0
        self._closed_since: float | None = None
        self._trial_out = False
        self._listeners: list[TransitionListener] = []

    @property
    def state(self) -> BreakerState:
        return self._state

    def add_listener(self, listener: TransitionListener) -> None:
        """Called after every transition, synchronously; it must not raise (it is logged)."""
        self._listeners.append(listener)

    def cooldown_remaining(self) -> float:
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def available(self) -> bool:
        """Whether :meth:`acquire` would grant an admission now; changes nothing."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            return self._clock() >= self._open_until
        return not self._trial_out

    def acquire(self) -> BreakerAdmission | None:
        """An admission for one call, or None while the circuit refuses calls.

        After the cooldown, the first caller moves the circuit to half-open and gets the trial;
        everyone else is refused until the trial has a verdict or is released.
        """
        if self._state is BreakerState.CLOSED:
            return BreakerAdmission(self._generation, trial=False)
        if self._state is BreakerState.OPEN:
            if self._clock() < self._open_until:
                return None
            self._transition(BreakerState.HALF_OPEN, "cooldown elapsed")
        if self._trial_out:
            return None
        self._trial_out = True
        return BreakerAdmission(self._generation, trial=True)

    def record_success(self, admission: BreakerAdmission) -> None:
        if admission.generation != self._generation:
            return
        if self._state is BreakerState.HALF_OPEN:
            self._close("trial succeeded")
        elif self._state is BreakerState.CLOSED:
            self._consecutive = 0
            self._window.append(False)

    def record_failure(self, admission: BreakerAdmission, reason: str) -> None:
        """``reason`` is logged: an error type name or a short phrase, never a message text."""
        if admission.generation != self._generation:
            return
        if self._state is BreakerState.HALF_OPEN:
            self._open(f"trial failed ({reason})")
            return
        if self._state is not BreakerState.CLOSED:
            return
        self._consecutive += 1
        self._window.append(True)
        policy = self._policy
        if self._consecutive >= policy.consecutive_failures:
            plural = "s" if self._consecutive != 1 else ""
            self._open(f"{self._consecutive} consecutive failure{plural} (last: {reason})")
        elif len(self._window) >= policy.minimum_calls and self._rate() >= policy.failure_rate:
            self._open(
                f"failure rate {self._rate():.0%} over the last {len(self._window)} calls"
                f" (last: {reason})"
            )

    def release(self, admission: BreakerAdmission) -> None:
        """The call ended without a verdict; a trial's slot goes to the next caller."""
        if admission.trial and admission.generation == self._generation:
            self._trial_out = False

    def memory_bytes(self) -> int:
        """What grows with use (O(1)): the outcome window (a deque of the shared True/False,
        at most ``window_size``) and the listeners list; not this fixed object."""
        return sys.getsizeof(self._window) + sys.getsizeof(self._listeners)

    def status(self) -> BreakerStatus:
        return BreakerStatus(
            state=self._state,
            trips=self._trips,
            cooldown_remaining=self.cooldown_remaining(),
            consecutive_failures=self._consecutive,
            failure_rate=self._rate(),
            calls_in_window=len(self._window),
        )

    def _rate(self) -> float:
        return sum(self._window) / len(self._window) if self._window else 0.0

    def _open(self, reason: str) -> None:
        now = self._clock()
        policy = self._policy
        if (
            self._state is BreakerState.CLOSED
            and self._closed_since is not None
            and now - self._closed_since >= policy.cooldown_cap
        ):
            self._streak = 0  # healthy for a whole cap: a new outage starts from the base
        self._streak += 1
        self._trips += 1
        cooldown = policy.cooldown * policy.cooldown_multiplier ** (self._streak - 1)
        cooldown *= 1.0 + policy.cooldown_jitter * (2.0 * self._random() - 1.0)
        # The cap is applied after the jitter so it is a hard bound.
        self._open_until = now + min(policy.cooldown_cap, cooldown)
        self._transition(BreakerState.OPEN, f"{reason}; cooldown {self._open_until - now:.1f} s")

    def _close(self, reason: str) -> None:
        self._closed_since = self._clock()
        self._transition(BreakerState.CLOSED, reason)

    def _transition(self, to_state: BreakerState, reason: str) -> None:
        change = Transition(self.name, self._state, to_state, reason, self._clock())
        self._state = to_state
        self._generation += 1
        self._trial_out = False
        if to_state is not BreakerState.OPEN:
            # A fresh count after every state change: failures from before an outage must not
            # count again against a provider that just proved itself.
            self._consecutive = 0
            self._window.clear()
        level = logging.WARNING if to_state is BreakerState.OPEN else logging.INFO
        log.log(level, "circuit %s: %s -> %s (%s)", self.name, change.from_state, to_state, reason)
        for listener in tuple(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("circuit %s: transition listener failed", self.name)
