"""CompletionService: the one orchestrator of an inline completion.

A request for a document supersedes the older ones for that document (answered empty at
once), then is answered by the first of

* the cache's type-through: the rest of a recent suggestion the user is typing (zero calls),
* an in-flight stream whose suggestion starts with what the user has typed since (stream
  reuse: zero new provider calls),
* the cache by key, memory then disk (zero calls, no debounce),
* after the adaptive debounce, an identical in-flight request (single-flight) or one new
  provider stream, read only until the suggestion is complete; its post-processed answer is
  stored in the cache by the flight itself, so it is kept even if every requester left.

After a suggestion from a provider or the cache key is shown, and when no provider stream is
running, the service may prefetch: compute, as a flight of its own, the suggestion for the
document as it would be once this one is accepted, so that accepting and typing on is
answered from the cache (or joins that flight).

Streams belong to flights, not to requests: a superseded or cancelled request detaches, and a
stream nobody waits for any more is cancelled, which closes the HTTP response so the provider
stops generating. One exception, with local providers (``warm_prompts``): a stream abandoned
before its first byte, whose prompt the document's newest request shares up to the old
cursor's line, is left to run to its first byte (the pool's warming), because a local server
processing that prompt is filling the prompt cache the next request will hit; cutting it would
make every request on a slow CPU model start again from nothing.

Every call ends in exactly one of: a result, ``None`` (nothing useful, superseded, provider
down, deadline passed: logged and counted, never raised), or ``CancelledError`` propagating to
the caller (``$/cancelRequest``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from crucible.cache.tiered import Answer, TieredCache
from crucible.completion.alternatives import Alternative, distinct, sample_key, sample_plan
from crucible.completion.fetch import fetch_completion
from crucible.completion.plan import Plan, PromptPrivacy, plan_completion
from crucible.completion.postprocess import Suggestion, postprocess
from crucible.completion.prefetch import Prefetches, accepted
from crucible.completion.reuse import StreamJob, find_reusable
from crucible.config.settings import CompletionSettings
from crucible.context.neighbours import OpenFile
from crucible.context.privacy import WorkspacePrivacy
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import ContextWindow, cut_window
from crucible.providers.errors import ProviderError, ProviderTimeout
from crucible.resilience.pool import ProviderPool
from crucible.runtime.telemetry import Telemetry
from crucible.scheduling.debounce import AdaptiveDebounce
from crucible.scheduling.latest import LatestWins
from crucible.scheduling.singleflight import Flight, Seat, SingleFlight

logger = logging.getLogger(__name__)

_request_ids = itertools.count(1)

FlightKey = str  # the cache key of the answer the flight computes


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    snapshot: DocumentSnapshot
    offset: int  # cursor, as an index into snapshot.text
    invoked: bool = False  # the user asked explicitly: skip the debounce
    neighbours: tuple[OpenFile, ...] = ()  # other open documents, most recent first


@dataclass(frozen=True, slots=True)
class CompletionResult:
    text: str
    start: int  # offsets into the snapshot's text of the range the text replaces
    end: int
    request_id: int
    alternatives: tuple[Alternative, ...] = ()  # for editors that cycle (VS Code's Alt+])


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
        self._debounce = AdaptiveDebounce(settings)
        self._latest = LatestWins()
        self._flights: SingleFlight[FlightKey, str] = SingleFlight()
        # The prefetch per document, cancelled when that document needs something else.
        self._prefetches = Prefetches()
        # The prompt prefix of each document's newest request: does an abandoned stream's
        # prompt lead into it (warm_prompts)? One string per open document.
        self._newest_prefix: dict[str, str] = {}
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

    @property
    def prefetching(self) -> bool:
        """Whether shown suggestions are followed by a prefetch of the next one."""
        return self._prefetch and self._cache is not None

    # -- document events (from didChange / didClose) ----------------------------------------

    def document_changed(self, uri: str) -> None:
        self._debounce.keystroke(uri)

    def document_closed(self, uri: str) -> None:
        self._debounce.forget(uri)
        self._latest.forget(uri)
        self._newest_prefix.pop(uri, None)
        self._prefetches.cancel(uri)
        if self._cache is not None:
            self._cache.forget(uri)

    # -- one request -------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> CompletionResult | None:
        request_id = next(_request_ids)
        started = self._clock()
        window = self._window(request.snapshot, request.offset)
        snapshot, cache = request.snapshot, self._cache
        # An excluded file gets nothing, not even a type-through of an earlier suggestion.
        excluded = self._privacy.rules().excludes(snapshot.path)
        enabled = self._settings.enabled and self._pool is not None and not excluded
        # Type-through first: it needs no plan (a key costs ~60 µs on a full window).
        typed = (
            cache.type_through(snapshot.uri, snapshot.text, request.offset, window.suffix)
            if enabled and cache is not None
            else None
        )
        plan = (
            self._plan(snapshot, window, request.neighbours) if enabled and typed is None else None
        )
        withheld = enabled and typed is None and plan is None
        # Take a seat on a stream this request can use before superseding the request that
        # started it, so the stream is not abandoned in between: the identical request
        # (single-flight), or one whose suggestion starts with what was typed since (reuse).
        flight = self._flights.get(plan.key) if plan is not None else None
        joined = flight.join() if flight is not None else None
        reuse = (
            find_reusable(self._flights, request.snapshot, request.offset, window)
            if joined is None and plan is not None
            else None
        )
        self._newest_prefix[snapshot.uri] = window.prefix
        # The same text and cursor asked twice (inline + menu) share, instead of superseding.
        ticket = self._latest.begin(request.snapshot.uri, (request.offset, request.snapshot.text))
        work = asyncio.ensure_future(
            self._with_alternatives(
                request,
                window,
                plan if typed is None else None,
                self._complete(request, window, typed, plan, joined, reuse, request_id),
            )
        )
        outcome = "empty"
        try:
            racing: set[asyncio.Future[Any]] = {work, ticket.superseded}
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            if not ticket.is_current:
                # A newer request for this document exists: this text is already stale.
                outcome = "superseded"
                return None
            result = work.result()
            outcome = "served" if result else "empty"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except ProviderError as exc:
            # Expected degradation: the editor gets an empty answer, the log gets one line.
            outcome = "timeout" if isinstance(exc, ProviderTimeout) else "error"
            logger.warning("completion %d: %s (%s)", request_id, exc, type(exc).__name__)
            return None
        except TimeoutError:
            outcome = "timeout"
            logger.warning(
                "completion %d: no answer within %d ms", request_id, self._settings.timeout_ms
            )
            return None
        finally:
            if not work.done():
                work.cancel()
                work.add_done_callback(_retrieve)
            for seat in (joined, reuse[0] if reuse is not None else None):
                if seat is not None:
                    seat.leave()
            self._latest.end(ticket)
            if outcome == "empty" and (excluded or withheld):
                outcome = "excluded" if excluded else "withheld"
                self._privacy_counts[f"{outcome}_requests"] += 1
            self._telemetry.request(outcome)
            self._telemetry.stage("total", (self._clock() - started) * 1000)

    async def _with_alternatives(
        self,
        request: CompletionRequest,
        window: ContextWindow,
        plan: Plan | None,
        first: Awaitable[CompletionResult | None],
    ) -> CompletionResult | None:
        """The ``first`` suggestion, plus up to ``alternatives - 1`` others. Other samples
        cost provider calls, so they are asked for only when the user asked explicitly (an
        invoked request, which is also what VS Code sends when the user cycles), concurrently
        with the first; an automatic request gets the ones already in memory, for free.
        ``plan`` is None when no provider is asked (type-through, completion off)."""
        extra = self._settings.alternatives - 1
        samples = (
            self._sample(request, plan, window, n)
            for n in range(1, extra + 1)
            if plan is not None and request.invoked
        )
        seats = [seat for seat in samples if seat is not None]
        try:
            result = await first
            if result is None or extra < 1 or self._cache is None:
                return result
            if plan is None:  # type-through: samples for this very spot may be in memory
                plan = self._plan(request.snapshot, window, request.neighbours)
                if plan is None:
                    return result
            texts = [await _result_or_none(seat) for seat in seats]
            cache = self._cache
            found = [_answer(postprocess(raw, window)) for raw in texts if raw is not None] + [
                answer
                for n in range(1, extra + 1)
                if (answer := cache.in_memory(sample_key(plan, n))) is not None
            ]
            others = distinct(result.text, found, request.offset, extra)
            return replace(result, alternatives=others) if others else result
        finally:
            for seat in seats:
                seat.leave()

    def _sample(
        self, request: CompletionRequest, plan: Plan, window: ContextWindow, n: int
    ) -> Seat[str] | None:
        """A seat on the flight computing sample ``n`` of ``plan`` (None: already cached)."""
        sample = sample_plan(plan, n)
        if self._cache is not None and self._cache.in_memory(sample.key) is not None:
            return None  # picked up from memory with the others
        flight = self._flights.get(sample.key)
        if flight is None:
            flight = self._start_flight(sample, StreamJob(request.snapshot, request.offset, window))
        return flight.join()

    async def _complete(
        self,
        request: CompletionRequest,
        window: ContextWindow,
        typed: Answer | None,
        plan: Plan | None,
        joined: Seat[str] | None,
        reuse: tuple[Seat[str], str] | None,
        request_id: int,
    ) -> CompletionResult | None:
        if typed is not None:
            self._telemetry.mark("type_through")
            return _result(typed, request, request_id)
        if plan is None:
            return None  # completion is off, or no provider serves it
        snapshot = request.snapshot
        cache = self._cache

        if joined is not None:
            self._telemetry.mark("coalesced")
            return self._shown(await joined.result(), window, request, request_id)

        if reuse is not None:
            seat, typed_text = reuse
            raw = await _result_or_none(seat)
            if raw is not None and raw.startswith(typed_text) and len(raw) > len(typed_text):
                self._telemetry.mark("reused")
                logger.debug("completion %d: reused an in-flight stream", request_id)
                return self._shown(raw[len(typed_text) :], window, request, request_id)

        if cache is not None:
            answer = await cache.lookup(plan.key)
            if answer is not None:
                self._telemetry.mark("cache_hit")
                return self._served(answer, window, request, request_id)

        if not request.invoked:
            delay = self._debounce.delay_ms(
                snapshot.uri, window.line_prefix, window.line_suffix, invoked=request.invoked
            )
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "completion %d: debounce %.0f ms %s",
                    request_id,
                    delay,
                    self._debounce.describe(snapshot.uri),
                )
            waited = self._clock()
            await self._sleep(delay / 1000)
            self._telemetry.stage("debounce", (self._clock() - waited) * 1000)
            # A flight for this very text may have finished while we waited.
            answer = cache.in_memory(plan.key) if cache is not None else None
            if answer is not None:
                self._telemetry.mark("cache_hit")
                return self._served(answer, window, request, request_id)

        flight = self._flights.get(plan.key)
        if flight is not None:
            self._telemetry.mark("coalesced")
        else:
            self._prefetches.cancel(snapshot.uri)  # the user went elsewhere: it is not needed
            job = StreamJob(snapshot, request.offset, window)
            if self._warm_prompts:
                job.warm = lambda: self._leads_to_newest(job)
            flight = self._start_flight(plan, job)
        raw = await flight.wait()
        return self._shown(raw, window, request, request_id)

    def _leads_to_newest(self, job: StreamJob) -> bool:
        """Whether the document's newest request shares ``job``'s prompt up to the start of
        the old cursor's line (the part a server's prompt cache can reuse)."""
        newest = self._newest_prefix.get(job.snapshot.uri)
        shared = job.window.prefix[: job.window.prefix.rfind("\n") + 1]
        return newest is not None and bool(shared) and newest.startswith(shared)

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

    def _start_flight(
        self, plan: Plan, job: StreamJob, *, background: bool = False
    ) -> Flight[FlightKey, str]:
        # Counted per prompt sent: a cache hit or a joined flight sends nothing again.
        self._privacy_counts["redactions"] += plan.redactions
        return self._flights.start(plan.key, self._fetch(plan, job, background), job)

    async def _fetch(self, plan: Plan, job: StreamJob, background: bool) -> str:
        """The flight: one completion from the pool, its complete answer stored in the cache."""
        raw = await fetch_completion(
            plan,
            job,
            deadline_s=self._settings.timeout_ms / 1000,
            background=background,
            telemetry=self._telemetry,
            on_latency=self._debounce.observe_latency,
            clock=self._clock,
        )
        if self._cache is not None:
            self._cache.store(plan.key, _answer(postprocess(raw, plan.window)))
        return raw

    def _shown(
        self, raw: str, window: ContextWindow, request: CompletionRequest, request_id: int
    ) -> CompletionResult | None:
        """Post-process a provider's answer for this request and serve it."""
        return self._served(_answer(postprocess(raw, window)), window, request, request_id)

    def _served(
        self, answer: Answer, window: ContextWindow, request: CompletionRequest, request_id: int
    ) -> CompletionResult | None:
        """Serve ``answer`` at the request's cursor: remember it for type-through, and
        prefetch what comes after it."""
        if not answer.text:
            return None
        if self._cache is not None:
            self._cache.shown(
                request.snapshot.uri, request.offset, window.prefix, window.suffix, answer
            )
            if self._prefetch:
                self._maybe_prefetch(request, answer)
        return _result(answer, request, request_id)

    # -- prefetch ----------------------------------------------------------------------------

    def _maybe_prefetch(self, request: CompletionRequest, answer: Answer) -> None:
        """When no provider stream runs, compute the suggestion that follows ``answer``."""
        uri = request.snapshot.uri
        if uri in self._prefetches or any(not f.task.done() for f in self._flights):
            return  # the provider is busy: prefetch is only ever background work
        self._prefetches.start(uri, self._prefetch_after(request, answer))

    async def _prefetch_after(self, request: CompletionRequest, answer: Answer) -> None:
        after, cursor = accepted(
            request.snapshot, request.offset, answer.text, answer.replace_suffix
        )
        window = self._window(after, cursor)
        plan = self._plan(after, window, request.neighbours)
        cache = self._cache
        if plan is None or cache is None or self._flights.get(plan.key):
            return
        if await cache.lookup(plan.key):
            return
        self._telemetry.mark("prefetched")
        flight = self._start_flight(plan, StreamJob(after, cursor, window), background=True)
        await flight.wait()  # a seat of its own: a joining request leaving does not cancel it

    async def aclose(self) -> None:
        """Stop background work (prefetches) before the providers it uses are closed."""
        await self._prefetches.aclose()

    def privacy_snapshot(self) -> dict[str, int]:
        """What privacy kept from providers, for crucible/status."""
        return dict(self._privacy_counts)

    def scheduling_snapshot(self) -> dict[str, int]:
        """Live state for crucible/status."""
        return {"in_flight": len(self._flights), "pending_documents": len(self._latest)}


async def _result_or_none(seat: Seat[str]) -> str | None:
    """Wait for a flight this request did not start; its failure means "no reuse", not an
    error for this request (which can still ask on its own)."""
    try:
        return await seat.result()
    except (ProviderError, TimeoutError):
        return None


def _result(answer: Answer, request: CompletionRequest, request_id: int) -> CompletionResult | None:
    if not answer.text:
        return None
    end = request.offset + answer.replace_suffix
    return CompletionResult(answer.text, request.offset, end, request_id)


def _answer(suggestion: Suggestion | None) -> Answer:
    """A post-processed suggestion as the cache keeps it; None (nothing worth showing) is
    the empty answer, which is an answer too."""
    if suggestion is None:
        return Answer("")
    return Answer(suggestion.text, suggestion.replace_suffix)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark the outcome of abandoned work as seen, so asyncio logs no spurious warning."""
    if not task.cancelled():
        task.exception()
