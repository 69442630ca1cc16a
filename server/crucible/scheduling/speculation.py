"""SpeculativeStarts: whether a completion request may go upstream before the pause that ends a
burst is over, and at which point.

Single responsibility: decide, from what earlier speculative starts came to, whether the next
request may start at an earlier point than the pause that ends a burst (``debounce.Start``):
when a pause *begins* (``GAP``, one normal gap after the last key, ``AdaptiveDebounce.start_ms``)
or where the document's rhythm says the burst is over (``STOP``, its p99.5 gap,
``AdaptiveDebounce.stop_ms``). It never sleeps and reads no stream: the completion service asks
before each wait (``allowed``), and reports each request that went upstream (``sent``, with a
token for a speculative one's stream), each request that arrives (``arrived``) and whether a
stream a request sat on served it (``stream_ended``).

A speculative start is judged by what follows it in its document: *kept* when the next request
is served from the speculative stream (stream reuse, type-through of its suggestion), or when
it came after the pause that ends the burst would have ended (the user had stopped: going early
cost nothing, whatever the model said); *wasted* when the next key did not fit it (its stream
is cancelled; it still cost a call). A request that takes a seat on the stream before its first
chunk leaves the verdict to the stream: whether its text serves the request sitting on it when
it ends, whenever later keys come. A STOP start is also kept when no request followed it by the
end of its pause (judged at the next request of any document) or its document closed: it
stands for the end of a burst, and the user had stopped. A GAP start nobody followed goes
unjudged: it measures whether the model predicts the keys that follow, and none came (judged
kept, the peers benchmark's warm-up alone kept GAP starts on for a burst more with a model
that mispredicts).

The rule, per point (reasoning and figures in ``docs/architecture.md``, "Adaptive debounce")::

    none       where this document wasted a STOP start since its last request sent at the full
               pause (re-learn: that gap was inside a burst); after a wasted GAP start, no GAP
               (at most one wasted GAP call per burst)
    GAP        while (kept + PRIOR_KEPT) / (judged + PRIOR_KEPT) >= KEEP_MIN over the user's
               last WINDOW verdicts of GAP starts, or one burst in EXPLORE_EVERY of those sent
               later while it does not pay
    STOP       else, by the same rule over STOP starts' own verdicts (a STOP start seldom comes
               mid-burst, so a model that mispredicts does not turn it off as it turns off GAP)

Errors: none.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from crucible.scheduling.debounce import Start

logger = logging.getLogger(__name__)

# A wasted speculation costs one call beyond the burst's one: while at most one in three is
# wasted (and at most one per burst), most bursts cost one call, the median tabby-agent makes
# at 30-90 ms between keys.
_KEEP_MIN = 2 / 3
_WINDOW = 12  # the user's last verdicts: a change of model or of code shows within a dozen
# One kept pseudo-verdict: speculation starts on, and a first waste (1 / 2) stops it until a
# kept one (explored, or after a burst that did not speculate) outweighs it.
_PRIOR_KEPT = 1
# While a point does not pay, one burst in this many sent later is followed by a start at it
# anyway, so a better model, more predictable code or a steadier rhythm is seen.
_EXPLORE_EVERY = 4


@dataclass(slots=True)
class _Pending:
    """A document's speculative stream awaiting its verdict."""

    stream: object  # the caller's token for it, compared by identity
    until: float  # when the pause that ends the burst would have ended (the caller's clock)
    point: Start  # where it started: its verdict counts for that point
    deferred: bool = False  # a request sits on the stream: its text decides


class _Point:
    """One early point's recent verdicts (the user's), and the bursts sent later since its
    last verdict while it did not pay."""

    __slots__ = ("declined", "verdicts")

    def __init__(self) -> None:
        self.verdicts: deque[bool] = deque(maxlen=_WINDOW)
        self.declined = 0

    def pays(self) -> bool:
        kept = sum(self.verdicts) + _PRIOR_KEPT
        return kept / (len(self.verdicts) + _PRIOR_KEPT) >= _KEEP_MIN

    def allowed(self) -> bool:
        return self.pays() or self.declined >= _EXPLORE_EVERY

    def passed_over(self) -> None:
        """A burst was sent later than this point."""
        if not self.pays():
            self.declined += 1


