"""CompletionService: the one orchestrator of an inline completion.

snapshot + cursor -> wait out the debounce -> context window and neighbours -> provider stream,
stopped early once the suggestion is complete -> post-processing -> CompletionResult.

Every call ends in exactly one of: a result, ``None`` (nothing useful, provider down, deadline
passed: logged and counted, never raised), or ``CancelledError`` propagating to the caller
(``$/cancelRequest``). Closing the provider stream on every exit path is what makes the
provider stop generating when we stop reading.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from crucible.completion.postprocess import postprocess
from crucible.completion.stopping import StopRule, wants_multiline
from crucible.config.settings import CompletionSettings
from crucible.context.neighbours import select_neighbours
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import ContextWindow, cut_window
from crucible.providers.base import FimRequest, Provider
from crucible.providers.errors import ProviderError
from crucible.runtime.telemetry import Telemetry

logger = logging.getLogger(__name__)

_request_ids = itertools.count(1)


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
    """Turns a completion request into at most one provider stream and one suggestion."""

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

    def reconfigure(self, settings: CompletionSettings, providers: Sequence[Provider]) -> None:
        """Swap in new settings; requests already running finish with the old ones."""
        self._settings = settings
        self._providers = tuple(providers)

    @property
    def settings(self) -> CompletionSettings:
        return self._settings

    async def complete(self, request: CompletionRequest) -> CompletionResult | None:
        request_id = next(_request_ids)
        started = self._clock()
        outcome = "empty"
        try:
            result = await self._complete(request, request_id)
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
            self._telemetry.request(outcome)
            self._telemetry.stage("total", (self._clock() - started) * 1000)

    async def _complete(
        self, request: CompletionRequest, request_id: int
    ) -> CompletionResult | None:
        settings = self._settings
        if not settings.enabled or not self._providers:
            return None
        if not request.invoked and settings.debounce_ms > 0:
            waited = self._clock()
            await self._sleep(settings.debounce_ms / 1000)
            self._telemetry.stage("debounce", (self._clock() - waited) * 1000)

        snapshot = request.snapshot
        window = cut_window(
            snapshot,
            request.offset,
            max_prefix=settings.max_prefix_chars,
            max_suffix=settings.max_suffix_chars,
        )
        fim = FimRequest(
            prefix=window.prefix,
            suffix=window.suffix,
            language_id=snapshot.language_id,
            path=snapshot.path,
            extra=select_neighbours(
                snapshot,
                request.neighbours,
                max_files=settings.neighbour_files,
                max_chars=settings.neighbour_chars,
            ),
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
        )
        rule = StopRule(
            window,
            multiline=wants_multiline(window, settings.multiline),
            max_lines=settings.max_lines,
        )
        raw = await self._stream(self._providers[0], fim, rule, request_id)
        return self._finish(raw, window, request, request_id)

    async def _stream(
        self, provider: Provider, fim: FimRequest, rule: StopRule, request_id: int
    ) -> str:
        """Read the provider's stream until the stop rule is satisfied, then close it."""
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
                    if rule.feed(chunk):
                        logger.debug("completion %d: stopped early", request_id)
                        break
        except ProviderError as exc:
            error = type(exc).__name__
            raise
        except TimeoutError:
            error = "ProviderTimeout"
            raise
        finally:
            self._telemetry.upstream(
                provider.name,
                error=error,
                first_byte_ms=first_byte,
                total_ms=(self._clock() - started) * 1000,
            )
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
