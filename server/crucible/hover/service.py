"""HoverService: the explanation of the diagnostics under the cursor, time-boxed and cached.

One hover, top to bottom (``hover``):

1. the diagnostics at the position, from the ``DiagnosticsStore`` (``context/diagnostics.py``);
   none: no provider call, an empty hover (unless ``hover.explain_code`` asks to explain the
   code there);
2. a document the privacy rules exclude, or code around the position holding a private key:
   the diagnostics alone, no call (``excluded``, ``withheld``); secrets in the code are
   redacted before the prompt is built;
3. the ``Subject`` (``explanation.py``) and its cache key (the diagnostics and the code
   around them, never the path or position); the tiered cache, memory then disk (``cached``);
4. otherwise the flight for that key (one per key: a second hover, or a prefetch, of the same
   subject joins it), awaited for at most ``hover.timeout_ms``: done in time, the explanation
   (``explained``); past it, the diagnostics and "explanation on its way, hover again"
   (``timed_out``) while the flight runs on and fills the cache; a provider that fails, the
   diagnostics alone (``failed``), never an error.

Flights run on the service's own tasks, not the hover's: a hover the editor cancels leaves
its flight running. Bounded: at most ``MAX_FLIGHTS`` flights exist (a subject beyond that gets
the diagnostics alone and a note) and ``MAX_GENERATING`` of them stream at once (the others
wait their turn); an answer is cut at ``MAX_ANSWER_CHARS``.

Prefetch (``diagnostics_changed``), when on: the document's errors (severity 1), at most
``PREFETCH_PER_DOCUMENT`` per arrival, get flights in the background (``prefetched``), never
while a completion streams (``busy``) nor while the memory supervisor holds prefetch back
(``pause_prefetch``). The App turns it on for local chat providers only (``hover.prefetch =
auto``), as ``cache.prefetch``. A prefetch flight no hover has asked for is background work:
``cancel_background`` cancels them all, ``document_closed`` those of a closed document; a
hover for the same subject makes it the hover's, and neither touches it then.

Errors: none reach the caller. ``ProviderError`` (and the pool's own subclasses) end a flight
with no explanation (logged at INFO, counted); cancellation at ``aclose`` ends them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crucible.cache.tiered import TieredCache
from crucible.config.settings import HoverSettings
from crucible.context.diagnostics import ERROR, DiagnosticsStore, KnownDiagnostic
from crucible.context.privacy import WorkspacePrivacy
from crucible.context.redaction import contains_private_key, redact
from crucible.hover.explanation import (
    ON_ITS_WAY,
    Subject,
    excerpt_bounds,
    excerpt_of,
    markdown,
    prompt,
)
from crucible.providers.errors import ProviderError
from crucible.resilience.pool import ProviderPool

logger = logging.getLogger(__name__)

MAX_FLIGHTS = 16
MAX_GENERATING = 2
MAX_ANSWER_CHARS = 6000
PREFETCH_PER_DOCUMENT = 3
_MEMO_ENTRIES = 64  # explanations kept when the cache is off, so "hover again" is true

NO_PROVIDER = "_No chat provider is configured: add `chat` to a provider's `roles`._"
UNAVAILABLE = "_No explanation: the chat provider did not answer._"
BUSY = "_No explanation now: too many are being generated; hover again later._"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # LSP's line breaks, and no others


@dataclass(frozen=True, slots=True)
class HoverDocument:
    """The document a hover or a prefetch reads: its text as it is now."""

    uri: str
    path: str  # a file-system path, or the URI when it has none
    language: str
    text: str

    def lines(self) -> list[str]:
        return _LINE_BREAK.split(self.text)


@dataclass(slots=True)
class _Wiring:
    """What ``reconfigure`` hands the service (the App builds it from Settings)."""

    pool: ProviderPool | None = None
    cache: TieredCache | None = None
    identity: tuple[Any, ...] = ()
    prefetch: bool = False
    privacy: WorkspacePrivacy | None = None
    redact: bool = True
    busy: Callable[[], bool] = field(default=lambda: False)


class HoverService:
    """Explanations of diagnostics on hover; see the module docstring."""

    def __init__(self, settings: HoverSettings, store: DiagnosticsStore) -> None:
        self.settings = settings
        self.store = store
        self._wiring = _Wiring()
        self._flights: dict[str, asyncio.Task[str | None]] = {}
        # The prefetch flights no hover has asked for yet, by key: the document they are for.
        self._background: dict[str, str] = {}
        self._prefetch_paused = False
        self._generating = asyncio.Semaphore(MAX_GENERATING)
        self._memo: OrderedDict[str, str] = OrderedDict()
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "hovers",
                "explained",
                "cached",
                "timed_out",
                "failed",
                "excluded",
                "withheld",
                "prefetched",
                "generated",
            ),
            0,
        )

    def reconfigure(
        self,
        settings: HoverSettings,
        pool: ProviderPool | None,
        *,
        cache: TieredCache | None,
        identity: Sequence[Any],
        prefetch: bool,
        privacy: WorkspacePrivacy | None,
        redact: bool,
        busy: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self._wiring = _Wiring(pool, cache, tuple(identity), prefetch, privacy, redact, busy)

    # -- one hover ------------------------------------------------------------------------

    async def hover(self, document: HoverDocument, line: int, character: int) -> str | None:
        """The hover's Markdown, or None (nothing to show, and no provider call)."""
        if not self.settings.enabled:
            return None
        diagnostics = self.store.at(document.uri, line, character)
        if not diagnostics and not self.settings.explain_code:
            return None
        self.counts["hovers"] += 1
        subject = self._subject(document, diagnostics, line)
        if subject is None:
            return markdown(diagnostics, None) if diagnostics else None
        wiring = self._wiring
        if wiring.pool is None:
            return markdown(diagnostics, None, NO_PROVIDER)
        key = subject.key(wiring.identity)
        cached = await self._cached(key)
        if cached is not None:
            self.counts["cached"] += 1
            return markdown(diagnostics, cached)
        flight = self._flight(key, subject, document.path, background=False)
        self._background.pop(key, None)  # a hover waits on it now: no longer background work
        if flight is None:
            return markdown(diagnostics, None, BUSY)
        return await self._await(flight, diagnostics)

    async def _await(
        self, flight: asyncio.Task[str | None], diagnostics: Sequence[KnownDiagnostic]
    ) -> str:
        try:
            explanation = await asyncio.wait_for(
                asyncio.shield(flight), self.settings.timeout_ms / 1000
            )
        except TimeoutError:
            self.counts["timed_out"] += 1
            return markdown(diagnostics, None, ON_ITS_WAY)
        if explanation is None:
            self.counts["failed"] += 1
            return markdown(diagnostics, None, UNAVAILABLE)
        self.counts["explained"] += 1
        return markdown(diagnostics, explanation)

    def _subject(
        self, document: HoverDocument, diagnostics: Sequence[KnownDiagnostic], line: int
    ) -> Subject | None:
        """What to explain, as sent; None when nothing may be sent for this document."""
        privacy = self._wiring.privacy
        if privacy is not None and privacy.rules().excludes(document.path):
            self.counts["excluded"] += 1
            return None
        lines = document.lines()
        first, last = excerpt_bounds(diagnostics, line, len(lines))
        excerpt = excerpt_of(lines, first, last)
        if contains_private_key(excerpt):
            self.counts["withheld"] += 1
            return None
        if self._wiring.redact:
            excerpt = redact(excerpt).text
        return Subject(tuple(diagnostics), excerpt, first, document.language)

    async def _cached(self, key: str) -> str | None:
        cache = self._wiring.cache
        if cache is None:
            found = self._memo.get(key)
            return found
        return await cache.lookup_text(key)

    # -- prefetch -------------------------------------------------------------------------

    def diagnostics_changed(self, document: HoverDocument) -> None:
        """The document's diagnostics were replaced: explain its errors ahead, if wanted."""
        wiring = self._wiring
        if not (self.settings.enabled and wiring.prefetch) or wiring.pool is None:
            return
        if self._prefetch_paused:
            return  # memory is short: nothing ahead of time
        if wiring.busy():
            return  # a completion streams: the provider is the user's now
        errors = [d for d in self.store.of(document.uri) if d.severity == ERROR]
        for diagnostic in errors[:PREFETCH_PER_DOCUMENT]:
            subject = self._subject(document, (diagnostic,), diagnostic.start_line)
            if subject is None:
                return
            key = subject.key(wiring.identity)
            if key in self._flights or self._known(key):
                continue
            if self._flight(key, subject, document.path, background=True) is not None:
                self._background[key] = document.uri
                self.counts["prefetched"] += 1

    def _known(self, key: str) -> bool:
        cache = self._wiring.cache
        if cache is None:
            return key in self._memo
        return cache.text_in_memory(key) is not None

    # -- flights --------------------------------------------------------------------------

    def _flight(
        self, key: str, subject: Subject, path: str, *, background: bool
    ) -> asyncio.Task[str | None] | None:
        """The one flight for ``key``: the running one, or a new one; None when
        ``MAX_FLIGHTS`` run already."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight
        if len(self._flights) >= MAX_FLIGHTS:
            return None
        flight = asyncio.get_running_loop().create_task(
            self._generate(key, subject, path, background), name="hover explanation"
        )
        self._flights[key] = flight
        flight.add_done_callback(lambda done: self._landed(key, done))
        return flight

    def _landed(self, key: str, flight: asyncio.Task[str | None]) -> None:
        if self._flights.get(key) is flight:
            self._flights.pop(key)
            self._background.pop(key, None)
        if not flight.cancelled() and (exc := flight.exception()) is not None:
            # A bug, not a provider failure (those end as None): said here, since a prefetch
            # flight has nobody awaiting it.
            logger.error("hover explanation failed: %r", exc)

    async def _generate(
        self, key: str, subject: Subject, path: str, background: bool
    ) -> str | None:
        wiring = self._wiring
        if wiring.pool is None:
            return None
        shown = wiring.privacy.rules().prompt_path(path) if wiring.privacy else path
        request = prompt(subject, shown)
        async with self._generating:
            try:
                text = await self._collect(wiring.pool, request, background)
            except ProviderError as exc:
                logger.info("hover explanation failed: %s", exc)
                return None
        self.counts["generated"] += 1
        text = text.strip()
        if not text:
            return None
        self._keep(wiring.cache, key, text)
        return text

    @staticmethod
    async def _collect(pool: ProviderPool, request: Any, background: bool) -> str:
        parts: list[str] = []
        size = 0
        stream = pool.stream_chat(request, background=background)
        async with contextlib.aclosing(stream):
            async for chunk in stream:
                parts.append(chunk)
                size += len(chunk)
                if size >= MAX_ANSWER_CHARS:
                    break
        return "".join(parts)[:MAX_ANSWER_CHARS]

    def _keep(self, cache: TieredCache | None, key: str, text: str) -> None:
        if cache is not None:
            cache.store_text(key, text)
            return
        self._memo[key] = text
        while len(self._memo) > _MEMO_ENTRIES:
            self._memo.popitem(last=False)

    # -- background work (the memory supervisor's handles) ---------------------------------

    def pause_prefetch(self, paused: bool) -> None:
        """While paused, diagnostics arriving start no explanation ahead of a hover."""
        self._prefetch_paused = paused

    def cancel_background(self) -> int:
        """Cancel the prefetch flights no hover waits on; returns how many were cancelled."""
        return self._cancel(list(self._background))

    def document_closed(self, uri: str) -> int:
        """``uri`` was closed: its prefetch flights no hover waits on are of no use now."""
        return self._cancel([key for key, owner in self._background.items() if owner == uri])

    def background_tasks(self) -> int:
        """Flights running that no hover asked for: prefetches."""
        return len(self._background)

    def _cancel(self, keys: list[str]) -> int:
        cancelled = 0
        for key in keys:
            self._background.pop(key, None)
            flight = self._flights.pop(key, None)
            if flight is not None and not flight.done():
                flight.cancel()
                cancelled += 1
        return cancelled

    # -- status and lifetime --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "enabled": self.settings.enabled,
            **self.counts,
            "in_flight": len(self._flights),
            "prefetch_paused": self._prefetch_paused,
            "background_tasks": self.background_tasks(),
            "diagnostics": self.store.snapshot(),
        }

    async def aclose(self) -> None:
        flights = list(self._flights.values())
        for flight in flights:
            flight.cancel()
        if flights:
            await asyncio.gather(*flights, return_exceptions=True)
