"""Stream reuse: does a request continue the text an in-flight suggestion was asked for?

When the user types the characters a still-streaming suggestion starts with, the new request
can take the rest of that suggestion instead of asking the provider again. That holds when
the new document is the old one with text typed at the old cursor, and the suggestion
(so far) agrees with what was typed.

It needs from a flight exactly its ``StreamJob``: what the stream was asked for (to see what
was typed since), the raw text produced so far (to see whether it still agrees), and, once the
stream ended, its whole raw text (``StreamProgress.raw``), from which the typed text is cut.
The flight's own result is post-processed for the old cursor, so it is no use here.

A request takes its seat before the stream's first byte, when nothing says yet whether it
fits; it leaves as soon as the text produced stops agreeing with what was typed, so a stream
started speculatively whose next key did not fit is cancelled at its first chunk (when no one
else waits on it), not read to its end.

Errors: none. A flight that fails means "no reuse": the request can still ask on its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from crucible.completion.fetch import CompletionFlights, StreamJob
from crucible.completion.suggestion import Suggestion
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import ContextWindow
from crucible.providers.errors import ProviderError
from crucible.scheduling.singleflight import Seat

_MAX_TYPED = 256  # past this, the old suggestion's context is too stale to trust


def typed_since(
    job: StreamJob, snapshot: DocumentSnapshot, offset: int, window: ContextWindow
) -> str | None:
    """The text typed at the job's cursor to reach ``snapshot``/``offset``, or None when the
    new request is not a plain continuation (another document, an edit elsewhere near the
    cursor, a deletion, a move)."""
    if snapshot.uri != job.snapshot.uri or window.suffix != job.window.suffix:
        return None
    typed_length = offset - job.offset
    if typed_length <= 0 or typed_length > _MAX_TYPED:
        return None
    # The model saw job.window.prefix before the old cursor; it must still be there.
    seen = len(job.window.prefix)
    if snapshot.text[job.offset - seen : job.offset] != job.window.prefix:
        return None
    return snapshot.text[job.offset : offset]


def agrees(produced: str, typed: str, *, finished: bool) -> bool:
    """Whether a suggestion that has produced ``produced`` so far can still start with ``typed``."""
    if produced.startswith(typed):
        return len(produced) > len(typed) or not finished
    return not finished and typed.startswith(produced)


@dataclass(frozen=True, slots=True)
class Reuse:
    """A seat on an in-flight stream that the request continues, and what was typed since."""

    seat: Seat[Suggestion]
    job: StreamJob
    typed: str

    async def rest(self) -> str | None:
        """The raw rest of the stream's text after what was typed, once the stream ended;
        None when it failed or does not continue the typed text after all (known, and the
        seat given up, at the first chunk that disagrees)."""
        progress = self.job.progress
        diverged: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def check() -> None:
            if not diverged.done() and not agrees(progress.produced, self.typed, finished=False):
                diverged.set_result(None)

        check()
        progress.listeners.append(check)
        result = asyncio.ensure_future(self.seat.result())
        try:
            await asyncio.wait((result, diverged), return_when=asyncio.FIRST_COMPLETED)
        finally:
            progress.listeners.remove(check)
            if not result.done():
                result.cancel()  # shielded: only this seat is given up
                self.seat.leave()
        if not result.done() or result.cancelled():
            return None
        if result.exception() is not None:
            if isinstance(result.exception(), ProviderError | TimeoutError):
                return None
            result.result()  # anything else is not expected degradation: raise it
        return _rest(self.job.progress.raw, self.typed)


def rest_after_typed(
    job: StreamJob, snapshot: DocumentSnapshot, offset: int, window: ContextWindow
) -> str | None:
    """The raw rest of a stream that ended (``job``'s whole text) after what was typed since
    it was asked for, or None when the request does not continue it. For the moment between a
    stream's end and its requester showing its suggestion: a request that arrives then finds
    the stream neither in flight nor shown (its requester, superseded by it, shows nothing)."""
    typed = typed_since(job, snapshot, offset, window)
    return None if typed is None else _rest(job.progress.raw, typed)


def _rest(raw: str | None, typed: str) -> str | None:
    """What a stream's whole text ``raw`` adds after ``typed``; None when it does not start
    with it or adds nothing."""
    if raw is None or not raw.startswith(typed) or len(raw) <= len(typed):
        return None
    return raw[len(typed) :]


def find_reusable(
    flights: CompletionFlights, snapshot: DocumentSnapshot, offset: int, window: ContextWindow
) -> Reuse | None:
    """An in-flight stream whose suggestion starts with what the user typed since it was
    asked for; the seat is taken at once, so the stream cannot be abandoned before the caller
    waits on it."""
    for flight in flights:
        job = flight.job
        typed = typed_since(job, snapshot, offset, window)
        if typed is not None and agrees(job.progress.produced, typed, finished=flight.done):
            return Reuse(flight.join(), job, typed)
    return None
