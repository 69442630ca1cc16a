"""SpeculativeStarts: whether a completion request may go upstream when a pause begins.

Single responsibility: decide, from what earlier speculative starts came to, whether the next
request may start when a pause *begins* (one normal gap after the last key,
``AdaptiveDebounce.start_ms``) instead of when the pause that ends a burst is over. It never
sleeps and knows nothing of streams: the completion service reports each request that went
upstream (``sent``) and the verdict on each speculative one (``judged``).

A speculative start is judged by the document's next request within the pause: *kept* when that
request is served from the speculative stream (stream reuse, type-through of its suggestion), or
when no key came before the pause ended (the user had stopped: it went early for nothing);
*wasted* when the next key did not fit it (its stream is cancelled; it still cost a call).

The rule (reasoning and figures in ``docs/architecture.md``, "Adaptive debounce")::

    speculate  unless this document wasted one since its last request sent at the full pause
               (re-learn: that pause was inside a burst; at most one wasted call per burst)
               or (kept + PRIOR_KEPT) / (judged + PRIOR_KEPT) < KEEP_MIN over the user's last
               WINDOW verdicts, in which case one burst in EXPLORE_EVERY speculates anyway

Errors: none.
"""

from __future__ import annotations

from collections import deque

# A wasted speculation costs one call beyond the burst's one: while at most one in three is
# wasted (and at most one per burst), most bursts cost one call, the median tabby-agent makes
# at 30-90 ms between keys.
_KEEP_MIN = 2 / 3
_WINDOW = 12  # the user's last verdicts: a change of model or of code shows within a dozen
# Optimistic start: two kept pseudo-verdicts, so one early waste does not stop speculation
# (2 / 3 still passes), two in a row do.
_PRIOR_KEPT = 2
# While speculation does not pay, one burst in this many (a request sent at the full pause)
# is followed by a speculative start anyway, so a better model or more predictable code is seen.
_EXPLORE_EVERY = 4


class SpeculativeStarts:
    """Per user: whether speculative starts pay; per document: whether one was just wasted."""

    def __init__(self) -> None:
        self._verdicts: deque[bool] = deque(maxlen=_WINDOW)
        self._wasted_in_burst: set[str] = set()
        self._declined = 0  # bursts sent at the full pause while speculation did not pay
        self._counts = {"started": 0, "kept": 0, "wasted": 0}

    def allowed(self, document: str) -> bool:
        """Whether a request for ``document`` may start when a pause begins."""
        if document in self._wasted_in_burst:
            return False
        return self._pays() or self._declined >= _EXPLORE_EVERY

    def sent(self, document: str, *, speculative: bool) -> None:
        """A request for ``document`` went upstream, when a pause began or at the full pause."""
        if speculative:
            self._counts["started"] += 1
            return
        self._wasted_in_burst.discard(document)  # the burst ended: speculate again
        if not self._pays():
            self._declined += 1

    def judged(self, document: str, *, kept: bool) -> None:
        """The verdict on ``document``'s last speculative start."""
        self._verdicts.append(kept)
        self._counts["kept" if kept else "wasted"] += 1
        self._declined = 0
        if not kept:
            self._wasted_in_burst.add(document)

    def forget(self, document: str) -> None:
        """``document`` was closed."""
        self._wasted_in_burst.discard(document)

    def snapshot(self) -> dict[str, int]:
        """Speculative starts, and how many were kept and wasted, for crucible/status."""
        return dict(self._counts)

    def _pays(self) -> bool:
        kept = sum(self._verdicts) + _PRIOR_KEPT
        return kept / (len(self._verdicts) + _PRIOR_KEPT) >= _KEEP_MIN
