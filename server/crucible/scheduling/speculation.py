"""SpeculativeStarts: whether a completion request may go upstream when a pause begins.

Single responsibility: decide, from what earlier speculative starts came to, whether the next
request may start when a pause *begins* (one normal gap after the last key,
``AdaptiveDebounce.start_ms``) instead of when the pause that ends a burst is over. It never
sleeps and reads no stream: the completion service reports each request that went upstream
(``sent``, with a token for a speculative one's stream), each request that arrives while a
speculative stream awaits its verdict (``arrived``) and whether a stream a request sat on served
it (``stream_ended``).

A speculative start is judged by the document's next request: *kept* when that request is
served from the speculative stream (stream reuse, type-through of its suggestion), or when it
came after the pause had ended (the user had stopped: going early cost nothing); *wasted* when
the next key did not fit it (its stream is cancelled; it still cost a call). A request that
takes a seat on the stream before its first chunk leaves the verdict to the stream: whether
its text serves the request sitting on it when it ends, whenever later keys come.

The rule (reasoning and figures in ``docs/architecture.md``, "Adaptive debounce")::

    speculate  unless this document wasted one since its last request sent at the full pause
               (re-learn: that pause was inside a burst; at most one wasted call per burst)
               or (kept + PRIOR_KEPT) / (judged + PRIOR_KEPT) < KEEP_MIN over the user's last
               WINDOW verdicts, in which case one burst in EXPLORE_EVERY speculates anyway

Errors: none.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# A wasted speculation costs one call beyond the burst's one: while at most one in three is
# wasted (and at most one per burst), most bursts cost one call, the median tabby-agent makes
# at 30-90 ms between keys.
_KEEP_MIN = 2 / 3
_WINDOW = 12  # the user's last verdicts: a change of model or of code shows within a dozen
# One kept pseudo-verdict: speculation starts on, and a first waste (1 / 2) stops it until a
# kept one (explored, or after a burst that did not speculate) outweighs it.
_PRIOR_KEPT = 1
# While speculation does not pay, one burst in this many (a request sent at the full pause)
# is followed by a speculative start anyway, so a better model or more predictable code is seen.
_EXPLORE_EVERY = 4


@dataclass(slots=True)
class _Pending:
    """A document's speculative stream awaiting its verdict."""

    stream: object  # the caller's token for it, compared by identity
    until: float  # when the pause that ends the burst would have ended (the caller's clock)
    deferred: bool = False  # a request sits on the stream: its text decides


class SpeculativeStarts:
    """Per user: whether speculative starts pay; per document: whether one was just wasted,
    and the speculative stream awaiting its verdict."""

    def __init__(self) -> None:
        self._verdicts: deque[bool] = deque(maxlen=_WINDOW)
        self._wasted_in_burst: set[str] = set()
        self._pending: dict[str, _Pending] = {}
        self._declined = 0  # bursts sent at the full pause while speculation did not pay
        self._counts = {"started": 0, "kept": 0, "wasted": 0}

    def allowed(self, document: str) -> bool:
        """Whether a request for ``document`` may start when a pause begins."""
        if document in self._wasted_in_burst:
            return False
        return self._pays() or self._declined >= _EXPLORE_EVERY

    def sent(
        self, document: str, stream: object = None, *, speculative: bool, until: float = 0.0
    ) -> None:
        """A request for ``document`` went upstream at the full pause, or ``speculative``ly
        when a pause began: then ``stream`` awaits its verdict, and ``until`` is when the
        pause that ends the burst would have ended."""
        if speculative:
            self._counts["started"] += 1
            self._pending[document] = _Pending(stream, until)
            return
        self._wasted_in_burst.discard(document)  # the burst ended: speculate again
        if not self._pays():
            self._declined += 1

    def arrived(
        self, document: str, now: float, *, typed_through: bool, seated_on: object = None
    ) -> None:
        """A request for ``document`` arrived: answered by a type-through (of the speculative
        suggestion, or any), sitting on the stream ``seated_on`` (None: on none)."""
        pending = self._pending.get(document)
        if pending is None:
            return
        if typed_through or (not pending.deferred and now >= pending.until):
            self._judge(document, kept=True)
        elif seated_on is not None and seated_on is pending.stream:
            pending.deferred = True
        else:
            self._judge(document, kept=False)

    def stream_ended(self, document: str, stream: object, *, served: bool) -> None:
        """A request sitting on ``stream`` was ``served`` from its text, or it did not fit."""
        pending = self._pending.get(document)
        if pending is not None and pending.stream is stream:
            self._judge(document, kept=served)

    def forget(self, document: str) -> None:
        """``document`` was closed."""
        self._wasted_in_burst.discard(document)
        self._pending.pop(document, None)

    def snapshot(self) -> dict[str, int]:
        """Speculative starts, and how many were kept and wasted, for crucible/status."""
        return dict(self._counts)

    def _judge(self, document: str, *, kept: bool) -> None:
        del self._pending[document]
        self._verdicts.append(kept)
        self._counts["kept" if kept else "wasted"] += 1
        self._declined = 0
        if not kept:
            self._wasted_in_burst.add(document)
        verdict = "kept" if kept else "wasted: the next key did not fit"
        logger.debug("speculative start for %s %s", document, verdict)

    def _pays(self) -> bool:
        kept = sum(self._verdicts) + _PRIOR_KEPT
        return kept / (len(self._verdicts) + _PRIOR_KEPT) >= _KEEP_MIN
