"""Stream reuse: does a request continue the text an in-flight suggestion was asked for?

When the user types the characters a still-streaming suggestion starts with, the new request
can take the rest of that suggestion instead of asking the provider again. That holds when
the new document is the old one with text typed at the old cursor, and the suggestion
(so far) agrees with what was typed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import ContextWindow
from crucible.scheduling.singleflight import Seat, SingleFlight

_MAX_TYPED = 256  # past this, the old suggestion's context is too stale to trust


@dataclass(slots=True)
class StreamJob:
    """What one provider stream was asked for, and what it has produced so far."""

    snapshot: DocumentSnapshot
    offset: int
    window: ContextWindow
    chunks: list[str] = field(default_factory=list)
    # Asked if the stream is abandoned before its first byte: whether the provider should go on
    # processing the prompt (the next request shares it) rather than be cut off.
    warm: Callable[[], bool] | None = None

    @property
    def produced(self) -> str:
        return "".join(self.chunks)


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


def find_reusable(
    flights: SingleFlight[str, str], snapshot: DocumentSnapshot, offset: int, window: ContextWindow
) -> tuple[Seat[str], str] | None:
    """A seat on an in-flight stream whose suggestion starts with what the user typed since
    it was asked for, and the typed text; the seat is taken at once, so the stream cannot be
    abandoned before the caller waits on it."""
    for flight in flights:
        job: StreamJob = flight.job
        typed = typed_since(job, snapshot, offset, window)
        if typed is not None and agrees(job.produced, typed, finished=flight.task.done()):
            return flight.join(), typed
    return None
