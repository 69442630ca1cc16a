"""ProviderPool: several providers behind one Provider, routed around failures within a deadline.

This module is the whole life of a request in the pool; the pieces it uses each own one rule
and keep their own state (``breaker``, ``limiter``, ``backoff``, ``probes``, ``stream``,
``clock``), and ``member.py`` is the plain record of what the pool knows about a provider,
written only from here. The sequence of one request::

    stream_fim / stream_chat
      PoolRequest: deadline = now + timeout; counted in the retry budget
      loop until some attempt yields its first chunk:
        no live attempt -> open one: a pending chat retry, else the best candidate (tier, a
                           free slot, fastest recent first byte, listed order); wait for a
                           concurrency permit no longer than the first-byte allowance, then
                           the team budget's leave where the member has one (refused: the next
                           candidate, ``call_budget.py``), then a breaker admission. A retry
                           of a tried member spends the retry budget.
        wait for the first of: a chunk, the deadline, an allowance, the hedge time
        a chunk            -> that attempt wins; a losing hedge is closed
        an error           -> a verdict against the member; chat may retry it, else fail over
        allowance passed   -> overdue: failed and closed; else cut and left warming; fail over
        hedge time         -> a second attempt at the next candidate, if it has a free permit
        deadline passed    -> every live attempt given up on; DeadlineExceeded
      stream the winner under the same deadline; no failover once a chunk was yielded
      settle the attempt exactly once (success, failure, or abandoned), close its stream

The deadline covers queueing, retries, backoff and the whole stream (reliability §2.5: Envoy's
route timeout includes retries), so a provider dripping a byte a second cannot hold a request
open. Failover: inline completions (``fim``) never retry a provider, the next candidate is
tried at once; chat retries a provider after a retryable error up to ``max_retries`` times,
waiting full jitter or its Retry-After (``backoff.py``); a final 4xx, a first-byte timeout, a
Retry-After over the cap, or an open circuit moves on instead. A failover to a provider that
has not seen the request is free (circuit breakers bound what a failing provider costs).
Rejected credentials (401/403) disable the member until the configuration changes.

The first-byte allowance. A provider is cut for not having started to answer only when another
one can take over: ``first_byte`` for a provider with no history, or ``first_byte_factor`` ×
its own recent p95 when longer, never past the deadline. The last candidate waits until the
deadline: cutting it would only throw its answer away. A cut attempt that is *overdue* (silent
for more than ``first_byte_factor`` × its usual first byte: a fast provider gone quiet) has
failed and is closed. Any other is *warming*: it runs on, holding its permit, until its first
byte or ``warm_limit`` after it started, one per provider at a time, so the provider's prompt
cache serves the next request and the verdict is the truth (a first byte: slow, a success; none:
``NoFirstByte``, a failure). The same happens when the caller leaves before any first byte and
its ``warm`` predicate says the next request shares the prompt.

Hedging (opt-in): with no first byte after the member's recent p95 (``hedge_floor`` at least,
with ``hedge_min_samples``), the same request also goes to the next candidate, at most once,
only if that one has a free permit now; the first chunk wins. Probes (``probes.py``): while a
circuit is open, one ``provider.probe()`` per open window decides whether it goes half-open.

Errors: ``errors.py`` draws the tree. The pool raises a member's ``ProviderError`` when every
candidate failed, ``DeadlineExceeded`` / ``NoProviderAvailable`` of its own, or
``CancelledError``, which is never swallowed and never counted against a provider: a
cancellation that comes once the deadline has passed gets the deadline's verdict, as if the
pool's own timer had come first (under load the caller's timeout can fire in the same turn).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random as _random
import sys
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, Literal

from crucible.providers.base import (
    ChatRequest,
    FimRequest,
    ProbeResult,
    Provider,
    QuotaReporter,
)
from crucible.providers.errors import (
    AuthError,
    BadRequest,
    ProviderError,
    ProviderTimeout,
    RateLimited,
)
from crucible.resilience.backoff import RetryBudget, retry_wait
from crucible.resilience.breaker import (
    BreakerAdmission,
    BreakerState,
    CircuitBreaker,
    Transition,
    TransitionListener,
)
from crucible.resilience.call_budget import CallBudget, CallCost, Charge
from crucible.resilience.clock import Clock
from crucible.resilience.errors import (
    BudgetRefused,
    DeadlineExceeded,
    FirstByteTimeout,
    NoFirstByte,
    NoProviderAvailable,
)
from crucible.resilience.limiter import AdaptiveLimiter, ConcurrencyPermit
from crucible.resilience.member import Member, MemberSnapshot, OutcomeListener
from crucible.resilience.policy import ResiliencePolicy
from crucible.resilience.probes import HealthProbes
from crucible.resilience.stream import PulledStream
from crucible.runtime.samples import RecentSamples

log = logging.getLogger(__name__)

Kind = Literal["fim", "chat"]
Opener = Callable[[Provider], AsyncGenerator[str, None]]


def counts_against_breaker(error: ProviderError) -> bool:
    """BadRequest is about this request (too long, bad parameter), not the provider's health.

    Auth and model errors do count: the provider is unusable as configured, the circuit routes
    around it, and the background probe (which checks the key and the model) lets it back in
    once the configuration is fixed.
    """
    return not isinstance(error, BadRequest)


@dataclass(slots=True, kw_only=True)
class PoolRequest:
    """The state of one request in the pool, from its start to its first chunk."""

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
    cost: CallCost | None = None  # what one call is charged, where a budget applies


@dataclass(slots=True, eq=False)
class Attempt:
    """One stream from one member; it holds a concurrency permit and a breaker admission from
    its start until the pool settles it, exactly once (``settled``)."""

    member: Member
    stream: PulledStream
    permit: ConcurrencyPermit
    admission: BreakerAdmission
    started: float
    # Not fixed: lifted to the deadline when no other provider is left to fail over to.
    first_byte_deadline: float
    first_byte: float | None = None  # seconds from start, once the first pull returned
    settled: bool = False
    charge: Charge | None = None  # the budget's claim, settled when the attempt is closed
    answer_chars: int = 0  # text yielded so far: what the budget's correction counts


class ProviderPool:
    """A Provider made of providers; it owns them (``aclose`` closes them) unless built with
    ``owns_providers=False`` (the composition root shares providers between the pools of
    successive configurations and closes them itself).

    ``members`` are (provider, priority) pairs, lower priority tried first, ties in listed
    order; ``name`` and ``model`` are the primary's (the first in that order). ``clock``
    (monotonic seconds), ``sleep`` and ``random`` are injected so tests run on fake time.
    ``on_queued``, when given, is told how long (seconds) each attempt waited for a permit.
    ``max_connections`` names each provider's connection pool size, which caps that member's
    concurrency (``LimiterPolicy.for_connections``); a member not named takes the policy's.
    """

    def __init__(
        self,
        members: Sequence[tuple[Provider, int]],
        policy: ResiliencePolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        owns_providers: bool = True,
        on_queued: Callable[[float], None] | None = None,
        on_outcome: OutcomeListener | None = None,
        on_activity: Callable[[int], None] | None = None,
        max_connections: Mapping[str, int] | None = None,
        budget: CallBudget | None = None,
    ) -> None:
        if not members:
            raise ValueError("a ProviderPool needs at least one provider")
        names = [provider.name for provider, _ in members]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique: {names}")
        self._policy = policy = policy or ResiliencePolicy()
        self._clock = Clock(clock, sleep)
        self._random = random
        self._probes = HealthProbes(self._clock, policy.probe_timeout)
        self._budget = RetryBudget.from_policy(policy.retry, clock)
        self._closed = False
        self._owns_providers = owns_providers
        self._on_queued = on_queued
        self._on_outcome = on_outcome
        self._on_activity = on_activity
        # A team's limits on calls and tokens (call_budget.py); asked before each attempt.
        self._call_budget = budget
        self._budget_parked: set[Member] = set()  # parked by the budget (the month spent)
        self._active = 0  # interactive (not background) requests between start and end
        self._warming: set[asyncio.Task[None]] = set()
        connections = max_connections or {}
        self._members: list[Member] = []
        for index, (provider, priority) in enumerate(members):
            limits = policy.limiter
            if provider.name in connections:
                limits = limits.for_connections(connections[provider.name])
            member = Member(
                provider=provider,
                priority=priority,
                index=index,
                breaker=CircuitBreaker(provider.name, policy.breaker, clock=clock, random=random),
                limiter=AdaptiveLimiter(provider.name, limits),
                latency=RecentSamples(policy.latency_window),
                first_byte=RecentSamples(policy.latency_window),
                slow_after=policy.fim_first_byte,
            )
            if policy.probes:
                member.breaker.add_listener(functools.partial(self._on_transition, member))
            self._members.append(member)
        # Priority order, listed order within a tier: the primary comes first.
        self._members.sort(key=lambda m: (m.priority, m.index))
        # The members whose provider reads its gateway's rate-limit headers (once: a runtime
        # protocol check costs microseconds).
        self._quota_readers: dict[Member, QuotaReporter] = {
            m: m.provider for m in self._members if isinstance(m.provider, QuotaReporter)
        }

    @property
    def name(self) -> str:
        return self._members[0].provider.name

    @property
    def model(self) -> str:
        return self._members[0].provider.model

    @property
    def policy(self) -> ResiliencePolicy:
        return self._policy

    def add_listener(self, listener: TransitionListener) -> None:
        """Every member's circuit transitions (status pages, user notifications)."""
        for member in self._members:
            member.breaker.add_listener(listener)

    def enable_all(self) -> None:
        """The configuration changed: members disabled by rejected credentials may try again
        (the user may have fixed the key's variable or the provider's account), and members
        the budget parked for the month are asked again (the limit may have been raised; if
        not, the budget's next decision parks them again, with no provider call)."""
        for member in self._members:
            member.disabled = None
        for member in self._budget_parked:
            member.parked_until, member.parked_reason = 0.0, None
        self._budget_parked.clear()

    def use_budget(self, budget: CallBudget | None) -> None:
        """The team budget asked before each attempt from now on (a configuration change may
        build another: the members, their breakers and connections stay)."""
        self._call_budget = budget

    def snapshot(self) -> tuple[MemberSnapshot, ...]:
        now = self._clock.now()
        return tuple(member.snapshot(now) for member in self._members)

    def memory_bytes(self) -> int:
        """An estimate of what the pool holds that grows with use (O(members + queued)): each
        member's latency windows, breaker window and limiter queues (``Member.memory_bytes``),
        the retry budget's timestamps (``RetryBudget.memory_bytes``, the largest part: up to
        ~260 KB), and the set of warming attempts. Not counted: the providers (their HTTP
        clients and connection pools), the requests in flight (their coroutines and the
        chunks a stream buffers), and fixed objects of a few KB per member."""
        held = self._budget.memory_bytes() + sys.getsizeof(self._warming)
        return held + sum(member.memory_bytes() for member in self._members)

    def stream_fim(
        self,
        request: FimRequest,
        *,
        background: bool = False,
        timeout: float | None = None,
        exclude: Collection[str] = (),
        warm: Callable[[], bool] | None = None,
    ) -> AsyncGenerator[str, None]:
        """Fail over, never retry; ``timeout`` (s) replaces the policy's ``fim_deadline``.
        Members named in ``exclude`` are not asked (a caller starting over after a stream
        broke mid-way excludes the provider that broke it). ``warm`` is asked if the caller
        leaves before the first byte: True lets the prompt run on to warm the server's cache."""
        seconds = _timeout(self._policy.fim_deadline, timeout)
        cost = CallCost.of_fim(request)
        return self._stream(
            "fim", lambda p: p.stream_fim(request), background, seconds, exclude, warm, cost
        )

    def stream_chat(
        self, request: ChatRequest, *, background: bool = False, timeout: float | None = None
    ) -> AsyncGenerator[str, None]:
        """Retry with backoff, then fail over; ``timeout`` replaces ``chat_deadline``."""
        seconds = _timeout(self._policy.chat_deadline, timeout)
        cost = CallCost.of_chat(request)
        return self._stream(
            "chat", lambda p: p.stream_chat(request), background, seconds, cost=cost
        )

    async def probe(self) -> ProbeResult:
        """Probe every member (``crucible-lsp doctor``); ok when any answers."""
        results = await asyncio.gather(*(self._probes.run(m) for m in self._members))
        pairs = zip(self._members, results, strict=True)
        detail = "; ".join(f"{member.name}: {text}" for member, (_, text) in pairs)
        return ProbeResult(any(ok for ok, _ in results), detail)

    def cancel_warming(self) -> int:
        """Cancel the attempts left warming (memory pressure: each holds a stream and its
        buffers); each closes its stream with no verdict. Returns how many were cancelled."""
        warming = [task for task in self._warming if not task.done()]
        for task in warming:
            task.cancel()
        return len(warming)

    async def aclose(self) -> None:
        """Stop the probes and close every member's provider (if the pool owns them)."""
        if self._closed:
            return
        self._closed = True
        await self._probes.aclose()
        warming = list(self._warming)
        for task in warming:
            task.cancel()
        if warming:
            await asyncio.wait(warming)
        if not self._owns_providers:
            return
        for member in self._members:
            try:
                await member.provider.aclose()
            except Exception as exc:
                log.warning("provider %s: close failed (%s)", member.name, type(exc).__name__)

    # -- one request: start, first chunk, stream ---------------------------------------------

    async def _stream(
        self,
        kind: Kind,
        opener: Opener,
        background: bool,
        seconds: float,
        exclude: Collection[str] = (),
        warm: Callable[[], bool] | None = None,
        cost: CallCost | None = None,
    ) -> AsyncGenerator[str, None]:
        # The request starts, its deadline runs and the retry budget counts it when the
        # caller starts reading, not when it asks for the stream.
        if self._closed:
            raise NoProviderAvailable(self.name, "the provider pool is closed")
        policy = self._policy
        req = PoolRequest(
            kind=kind,
            opener=opener,
            background=background,
            timeout=seconds,
            deadline=self._clock.now() + seconds,
            first_byte=policy.fim_first_byte if kind == "fim" else policy.chat_first_byte,
            excluded={m for m in self._members if m.name in exclude},
            warm=warm,
            cost=cost,
        )
        self._budget.record_request()
        self._activity(+1, background)
        try:
            attempt, chunk = await self._first_chunk(req)
            timer = asyncio.ensure_future(self._clock.sleep(req.deadline - self._clock.now()))
            try:
                while chunk is not None:
                    yield chunk
                    chunk = await self._next_chunk(attempt, req, timer)
                self._succeed(attempt, complete=True)
            except GeneratorExit:
                self._succeed(attempt, complete=False)  # the caller has what it wanted
                raise
            except asyncio.CancelledError:
                self._cancelled_mid_stream(req, attempt)
                raise
            finally:
                timer.cancel()
                await self._close(attempt)
        finally:
            self._activity(-1, background)

    def _activity(self, change: int, background: bool) -> None:
        """Count the requests a user is waiting for; background work (prefetch) is not news."""
        if background:
            return
        self._active += change
        if self._on_activity is not None:
            self._on_activity(self._active)

    async def _first_chunk(self, req: PoolRequest) -> tuple[Attempt, str | None]:
        """Fail over, retry and hedge until some attempt produces its first chunk (or ends)."""
        live: list[Attempt] = []
        try:
            while True:
                if not live:
                    live.append(await self._open_next(req))
                hedge_at = self._hedge_at(req, live)
                until = min(req.deadline, hedge_at, *(a.first_byte_deadline for a in live))
                await self._clock.wait([a.stream.pull() for a in live], until)
                won = await self._take_first(req, live)
                if won is not None:
                    break
                await self._on_timers(req, live, hedge_at)
        except asyncio.CancelledError:
            now = self._clock.now()
            if now >= req.deadline:  # the deadline's verdict (``_cancelled_mid_stream``)
                for attempt in live:
                    await self._give_up(req, attempt, now)
            elif req.warm is not None and req.warm():
                for attempt in live:
                    self._warm(attempt)
            else:
                for attempt in live:
                    await self._close(attempt)
            raise
        except BaseException:
            for attempt in live:
                await self._close(attempt)
            raise
        winner, first = won
        try:
            for loser in live:  # a hedge that lost: cancelled and closed, no verdict
                await self._close(loser)
        except BaseException:
            await self._close(winner)
            raise
        return winner, first

    async def _take_first(
        self, req: PoolRequest, live: list[Attempt]
    ) -> tuple[Attempt, str | None] | None:
        """The first live attempt with a chunk (taken out of ``live``); failed ones fail over."""
        for attempt in [a for a in live if a.stream.ready()]:
            live.remove(attempt)
            try:
                first = self._take(attempt)
            except ProviderError as exc:
                self._failed(req, attempt, exc)
                await self._close(attempt)
                continue
            except BaseException:
                await self._close(attempt)
                raise
            return attempt, first
        return None

    async def _on_timers(self, req: PoolRequest, live: list[Attempt], hedge_at: float) -> None:
        """No chunk yet: act on whichever of the deadline, an allowance or the hedge time came."""
        now = self._clock.now()
        if now >= req.deadline:
            for attempt in live:
                await self._give_up(req, attempt, now)
            live.clear()
            raise self._deadline_error(req)
        for attempt in [a for a in live if now >= a.first_byte_deadline]:
            if not self._has_alternative(req, attempt.member, now):
                # The others were excluded meanwhile: nothing to cut it for.
                attempt.first_byte_deadline = req.deadline
                continue
            live.remove(attempt)
            await self._give_up(req, attempt, now)
        if live and now >= hedge_at:
            hedge = self._open_hedge(req, live)
            if hedge is not None:
                log.debug("hedging %s with %s", live[0].member.name, hedge.member.name)
                live.append(hedge)

    def _cancelled_mid_stream(self, req: PoolRequest, attempt: Attempt) -> None:
        """The caller was cancelled while waiting for the next chunk. Before the deadline
        that says nothing about the provider (settled with no verdict). Once the deadline has
        passed it is the deadline's failure all the same: the caller's own timeout (the
        completion path's backstop, ``completion/fetch.py``) may fire in the same event-loop
        turn as the pool's deadline timer, before the wake-up it set off reaches
        ``_next_chunk`` (a loaded machine runs both late, together). Without this the
        dripping provider's failure was lost to whichever timer won, its circuit stayed
        closed one request longer, and the next request went to it again."""
        if self._clock.now() >= req.deadline:
            error = DeadlineExceeded(
                attempt.member.name, f"deadline of {req.timeout:g} s passed mid-stream"
            )
            self._failed(req, attempt, error)

    async def _next_chunk(
        self, attempt: Attempt, req: PoolRequest, timer: asyncio.Future[None]
    ) -> str | None:
        """The next chunk of the winning stream; after the first one there is no failover.

        ``timer`` ends at the request's deadline; one for the whole stream, not one per chunk.
        """
        pull = attempt.stream.pull()
        if not pull.done() and not timer.done():
            await asyncio.wait((pull, timer), return_when=asyncio.FIRST_COMPLETED)
        if self._clock.now() >= req.deadline or (timer.done() and not pull.done()):
            error = DeadlineExceeded(
                attempt.member.name, f"deadline of {req.timeout:g} s passed mid-stream"
            )
            self._failed(req, attempt, error)
            raise error
        try:
            return self._take(attempt)
        except ProviderError as exc:
            self._failed(req, attempt, exc)
            raise

    # -- choosing and opening attempts -------------------------------------------------------

    async def _open_next(self, req: PoolRequest) -> Attempt:
        """Start the next attempt: a pending chat retry, else the best remaining candidate."""
        for reader in self._quota_readers:  # another pool's call may have spent a shared quota
            self._note_quota(reader)
        while True:
            now = self._clock.now()
            if now >= req.deadline:
                raise self._deadline_error(req)
            member, wait = self._choose(req, now)
            if member is None:
                raise self._exhausted(req)
            if member in req.tried and not self._budget.try_spend():
                log.debug("pool %s: no retry budget left for %s", self.name, member.name)
                req.excluded.add(member)
                continue
            if wait > 0:
                await self._clock.sleep(wait)
            attempt = await self._start(req, member)
            if attempt is not None:
                return attempt
            req.excluded.add(member)

    def _choose(self, req: PoolRequest, now: float) -> tuple[Member | None, float]:
        if req.retry is not None:
            member, wait = req.retry
            req.retry = None
            # The retry waited out any Retry-After itself, so parking does not stop it.
            if member.breaker.available() and now + wait < req.deadline:
                return member, wait
            req.excluded.add(member)
        return self._best(req, now), 0.0

    def _best(self, req: PoolRequest, now: float, busy: Collection[Member] = ()) -> Member | None:
        candidates = [
            m
            for m in self._members
            if m not in req.excluded and m not in busy and m.selectable(now)
        ]
        return min(candidates, key=Member.rank) if candidates else None

    async def _start(self, req: PoolRequest, member: Member) -> Attempt | None:
        # A queue longer than the first-byte allowance is a failover, like a silent provider.
        asked = self._clock.now()
        until = asked + self._allowance(req, member, asked)
        permit = await member.limiter.acquire_until(self._clock, until, background=req.background)
        if permit is None:
            return None
        if self._on_queued is not None:
            self._on_queued(self._clock.now() - asked)
        charge: Charge | None = None
        budget = self._call_budget
        if budget is not None and req.cost is not None and budget.limits(member.name):
            try:
                charge = await self._admit(req, member, req.cost)
            except BaseException:  # cancelled while the budget was asked: the slot goes back
                permit.release()
                raise
            if charge is None:
                permit.release()
                return None
        attempt = self._begin(req, member, permit)
        if charge is not None:
            if attempt is None:
                charge.settle(0)  # its circuit changed while the budget was asked
            else:
                attempt.charge = charge
        return attempt

    async def _admit(self, req: PoolRequest, member: Member, cost: CallCost) -> Charge | None:
        """The budget's charge for a call to ``member``, or None: refused, the member is
        skipped for this request (parked too when the verdict says so)."""
        assert self._call_budget is not None
        verdict = await self._call_budget.admit(member.name, cost, background=req.background)
        if verdict.charge is not None:
            return verdict.charge
        if verdict.park_s > 0:  # the month spent: past park_cap, until the month ends
            self._park(member, verdict.park_s, verdict.reason, month_spent=True)
        req.last_error = BudgetRefused(member.name, verdict.reason)
        log.debug("provider %s: %s", member.name, verdict.reason)
        return None

    def _begin(self, req: PoolRequest, member: Member, permit: ConcurrencyPermit) -> Attempt | None:
        admission = member.breaker.acquire()
        if admission is None:  # the circuit changed while we queued, or someone took the trial
            permit.release()
            return None
        member.calls += 1
        req.tried.add(member)
        now = self._clock.now()
        stream = PulledStream(member.name, lambda: req.opener(member.provider))
        return Attempt(
            member, stream, permit, admission, now, now + self._allowance(req, member, now)
        )

    def _hedge_at(self, req: PoolRequest, live: Sequence[Attempt]) -> float:
        """When to hedge the one live attempt; never (``inf``) if hedging does not apply."""
        policy = self._policy
        if not policy.hedging or req.hedged or len(live) != 1:
            return math.inf
        samples = live[0].member.first_byte
        if len(samples) < policy.hedge_min_samples:
            return math.inf
        p95 = samples.percentile(policy.hedge_percentile) or 0.0
        return live[0].started + max(policy.hedge_floor, p95)

    def _open_hedge(self, req: PoolRequest, live: Sequence[Attempt]) -> Attempt | None:
        """A second attempt that never queues: a hedge is only worth it with capacity to spare."""
        req.hedged = True
        member = self._best(req, self._clock.now(), {a.member for a in live})
        if member is None:
            return None
        if self._call_budget is not None and self._call_budget.limits(member.name):
            return None  # a hedge spends a call the team pays for (call_budget.py)
        permit = member.limiter.try_acquire()
        if permit is None:
            return None
        if not self._budget.try_spend():
            permit.release()
            return None
        return self._begin(req, member, permit)

    def _allowance(self, req: PoolRequest, member: Member, now: float) -> float:
        """How long (seconds from ``now``) ``member`` may take to start answering ``req``."""
        remaining = max(0.0, req.deadline - now)
        if not self._has_alternative(req, member, now):
            return remaining
        allowance = req.first_byte
        if len(member.first_byte) >= self._policy.first_byte_min_samples:
            p95 = member.first_byte.percentile(0.95) or 0.0
            allowance = max(allowance, self._policy.first_byte_factor * p95)
        return min(allowance, remaining)

    def _has_alternative(self, req: PoolRequest, member: Member, now: float) -> bool:
        """Whether another member could still take ``req`` over from ``member``."""
        return any(
            m is not member and m not in req.excluded and m.selectable(now) for m in self._members
        )

    def _deadline_error(self, req: PoolRequest) -> DeadlineExceeded:
        error = DeadlineExceeded(self.name, f"no answer within {req.timeout:g} s")
        error.__cause__ = req.last_error
        return error

    def _exhausted(self, req: PoolRequest) -> ProviderError:
        if req.last_error is not None:
            return req.last_error
        now = self._clock.now()
        states = ", ".join(
            f"{m.name} {'parked' if now < m.parked_until else m.breaker.state}"
            for m in self._members
        )
        return NoProviderAvailable(self.name, f"no provider available ({states})")

    # -- verdicts: what the end of an attempt writes to its member's record ------------------

    def _take(self, attempt: Attempt) -> str | None:
        """The attempt's finished chunk; its first one is the member's first-byte sample."""
        chunk = attempt.stream.take()
        if chunk is not None:
            attempt.answer_chars += len(chunk)
        if attempt.first_byte is None:
            attempt.first_byte = self._clock.now() - attempt.started
            attempt.member.first_byte.add(max(0.0, attempt.first_byte))
        return chunk

    def _failed(self, req: PoolRequest, attempt: Attempt, error: ProviderError) -> None:
        """Settle a failed attempt and decide whether this request may retry its member."""
        member = attempt.member
        self._record_failure(attempt, error)
        req.last_error = error
        retry = self._policy.retry
        if isinstance(error, AuthError):
            member.disabled = f"credentials rejected ({error.message})"
            log.warning(
                "provider %s: credentials rejected; no more calls until the configuration changes",
                member.name,
            )
        if isinstance(error, RateLimited) and error.retry_after is not None:
            said = f"the gateway's {error.window} quota" if error.window else "Retry-After"
            self._park(member, error.retry_after, f"rate limited (HTTP 429, {said})")
        if req.kind == "chat" and not isinstance(error, FirstByteTimeout):
            count = req.retries.get(member, 0) + 1
            wait = retry_wait(count, error, retry, self._random)
            if count <= retry.max_retries and wait is not None:
                req.retries[member] = count
                req.retry = (member, wait)
                return
        req.excluded.add(member)

    def _succeed(self, attempt: Attempt, *, complete: bool) -> None:
        """The stream ended well, or the caller stopped reading (``complete=False``): the
        latency of a call cut short says nothing about the provider, so it is not recorded."""
        if not _settle(attempt):
            return
        member = attempt.member
        elapsed = self._clock.now() - attempt.started
        if complete:
            member.latency.add(max(0.0, elapsed))
        member.breaker.record_success(attempt.admission)
        attempt.permit.succeeded(attempt.first_byte if attempt.first_byte is not None else elapsed)
        member.last_failed = False
        self._note_quota(member)
        if self._on_outcome is not None:
            self._on_outcome(member, None)

    def _park(
        self, member: Member, seconds: float, reason: str, *, month_spent: bool = False
    ) -> None:
        """Ask ``member`` nothing for ``seconds`` (at most ``park_cap``, unless the team's
        month is spent: then until the month ends), unless it is parked longer already;
        ``reason`` is what status says meanwhile. Only a month's parking is lifted by a
        configuration change (``enable_all``)."""
        if not month_spent:
            seconds = min(seconds, self._policy.retry.park_cap)
        parked = self._clock.now() + seconds
        if parked > member.parked_until:
            member.parked_until, member.parked_reason = parked, reason
            if month_spent:
                self._budget_parked.add(member)
            else:
                self._budget_parked.discard(member)

    def _note_quota(self, member: Member) -> None:
        """Park ``member`` while its gateway says its quota is spent (the remaining count of
        a window reached 0 on an answer that succeeded): a call before the reset would only
        earn a 429. Providers that read no such headers are left alone."""
        provider = self._quota_readers.get(member)
        pause = provider.spent_quota() if provider is not None else None
        if pause is not None:
            reason = f"the gateway's {pause.window} quota is spent until its reset"
            self._park(member, pause.seconds, reason)

    def _record_failure(self, attempt: Attempt, error: ProviderError) -> None:
        if not _settle(attempt):
            return
        member = attempt.member
        member.failures += 1
        member.last_error = type(error).__name__
        # A request the provider refused as sent says nothing about its health (as for the
        # breaker, ``counts_against_breaker``).
        member.last_failed = member.last_failed or counts_against_breaker(error)
        if self._on_outcome is not None:
            self._on_outcome(member, error)
        if counts_against_breaker(error):
            member.breaker.record_failure(attempt.admission, type(error).__name__)
        else:
            member.breaker.release(attempt.admission)
        if isinstance(error, RateLimited):
            attempt.permit.throttled()
        elif isinstance(error, ProviderTimeout) and attempt.first_byte is None:
            attempt.permit.timed_out()
        else:
            attempt.permit.release()
        log.info("provider %s: attempt failed (%s)", member.name, type(error).__name__)
        log.debug("provider %s: %s", member.name, error)

    async def _close(self, attempt: Attempt) -> None:
        """Settle as abandoned (no verdict) unless already settled, then close the stream.

        Accounting happens first and synchronously, so a second cancellation arriving while
        the generator closes cannot leak the permit or the half-open trial.
        """
        if _settle(attempt):
            attempt.member.breaker.release(attempt.admission)
            attempt.permit.release()
        charge, attempt.charge = attempt.charge, None
        if charge is not None:
            charge.settle(attempt.answer_chars)
        await attempt.stream.aclose()

    # -- given up on before the first byte: failed, or warming -------------------------------

    async def _give_up(self, req: PoolRequest, attempt: Attempt, now: float) -> None:
        """``req`` stops waiting for ``attempt``'s first byte: failed if it is overdue by its
        own history (closed at once, freeing its permit), else cut and left warming."""
        member = attempt.member
        waited = now - attempt.started
        timeout = FirstByteTimeout(member.name, f"no first byte within {waited:.3g} s")
        # Overdue: silent for longer than first_byte_factor x its own recent p95. A provider
        # known to answer in 80 ms that is silent after 1.5 s has failed; one with no history,
        # or a known slow one, may just be slow.
        p95 = member.first_byte.percentile(0.95)
        if p95 is not None and waited > self._policy.first_byte_factor * p95:
            self._failed(req, attempt, timeout)
            await self._close(attempt)
        else:  # cut: no verdict yet; warming settles it
            req.last_error = timeout
            req.excluded.add(member)
            self._warm(attempt)

    def _warm(self, attempt: Attempt) -> None:
        """Let ``attempt`` run on to its first byte in the background (module docstring),
        unless its provider is already warming one: a local server works through one prompt
        at a time, so a second one would only queue there, delaying the prompt the user is
        waiting for (measured on a one-slot llama.cpp server: four warming at once took the
        first-token p95 from ~1 s to ~11 s). It is closed instead, with no verdict."""
        if self._closed or attempt.member.warming:
            work: Coroutine[Any, Any, None] = self._close(attempt)
        else:
            attempt.member.warming += 1
            work = self._run_warming(attempt)
        task = asyncio.get_running_loop().create_task(
            work, name=f"crucible-warm-{attempt.member.name}"
        )
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def _run_warming(self, attempt: Attempt) -> None:
        member = attempt.member
        try:
            pull = attempt.stream.pull()
            await self._clock.wait([pull], attempt.started + self._policy.warm_limit)
            if not attempt.stream.ready():
                waited = self._clock.now() - attempt.started
                self._record_failure(
                    attempt, NoFirstByte(member.name, f"no first byte within {waited:.3g} s")
                )
                return
            try:
                self._take(attempt)  # records the first-byte sample
            except ProviderError as exc:
                self._record_failure(attempt, exc)
                return
            log.info(
                "provider %s: slow, first byte after %.2f s (the request had moved on)",
                member.name,
                attempt.first_byte or 0.0,
            )
            self._succeed(attempt, complete=False)
        finally:
            member.warming -= 1
            await self._close(attempt)

    def _on_transition(self, member: Member, change: Transition) -> None:
        if change.to_state is BreakerState.OPEN:
            self._probes.watch(member)


def _settle(attempt: Attempt) -> bool:
    """True the first time only: an attempt gets one verdict (or none)."""
    if attempt.settled:
        return False
    attempt.settled = True
    return True


def _timeout(default: float, timeout: float | None) -> float:
    if timeout is None:
        return default
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0, not {timeout!r}")
    return timeout
