"""SingleFlight: identical in-flight work is done once and shared by everyone who wants it.

A ``Flight`` is one running computation (an asyncio task) with a count of the callers
waiting on it, and a ``job``: what the computation shares while it runs (the completion
service's is a ``StreamJob``, what the stream was asked for and how far it got). A caller
takes a ``Seat`` on the flight; a caller that leaves (cancelled, superseded) gives its seat
up, and when the last seat is given up the task is cancelled, which is what closes a provider
stream nobody reads any more. A flight being cancelled is removed from the table at once, so
no new caller can join it.

Errors: whatever the computation raises reaches every caller waiting on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
J = TypeVar("J")


class Flight(Generic[K, T, J]):
    """One in-flight computation of a ``T``, its ``job`` and the seats taken on it."""

    def __init__(self, owner: SingleFlight[K, T, J], key: K, task: asyncio.Task[T], job: J) -> None:
        self._owner = owner
        self.key = key
        self.task = task
        self.job = job  # what callers may read while it runs (e.g. the text so far)
        self._seats = 0

    @property
    def done(self) -> bool:
        return self.task.done()

    def join(self) -> Seat[T]:
        """Take a seat now (synchronously), so the flight cannot be abandoned before this
        caller gets round to waiting on it."""
        self._seats += 1
        return Seat(self.task, self._leave)

    async def wait(self) -> T:
        """Take a seat and wait for the result; leaving early gives up this seat only."""
        return await self.join().result()

    def _leave(self) -> None:
        self._seats -= 1
        if self._seats == 0 and not self.task.done():
            self._owner.abandon(self)


class Seat(Generic[T]):
    """One caller's attachment to a flight; ``leave`` is idempotent."""

    def __init__(self, task: asyncio.Task[T], leave: Callable[[], None]) -> None:
        self._task = task
        self._leave = leave
        self._left = False

    async def result(self) -> T:
        try:
            return await asyncio.shield(self._task)
        finally:
            self.leave()

    def leave(self) -> None:
        if not self._left:
            self._left = True
            self._leave()


class SingleFlight(Generic[K, T, J]):
    """The table of flights by key."""

    def __init__(self) -> None:
        self._flights: dict[K, Flight[K, T, J]] = {}

    def get(self, key: K) -> Flight[K, T, J] | None:
        return self._flights.get(key)

    def start(self, key: K, work: Coroutine[object, None, T], job: J) -> Flight[K, T, J]:
        """Run ``work`` as the flight for ``key`` (which must not be in flight already)."""
        task = asyncio.get_running_loop().create_task(work, name=f"flight {key!r:.60}")
        flight = Flight(self, key, task, job)
        self._flights[key] = flight
        task.add_done_callback(lambda _: self._remove(flight))
        # A flight that fails with nobody left to read it must not log "exception never
        # retrieved": the waiters (if any) have seen it already.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return flight

    def running(self) -> bool:
        """Whether any flight's computation is still going."""
        return any(not flight.done for flight in self._flights.values())

    def abandon(self, flight: Flight[K, T, J]) -> None:
        """Nobody waits for ``flight`` any more: cancel it and let nobody join it."""
        self._remove(flight)
        flight.task.cancel()

    def _remove(self, flight: Flight[K, T, J]) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    def __iter__(self) -> Iterator[Flight[K, T, J]]:
        return iter(list(self._flights.values()))

    def __len__(self) -> int:
        return len(self._flights)
