"""Prefetch: the next suggestion, computed in the background as if the shown one were accepted.

When: after a suggestion from a provider or the cache key was shown (``after_shown``; a
type-through is not followed by one), only while no provider stream runs (prefetch is only
ever background work), at most one per document (a document that already has one gets no
other), and only when it pays: a use was measured in that language and the user's measured
use of prefetches there (``prefetch_use.py``, ``PrefetchUse``) says the next one is likely
enough to be used. Otherwise the chance is *measured* instead: its key is kept, with no call,
and resolved by the same rule (used when a request the user waits for is answered under it),
so the estimate learns the user's habit for free. What: the suggestion for the document with
the shown one accepted (``accepted``), unless it is in flight or cached already. It runs as a
background flight of its own, which stores its answer in the cache like any flight, so
accepting and typing on is answered from the cache (or joins that flight).

Whether it was used: the service reports every answer a request the user waits for gets
(``answered``, with the plan's key and the flight it continued, if any). The document's
prefetch is *used* when that answer is its key or its stream, and *wasted* when it is another
answer (the same spot asked again, the shown suggestion's own key, decides nothing), when
another document gets an answer first (the user moved on), or when the document is closed.

Prefetch never delays an answer the user waits for. It starts only while no stream runs, and
when a request the user waits for is about to start a provider stream of its own, every
prefetch makes way (``make_way``, by the service): its flight is abandoned unless a request
joined it (then it is that request's flight and goes on), so it gives back the provider's
concurrency slot instead of holding it while the request queues (the limiter admits
interactive work first, but only among callers still waiting for a slot). A document closed
has its prefetch cancelled (``cancel``); ``cancel_all`` cancels every one (the memory
supervisor's "critical" tier), ``aclose`` stops them all before the providers close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from crucible.cache.tiered import TieredCache
from crucible.completion.fetch import CompletionFlight, CompletionFlights, StreamJob
from crucible.completion.plan import Plan
from crucible.completion.prefetch_use import PrefetchUse
from crucible.completion.suggestion import Suggestion
from crucible.context.snapshot import DocumentSnapshot
from crucible.runtime.telemetry import Telemetry

logger = logging.getLogger(__name__)

PlanAt = Callable[[DocumentSnapshot, int], Plan | None]  # the plan at a cursor, if any
StartFlight = Callable[[Plan, StreamJob], CompletionFlight]  # a background flight for a plan


def accepted(
    snapshot: DocumentSnapshot, offset: int, suggestion: Suggestion
) -> tuple[DocumentSnapshot, int]:
    """The document once ``suggestion`` shown at ``offset`` is accepted, and the cursor after
    it."""
    document = snapshot.text
    end = offset + suggestion.replace_suffix
    after = document[:offset] + suggestion.text + document[end:]
    return replace(snapshot, text=after, version=snapshot.version + 1), offset + len(
        suggestion.text
    )


@dataclass(frozen=True, slots=True)
class _Started:
    """A document's prefetch, started and not yet known to be used or wasted."""

    key: str  # the plan's: a request for the accepted text has this key
    job: StreamJob | None  # its flight's: a request continuing that stream reads it
    origin: str  # the key of the answer it follows: that spot asked again decides nothing
    language: str
    measured: bool = False  # a chance not taken (no flight, ``job`` None): measured only


