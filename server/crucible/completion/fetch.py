"""fetch_completion: one inline completion's text from the provider pool, within a deadline.

The pool fails over until a provider starts answering; after that it cannot (the text has
reached the caller). But nothing has reached the editor yet, so when a stream breaks mid-way
the completion starts over on the other providers (``exclude``), within the same deadline.
Each pass reads only until the stop rule is satisfied, then closes the stream, which closes
the HTTP response so the provider stops generating.

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

from crucible.completion.plan import Plan
from crucible.completion.reuse import StreamJob
from crucible.completion.stopping import StopRule, char_limit
from crucible.providers.errors import ProviderError, ProviderTimeout
from crucible.runtime.telemetry import Telemetry

logger = logging.getLogger(__name__)

# How long after the deadline the caller stops waiting whatever the pool does; the pool's own
# deadline, which counts a provider still dripping at the deadline as failed, comes first.
_BACKSTOP_S = 0.05


async def fetch_completion(
    plan: Plan,
    job: StreamJob,
    *,
    deadline_s: float,
    background: bool,
    telemetry: Telemetry,
    on_latency: Callable[[float], None],
    clock: Callable[[], float] = time.perf_counter,
) -> str:
    """The raw text of ``plan``'s completion, cut by its stop rule; ``job.chunks`` receives
    the chunks as they come (stream reuse reads them). ``on_latency`` is told each pass's
    time (ms)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + deadline_s
    broke: set[str] = set()  # providers whose stream broke mid-way for this completion
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
                exclude=frozenset(broke),
                warm=job.warm,
            )

            def first_chunk(started: float = started) -> None:
                telemetry.stage("first_byte", (clock() - started) * 1000)

            try:
                text = await _read(stream, rule, job, first_chunk)
            except ProviderError as exc:
                if isinstance(exc, ProviderTimeout) or not job.chunks:
                    raise  # out of time, or the pool already tried everyone it could
                logger.info(
                    "%s broke mid-stream (%s); asking another provider",
                    exc.provider,
                    type(exc).__name__,
                )
                broke.add(exc.provider)
                job.chunks.clear()
                continue
            on_latency((clock() - started) * 1000)
            return text


async def _read(
    stream: AsyncGenerator[str, None],
    rule: StopRule,
    job: StreamJob,
    first_chunk: Callable[[], None],
) -> str:
    """One pass: read until the stop rule is satisfied, then close the stream."""
    async with aclosing(stream):
        async for chunk in stream:
            if not job.chunks:
                first_chunk()
            job.chunks.append(chunk)
            if rule.feed(chunk):
                break
    return rule.text
