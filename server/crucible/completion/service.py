"""CompletionService: the one orchestrator of an inline completion.

One request becomes one ``_RequestState``, which carries it through these stages (``complete``
reads them top to bottom):

1. prepare: the window around the cursor, the privacy rules (an excluded file gets nothing),
   the cache's type-through (the rest of a recent suggestion the user is typing: zero calls)
   and otherwise the plan (``plan.py``: what is asked, under which key; none when nothing of
   the window may be sent);
2. seats: before superseding anything, a seat on an in-flight stream this request can use,
   the identical one (single-flight) or one whose suggestion starts with what the user typed
   since it was asked for (stream reuse, ``reuse.py``);
3. supersede: the request takes the document's ticket (``scheduling/latest.py``); an older
   request still waiting is answered empty at once, and this one is answered only while it
   is the newest;
4. the first suggestion, from the first stage that has one: type-through, the joined stream,
   the continued stream, the cache by key (memory then disk, no debounce), then after the
   adaptive debounce a look in memory (a flight may have finished meanwhile) and a flight:
   the identical in-flight one, or a new provider stream (``fetch.py``). A flight
   post-processes its answer once, stores it in the cache once (so it is kept even if every
   requester left), and hands the same ``Suggestion`` to everyone who waited;
5. shown: a suggestion from a provider or the cache is remembered for type-through and may be
   followed by a prefetch (``prefetch.py`` decides when and what, and learns from every
   answer whether the document's last prefetch was used);
6. alternatives (``alternatives.py``): other samples, asked for alongside the first only by an
   invoked request, and those already in memory;
7. finish: seats given up, ticket ended, outcome counted.

Streams belong to flights, not to requests: a superseded or cancelled request gives up its
seats, and a stream nobody waits for any more is cancelled, which closes the HTTP response so
the provider stops generating. One exception, with local providers (``warm_prompts``): a
stream abandoned before its first byte, whose prompt the document's newest request shares up
to the old cursor's line, is left to run to its first byte (the pool's warming), because a
local server processing that prompt is filling the prompt cache the next request will hit;
cutting it would make every request on a slow CPU model start again from nothing.

Errors: every call ends in exactly one of

* a ``CompletionResult``;
* ``None``: nothing useful, superseded, excluded or withheld by privacy, or a failure that is
  expected degradation, logged in one line and counted, never raised: ``ProviderError``
  (``ProviderTimeout`` when the deadline passed) and ``TimeoutError`` (the backstop);
* ``CancelledError`` propagating to the caller (``$/cancelRequest``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crucible.cache.tiered import TieredCache
from crucible.completion.alternatives import Alternative, distinct, sample_key, sample_plan
from crucible.completion.fetch import (
    CompletionFlight,
    CompletionFlights,
    StreamJob,
    fetch_completion,
)
from crucible.completion.plan import Plan, PromptPrivacy, plan_completion
from crucible.completion.postprocess import postprocess
from crucible.completion.prefetch import Prefetches
from crucible.completion.reuse import Reuse, find_reusable, rest_after_typed
from crucible.completion.suggestion import Suggestion
from crucible.config.settings import CompletionSettings
from crucible.context.neighbours import OpenFile
from crucible.context.privacy import WorkspacePrivacy
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import ContextWindow, cut_window
from crucible.providers.errors import ProviderError, ProviderTimeout
from crucible.resilience.errors import BudgetRefused
from crucible.resilience.pool import ProviderPool
from crucible.runtime.telemetry import Telemetry
from crucible.scheduling.debounce import AdaptiveDebounce
from crucible.scheduling.eager import started
from crucible.scheduling.latest import LatestWins, Ticket
from crucible.scheduling.singleflight import Seat, SingleFlight
from crucible.scheduling.speculation import SpeculativeStarts

logger = logging.getLogger(__name__)

_request_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    snapshot: DocumentSnapshot
    offset: int  # cursor, as an index into snapshot.text
    invoked: bool = False  # the user asked explicitly: skip the debounce
    neighbours: tuple[OpenFile, ...] = ()  # other open documents, most recent first
    # How long the request was held before the server could read it (behind its start-up
    # load): time its debounce has waited already.
    waited_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CompletionResult:
    """A suggestion placed in the document: ``text`` replaces ``start`` to ``end``."""

    text: str
    start: int  # offsets into the snapshot's text
    end: int
    alternatives: tuple[Alternative, ...] = ()  # for editors that cycle (VS Code's Alt+])


@dataclass(slots=True)
class _RequestState:
    """One request on its way through the stages: what is known of it so far."""

    request: CompletionRequest
    id: int  # for the log
    started: float
    window: ContextWindow
    excluded: bool  # the privacy rules exclude the document: it gets nothing
    withheld: bool = False  # nothing of this window may be sent (a private key, a secret)
    typed: Suggestion | None = None  # the type-through answer, when there is one
    plan: Plan | None = None  # None: no provider is asked (off, excluded, withheld, typed)
    joined: Seat[Suggestion] | None = None  # on the identical in-flight stream
    reuse: Reuse | None = None  # on an in-flight stream this request continues
    ended: tuple[StreamJob, str] | None = None  # a stream that just ended, and its raw rest
    samples: list[Seat[Suggestion]] = field(default_factory=list)  # alternatives' flights
    ticket: Ticket | None = None  # the document's ticket, once taken (``complete``)
    speculative: bool = False  # goes upstream when a pause begins, before the burst surely ended
    outcome: str = "empty"

    @property
    def current(self) -> bool:
        """Whether this request is still the document's newest (not superseded, the document
        not closed): work for one that is not would be thrown away."""
        return self.ticket is None or self.ticket.is_current

    def seats(self) -> list[Seat[Suggestion]]:
        held = [self.joined, self.reuse.seat if self.reuse is not None else None, *self.samples]
        return [seat for seat in held if seat is not None]


Stage = Callable[[_RequestState, Plan], Awaitable[Suggestion | None]]


class CompletionService:
    """Turns a storm of completion requests into few provider streams and fresh suggestions."""

    def __init__(
        self,
        settings: CompletionSettings,
        pool: ProviderPool | None,
        telemetry: Telemetry,
        *,
        cache: TieredCache | None = None,
        identity: Sequence[Any] = (),
        prefetch: bool = False,
        privacy: WorkspacePrivacy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._telemetry = telemetry
        self._sleep = sleep
        self._clock = clock
        self._debounce = AdaptiveDebounce(settings, clock=clock)
        # Whether requests may start when a pause begins, and the verdicts on those that did.
        self._speculation = SpeculativeStarts()
        self._latest = LatestWins()
        self._flights: CompletionFlights = SingleFlight()
        # The prefetch per document, cancelled when that document needs something else.
        self._prefetches = Prefetches(
            self._flights,
            lambda plan, job: self._start_flight(plan, job, background=True),
            lambda: self._cache,
            telemetry,
        )
        # The prompt prefix of each document's newest request: does an abandoned stream's
        # prompt lead into it (warm_prompts)? One string per open document.
        self._newest_prefix: dict[str, str] = {}
        # The last request's own stream that ended with its whole text: a request arriving
        # before that stream's requester showed its suggestion continues it (``_take_seats``).
        # One, not one per document: it is for the moment between a stream's end and its
        # suggestion being shown, in the document being typed in, and holds a snapshot.
        self._ended: StreamJob | None = None
        # When each document with state here was last edited or asked about (``self._clock``):
        # every per-document map above holds only documents in here, and ``drop_idle`` forgets
        # those idle for long (the memory supervisor's "elevated" tier).
        self._last_active: dict[str, float] = {}
        self._prefetch_paused = False  # the memory supervisor holds prefetch back
        # What privacy kept from providers: requests for excluded files, prompts not sent
        # (a private key, a cursor inside a secret), secrets replaced in prompts sent.
        self._privacy_counts = {"redactions": 0, "excluded_requests": 0, "withheld_requests": 0}
        self.reconfigure(
            settings, pool, cache=cache, identity=identity, prefetch=prefetch, privacy=privacy
        )

    def reconfigure(
        self,
        settings: CompletionSettings,
        pool: ProviderPool | None,
        *,
        cache: TieredCache | None = None,
        identity: Sequence[Any] = (),
        prefetch: bool = False,
        warm_prompts: bool = False,
        privacy: WorkspacePrivacy | None = None,
        redact: bool = True,
    ) -> None:
        """Swap in new settings; requests already running finish with the old ones."""
        self._settings = settings
        self._pool = pool  # the completion providers, routed around failures
        self._cache = cache
        self._identity = tuple(identity)  # what in the provider setup determines an answer
        self._prefetch = prefetch
        self._warm_prompts = warm_prompts
        # Without a workspace, the built-in exclusions still apply.
        self._privacy = privacy if privacy is not None else WorkspacePrivacy(None)
        self._redact = redact
        self._debounce.reconfigure(settings)

    @property
    def settings(self) -> CompletionSettings:
        return self._settings

    # -- document events (from didChange / didClose) ----------------------------------------

    def document_changed(self, uri: str) -> None:
        self._last_active[uri] = self._clock()
        self._debounce.keystroke(uri)

    def document_closed(self, uri: str) -> None:
        """Forget everything kept for ``uri`` (closed, pushed out of the recent documents, or
        idle): rhythm, pending request, newest prefix, prefetch, type-through anchors."""
        self._last_active.pop(uri, None)
        self._debounce.forget(uri)
        self._speculation.forget(uri)
        self._latest.forget(uri)
        self._newest_prefix.pop(uri, None)
        if self._ended is not None and self._ended.snapshot.uri == uri:
            self._ended = None
        self._prefetches.cancel(uri)
        if self._cache is not None:
            self._cache.forget(uri)

    def drop_idle(self, idle_s: float) -> int:
        """Forget the per-document state (as ``document_closed``) of every document neither
        edited nor asked about for ``idle_s`` seconds and with no request pending; its next
        edit starts afresh. Returns how many documents were dropped."""
        now = self._clock()
        idle = [
            uri
            for uri, last in self._last_active.items()
            if now - last >= idle_s and uri not in self._latest
        ]
        for uri in idle:
            self.document_closed(uri)
        return len(idle)

    def documents(self) -> int:
        """How many documents have per-document state here (each map's keys are among them)."""
        return len(self._last_active)

    # -- background work (the memory supervisor's handles) ----------------------------------

    def pause_prefetch(self, paused: bool) -> None:
        """While paused, no prefetch starts after a shown suggestion; those running go on
        (``cancel_background`` stops them)."""
        self._prefetch_paused = paused

    def cancel_background(self) -> int:
        """Cancel every running prefetch (a flight a request joined goes on for it); returns
        how many were cancelled. Requests a user waits on are untouched."""
        return self._prefetches.cancel_all()

    def background_tasks(self) -> int:
        """Tasks running work no request asked for: prefetches."""
        return len(self._prefetches)

    # -- one request -------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> CompletionResult | None:
        """One request through the stages (module docstring); never raises but for
        ``CancelledError``."""
        state = self._prepare(request)
        # Seats are taken before superseding the request that started a stream, so the
        # stream is not abandoned in between.
        self._take_seats(state)
        self._speculation.arrived(
            request.snapshot.uri,
            state.started,
            typed_through=state.typed is not None,
            seated_on=self._seated_on(state),
        )
        document = request.snapshot.uri
        self._last_active[document] = state.started
        self._newest_prefix[document] = state.window.prefix
        # The same text and cursor asked twice (inline + menu) share, instead of superseding.
        snapshot = request.snapshot
        ticket = self._latest.begin(document, (snapshot.base, request.offset, snapshot.text))
        state.ticket = ticket
        # A type-through that is the whole answer needs nothing else; otherwise the answer is
        # started at once: a memory hit is answered without a loop turn.
        typed = self._typed_answer(state)
        work = None if typed is not None else started(self._answer(state))
        try:
            if work is not None and not work.done():
                await asyncio.wait((work, ticket.superseded), return_when=asyncio.FIRST_COMPLETED)
            if not ticket.is_current:
                # A newer request for this document exists: this text is already stale.
                state.outcome = "superseded"
                return None
            result = typed if work is None else work.result()
            state.outcome = "served" if result else "empty"
            return result
        except asyncio.CancelledError:
            state.outcome = "cancelled"
            raise
        except (ProviderError, TimeoutError) as exc:
            state.outcome = self._failed(state, exc)
            return None
        finally:
            self._finish(state, work, ticket)

    def _prepare(self, request: CompletionRequest) -> _RequestState:
        """The window, the privacy verdict, and the type-through answer or else the plan."""
        started = self._clock()
        snapshot = request.snapshot
        window = self._window(snapshot, request.offset)
        # An excluded file gets nothing, not even a type-through of an earlier suggestion.
        excluded = self._privacy.rules().excludes(snapshot.path)
        state = _RequestState(request, next(_request_ids), started, window, excluded)
        if excluded or not self._settings.enabled or self._pool is None:
            return state
        # Type-through first: it needs no plan (a key costs ~60 µs on a full window).
        if self._cache is not None:
            state.typed = self._cache.type_through(
                snapshot.uri, snapshot.text, request.offset, window.suffix, snapshot.base
            )
        if state.typed is None:
            state.plan = self._plan(snapshot, window, request.neighbours)
            state.withheld = state.plan is None
        elif request.invoked and self._settings.alternatives > 1:
            # The user asks for more at a shown suggestion (cycling): the type-through stays
            # the first, and the plan lets alternatives be sampled beside it.
            state.plan = self._plan(snapshot, window, request.neighbours)
        return state

    def _take_seats(self, state: _RequestState) -> None:
        """A seat on the identical in-flight stream (single-flight), else on one whose
        suggestion starts with what was typed since it was asked for (stream reuse)."""
        if state.plan is None:
            return
        flight = self._flights.get(state.plan.key)
        if flight is not None:
            state.joined = flight.join()
        else:
            request = state.request
            state.reuse = find_reusable(
                self._flights, request.snapshot, request.offset, state.window
            )
            ended = self._ended if state.reuse is None else None
            if ended is not None:
                rest = rest_after_typed(ended, request.snapshot, request.offset, state.window)
                state.ended = None if rest is None else (ended, rest)

    def _typed_answer(self, state: _RequestState) -> CompletionResult | None:
        """``_answer``'s result for a type-through with no alternatives to look for (no plan,
        one suggestion shown at a time), without its coroutines: every key typed through a
        suggestion comes here (``docs/architecture.md``, "The transport")."""
        typed = state.typed
        if typed is None or state.plan is not None or self._settings.alternatives > 1:
            return None
        if not typed.text:
            return None  # never from type-through (the rest is never empty): ``_answer``'s case
        self._telemetry.mark("type_through")
        offset = state.request.offset
        return CompletionResult(typed.text, offset, offset + typed.replace_suffix)

    async def _answer(self, state: _RequestState) -> CompletionResult | None:
        """The first suggestion, placed at the cursor, with its alternatives."""
        self._ask_for_alternatives(state)  # concurrently with the first
        first = await self._first(state)
        if first is None or not first.text:
            return None
        alternatives = await self._alternatives(state, first)
        offset = state.request.offset
        return CompletionResult(first.text, offset, offset + first.replace_suffix, alternatives)

    async def _first(self, state: _RequestState) -> Suggestion | None:
        """From the first stage that has one; a suggestion from a provider or the cache is
        shown (remembered for type-through, perhaps followed by a prefetch)."""
        if state.typed is not None:
            self._telemetry.mark("type_through")
            return state.typed
        if state.plan is None:
            return None  # completion is off, or nothing may be sent
        stages: tuple[Stage, ...] = (
            self._joined,
            self._continued,
            self._cached,
            self._after_debounce,
            self._flown,
        )
        for stage in stages:
            # Superseded or closed meanwhile: nothing more is done for this request, so a
            # closed document gets no rhythm, anchors or prefetch back from it.
            if not state.current:
                return None
            found = await stage(state, state.plan)
            if found is not None:
                if state.current:
                    # Was the document's prefetch used? (Its answer under this key, or its
                    # stream continued.)
                    continued = self._seated_on(state) if stage == self._continued else None
                    self._prefetches.answered(state.request.snapshot.uri, state.plan.key, continued)
                if found.text and state.current:
                    self._shown(state, found)
                return found
        return None

    # -- the stages of the first suggestion: None means "not here, go on" -------------------

    async def _joined(self, state: _RequestState, plan: Plan) -> Suggestion | None:
        if state.joined is None:
            return None
        self._telemetry.mark("coalesced")
        return await state.joined.result()

    async def _continued(self, state: _RequestState, plan: Plan) -> Suggestion | None:
        document = state.request.snapshot.uri
        rest = await state.reuse.rest() if state.reuse is not None else None
        if state.reuse is not None:
            self._speculation.stream_ended(document, state.reuse.job, served=rest is not None)
        elif state.ended is not None:
            job, rest = state.ended
            self._speculation.stream_ended(document, job, served=True)
        if rest is None:
            return None
        self._telemetry.mark("reused")
        how = "an in-flight stream" if state.reuse is not None else "a stream that just ended"
        logger.debug("completion %d: reused %s", state.id, how)
        return _processed(rest, state.window)

    async def _cached(self, state: _RequestState, plan: Plan) -> Suggestion | None:
        found = await self._cache.lookup(plan.key) if self._cache is not None else None
        if found is not None:
            self._telemetry.mark("cache_hit")
        return found

    async def _after_debounce(self, state: _RequestState, plan: Plan) -> Suggestion | None:
        """Wait out the adaptive debounce (an invoked request does not), then look in memory:
        a flight for this very text may have finished meanwhile."""
        request, window = state.request, state.window
        if request.invoked:
            return None
        document = request.snapshot.uri
        wait = self._debounce.wait(
            document,
            window.line_prefix,
            window.line_suffix,
            early=self._speculation.allowed(document),
            waited_ms=request.waited_s * 1000.0,
        )
        delay, state.speculative = wait.ms, wait.speculative
        if logger.isEnabledFor(logging.DEBUG):
            described = self._debounce.describe(document)
            kind = "speculative " if wait.speculative else ""
            logger.debug("completion %d: %sdebounce %.0f ms %s", state.id, kind, delay, described)
        waited = self._clock()
        await self._sleep(delay / 1000)
        self._telemetry.stage("debounce", (self._clock() - waited) * 1000)
        found = self._cache.in_memory(plan.key) if self._cache is not None else None
        if found is not None:
            self._telemetry.mark("cache_hit")
        return found

    async def _flown(self, state: _RequestState, plan: Plan) -> Suggestion:
        """The identical in-flight stream's suggestion, or a new stream's."""
        flight = self._flights.get(plan.key)
        if flight is not None:
            self._telemetry.mark("coalesced")
        else:
            request, window = state.request, state.window
            self._prefetches.make_way()  # a prefetch never holds a slot this needs
            job = StreamJob(request.snapshot, request.offset, window)
            warm = (lambda: self._leads_to_newest(job)) if self._warm_prompts else None
            flight = self._start_flight(plan, job, warm=warm)
            self._sent(state, job)
        return await flight.wait()

    # -- speculative starts ------------------------------------------------------------------

    def _sent(self, state: _RequestState, job: StreamJob) -> None:
        """A request's own stream started; a speculative one awaits its verdict (the
        document's next request) until the pause that ends the burst would have ended."""
        document, window = state.request.snapshot.uri, state.window
        until = 0.0
        if state.speculative:
            pause_ms = self._debounce.pause_ms(document, window.line_prefix, window.line_suffix)
            until = self._debounce.last_activity(document) + pause_ms / 1000
            logger.debug("completion %d: started speculatively", state.id)
        self._speculation.sent(document, job, speculative=state.speculative, until=until)

    def _seated_on(self, state: _RequestState) -> StreamJob | None:
        """The stream whose text this request will take: the identical one, or a continued one."""
        if state.reuse is not None:
            return state.reuse.job
        if state.ended is not None:
            return state.ended[0]
        flight = self._flights.get(state.plan.key) if state.plan is not None else None
        return flight.job if state.joined is not None and flight is not None else None

    # -- after the first suggestion ----------------------------------------------------------

    def _shown(self, state: _RequestState, suggestion: Suggestion) -> None:
        """Remember ``suggestion`` for type-through, and prefetch what comes after it."""
        request, window, cache = state.request, state.window, self._cache
        if cache is None:
            return
        snapshot = request.snapshot
        at = snapshot.base + request.offset  # a document offset: excerpts start elsewhere
        cache.shown(snapshot.uri, at, window.prefix, window.suffix, suggestion)
        if self._prefetch and not self._prefetch_paused and state.plan is not None:
            neighbours = request.neighbours
            self._prefetches.after_shown(
                request.snapshot,
                request.offset,
                suggestion,
                plan_at=lambda after, cursor: self._plan(
                    after, self._window(after, cursor), neighbours
                ),
                origin=state.plan.key,
            )

    def _ask_for_alternatives(self, state: _RequestState) -> None:
        """Seats on flights computing other samples of the plan. They cost provider calls,
        so only the user asking explicitly (an invoked request, which is also what VS Code
        sends when the user cycles) starts them, concurrently with the first suggestion."""
        plan, request = state.plan, state.request
        if plan is None or not request.invoked:
            return
        for n in range(1, self._settings.alternatives):
            sample = sample_plan(plan, n)
            if self._cache is not None and self._cache.in_memory(sample.key) is not None:
                continue  # picked up from memory with the others
            flight = self._flights.get(sample.key)
            if flight is None:
                job = StreamJob(request.snapshot, request.offset, state.window)
                flight = self._start_flight(sample, job)
            state.samples.append(flight.join())

    async def _alternatives(
        self, state: _RequestState, first: Suggestion
    ) -> tuple[Alternative, ...]:
        """Up to ``alternatives - 1`` others: the samples asked for, and those in memory for
        this very plan (free: the automatic request VS Code sends after cycling has them)."""
        extra, cache, request = self._settings.alternatives - 1, self._cache, state.request
        if extra < 1 or cache is None:
            return ()
        plan = state.plan
        if plan is None:  # type-through: samples for this very spot may be in memory
            plan = self._plan(request.snapshot, state.window, request.neighbours)
            if plan is None:
                return ()
        asked = [await _suggestion_or_none(seat) for seat in state.samples]
        found = [suggestion for suggestion in asked if suggestion is not None]
        found += [
            suggestion
            for n in range(1, extra + 1)
            if (suggestion := cache.in_memory(sample_key(plan, n))) is not None
        ]
        return distinct(first.text, found, request.offset, extra)

    def _failed(self, state: _RequestState, exc: ProviderError | TimeoutError) -> str:
        """Expected degradation: the editor gets an empty answer, the log gets one line."""
        if isinstance(exc, ProviderError):
            # A spent team budget refuses every keystroke until it refills, by design: the
            # user is told once (the budget's notice), the log at WARNING (stderr) is not.
            level = logging.INFO if isinstance(exc, BudgetRefused) else logging.WARNING
            logger.log(level, "completion %d: %s (%s)", state.id, exc, type(exc).__name__)
            return "timeout" if isinstance(exc, ProviderTimeout) else "error"
        timeout_ms = self._settings.timeout_ms
        logger.warning("completion %d: no answer within %d ms", state.id, timeout_ms)
        return "timeout"

    def _finish(
        self,
        state: _RequestState,
        work: asyncio.Future[CompletionResult | None] | None,
        ticket: Ticket,
    ) -> None:
        if work is not None and not work.done():
            work.cancel()
            work.add_done_callback(_retrieve)
        for seat in state.seats():
            seat.leave()
        self._latest.end(ticket)
        if state.outcome == "empty" and (state.excluded or state.withheld):
            state.outcome = "excluded" if state.excluded else "withheld"
            self._privacy_counts[f"{state.outcome}_requests"] += 1
        self._telemetry.request(state.outcome)
        self._telemetry.stage("total", (self._clock() - state.started) * 1000)

    # -- flights -----------------------------------------------------------------------------

    def _start_flight(
        self,
        plan: Plan,
        job: StreamJob,
        *,
        background: bool = False,
        warm: Callable[[], bool] | None = None,
    ) -> CompletionFlight:
        # Counted per prompt sent: a cache hit or a joined flight sends nothing again.
        self._privacy_counts["redactions"] += plan.redactions
        return self._flights.start(plan.key, self._fly(plan, job, background, warm), job)

    async def _fly(
        self, plan: Plan, job: StreamJob, background: bool, warm: Callable[[], bool] | None
    ) -> Suggestion:
        """A flight's work: one completion from the pool, post-processed once and stored
        once; everyone waiting on the flight gets this same suggestion."""
        raw = await fetch_completion(
            plan,
            job.progress,
            deadline_s=self._settings.timeout_ms / 1000,
            background=background,
            warm=warm,
            telemetry=self._telemetry,
            on_latency=self._debounce.observe_latency,
            clock=self._clock,
        )
        suggestion = _processed(raw, plan.window)
        if self._cache is not None:
            self._cache.store(plan.key, suggestion)
        if not background and job.snapshot.uri in self._last_active:  # (not closed meanwhile)
            self._ended = job
        return suggestion

    def _leads_to_newest(self, job: StreamJob) -> bool:
        """Whether the document's newest request shares ``job``'s prompt up to the start of
        the old cursor's line (the part a server's prompt cache can reuse)."""
        newest = self._newest_prefix.get(job.snapshot.uri)
        shared = job.window.prefix[: job.window.prefix.rfind("\n") + 1]
        return newest is not None and bool(shared) and newest.startswith(shared)

    # -- window and plan ---------------------------------------------------------------------

    def _window(self, snapshot: DocumentSnapshot, offset: int) -> ContextWindow:
        settings = self._settings
        return cut_window(
            snapshot,
            offset,
            max_prefix=settings.max_prefix_chars,
            max_suffix=settings.max_suffix_chars,
        )

    def _plan(
        self,
        snapshot: DocumentSnapshot,
        window: ContextWindow,
        neighbours: Sequence[OpenFile],
    ) -> Plan | None:
        """The plan, or None when nothing of this window may be sent (``plan.py``)."""
        assert self._pool is not None  # only planned while enabled
        return plan_completion(
            self._settings,
            self._pool,
            self._identity,
            snapshot,
            window,
            neighbours,
            PromptPrivacy(self._privacy.rules(), self._redact),
        )

    # -- lifecycle and status ----------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop background work (prefetches) before the providers it uses are closed."""
        await self._prefetches.aclose()

    def privacy_snapshot(self) -> dict[str, int]:
        """What privacy kept from providers, for crucible/status."""
        return dict(self._privacy_counts)

    def prefetch_snapshot(self) -> dict[str, Any]:
        """Prefetches started, used, wasted and skipped as unlikely to be used, in all and per
        language, for crucible/status (``Prefetches.snapshot``)."""
        return self._prefetches.snapshot()

    def scheduling_snapshot(self) -> dict[str, int | bool]:
        """Live state for crucible/status; ``prefetch``: whether shown suggestions are followed
        by a prefetch of the next one (``[cache] prefetch``, "auto" decided for this setup)."""
        return {
            "in_flight": len(self._flights),
            "pending_documents": len(self._latest),
            "prefetch": self._prefetch and self._cache is not None,
            "prefetch_paused": self._prefetch_paused,
            "documents": self.documents(),
            "background_tasks": self.background_tasks(),
            # Requests started when a pause began, and the verdicts on them (the next key).
            **{f"speculative_{k}": v for k, v in self._speculation.snapshot().items()},
        }

    def speculation_snapshot(self) -> dict[str, int]:
        """Requests started when a pause began, and how many were kept and wasted."""
        return self._speculation.snapshot()


def _processed(raw: str, window: ContextWindow) -> Suggestion:
    """``raw`` post-processed for ``window``; nothing worth showing is the empty suggestion,
    which is an answer too (cached, so the provider is not asked again at that spot)."""
    suggestion = postprocess(raw, window)
    return suggestion if suggestion is not None else Suggestion("")


async def _suggestion_or_none(seat: Seat[Suggestion]) -> Suggestion | None:
    """Wait for a flight this request did not start; its failure means "left out", not an
    error for this request."""
    try:
        return await seat.result()
    except (ProviderError, TimeoutError):
        return None


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark the outcome of abandoned work as seen, so asyncio logs no spurious warning."""
    if not task.cancelled():
        task.exception()
