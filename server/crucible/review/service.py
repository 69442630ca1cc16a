"""ReviewService: on save, the changed units of a document reviewed by the chat model, as
findings the LSP layer publishes as diagnostics (``source: "crucible"``).

``[review]`` is off by default. One save, top to bottom (``saved``):

1. debounced: the review waits ``review.debounce_ms``; a later save of the same document
   (or its closing) supersedes it, and the superseded one returns None (publish nothing);
2. a document the privacy rules exclude: no call, no findings (``excluded``);
3. the units (``units.py``: Python functions, else changed regions) and the lines changed
   since the text last reviewed (at first, the text when the document was opened);
4. each unit's findings from the cache by content (``findings.py``'s key: the unit's text,
   not its place), or, for a unit that changed, from the model (at most
   ``review.max_functions`` calls per save, each within ``review.timeout_ms``; an answer with
   no findings is cached too); a unit holding a private key is skipped, secrets are redacted;
5. the findings with absolute lines, at most ``review.max_findings`` per document, replace
   what the document had: the caller publishes them all (an empty tuple clears them).

Baselines (the text last reviewed, per open document) are bounded by count (``MAX_DOCUMENTS``)
and by bytes (``max_baseline_bytes``), the oldest forgotten first; a document whose text alone
is over the byte bound keeps none, and its next save is compared with nothing (every unit is
changed, still at most ``review.max_functions`` calls). ``memory_bytes`` is what it holds.

``closed`` forgets the document and cancels its pending review; the caller publishes an
empty list. Errors: none reach the caller; a ``ProviderError`` ends that unit's review with no
findings (logged, counted in ``failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crucible.cache.tiered import TieredCache
from crucible.config.settings import ReviewSettings
from crucible.context.privacy import WorkspacePrivacy
from crucible.context.redaction import contains_private_key, redact
from crucible.providers.errors import ProviderError
from crucible.resilience.pool import ProviderPool
from crucible.review import findings as review_findings
from crucible.review.findings import Finding
from crucible.review.units import Unit, changed_lines, units

logger = logging.getLogger(__name__)

MAX_DOCUMENTS = 256  # baselines kept (the text last reviewed, per open document)
# Bytes of baselines kept: 64 documents of 128 KB of ASCII (the size of a large source file),
# or 128 of 64 KB; the rest of the 256 are compared with nothing on their next save.
MAX_BASELINE_BYTES = 8 << 20
MAX_ANSWER_CHARS = 8000


@dataclass(frozen=True, slots=True)
class ReviewedDocument:
    uri: str
    path: str
    language: str
    text: str


class ReviewService:
    """Reviews on save; see the module docstring."""

    def __init__(
        self, settings: ReviewSettings, *, max_baseline_bytes: int = MAX_BASELINE_BYTES
    ) -> None:
        self.settings = settings
        self._max_baseline_bytes = max_baseline_bytes
        self._baseline_bytes = 0  # what the baselines' URIs and texts take, as ``_held`` counts
        self._pool: ProviderPool | None = None
        self._cache: TieredCache | None = None
        self._identity: tuple[Any, ...] = ()
        self._privacy: WorkspacePrivacy | None = None
        self._redact = True
        self._baselines: OrderedDict[str, str] = OrderedDict()
        self._generation: dict[str, int] = {}
        self._memo: OrderedDict[str, str] = OrderedDict()  # findings when the cache is off
        self.counts: dict[str, int] = dict.fromkeys(
            ("runs", "findings", "calls", "cached", "failed", "excluded", "superseded"), 0
        )

    def reconfigure(
        self,
        settings: ReviewSettings,
        pool: ProviderPool | None,
        *,
        cache: TieredCache | None,
        identity: Sequence[Any],
        privacy: WorkspacePrivacy | None,
        redact: bool,
    ) -> None:
        self.settings = settings
        self._pool, self._cache, self._identity = pool, cache, tuple(identity)
        self._privacy, self._redact = privacy, redact

    # -- documents ------------------------------------------------------------------------

    def opened(self, uri: str, text: str) -> None:
        """The text a first save is compared with."""
        if not self.settings.enabled:
            return
        self._forget_baseline(uri)
        size = _held(uri, text)
        if size > self._max_baseline_bytes:
            logger.debug("review: %s is too large to keep as a baseline", uri)
            return
        self._baselines[uri] = text
        self._baseline_bytes += size
        while len(self._baselines) > MAX_DOCUMENTS or (
            self._baseline_bytes > self._max_baseline_bytes
        ):
            self._baseline_bytes -= _held(*self._baselines.popitem(last=False))

    def closed(self, uri: str) -> bool:
        """Forget ``uri``; True when it may have findings to clear."""
        self._forget_baseline(uri)
        return self._generation.pop(uri, None) is not None

    def _forget_baseline(self, uri: str) -> None:
        text = self._baselines.pop(uri, None)
        if text is not None:
            self._baseline_bytes -= _held(uri, text)

    def memory_bytes(self) -> int:
        """The bytes held: the baselines (O(1), counted as they change), the findings kept
        when the cache is off and the saves in progress per document (O(entries), at most
        ``MAX_DOCUMENTS`` findings; one per open document saved). Texts as their strings."""
        held = sys.getsizeof(self._baselines) + self._baseline_bytes
        held += sys.getsizeof(self._memo) + sum(_held(k, v) for k, v in self._memo.items())
        held += sys.getsizeof(self._generation)
        return held + sum(sys.getsizeof(uri) for uri in self._generation)

    # -- one save -------------------------------------------------------------------------

    async def saved(self, document: ReviewedDocument) -> tuple[Finding, ...] | None:
        """The document's findings after this save (absolute lines), or None when there is
        nothing to publish (review off, superseded, closed meanwhile)."""
        if not self.settings.enabled or self._pool is None:
            return None
        generation = self._generation.get(document.uri, 0) + 1
        self._generation[document.uri] = generation
        await asyncio.sleep(self.settings.debounce_ms / 1000)
        if self._generation.get(document.uri) != generation:
            self.counts["superseded"] += 1
            return None
        if self._privacy is not None and self._privacy.rules().excludes(document.path):
            self.counts["excluded"] += 1
            return ()
        self.counts["runs"] += 1
        found = await self._review(document)
        if self._generation.get(document.uri) != generation:
            return None  # saved again, or closed, while the model answered
        self.counts["findings"] += len(found)
        return found

    async def _review(self, document: ReviewedDocument) -> tuple[Finding, ...]:
        baseline = self._baselines.get(document.uri, "")
        changed = changed_lines(baseline, document.text)
        self.opened(document.uri, document.text)
        calls = 0
        found: list[Finding] = []
        for unit in units(document.text, document.language, changed):
            if len(found) >= self.settings.max_findings:
                break
            relative, asked = await self._unit(document, unit, changed, calls)
            calls += asked
            found.extend(_absolute(relative, unit))
        return tuple(found[: self.settings.max_findings])

    async def _unit(
        self, document: ReviewedDocument, unit: Unit, changed: frozenset[int], calls: int
    ) -> tuple[list[Finding], int]:
        """The unit's findings (relative lines), and whether a provider was asked."""
        if contains_private_key(unit.text):
            return [], 0
        text = redact(unit.text).text if self._redact else unit.text
        sent = Unit(unit.first, unit.last, text)
        key = review_findings.key(sent, document.language, self._identity)
        cached = await self._cached(key)
        if cached is not None:
            self.counts["cached"] += 1
            return cached, 0
        if not unit.touches(changed) or calls >= self.settings.max_functions:
            return [], 0
        return await self._ask(document, sent, key), 1

    async def _ask(self, document: ReviewedDocument, unit: Unit, key: str) -> list[Finding]:
        pool = self._pool
        if pool is None:
            return []
        path = self._privacy.rules().prompt_path(document.path) if self._privacy else document.path
        request = review_findings.prompt(unit, document.language, path)
        self.counts["calls"] += 1
        try:
            answer = await _collect(pool, request, self.settings.timeout_ms / 1000)
        except ProviderError as exc:
            logger.info("review of %s failed: %s", path, exc)
            self.counts["failed"] += 1
            return []
        found = review_findings.read_findings(answer, unit)
        self._keep(key, review_findings.encode(found))
        return found

    async def _cached(self, key: str) -> list[Finding] | None:
        stored = self._memo.get(key) if self._cache is None else await self._cache.lookup_text(key)
        return review_findings.decode(stored) if stored is not None else None

    def _keep(self, key: str, stored: str) -> None:
        if self._cache is not None:
            self._cache.store_text(key, stored)
            return
        self._memo[key] = stored
        while len(self._memo) > MAX_DOCUMENTS:
            self._memo.popitem(last=False)

    def snapshot(self) -> dict[str, Any]:
        return {"enabled": self.settings.enabled, **self.counts}


def _held(key: str, text: str) -> int:
    """A key and its text, as strings."""
    return sys.getsizeof(key) + sys.getsizeof(text)


async def _collect(pool: ProviderPool, request: Any, seconds: float) -> str:
    parts: list[str] = []
    size = 0
    stream = pool.stream_chat(request, background=True, timeout=seconds)
    async with contextlib.aclosing(stream):
        async for chunk in stream:
            parts.append(chunk)
            size += len(chunk)
            if size >= MAX_ANSWER_CHARS:
                break
    return "".join(parts)


def _absolute(found: Sequence[Finding], unit: Unit) -> list[Finding]:
    lines = unit.text.split("\n")
    placed: list[Finding] = []
    for finding in found:
        if not 0 <= finding.line < len(lines):
            continue
        replacement = finding.replacement
        if replacement is not None and replacement.rstrip() == lines[finding.line].rstrip():
            replacement = None  # "replace the line by itself" is no fix
        placed.append(Finding(unit.first + finding.line, finding.message, replacement))
    return placed
