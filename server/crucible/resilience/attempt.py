"""Attempt: one stream from one member, and the bookkeeping that must happen exactly once.

An attempt holds a concurrency slot and a breaker ticket from the moment it starts until it is
settled — :meth:`Attempt.succeed`, :meth:`Attempt.fail` or :meth:`Attempt.abandon` (no verdict:
cancelled, lost a hedge, out of request time before its first byte). :meth:`Attempt.close`
abandons it if nothing else settled it, and then closes the provider's generator, so every exit
path of the pool ends in ``await attempt.close()`` and nothing leaks.

Chunks are pulled in a task (:meth:`Attempt.pull`) so the pool can race them against its
timers and against a hedge. The provider's generator is created inside that task, so an error
raised when a request is built arrives like any other stream error.

Raises only what the provider raises (``ProviderError``) and ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable

from crucible.providers.base import Provider
from crucible.providers.errors import ProviderError, ProviderTimeout, RateLimited
from crucible.resilience.breaker import Ticket
from crucible.resilience.limiter import Slot
from crucible.resilience.member import Member, counts_against_breaker

log = logging.getLogger(__name__)

Opener = Callable[[Provider], AsyncGenerator[str, None]]


class Attempt:
    def __init__(
        self,
        member: Member,
        opener: Opener,
        slot: Slot,
        ticket: Ticket,
        *,
        clock: Callable[[], float],
        first_byte_timeout: float,
    ) -> None:
        self.member = member
        self._opener = opener
        self._slot = slot
        self._ticket = ticket
        self._clock = clock
        self.started = clock()
        # Not fixed: the router lifts it when no other provider is left to fail over to.
        self.first_byte_deadline = self.started + first_byte_timeout
        self.first_byte: float | None = None  # seconds from start, once the first pull returned
        self._gen: AsyncGenerator[str, None] | None = None
        self._pending: asyncio.Task[str | None] | None = None
        self._settled = False
        self._closed = False

    def pull(self) -> asyncio.Task[str | None]:
        """The task fetching the next chunk (None: the stream ended); one at a time."""
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_task(self._next())
        return self._pending

    def ready(self) -> bool:
        return self._pending is not None and self._pending.done()

    def take(self) -> str | None:
        """The finished pull's chunk; raises what the provider raised."""
        task = self._pending
        if task is None or not task.done():
            raise RuntimeError("take() before the pull finished")
        self._pending = None
        chunk = task.result()
        if self.first_byte is None:
            self.first_byte = self._clock() - self.started
            self.member.first_byte.add(max(0.0, self.first_byte))
        return chunk

    def succeed(self, *, complete: bool) -> None:
        """The stream ended well, or the caller stopped reading (``complete=False``): the
        latency of a call cut short says nothing about the provider, so it is not recorded."""
        if not self._settle():
            return
        elapsed = self._clock() - self.started
        if complete:
            self.member.latency.add(max(0.0, elapsed))
        self.member.breaker.record_success(self._ticket)
        self._slot.succeeded(self.first_byte if self.first_byte is not None else elapsed)
        self.member.note_success()

    def fail(self, error: ProviderError) -> None:
        if not self._settle():
            return
        member = self.member
        member.note_failure(error)
        if counts_against_breaker(error):
            member.breaker.record_failure(self._ticket, type(error).__name__)
        else:
            member.breaker.release(self._ticket)
        if isinstance(error, RateLimited):
            self._slot.throttled()
        elif isinstance(error, ProviderTimeout) and self.first_byte is None:
            self._slot.timed_out()
        else:
            self._slot.release()
        log.info("provider %s: attempt failed (%s)", member.name, type(error).__name__)
        log.debug("provider %s: %s", member.name, error)

    def abandon(self) -> None:
        if self._settle():
            self.member.breaker.release(self._ticket)
            self._slot.release()

    async def close(self) -> None:
        """Settle (as abandoned unless already settled), then stop and close the stream.

        Accounting happens first and synchronously, so a second cancellation arriving while
        the generator closes cannot leak the slot or the half-open trial.
        """
        self.abandon()
        if self._closed:
            return
        self._closed = True
        task, self._pending = self._pending, None
        if task is not None:
            task.cancel()  # the generator gets CancelledError at its await and unwinds
            await asyncio.wait((task,))
            if not task.cancelled():
                task.exception()  # retrieved: a late error of a dropped stream is not news
        if self._gen is not None:
            try:
                await self._gen.aclose()
            except Exception as exc:
                log.debug("provider %s: closing the stream: %r", self.member.name, exc)

    def _settle(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        return True

    async def _next(self) -> str | None:
        if self._gen is None:
            self._gen = self._opener(self.member.provider)
        try:
            return await anext(self._gen)
        except StopAsyncIteration:
            return None
