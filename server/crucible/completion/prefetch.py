"""Prefetch: the next suggestion, computed in the background as if the shown one were accepted.

When: after a suggestion from a provider or the cache key was shown (``after_shown``; a
type-through is not followed by one), only while no provider stream runs (prefetch is only
ever background work), and at most one per document: a document that already has one gets no
other. What: the suggestion for the document with the shown one accepted (``accepted``), unless
it is in flight or cached already. It runs as a background flight of its own, which stores its
answer in the cache like any flight, so accepting and typing on is answered from the cache (or
joins that flight).

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
from dataclasses import replace

from crucible.cache.tiered import TieredCache
from crucible.completion.fetch import CompletionFlight, CompletionFlights, StreamJob
from crucible.completion.plan import Plan
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


class Prefetches:
    """When and what to prefetch, and the background tasks doing it (one per document)."""

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

    def after_shown(
        self,
        snapshot: DocumentSnapshot,
        offset: int,
        shown: Suggestion,
        plan_at: PlanAt,
    ) -> None:
        """``shown`` was served at ``offset``: prefetch what follows it, if the time is right."""
        document = snapshot.uri
        if document in self._tasks or self._flights.running():
            return  # the provider is busy: prefetch is only ever background work
        work = self._prefetch(snapshot, offset, shown, plan_at)
        task = asyncio.get_running_loop().create_task(work, name=f"prefetch {document}")
        self._tasks[document] = task
        task.add_done_callback(lambda done: self._done(document, done))

    async def _prefetch(
        self,
        snapshot: DocumentSnapshot,
        offset: int,
        shown: Suggestion,
        plan_at: PlanAt,
    ) -> None:
        after, cursor = accepted(snapshot, offset, shown)
        plan, cache = plan_at(after, cursor), self._cache()
        if plan is None or cache is None or self._flights.get(plan.key) is not None:
            return
        if await cache.lookup(plan.key) is not None:
            return
        self._telemetry.mark("prefetched")
        flight = self._start_flight(plan, StreamJob(after, cursor, plan.window))
        await flight.wait()  # a seat of its own: a joining request leaving does not cancel it

    def cancel(self, document: str) -> None:
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