class Prefetches:
    """When and what to prefetch, the background tasks doing it (one per document), and
    whether each turned out used."""

    def __init__(
        self,
        flights: CompletionFlights,
        start_flight: StartFlight,
        cache: Callable[[], TieredCache | None],  # the service's, as it is configured now
        telemetry: Telemetry,
    ) -> None:
        self._flights = flights
        self._start_flight = start_flight
        self._cache = cache
        self._telemetry = telemetry
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._use = PrefetchUse()
        self._started: dict[str, _Started] = {}  # by document; bounded by the open documents

    def after_shown(
        self,
        snapshot: DocumentSnapshot,
        offset: int,
        shown: Suggestion,
        plan_at: PlanAt,
        origin: str,
    ) -> None:
        """``shown`` (the answer under key ``origin``) was served at ``offset``: prefetch what
        follows it, if the time is right and it pays."""
        document = snapshot.uri
        if document in self._tasks or self._flights.running():
            return  # the provider is busy: prefetch is only ever background work
        work = self._prefetch(snapshot, offset, shown, plan_at, origin)
        task = asyncio.get_running_loop().create_task(work, name=f"prefetch {document}")
        self._tasks[document] = task
        task.add_done_callback(lambda done: self._done(document, done))

    async def _prefetch(
        self,
        snapshot: DocumentSnapshot,
        offset: int,
        shown: Suggestion,
        plan_at: PlanAt,
        origin: str,
    ) -> None:
        after, cursor = accepted(snapshot, offset, shown)
        plan, cache = plan_at(after, cursor), self._cache()
        if plan is None or cache is None or self._flights.get(plan.key) is not None:
            return
        if await cache.lookup(plan.key) is not None:
            return
        language = snapshot.language_id
        self._resolve(snapshot.uri, used=False)  # (none is left by then, in practice)
        if not self._use.should_prefetch(language):
            # No use measured yet, or the user's habit makes this call unlikely to be used:
            # no call, but whether a request asks for it is still measured.
            self._started[snapshot.uri] = _Started(plan.key, None, origin, language, True)
            logger.debug("prefetch for %s measured, not sent", snapshot.uri)
            return
        logger.debug("prefetch for %s started", snapshot.uri)
        self._use.started(language)
        self._telemetry.mark("prefetched")
        job = StreamJob(after, cursor, plan.window)
        self._started[snapshot.uri] = _Started(plan.key, job, origin, language)
        flight = self._start_flight(plan, job)
        await flight.wait()  # a seat of its own: a joining request leaving does not cancel it

    def answered(self, document: str, key: str, continued: StreamJob | None) -> None:
        """A request the user waits for in ``document`` got the answer under ``key`` (by
        continuing the stream of ``continued``, if not None): the document's prefetch, if
        any, was used if that is its answer, and wasted otherwise. Another document's
        prefetch was wasted: the user moved on (a tab left open resolves too)."""
        for other in [other for other in self._started if other != document]:
            self._resolve(other, used=False)
        started = self._started.get(document)
        if started is None:
            return
        if key == started.key or (continued is not None and continued is started.job):
            self._resolve(document, used=True)
        elif key != started.origin:
            self._resolve(document, used=False)

    def snapshot(self) -> dict[str, Any]:
        """Prefetches started, used, wasted, skipped as unlikely to be used, and the expected
        use rate, in all and per language (``PrefetchUse.snapshot``), for crucible/status."""
        pending = sum(not started.measured for started in self._started.values())
        return {**self._use.snapshot(), "pending": pending}

    def _resolve(self, document: str, *, used: bool) -> None:
        started = self._started.pop(document, None)
        if started is not None:
            self._use.resolved(started.language, used, measured=started.measured)
            kind = "measured chance" if started.measured else "prefetch"
            logger.debug("%s for %s %s", kind, document, "used" if used else "wasted")

    def cancel(self, document: str) -> None:
        """``document`` was closed (or forgotten): its prefetch stops, and was never used."""
        self._resolve(document, used=False)
        task = self._tasks.pop(document, None)
        if task is not None:
            task.cancel()

    def make_way(self) -> int:
        """A request the user waits for is starting a provider stream: every prefetch gives
        up its flight (one a request joined goes on for it); returns how many were running."""
        return self.cancel_all()

    def cancel_all(self) -> int:
        """Cancel every prefetch still running; returns how many were."""
        tasks = [task for task in self._tasks.values() if not task.done()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        return len(tasks)

    def __len__(self) -> int:
        """Prefetches running."""
        return len(self._tasks)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, document: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(document) is task:
            del self._tasks[document]
        if not task.cancelled() and task.exception() is not None:
            # Background work: its failure is the provider's, already counted and logged.
            logger.debug("prefetch for %s failed: %r", document, task.exception())
