"""What the fake provider is told to do (faults) and what it saw (recorded requests).

Both are shared between the test's thread and the server's thread: a :class:`RecordedRequest`
is updated by the server as its response goes out while the test reads it, and the
:class:`FaultQueue` is filled by the test and drained by the server, under a lock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fault:
    """How the next generation requests misbehave; the fields combine (latency, then the rest).

    ``status``, ``hang``, ``garbage``, ``truncate_after`` and ``error_event`` apply to streamed
    and non-streamed answers alike: a non-streamed answer with ``truncate_after`` sends half its
    body (its Content-Length promises all of it) and drops the connection; with ``garbage`` its
    body is not JSON; with ``error_event`` it is that error's HTTP status (Anthropic's table:
    ``overloaded_error`` is 529) in the family's error shape. ``chunk_delay_ms`` only slows
    streams.
    """

    latency_ms: int = 0  # delay before the response headers (time to first byte)
    chunk_delay_ms: int = 0  # delay between stream chunks ("slow drip")
    status: int | None = None  # answer with this HTTP error status (the format's error shape)
    retry_after: float | None = None  # with status 429/503: Retry-After header (seconds)
    truncate_after: int | None = None  # stream this many chunks, then drop the connection
    hang: bool = False  # read the request, then send nothing until the client disconnects
    garbage: bool = False  # stream a malformed (non-JSON) data line instead of chunks
    # Stream ``error_after`` chunks, then the family's error object as one more event (for
    # Anthropic ``event: error`` with this error type: overloaded_error, rate_limit_error …),
    # then end the body: a generation failing after its 200 status went out.
    error_event: str | None = None
    error_after: int = 0
    # A provider that never stops: a streamed 200 whose body is this many bytes with no line
    # break (a data field for SSE formats), sent in 64 KiB chunks made once, so a test can ask
    # for gigabytes without holding them. ``chunks_sent`` counts the chunks that went out.
    flood_bytes: int | None = None
    # One stream event carrying a "token" of this many characters (well-formed, after the
    # preamble, in 64 KiB pieces), then the format's normal end: a provider ignoring max_tokens.
    giant_token: int | None = None
    # Extra response headers, on the answer or the error status alike: a gateway's
    # x-ratelimit-remaining-requests / x-ratelimit-reset-requests, for instance.
    headers: tuple[tuple[str, str], ...] = ()


NO_FAULT = Fault()


@dataclass
class RecordedRequest:
    """One request as the fake saw it, updated from the server thread as its response goes."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON or None
    received_at: float  # time.monotonic()
    chunks_sent: int = 0  # text pieces streamed (not the preamble nor the closing objects)
    completed: bool = False  # the whole response (incl. stream terminator) was written
    disconnected: bool = False  # the client closed the connection before the response ended
    finished_at: float | None = None
    # When a generation slot was granted (time.monotonic()); None if it never was (the client
    # left while queued) or for requests that need no slot (everything but generation).
    admitted_at: float | None = None


Reply = str | Callable[[RecordedRequest], str]


@dataclass
class _Queued:
    fault: Fault
    remaining: int | None  # None: until cleared


class FaultQueue:
    """Faults in injection order; each generation request takes one use of the head."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[_Queued] = deque()

    def push(self, fault: Fault, times: int | None) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None")
        with self._lock:
            self._queue.append(_Queued(fault, times))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def take(self) -> Fault:
        """The fault for the request arriving now (``NO_FAULT`` when none is queued)."""
        with self._lock:
            if not self._queue:
                return NO_FAULT
            head = self._queue[0]
            if head.remaining is not None:
                head.remaining -= 1
                if head.remaining == 0:
                    self._queue.popleft()
            return head.fault
