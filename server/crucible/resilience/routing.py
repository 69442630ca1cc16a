"""Routing: which member a request asks next, and what a failed attempt means for the request.

Ranking. Members are ranked by priority tier (lower first), then by a free concurrency slot,
then by recent first-byte p50 (fastest first; unmeasured members first, so each gets measured),
then by listed order (``Member.rank``). A member whose circuit is open, or that a long
Retry-After parked, is skipped, and so is one the request excluded.

Failover and retries. Until the first chunk reaches the caller, a failed attempt fails over:

- inline completions (``fim``) never retry a provider; the next candidate is tried at once;
- chat retries a provider after a retryable error up to ``max_retries`` times, waiting full
  jitter or its Retry-After (capped, ``backoff.py``); a final 4xx, a first-byte timeout, a
  Retry-After over the cap, or an open circuit moves on instead.

Retries of a provider the request already tried, and hedges, spend the shared retry budget;
when it is spent the request fails over instead. A failover to a provider that has not seen the
request is free: it adds no load to the failing one, and circuit breakers bound what a failing
provider costs (``consecutive_failures`` requests, then one probe per open window). An attempt
queues for a concurrency slot no longer than its first-byte allowance: a longer queue is a
failover, like a silent provider.

The first-byte allowance. A provider is cut for not having started to answer only when another
one can take over: ``first_byte`` (the configured cut-off) for a provider with no history, or
``first_byte_factor`` × its own recent p95 when that is longer (a provider known to be slow is
given its usual time), never past the deadline. The last candidate left waits until the
deadline: cutting it would only throw its answer away. The same allowance bounds how long an
attempt queues for a slot. A cut attempt that is ``overdue`` (silent for more than twice its
own usual first byte) has failed; any other gets no verdict here (``cut``): the pool lets it
run on to its first byte (``pool.py``, warming) and the verdict comes from that.

Rejected credentials (401/403) disable the member: no call of any request can succeed until
the configuration changes, so none is made (not even a probe).

Hedging (opt-in): with no first byte after the member's recent p95 first-byte latency (with a
floor, and only once it has enough samples), the same request also goes to the next candidate,
at most once per request, and only if that candidate has a free slot now: a hedge never queues.

Raises ``DeadlineExceeded`` when the deadline passes before an attempt starts and, when no
candidate is left, the last attempt's ``ProviderError`` or else ``NoProviderAvailable``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

from crucible.providers.errors import AuthError, ProviderError, RateLimited
from crucible.resilience.attempt import Attempt, Opener
from crucible.resilience.backoff import RetryBudget, retry_wait
from crucible.resilience.clock import Clock
from crucible.resilience.errors import DeadlineExceeded, FirstByteTimeout, NoProviderAvailable
from crucible.resilience.limiter import Slot
from crucible.resilience.member import Member
from crucible.resilience.policy import ResiliencePolicy

log = logging.getLogger(__name__)

Kind = Literal["fim", "chat"]


@dataclass(slots=True, kw_only=True)
class Request:
    """The routing state of one request."""

    kind: Kind
    opener: Opener
    background: bool
    timeout: float
    deadline: float
    first_byte: float
    tried: set[Member] = field(default_factory=set)
    excluded: set[Member] = field(default_factory=set)
    retries: dict[Member, int] = field(default_factory=dict)
    retry: tuple[Member, float] | None = None  # chat: the member to retry and the wait first
    last_error: ProviderError | None = None
    hedged: bool = False
    # Asked when the caller leaves before any first byte: whether its attempts should run on
    # to their first byte (a prompt the next request shares, worth the server's prompt cache).
    warm: Callable[[], bool] | None = None


class Router:
    """The routing decisions of one pool over its ``members`` (in priority order; the first
    names the pool in its own errors). ``on_queued``, when given, is told how long (seconds)
    each attempt waited for a concurrency slot."""

    def __init__(
        self,
        members: Sequence[Member],
        policy: ResiliencePolicy,
        clock: Clock,
        random: Callable[[], float],
        on_queued: Callable[[float], None] | None = None,
    ) -> None:
        self._members = members
        self._policy = policy
        self._clock = clock
        self._random = random
        self._on_queued = on_queued
        self._budget = RetryBudget.from_policy(policy.retry, clock.now)

    @property
    def _name(self) -> str:
        return self._members[0].name

    def request(
        self,
        kind: Kind,
        opener: Opener,
        *,
        background: bool,
        timeout: float,
        first_byte: float,
        exclude: Collection[str] = (),
        warm: Callable[[], bool] | None = None,
    ) -> Request:
        """A new request, ``timeout`` seconds from now; it counts towards the retry budget."""
        req = Request(
            kind=kind,
            opener=opener,
            background=background,
            timeout=timeout,
            deadline=self._clock.now() + timeout,
            first_byte=first_byte,
            excluded={m for m in self._members if m.name in exclude},
            warm=warm,
        )
        self._budget.record_request()
        return req

    async def open_next(self, req: Request) -> Attempt:
        """Start the next attempt: a pending chat retry, else the best remaining candidate."""
        while True:
            now = self._clock.now()
            if now >= req.deadline:
                raise self.deadline_error(req)
            member, wait = self._choose(req, now)
            if member is None:
                raise self._exhausted(req)
            if member in req.tried and not self._budget.try_spend():
                log.debug("pool %s: no retry budget left for %s", self._name, member.name)
                req.excluded.add(member)
                continue
            if wait > 0:
                await self._clock.sleep(wait)
            attempt = await self._start(req, member)
            if attempt is not None:
                return attempt
            req.excluded.add(member)

    def hedge_at(self, req: Request, live: Sequence[Attempt]) -> float:
        """When to hedge the one live attempt; never (``inf``) if hedging does not apply."""
        if not self._policy.hedging or req.hedged or len(live) != 1:
            return math.inf
        samples = live[0].member.first_byte
        if len(samples) < self._policy.hedge_min_samples:
            return math.inf
        p95 = samples.percentile(self._policy.hedge_percentile) or 0.0
        return live[0].started + max(self._policy.hedge_floor, p95)

    def open_hedge(self, req: Request, live: Sequence[Attempt]) -> Attempt | None:
        """A second attempt that never queues: a hedge is only worth it with capacity to spare."""
        req.hedged = True
        member = self._best(req, self._clock.now(), {a.member for a in live})
        if member is None:
            return None
        slot = member.limiter.try_acquire()
        if slot is None:
            return None
        if not self._budget.try_spend():
            slot.release()
            return None
        return self._begin(req, member, slot)

    def first_byte_allowance(self, req: Request, member: Member, now: float) -> float:
        """How long (seconds from ``now``) ``member`` may take to start answering ``req``."""
        remaining = max(0.0, req.deadline - now)
        if not self.has_alternative(req, member, now):
            return remaining
        allowance = req.first_byte
        samples = member.first_byte
        if len(samples) >= self._policy.first_byte_min_samples:
            p95 = samples.percentile(0.95) or 0.0
            allowance = max(allowance, self._policy.first_byte_factor * p95)
        return min(allowance, remaining)

    def has_alternative(self, req: Request, member: Member, now: float) -> bool:
        """Whether another member could still take ``req`` over from ``member``."""
        return any(
            m is not member and m not in req.excluded and m.selectable(now) for m in self._members
        )

    def overdue(self, member: Member, waited: float) -> bool:
        """Whether ``member`` has been silent for longer than ``first_byte_factor`` times its
        own recent p95 first byte. A provider known to answer in 80 ms that is silent after
        1.5 s has failed; one with no history, or a known slow one, may just be slow."""
        p95 = member.first_byte.percentile(0.95)
        return p95 is not None and waited > self._policy.first_byte_factor * p95

    def cut(self, req: Request, attempt: Attempt, error: ProviderError) -> None:
        """``attempt`` is given up on for this request (no first byte in its allowance), with
        no verdict yet: the pool lets it run on to its first byte and settles it then."""
        req.last_error = error
        req.excluded.add(attempt.member)

    def failed(self, req: Request, attempt: Attempt, error: ProviderError) -> None:
        """Record a failed attempt and decide whether this request may retry its member."""
        member = attempt.member
        attempt.fail(error)
        req.last_error = error
        retry = self._policy.retry
        if isinstance(error, AuthError):
            member.disable(f"credentials rejected ({error.message})")
            log.warning(
                "provider %s: credentials rejected; no more calls until the configuration changes",
                member.name,
            )
        if isinstance(error, RateLimited) and error.retry_after is not None:
            member.park(self._clock.now(), min(error.retry_after, retry.park_cap))
        if req.kind == "chat" and not isinstance(error, FirstByteTimeout):
            count = req.retries.get(member, 0) + 1
            wait = retry_wait(count, error, retry, self._random)
            if count <= retry.max_retries and wait is not None:
                req.retries[member] = count
                req.retry = (member, wait)
                return
        req.excluded.add(member)

    def deadline_error(self, req: Request) -> DeadlineExceeded:
        error = DeadlineExceeded(self._name, f"no answer within {req.timeout:g} s")
        error.__cause__ = req.last_error
        return error

    def _choose(self, req: Request, now: float) -> tuple[Member | None, float]:
        if req.retry is not None:
            member, wait = req.retry
            req.retry = None
            # The retry waited out any Retry-After itself, so parking does not stop it.
            if member.breaker.available() and now + wait < req.deadline:
                return member, wait
            req.excluded.add(member)
        return self._best(req, now), 0.0

    def _best(self, req: Request, now: float, busy: Collection[Member] = ()) -> Member | None:
        candidates = [
            m
            for m in self._members
            if m not in req.excluded and m not in busy and m.selectable(now)
        ]
        return min(candidates, key=Member.rank) if candidates else None

    async def _start(self, req: Request, member: Member) -> Attempt | None:
        # A queue longer than the first-byte allowance is a failover, like a silent provider.
        asked = self._clock.now()
        until = asked + self.first_byte_allowance(req, member, asked)
        slot = await member.limiter.acquire_until(self._clock, until, background=req.background)
        if slot is None:
            return None
        if self._on_queued is not None:
            self._on_queued(self._clock.now() - asked)
        return self._begin(req, member, slot)

    def _begin(self, req: Request, member: Member, slot: Slot) -> Attempt | None:
        ticket = member.breaker.acquire()
        if ticket is None:  # the circuit changed while we queued, or someone took the trial
            slot.release()
            return None
        member.calls += 1
        req.tried.add(member)
        now = self._clock.now()
        return Attempt(
            member,
            req.opener,
            slot,
            ticket,
            clock=self._clock.now,
            first_byte_timeout=self.first_byte_allowance(req, member, now),
        )

    def _exhausted(self, req: Request) -> ProviderError:
        if req.last_error is not None:
            return req.last_error
        now = self._clock.now()
        states = ", ".join(
            f"{m.name} {'parked' if now < m.parked_until else m.breaker.state}"
            for m in self._members
        )
        return NoProviderAvailable(self._name, f"no provider available ({states})")
