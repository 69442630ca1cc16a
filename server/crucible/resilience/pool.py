"""ProviderPool: several providers behind one Provider, routed around failures within a deadline.

The pool builds its members (``member.py``) and drives each request's streams; which member a
request asks next, and whether a failed attempt retries or fails over, is ``routing.py``'s.

One request. It has a total deadline covering queueing, retries, backoff and the whole stream
(reliability §2.5: Envoy's route timeout includes retries). Each attempt also has a first-byte
allowance (``routing.py``: the cut-off when another provider can take over, longer for a
provider known to be slow, the deadline for the last candidate). Until the first chunk reaches
the caller, a failed attempt fails over (inline completions at once, chat after retries with
backoff: ``routing.py``).

Warming. An attempt given up on before its first byte (its allowance passed, the deadline
passed, or the caller left and its ``warm`` predicate says the next request shares the prompt)
is not closed, unless it is overdue by its own history (silent for more than twice its usual
first byte: a fast provider gone quiet has failed, and is closed and counted at once) or its
provider is already warming another (one at a time: closed, no verdict). It runs on, holding
its slot, until its first byte or ``warm_limit`` after it started, and is closed then. The
provider finishes processing the prompt, so its prompt cache serves the next request in
milliseconds instead of seconds, and the verdict is the truth: a first byte is *slow*, a
success with a latency sample (the next allowance grows with it); no first byte
(``NoFirstByte``), or an error, is a failure. So a slow provider never trips its breaker, and
a hung one does, a little later.

Once a chunk has been yielded, failover is no longer possible: an error raises to the caller
(and counts against the provider), and so does the deadline passing mid-stream, so a provider
dripping a byte a second cannot hold a request open.

Hedging (opt-in; ``routing.py`` says when): the same request also goes to the next candidate;
the first chunk wins and the other stream is cancelled and closed. Cancellation of the caller
is never swallowed: the provider's generator is closed, the slot and any half-open trial are
released, and nothing is counted against the provider.

Health probes (``probes.py``): while a member's circuit is open, one ``provider.probe()`` per
open window decides whether it goes half-open, so a dead provider costs no user request.

Errors: ``errors.py`` draws the tree; the pool raises a member's ``ProviderError`` when every
candidate failed, ``DeadlineExceeded`` / ``NoProviderAvailable`` of its own, or
``CancelledError``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random as _random
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
from typing import Any

from crucible.providers.base import ChatRequest, FimRequest, ProbeResult, Provider
from crucible.providers.errors import ProviderError
from crucible.resilience.attempt import Attempt, Opener
from crucible.resilience.breaker import BreakerState, CircuitBreaker, Transition, TransitionListener
from crucible.resilience.clock import Clock
from crucible.resilience.errors import (
    DeadlineExceeded,
    FirstByteTimeout,
    NoFirstByte,
    NoProviderAvailable,
)
from crucible.resilience.limiter import AdaptiveLimiter
from crucible.resilience.member import Member, MemberSnapshot, OutcomeListener
from crucible.resilience.policy import ResiliencePolicy
from crucible.resilience.probes import HealthProbes
from crucible.resilience.routing import Kind, Request, Router

log = logging.getLogger(__name__)


class ProviderPool:
    """A Provider made of providers; it owns them (``aclose`` closes them) unless built with
    ``owns_providers=False`` (the composition root shares providers between the pools of
    successive configurations and closes them itself).

    ``members`` are (provider, priority) pairs, lower priority tried first, ties in listed
    order; ``name`` and ``model`` are the primary's (the first in that order). Cache keys
    describe the members from their settings (``providers/registry.identity``), which know
    more than a provider object does (address, template). ``clock`` (monotonic seconds),
    ``sleep`` and ``random`` are injected so tests run on fake time. ``on_queued``, when
    given, is told how long (seconds) each attempt waited for a concurrency slot.
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
    ) -> None:
        if not members:
            raise ValueError("a ProviderPool needs at least one provider")
        names = [provider.name for provider, _ in members]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique: {names}")
        self._policy = policy or ResiliencePolicy()
        self._clock = Clock(clock, sleep)
        self._probes = HealthProbes(self._clock, self._policy.probe_timeout)
        self._closed = False
        self._owns_providers = owns_providers
        self._members: list[Member] = []
        for index, (provider, priority) in enumerate(members):
            breaker = CircuitBreaker(
                provider.name, self._policy.breaker, clock=clock, random=random
            )
            limits = self._policy.limiter
            if max_connections is not None and provider.name in max_connections:
                limits = limits.for_connections(max_connections[provider.name])
            limiter = AdaptiveLimiter(provider.name, limits)
            member = Member(
                provider,
                priority,
                index,
                breaker,
                limiter,
                self._policy.latency_window,
                slow_after=self._policy.fim_first_byte,
                on_outcome=on_outcome,
            )
            if self._policy.probes:
                breaker.add_listener(functools.partial(self._on_transition, member))
            self._members.append(member)
        # Priority order, listed order within a tier: the primary comes first.
        self._members.sort(key=lambda m: (m.priority, m.index))
        self._router = Router(self._members, self._policy, self._clock, random, on_queued)
        self._warming: set[asyncio.Task[None]] = set()
        self._on_activity = on_activity
        self._active = 0  # interactive (not background) requests between start and end

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
        (the user may have fixed the key's variable or the provider's account)."""
        for member in self._members:
            member.enable()

    def snapshot(self) -> tuple[MemberSnapshot, ...]:
        now = self._clock.now()
        return tuple(member.snapshot(now) for member in self._members)

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
        policy = self._policy
        seconds = _timeout(policy.fim_deadline, timeout)
        return self._stream(
            "fim",
            lambda p: p.stream_fim(request),
            background,
            seconds,
            policy.fim_first_byte,
            exclude,
            warm,
        )

    def stream_chat(
        self, request: ChatRequest, *, background: bool = False, timeout: float | None = None
    ) -> AsyncGenerator[str, None]:
        """Retry with backoff, then fail over; ``timeout`` replaces ``chat_deadline``."""
        policy = self._policy
        seconds = _timeout(policy.chat_deadline, timeout)
        return self._stream(
            "chat", lambda p: p.stream_chat(request), background, seconds, policy.chat_first_byte
        )

    async def probe(self) -> ProbeResult:
        """Probe every member (``crucible-lsp doctor``); ok when any answers."""
        results = await asyncio.gather(*(self._probes.run(m) for m in self._members))
        pairs = zip(self._members, results, strict=True)
        detail = "; ".join(f"{member.name}: {text}" for member, (_, text) in pairs)
        return ProbeResult(any(ok for ok, _ in results), detail)

    async def aclose(self) -> None:
        """Stop the probes and close every member's provider (if the pool owns them)."""
        if self._closed:
            return
        self._closed = True
        await self._probes.aclose(self._members)
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

    # -- one request -------------------------------------------------------------------------

    async def _stream(
        self,
        kind: Kind,
        opener: Opener,
        background: bool,
        seconds: float,
        first_byte: float,
        exclude: Collection[str] = (),
        warm: Callable[[], bool] | None = None,
    ) -> AsyncGenerator[str, None]:
        if self._closed:
            raise NoProviderAvailable(self.name, "the provider pool is closed")
        req = self._router.request(
            kind,
            opener,
            background=background,
            timeout=seconds,
            first_byte=first_byte,
            exclude=exclude,
            warm=warm,
        )
        self._activity(+1, background)
        try:
            attempt, chunk = await self._first_chunk(req)
            timer = asyncio.ensure_future(self._clock.sleep(req.deadline - self._clock.now()))
            try:
                while chunk is not None:
                    yield chunk
                    chunk = await self._next_chunk(attempt, req, timer)
                attempt.succeed(complete=True)
            except GeneratorExit:
                attempt.succeed(complete=False)  # the caller has what it wanted
                raise
            finally:
                timer.cancel()
                await attempt.close()
        finally:
            self._activity(-1, background)

    def _activity(self, change: int, background: bool) -> None:
        """Count the requests a user is waiting for; background work (prefetch) is not news."""
        if background:
            return
        self._active += change
        if self._on_activity is not None:
            self._on_activity(self._active)

    async def _first_chunk(self, req: Request) -> tuple[Attempt, str | None]:
        """Fail over, retry and hedge until some attempt produces its first chunk (or ends)."""
        live: list[Attempt] = []
        winner: Attempt | None = None
        first: str | None = None
        try:
            while winner is None:
                if not live:
                    live.append(await self._router.open_next(req))
                hedge_at = self._router.hedge_at(req, live)
                until = min(req.deadline, hedge_at, *(a.first_byte_deadline for a in live))
                await self._clock.wait([a.pull() for a in live], until)
                for attempt in [a for a in live if a.ready()]:
                    live.remove(attempt)
                    try:
                        first = attempt.take()
                    except ProviderError as exc:
                        self._router.failed(req, attempt, exc)
                        await attempt.close()
                        continue
                    except BaseException:
                        await attempt.close()
                        raise
                    winner = attempt
                    break
                if winner is not None:
                    break
                now = self._clock.now()
                if now >= req.deadline:
                    for attempt in live:
                        await self._give_up(req, attempt, now)
                    live = []
                    raise self._router.deadline_error(req)
                for attempt in [a for a in live if now >= a.first_byte_deadline]:
                    if not self._router.has_alternative(req, attempt.member, now):
                        # The others were excluded meanwhile: nothing to cut it for.
                        attempt.first_byte_deadline = req.deadline
                        continue
                    live.remove(attempt)
                    await self._give_up(req, attempt, now)
                if live and now >= hedge_at:
                    hedge = self._router.open_hedge(req, live)
                    if hedge is not None:
                        log.debug("hedging %s with %s", live[0].member.name, hedge.member.name)
                        live.append(hedge)
        except asyncio.CancelledError:
            if req.warm is not None and req.warm():
                self._warm_all(live)
            else:
                for attempt in live:
                    await attempt.close()
            raise
        except BaseException:
            for attempt in live:
                await attempt.close()
            raise
        try:
            for loser in live:  # a hedge that lost: cancelled and closed, no verdict
                await loser.close()
        except BaseException:
            await winner.close()
            raise
        return winner, first

    async def _next_chunk(
        self, attempt: Attempt, req: Request, timer: asyncio.Future[None]
    ) -> str | None:
        """The next chunk of the winning stream; after the first one there is no failover.

        ``timer`` ends at the request's deadline; one for the whole stream, not one per chunk.
        """
        pull = attempt.pull()
        if not pull.done() and not timer.done():
            await asyncio.wait((pull, timer), return_when=asyncio.FIRST_COMPLETED)
        if self._clock.now() >= req.deadline or (timer.done() and not pull.done()):
            error = DeadlineExceeded(
                attempt.member.name, f"deadline of {req.timeout:g} s passed mid-stream"
            )
            self._router.failed(req, attempt, error)
            raise error
        try:
            return attempt.take()
        except ProviderError as exc:
            self._router.failed(req, attempt, exc)
            raise

    async def _give_up(self, req: Request, attempt: Attempt, now: float) -> None:
        """``req`` stops waiting for ``attempt``'s first byte: failed if it is overdue by its
        own history (closed at once, freeing its slot), else left warming for its verdict."""
        waited = now - attempt.started
        timeout = FirstByteTimeout(attempt.member.name, f"no first byte within {waited:.3g} s")
        if self._router.overdue(attempt.member, waited):
            self._router.failed(req, attempt, timeout)
            await attempt.close()
        else:
            self._router.cut(req, attempt, timeout)
            self._warm(attempt)

    def _warm_all(self, attempts: Sequence[Attempt]) -> None:
        for attempt in attempts:
            self._warm(attempt)

    def _warm(self, attempt: Attempt) -> None:
        """Let ``attempt`` run on to its first byte in the background (module docstring),
        unless its provider is already warming one: a local server works through one prompt
        at a time, so a second one would only queue there, delaying the prompt the user is
        waiting for (measured on a one-slot llama.cpp server: four warming at once took the
        first-token p95 from ~1 s to ~11 s). It is closed instead, with no verdict."""
        if self._closed or attempt.member.warming:
            work: Coroutine[Any, Any, None] = attempt.close()
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
            await self._clock.wait([attempt.pull()], attempt.started + self._policy.warm_limit)
            if not attempt.ready():
                waited = self._clock.now() - attempt.started
                attempt.fail(NoFirstByte(member.name, f"no first byte within {waited:.3g} s"))
                return
            try:
                attempt.take()  # records the first-byte sample
            except ProviderError as exc:
                attempt.fail(exc)
                return
            log.info(
                "provider %s: slow, first byte after %.2f s (the request had moved on)",
                member.name,
                attempt.first_byte or 0.0,
            )
            attempt.succeed(complete=False)
        finally:
            member.warming -= 1
            await attempt.close()

    def _on_transition(self, member: Member, change: Transition) -> None:
        if change.to_state is BreakerState.OPEN:
            self._probes.watch(member)


def _timeout(default: float, timeout: float | None) -> float:
    if timeout is None:
        return default
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0, not {timeout!r}")
    return timeout