class SpeculativeStarts:
    """Per user: whether each early point pays; per document: whether one was just wasted,
    the point last offered, and the speculative stream awaiting its verdict."""

    def __init__(self) -> None:
        self._points = {Start.GAP: _Point(), Start.STOP: _Point()}
        # Documents where a start was wasted since the last request sent at the full pause,
        # and where: after a GAP start, the rest of the burst may still start at the STOP.
        self._wasted_in_burst: dict[str, Start] = {}
        self._pending: dict[str, _Pending] = {}
        self._offered: dict[str, Start] = {}
        self._counts = {
            "started": 0,
            "kept": 0,
            "wasted": 0,
            "stop_started": 0,
            "stop_kept": 0,
            "stop_wasted": 0,
        }

    def allowed(self, document: str) -> Start:
        """The earliest point a request for ``document`` may start at (``Start.PAUSE``: none
        before the pause that ends a burst)."""
        wasted = self._wasted_in_burst.get(document)
        point = Start.PAUSE
        if wasted is None and self._points[Start.GAP].allowed():
            point = Start.GAP
        elif wasted is not Start.STOP and self._points[Start.STOP].allowed():
            point = Start.STOP
        self._offered[document] = point
        return point

    def sent(
        self, document: str, stream: object = None, *, speculative: bool, until: float = 0.0
    ) -> None:
        """A request for ``document`` went upstream at the full pause, or ``speculative``ly
        at the point last ``allowed``: then ``stream`` awaits its verdict, and ``until`` is
        when the pause that ends the burst would have ended."""
        if not speculative:
            self._wasted_in_burst.pop(document, None)  # the burst ended: speculate again
            self._points[Start.STOP].passed_over()
            self._points[Start.GAP].passed_over()
            return
        point = Start.STOP if self._offered.get(document) is Start.STOP else Start.GAP
        if point is Start.STOP:
            self._points[Start.GAP].passed_over()
        self._count(point, "started")
        self._pending[document] = _Pending(stream, until, point)

    def arrived(
        self, document: str, now: float, *, typed_through: bool, seated_on: object = None
    ) -> None:
        """A request for ``document`` arrived at ``now``: answered by a type-through (of the
        speculative suggestion, or any), sitting on the stream ``seated_on`` (None: on none).
        Every STOP start (of any document) whose pause has ended with no request since is
        judged here: kept."""
        stopped = [
            other
            for other, pending in self._pending.items()
            if pending.point is Start.STOP and not pending.deferred and now >= pending.until
        ]
        for other in stopped:
            self._judge(other, kept=True)
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
        """``document`` was closed: a STOP start nobody sat on is kept (nothing that did not
        fit followed it); a GAP start goes unjudged (nothing said whether the model predicted
        what the user types next)."""
        pending = self._pending.get(document)
        if pending is not None:
            if pending.point is Start.STOP and not pending.deferred:
                self._judge(document, kept=True)
            else:
                del self._pending[document]
        self._wasted_in_burst.pop(document, None)
        self._offered.pop(document, None)

    def snapshot(self) -> dict[str, int]:
        """Speculative starts, and how many were kept and wasted, all and at the ``STOP``
        point, for crucible/status."""
        return dict(self._counts)

    def _count(self, point: Start, what: str) -> None:
        self._counts[what] += 1
        if point is Start.STOP:
            self._counts[f"stop_{what}"] += 1

    def _judge(self, document: str, *, kept: bool) -> None:
        pending = self._pending.pop(document)
        point = self._points[pending.point]
        point.verdicts.append(kept)
        point.declined = 0
        self._count(pending.point, "kept" if kept else "wasted")
        if not kept:
            self._wasted_in_burst[document] = pending.point
        verdict = "kept" if kept else "wasted: the next key did not fit"
        logger.debug("speculative start (%s) for %s %s", pending.point.value, document, verdict)
