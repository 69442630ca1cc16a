"""AdaptiveDebounce: how long to wait after a keystroke before asking a provider.

Single responsibility: turn what has been observed (each document's keystroke times, the
providers' latency, the text around the cursor) into a wait in milliseconds. It never sleeps
and never decides whether a request was superseded (``latest.py`` does); time comes from an
injected clock (seconds, ``time.monotonic`` by default).

The pause that ends a burst, adaptive mode (reasoning and the comparison with tabby-agent in
``docs/architecture.md``, "Adaptive debounce")::

    user   = (n * p75(recent gaps, all documents) + K0 * debounce_ms / PAUSE_GAPS) / (n + K0)
    gap    = (k * p75(recent gaps, this document) + K0 * user) / (k + K0)
    pause  = PAUSE_GAPS * gap * context
             + LATENCY_SHARE * max(0, median(recent provider latencies) - LATENCY_FREE_MS)
    pause  = clamp(pause, debounce_min_ms, debounce_max_ms)
    delay  = max(0, pause - time since the document's last edit or request)

Two earlier points a request may go at, speculatively (``speculation.py`` decides which pays,
the completion service keeps its stream only if the next key fits it), each within the bounds
and never after the pause: ``wait(..., early=Start.GAP)`` counts to where a pause *begins*, one
normal gap after the last edit (``start = SPECULATE_GAPS * gap``); ``early=Start.STOP`` to
where the document's own rhythm says the burst is over, its p99.5 gap, extrapolated from the
p75 and p95 as a log-normal tail, plus a margin for timer jitter::

    stop = p75 * (p95 / p75) ** TAIL_EXPONENT + JITTER_MS     once the document has 16 gaps
    (p95 / p75 weighed against the user's, itself against a typist whose gaps vary by 30 %)

The deadline counts from the document's last activity (an edit, or an earlier request: a
cursor moved without editing), not from the request's arrival: a request that comes after the
user already paused long enough is sent at once, while one request per cursor move of a
navigation still waits for the moves to stop. Fixed mode waits ``debounce_ms`` in the same way;
an invoked (manual) request never waits.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from crucible.config.settings import CompletionSettings, DebounceMode
from crucible.runtime.samples import RecentSamples

# Typing rhythm. Gaps longer than _THINKING_MS are thinking, not typing (even a slow typist's
# keys come faster; tabby-agent draws the line at 400 ms); gaps under 5 ms are edits the editor
# made by itself (auto-closed pairs, multi-cursor, formatters), not keys.
_THINKING_MS = 500.0
_MACHINE_MS = 5.0
_GAP_WINDOW = 32  # per document: adapts within a line or two of typing
# "A normal gap": the 75th percentile, which the hesitations between words and the slow keys
# kept under the cap cannot move unless they are a quarter of all gaps (a p85 moved with 15 %
# of them), and which, unlike the median, sees how much the gaps spread.
_GAP_QUANTILE = 0.75
# A pause of this many p75 gaps ends a burst: for gaps that vary by ~30 % (log-normal) that is
# 1.6 x 1.22 = 2 median gaps, about their p99, so a burst seldom fires mid-way; for gaps that
# vary less it is shorter. The request goes as soon as the rhythm says the user stopped.
_PAUSE_GAPS = 1.6
# A pause begins when the gap since the last key outlasts the user's normal (p75) gap: a
# quarter of the gaps inside a burst are that long, so a request started then is speculative
# (kept only if the next key fits its stream), but it starts 0.6 gap sooner than the pause
# that ends a burst, ~60 ms at 105 ms between keys, without the context and latency margins.
_SPECULATE_GAPS = 1.0
# The end of a burst from the rhythm's tail: a regular typist's burst is over about one longest
# gap after the last key, where 1.6 p75 gaps x the context margins (2.1 gaps after a letter) wait
# twice a gap. The p99.5 gap, from the p75 and p95 as a log-normal tail (z = 0.67 + 2.0 x 0.97 =
# 2.6): for gaps that spread little (a steady typist, uniform 60-90 ms) it is just past the
# longest gap, for a heavy tail it grows past the pause and the pause stands. Not the p99 (x 1.7):
# with a 30 %-spread typist that fired mid-burst at 1 gap in 100 beyond the pause's, against 1 in
# 160 here, for 1-2 ms more at the benchmark's regular speeds. The p95 of 32 gaps is their second
# longest: hesitations that are 5 % of the gaps or more are inside it, so they move the stop and
# never fire it; rarer ones fire it as they fire the pause.
_TAIL_QUANTILE = 0.95
_TAIL_EXPONENT = 2.0
# Timer and transport jitter (an event loop turn, a pipe, a loaded machine): a gap measured at the
# server differs from the typed one by a few ms, which matters where the stop is just past the
# longest gap.
_JITTER_MS = 3.0
# The document's own gaps before its tail is trusted: fewer say little about the longest gap
# (with 8, a document typed at 30-60 ms after one at 90-120 ms fired mid-burst at 1 burst in 4 in
# the peers benchmark: its p95 was its longest gap so far, and the user's last 32 gaps, both
# paces mixed, put their p75 and p95 in the slower one). A document in use has its window full.
_STOP_MIN_GAPS = 16
# p95 / p75 of a typist whose gaps vary by ~30 % (log-normal, e^(0.3 x 0.97)): the prior of the
# tail's shape, weighed as _PRIOR_WEIGHT gaps. The shape is the user's (across documents), the
# scale the document's.
_PRIOR_TAIL = 1.34
# debounce_ms / PAUSE_GAPS counts as K0 pseudo-gaps: the first keystrokes nudge the estimate
# instead of replacing it, and a new document starts where the user configured. With a full
# window it still weighs 4/36, which acts as an absolute margin (on a 30 ms gap, defaults: +7 ms
# in a document just opened, +0.8 ms once its own window is full) that matters most for fast
# typists, whose gaps are nearest to timer and transport jitter.
_PRIOR_WEIGHT = 4.0

# Provider latency: a median over the last calls, so one timeout does not swing the wait.
_LATENCY_WINDOW = 16
# Waiting adds at most this fraction of the provider's own latency to the time to suggestion,
# of the latency beyond _LATENCY_FREE_MS only: a call fired during a hesitation costs about its
# latency, and a provider that answers within a quarter of a second (a local model on a GPU)
# is back before the user has typed much further, so its calls are not worth waiting for.
_LATENCY_SHARE = 0.2
_LATENCY_FREE_MS = 250.0

# How likely a suggestion is wanted where the cursor is.
_READY = 0.8  # after an opener/operator, on an indented empty line, after "keyword "
_NEUTRAL = 1.0
_MID_WORD = 1.3  # right after an identifier character: more letters are coming
_MID_LINE = 1.2  # real text after the cursor: the user is editing, not writing
_READY_AFTER = frozenset("([{,:=.+-*/%<>|&!?")
_CLOSERS = " \t\r\n)]}>\"'`;,:"  # auto-closed pairs after the cursor still count as line end
# Words after which (and a space) a name or an expression is expected, in several languages.
_KEYWORD_WORDS = (
    "return yield await if elif else while for in not and or is lambda def class import from"
    " as with raise assert case match let const var fn func function new throw async pub impl"
    " struct enum type interface extends implements using package defer switch do then"
)
_KEYWORDS = frozenset(_KEYWORD_WORDS.split())
_LAST_WORD = re.compile(r"\w+$")


class Start(Enum):
    """Where a request may go upstream before the pause that ends a burst is over."""

    PAUSE = "pause"  # not before: the pause that ends a burst
    STOP = "stop"  # where the rhythm's tail says the burst is over (its p99.5 gap)
    GAP = "gap"  # where a pause begins: one normal (p75) gap


@dataclass(frozen=True, slots=True)
class Wait:
    """How long a request waits before it may go upstream, and whether going then is
    speculative: at an early point (``Start``), before the pause that ends a burst is over."""

    ms: float
    speculative: bool = False


class _DocumentRhythm:
    __slots__ = ("gaps", "last_delay", "last_keystroke", "last_request")

    def __init__(self) -> None:
        self.gaps = RecentSamples(_GAP_WINDOW)
        self.last_keystroke: float | None = None
        self.last_request: float | None = None  # of a request that waited (not invoked)
        self.last_delay = 0.0


def _shrunk(gaps: RecentSamples, prior: float) -> float:
    """The typical gap of ``gaps``, weighed against ``prior`` as ``_PRIOR_WEIGHT`` samples."""
    samples = len(gaps)
    if samples == 0:
        return prior
    typical = gaps.percentile(_GAP_QUANTILE) or 0.0
    return (samples * typical + _PRIOR_WEIGHT * prior) / (samples + _PRIOR_WEIGHT)


def _shrunk_tail(gaps: RecentSamples, prior: float) -> float:
    """p95 / p75 of ``gaps`` (how far their tail reaches), weighed against ``prior`` as
    ``_PRIOR_WEIGHT`` samples."""
    typical = gaps.percentile(_GAP_QUANTILE)
    high = gaps.percentile(_TAIL_QUANTILE)
    if not typical or high is None:
        return prior
    samples = len(gaps)
    return (samples * high / typical + _PRIOR_WEIGHT * prior) / (samples + _PRIOR_WEIGHT)


def _context_factor(line_prefix: str, line_suffix: str) -> float:
    """How much longer (> 1) or shorter (< 1) than the rhythm alone to wait at this cursor."""
    factor = _MID_LINE if line_suffix.strip(_CLOSERS) else 1.0
    code = line_prefix.rstrip()
    if not code:
        return factor * _READY  # an empty or indented line: a new statement is wanted
    if code[-1] in _READY_AFTER:
        return factor * _READY
    if not line_prefix[-1].isspace():
        return factor * (_MID_WORD if code[-1].isalnum() or code[-1] == "_" else _NEUTRAL)
    word = _LAST_WORD.search(code)
    return factor * (_READY if word is not None and word.group() in _KEYWORDS else _NEUTRAL)


class AdaptiveDebounce:
    """The wait before a completion request goes upstream, per document."""

    def __init__(
        self, settings: CompletionSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._documents: dict[str, _DocumentRhythm] = {}
        # The same person types in every document: a document with few keystrokes of its own
        # starts from the user's rhythm, not from the configured guess.
        self._user_gaps = RecentSamples(_GAP_WINDOW)
        self._latency = RecentSamples(_LATENCY_WINDOW)
        self.reconfigure(settings)

    def reconfigure(self, settings: CompletionSettings) -> None:
        """New settings; what was learned about rhythm and latency is kept."""
        self._mode = settings.debounce_mode
        self._fixed_ms = float(settings.debounce_ms)
        # Bounds given the wrong way round are taken as the range the user meant, not as an
        # empty range that would pin every wait to one end.
        self._min_ms = float(min(settings.debounce_min_ms, settings.debounce_max_ms))
        self._max_ms = float(max(settings.debounce_min_ms, settings.debounce_max_ms))

    def keystroke(self, document: str) -> None:
        """A change to ``document`` happened now."""
        rhythm = self._rhythm(document)
        now = self._clock()
        if rhythm.last_keystroke is not None:
            gap_ms = (now - rhythm.last_keystroke) * 1000.0
            if _MACHINE_MS <= gap_ms <= _THINKING_MS:
                rhythm.gaps.add(gap_ms)
                self._user_gaps.add(gap_ms)
        rhythm.last_keystroke = now

    def observe_latency(self, ms: float) -> None:
        """A provider took ``ms`` to give its first useful answer."""
        if math.isfinite(ms) and ms >= 0:
            self._latency.add(ms)

    def delay_ms(
        self, document: str, line_prefix: str, line_suffix: str, *, invoked: bool = False
    ) -> float:
        """How long from now to wait before sending a request for this cursor position: the
        pause that ends a burst (``pause_ms``) less the time since the document's last edit or
        request. A document with neither yet waits the whole pause."""
        return self.wait(document, line_prefix, line_suffix, invoked=invoked).ms

    def wait(
        self,
        document: str,
        line_prefix: str,
        line_suffix: str,
        *,
        invoked: bool = False,
        early: Start | bool = Start.PAUSE,
        waited_ms: float = 0.0,
    ) -> Wait:
        """As ``delay_ms``; ``early``: counted to an earlier point (``Start.GAP`` or True: the
        start of a pause, ``start_ms``; ``Start.STOP``: ``stop_ms``) when that comes sooner,
        and then the wait says it is speculative. ``waited_ms``: how long the request was held
        before it could be read (behind the server's start-up load): the client's last edit
        or request was at least that long ago, whatever this clock saw of them."""
        rhythm = self._rhythm(document)
        delay = 0.0
        speculative = False
        if not invoked:
            delay = self.pause_ms(document, line_prefix, line_suffix)
            start = self._early_ms(document, early, delay)
            now = self._clock()
            active = [t for t in (rhythm.last_keystroke, rhythm.last_request) if t is not None]
            since = max((now - max(active)) * 1000.0, 0.0) if active else 0.0
            since = max(since, waited_ms)
            # Speculative only while the pause that ends the burst has not passed yet.
            speculative = start < delay and since < delay
            delay = max(0.0, min(start, delay) - since)
            rhythm.last_request = now
        rhythm.last_delay = delay
        return Wait(delay, speculative)

    def pause_ms(self, document: str, line_prefix: str, line_suffix: str) -> float:
        """How long after the last edit of ``document`` a pause means the burst ended, at this
        cursor position; fixed mode: ``debounce_ms``."""
        if self._mode is DebounceMode.FIXED:
            return self._fixed_ms
        rhythm = self._documents.get(document) or _DocumentRhythm()
        pause = _PAUSE_GAPS * self._gap_ms(rhythm) * _context_factor(line_prefix, line_suffix)
        pause += _LATENCY_SHARE * max(0.0, self._latency_ms() - _LATENCY_FREE_MS)
        return min(max(pause, self._min_ms), self._max_ms)

    def start_ms(self, document: str) -> float:
        """How long after the last edit of ``document`` a pause begins: one normal gap, within
        the bounds; fixed mode: ``debounce_ms`` (no earlier start)."""
        if self._mode is DebounceMode.FIXED:
            return self._fixed_ms
        rhythm = self._documents.get(document) or _DocumentRhythm()
        start = _SPECULATE_GAPS * self._gap_ms(rhythm)
        return min(max(start, self._min_ms), self._max_ms)

    def stop_ms(self, document: str) -> float | None:
        """How long after the last edit of ``document`` its rhythm's tail says the burst is
        over (its p99.5 gap, within the bounds); None before the document has ``_STOP_MIN_GAPS``
        gaps of its own, and in fixed mode."""
        rhythm = self._documents.get(document)
        if self._mode is DebounceMode.FIXED or rhythm is None:
            return None
        samples = len(rhythm.gaps)
        typical = rhythm.gaps.percentile(_GAP_QUANTILE)
        if samples < _STOP_MIN_GAPS or not typical:
            return None
        user = _shrunk_tail(self._user_gaps, _PRIOR_TAIL)
        tail = _shrunk_tail(rhythm.gaps, user)
        stop = typical * math.pow(tail, _TAIL_EXPONENT) + _JITTER_MS
        return min(max(stop, self._min_ms), self._max_ms)

    def last_activity(self, document: str) -> float:
        """When ``document`` was last edited or asked about (the clock's time; now if never):
        what the deadlines count from."""
        rhythm = self._documents.get(document)
        active = [] if rhythm is None else [rhythm.last_keystroke, rhythm.last_request]
        return max((t for t in active if t is not None), default=self._clock())

    def forget(self, document: str) -> None:
        """``document`` was closed."""
        self._documents.pop(document, None)

    def describe(self, document: str) -> dict[str, float]:
        """The estimates behind the wait, for logs and status. Every value is finite (NaN
        would break a JSON reader); ``last_delay_ms`` (what the last request waited, after
        the time already passed since the edit) is 0 before the first request."""
        rhythm = self._documents.get(document) or _DocumentRhythm()
        return {
            "rhythm_ms": self._gap_ms(rhythm),
            "rhythm_samples": float(len(rhythm.gaps)),
            "latency_ms": self._latency_ms(),
            "last_delay_ms": rhythm.last_delay,
        }

    def _rhythm(self, document: str) -> _DocumentRhythm:
        rhythm = self._documents.get(document)
        if rhythm is None:
            rhythm = self._documents[document] = _DocumentRhythm()
        return rhythm

    def _gap_ms(self, rhythm: _DocumentRhythm) -> float:
        """The user's normal gap between keys in this document, shrunk towards their rhythm
        across documents while there are few samples, itself shrunk towards the configured
        starting point."""
        user = _shrunk(self._user_gaps, self._fixed_ms / _PAUSE_GAPS)
        return _shrunk(rhythm.gaps, user)

    def _early_ms(self, document: str, early: Start | bool, pause: float) -> float:
        """When the ``early`` point comes (``pause`` when there is none); the caller takes
        the sooner of it and the pause."""
        if early is True or early is Start.GAP:
            return self.start_ms(document)
        stop = self.stop_ms(document) if early is Start.STOP else None
        return pause if stop is None else stop

    def _latency_ms(self) -> float:
        return self._latency.percentile(0.5) or 0.0
