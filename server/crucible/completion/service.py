"""CompletionService: the one orchestrator of an inline completion.

A request for a document supersedes the older ones for that document (answered empty at
once), then either

* attaches to an in-flight stream whose suggestion starts with what the user has typed since
  (stream reuse: zero new provider calls), or
* waits out the adaptive debounce, then joins an identical in-flight request (single-flight)
  or starts one provider stream, read only until the suggestion is complete.

Streams belong to flights, not to requests: a superseded or cancelled request detaches, and a
stream nobody waits for any more is cancelled, which closes the HTTP response so the provider
stops generating.

Every call ends in exactly one of: a result, ``None`` (nothing useful, superseded, provider
down, deadline passed: logged and counted, never raised), or ``CancelledError`` propagating to
the caller (``$/cancelRequest``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from crucible.completion.postprocess import postprocess
from crucible.completion.reuse import StreamJob, agrees, typed_since
from crucible.completion.stopping import StopRule, wants_multiline
from crucible.config.settings import CompletionSettings
from crucible.context.neighbours import select_neighbours
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import ContextWindow, cut_window
from crucible.providers.base import FimRequest, Provider
from crucible.providers.errors import ProviderError
from crucible.runtime.telemetry import Telemetry
from crucible.scheduling.debounce import AdaptiveDebounce
from crucible.scheduling.latest import LatestWins
from crucible.scheduling.singleflight import Seat, SingleFlight

logger = logging.getLogger(__name__)

_request_ids = itertools.count(1)

FlightKey = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    snapshot: DocumentSnapshot
    offset: int  # cursor, as an index into snapshot.text
    invoked: bool = False  # the user asked explicitly: skip the debounce
    neighbours: tuple[DocumentSnapshot, ...] = ()  # other open documents, most recent first


@dataclass(frozen=True, slots=True)
class CompletionResult:
    text: str
    start: int  # offsets into the snapshot's text of the range the text replaces
    end: int
    request_id: int


class CompletionService:
    """Turns a storm of completion requests into few provider streams and fresh suggestions."""

    def __init__(
        self,
        settings: CompletionSettings,
        providers: Sequence[Provider],
        telemetry: Telemetry,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._settings = settings
        self._providers = tuple(providers)
        self._telemetry = telemetry
        self._sleep = sleep
        self._clock = clock
        self._debounce = AdaptiveDebounce(settings)
        self._latest = LatestWins()
        self._flights: SingleFlight[FlightKey, str] = SingleFlight()

    def reconfigure(self, settings: CompletionSettings, providers: Sequence[Provider]) -> None:
        """Swap in new settings; requests already running finish with the old ones."""
        self._settings = settings
        self._providers = tuple(providers)
        self._debounce.reconfigure(settings)

    @property
    def settings(self) -> CompletionSettings:
        return self._settings

    # -- document events (from didChange / didClose) ----------------------------------------

    def document_changed(self, uri: str) -> None:
        self._debounce.keystroke(uri)

    def document_closed(self, uri: str) -> None:
        self._debounce.forget(uri)
        self._latest.forget(uri)

    # -- one request -------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> CompletionResult | None:
        request_id = next(_request_ids)
        started = self._clock()
        window = cut_window(
            request.snapshot,
            request.offset,
            max_prefix=self._settings.max_prefix_chars,
            max_suffix=self._settings.max_suffix_chars,
        )
        # Attach to a reusable stream before superseding the request that started it, so the
        # stream is not abandoned in between.
        reuse = self._reusable(request, window)
        ticket = self._latest.begin(request.snapshot.uri)
        work = asyncio.ensure_future(self._complete(request, window, reuse, request_id))
        outcome = "empty"
        try:
            racing: set[asyncio.Future[Any]] = {work, ticket.superseded}
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            if not ticket.is_current:
                # A newer request for this document exists: this text is already stale.
                outcome = "superseded"
                return None
            result = work.result()
            outcome = "served" if result else "empty"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except ProviderError as exc:
            # Expected degradation: the editor gets an empty answer, the log gets one line.
            outcome = "error"
            logger.warning("completion %d: %s (%s)", request_id, exc, type(exc).__name__)
            return None
        except TimeoutError:
            outcome = "timeout"
            logger.warning(
                "completion %d: no answer within %d ms", request_id, self._settings.timeout_ms
            )
            return None
        finally:
            if not work.done():
                work.cancel()
                work.add_done_callback(_retrieve)
            if reuse is not None:
                reuse[0].leave()
            self._latest.end(ticket)
            self._telemetry.request(outcome)
            self._telemetry.stage("total", (self._clock() - started) * 1000)

    async def _complete(
        self,
        request: CompletionRequest,
        window: ContextWindow,
        reuse: tuple[Seat[str], str] | None,
        request_id: int,
    ) -> CompletionResult | None:
        settings = self._settings
        if not settings.enabled or not self._providers:
            return None
        snapshot = request.snapshot

        if reuse is not None:
            seat, typed = reuse
            raw = await _result_or_none(seat)
            if raw is not None and raw.startswith(typed) and len(raw) > len(typed):
                self._telemetry.mark("reused")
                logger.debug("completion %d: reused an in-flight stream", request_id)
                return self._finish(raw[len(typed) :], window, request, request_id)

        if not request.invoked:
            delay = self._debounce.delay_ms(
                snapshot.uri, window.line_prefix, window.line_suffix, invoked=request.invoked
            )
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "completion %d: debounce %.0f ms %s",
                    request_id,
                    delay,
                    self._debounce.describe(snapshot.uri),
                )
            waited = self._clock()
            await self._sleep(delay / 1000)
            self._telemetry.stage("debounce", (self._clock() - waited) * 1000)

        provider = self._providers[0]
        fim = self._fim_request(request, window)
        multiline = wants_multiline(window, settings.multiline)
        key: FlightKey = (provider.name, provider.model, fim, multiline, settings.max_lines)
        flight = self._flights.get(key)
        if flight is not None:
            self._telemetry.mark("coalesced")
        else:
            job = StreamJob(snapshot, request.offset, window)
            rule = StopRule(window, multiline=multiline, max_lines=settings.max_lines)
            flight = self._flights.start(key, self._stream(provider, fim, rule, job), job)
        raw = await flight.wait()
        return self._finish(raw, window, request, request_id)

    def _reusable(
        self, request: CompletionRequest, window: ContextWindow
    ) -> tuple[Seat[str], str] | None:
        """A seat on an in-flight stream whose suggestion starts with what the user typed
        since it was asked for, and the typed text."""
        for flight in self._flights:
            job: StreamJob = flight.job
            typed = typed_since(job, request.snapshot, request.offset, window)
            if typed is not None and agrees(job.produced, typed, finished=flight.task.done()):
                return flight.join(), typed
        return None

    def _fim_request(self, request: CompletionRequest, window: ContextWindow) -> FimRequest:
        settings = self._settings
        return FimRequest(
            prefix=window.prefix,
            suffix=window.suffix,
            language_id=request.snapshot.language_id,
            path=request.snapshot.path,
            extra=select_neighbours(
                request.snapshot,
                request.neighbours,
                max_files=settings.neighbour_files,
                max_chars=settings.neighbour_chars,
            ),
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
        )

    async def _stream(
        self, provider: Provider, fim: FimRequest, rule: StopRule, job: StreamJob
    ) -> str:
        """One provider call: read until the stop rule is satisfied, then close the stream."""
        started = self._clock()
        first_byte: float | None = None
        error: str | None = None  # a cancelled stream is not the provider's failure
        try:
            async with (
                asyncio.timeout(self._settings.timeout_ms / 1000),
                aclosing(provider.stream_fim(fim)) as stream,
            ):
                async for chunk in stream:
                    if first_byte is None:
                        first_byte = (self._clock() - started) * 1000
                        self._telemetry.stage("first_byte", first_byte)
                    job.chunks.append(chunk)
                    if rule.feed(chunk):
                        break
        except ProviderError as exc:
            error = type(exc).__name__
            raise
        except TimeoutError:
            error = "ProviderTimeout"
            raise
        finally:
            total = (self._clock() - started) * 1000
            self._telemetry.upstream(
                provider.name, error=error, first_byte_ms=first_byte, total_ms=total
            )
        self._debounce.observe_latency(total)
        return rule.text

    def _finish(
        self, raw: str, window: ContextWindow, request: CompletionRequest, request_id: int
    ) -> CompletionResult | None:
        suggestion = postprocess(raw, window)
        if suggestion is None:
            return None
        return CompletionResult(
            text=suggestion.text,
            start=request.offset,
            end=request.offset + suggestion.replace_suffix,
            request_id=request_id,
        )

    def scheduling_snapshot(self) -> dict[str, int]:
        """Live state for crucible/status."""
        return {"in_flight": len(self._flights), "pending_documents": len(self._latest)}


async def _result_or_none(seat: Seat[str]) -> str | None:
    """Wait for a flight this request did not start; its failure means "no reuse", not an
    error for this request (which can still ask on its own)."""
    try:
        return await seat.result()
    except (ProviderError, TimeoutError):
        return None


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark the outcome of abandoned work as seen, so asyncio logs no spurious warning."""
    if not task.cancelled():
        task.exception()
