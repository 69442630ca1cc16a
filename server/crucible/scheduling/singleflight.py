"""SingleFlight: identical in-flight work is done once and shared by everyone who wants it.

A ``Flight`` is one running computation (an asyncio task) with a count of the callers
waiting on it. A caller that leaves (cancelled, superseded) detaches; when the last one
leaves, the task is cancelled, which is what closes a provider stream nobody reads any more.
A flight being cancelled is removed from the table at once, so no new caller can join it.

Errors: whatever the computation raises reaches every caller waiting on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Hashable, Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Flight(Generic[K, T]):
    """One in-flight computation and the callers attached to it."""

    def __init__(self, owner: SingleFlight[K, T], key: K, task: asyncio.Task[T], job: Any) -> None:
        self._owner = owner
        self.key = key
        self.task = task
        self.job = job  # what the caller wants to inspect while it runs (e.g. the text so far)
        self._waiters = 0

    def join(self) -> Seat[T]:
        """Attach now (synchronously), so the flight cannot be abandoned before this caller
        gets round to waiting on it."""
        self._waiters += 1
        return Seat(self)

    async def wait(self) -> T:
        """Attach and wait for the result; leaving early detaches this caller only."""
        return await self.join().result()

    def _leave(self) -> None:
        self._waiters -= 1
        if self._waiters == 0 and not self.task.done():
            self._owner.abandon(self)


class Seat(Generic[T]):
    """One caller's attachment to a flight; ``leave`` is idempotent."""

    def __init__(self, flight: Flight[Any, T]) -> None:
        self._flight = flight
        self._left = False

    async def result(self) -> T:
        try:
            return await asyncio.shield(self._flight.task)
        finally:
            self.leave()

    def leave(self) -> None:
        if not self._left:
            self._left = True
            self._flight._leave()


class SingleFlight(Generic[K, T]):
    """The table of flights by key."""

    def __init__(self) -> None:
        self._flights: dict[K, Flight[K, T]] = {}

    def get(self, key: K) -> Flight[K, T] | None:
        return self._flights.get(key)

    def start(self, key: K, work: Coroutine[Any, Any, T], job: Any = None) -> Flight[K, T]:
        """Run ``work`` as the flight for ``key`` (which must not be in flight already)."""
        task = asyncio.get_running_loop().create_task(work, name=f"flight {key!r:.60}")
        flight = Flight(self, key, task, job)
        self._flights[key] = flight
        task.add_done_callback(lambda _: self._remove(flight))
        # A flight that fails with nobody left to read it must not log "exception never
        # retrieved": the waiters (if any) have seen it already.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return flight

    def abandon(self, flight: Flight[K, T]) -> None:
        """Nobody waits for ``flight`` any more: cancel it and let nobody join it."""
        self._remove(flight)
        flight.task.cancel()

    def _remove(self, flight: Flight[K, T]) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    def __iter__(self) -> Iterator[Flight[K, T]]:
        return iter(list(self._flights.values()))

    def __len__(self) -> int:
        return len(self._flights)
