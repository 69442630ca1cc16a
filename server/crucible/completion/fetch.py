"""fetch_completion: one inline completion's text from the provider pool, within a deadline.

This is the work of a flight (``scheduling/singleflight.py``). What the flight shares while it
runs is its ``StreamJob``: what the stream was asked for (document, cursor, window) and its
``StreamProgress``, which only this module writes and stream reuse (``reuse.py``) reads.

The pool fails over until a provider starts answering; after that it cannot (the text has
reached the caller). But nothing has reached the editor yet, so when a stream breaks mid-way
the completion starts over on the other providers (``StreamProgress.broke``), within the same
deadline. Each pass reads only until the stop rule is satisfied, then closes the stream, which
closes the HTTP response so the provider stops generating.

Errors: the pool's ``ProviderError`` (a ``ProviderTimeout`` when the deadline passed, or the
last provider's error when none could finish), ``TimeoutError`` from the backstop, and
``CancelledError``, which closes the stream on its way out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from crucible.completion.plan import Plan
from crucible.completion.stopping import StopRule, char_limit
from crucible.completion.suggestion import Suggestion
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import ContextWindow
from crucible.providers.errors import ProviderError, ProviderTimeout
from crucible.runtime.telemetry import Telemetry
from crucible.scheduling.singleflight import Flight, SingleFlight

logger = logging.getLogger(__name__)

# How long after the deadline the caller stops waiting whatever the pool does; the pool's own
# deadline, which counts a provider still dripping at the deadline as failed, comes first.
_BACKSTOP_S = 0.05


@dataclass(slots=True)
class StreamProgress:
    """How far one flight's provider stream got. A *pass* is one provider stream; a stream
    that breaks mid-way is followed by a pass on the other providers."""

    produced: str = ""  # the current pass's raw text so far, every chunk as it came
    first_chunk_came: bool = False  # in the current pass: a break after it is a break mid-way
    broke: frozenset[str] = frozenset()  # providers whose stream broke mid-way: not asked again
    raw: str | None = None  # the whole raw text as the stop rule cut it, once the stream ended
    # Told after each chunk: stream reuse leaves a stream as soon as it stops fitting.
    listeners: list[Callable[[], None]] = field(default_factory=list)

    def chunk(self, text: str) -> bool:
        """Add a chunk of the current pass; True when it is the pass's first."""
        first = not self.first_chunk_came
        self.first_chunk_came = True
        self.produced += text
        for listener in list(self.listeners):
            listener()
        return first

    def broke_mid_way(self, provider: str) -> None:
        """``provider``'s stream broke after its first chunk: the next pass starts from
        nothing, without it."""
        self.broke |= {provider}
        self.produced, self.first_chunk_came = "", False


@dataclass(frozen=True, slots=True)
class StreamJob:
    """What a flight shares while it runs: what its stream was asked for, and how far it got."""

    snapshot: DocumentSnapshot
    offset: int  # the cursor
    window: ContextWindow
    progress: StreamProgress = field(default_factory=StreamProgress)


# The completion service's flights: keyed by the plan's cache key, computing the suggestion.
CompletionFlights = SingleFlight[str, Suggestion, StreamJob]
CompletionFlight = Flight[str, Suggestion, StreamJob]


async def fetch_completion(
    plan: Plan,
    progress: StreamProgress,
    *,
    deadline_s: float,
    background: bool,
    warm: Callable[[], bool] | None,
    telemetry: Telemetry,
    on_latency: Callable[[float], None],
    clock: Callable[[], float] = time.perf_counter,
) -> str:
    """The raw text of ``plan``'s completion, cut by its stop rule; ``progress`` follows the
    stream as it comes. ``warm`` is asked if the stream is abandoned before its first byte:
    whether the provider should go on processing the prompt (the next request shares it).
    ``on_latency`` is told each pass's time (ms)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + deadline_s
    async with asyncio.timeout_at(ends + _BACKSTOP_S):
        while True:
            rule = StopRule(
                plan.window,
                multiline=plan.multiline,
                max_lines=plan.max_lines,
                max_chars=char_limit(plan.fim.max_tokens),
            )
            started = clock()
            stream = plan.provider.stream_fim(
                plan.fim,
                background=background,
                timeout=max(ends - loop.time(), 0.001),
                exclude=progress.broke,
                warm=warm,
            )

            def first_chunk(started: float = started) -> None:
                telemetry.stage("first_byte", (clock() - started) * 1000)

            try:
                progress.raw = await _read(stream, rule, progress, first_chunk)
            except ProviderError as exc:
                if isinstance(exc, ProviderTimeout) or not progress.first_chunk_came:
                    raise  # out of time, or the pool already tried everyone it could
                logger.info(
                    "%s broke mid-stream (%s); asking another provider",
                    exc.provider,
                    type(exc).__name__,
                )
                progress.broke_mid_way(exc.provider)
                continue
            on_latency((clock() - started) * 1000)
            return progress.raw


async def _read(
    stream: AsyncGenerator[str, None],
    rule: StopRule,
    progress: StreamProgress,
    first_chunk: Callable[[], None],
) -> str:
    """One pass: read until the stop rule is satisfied, then close the stream."""
    async with aclosing(stream):
        async for chunk in stream:
            if progress.chunk(chunk):
                first_chunk()
            if rule.feed(chunk):
                break
    return rule.text
