"""PrefetchUse: how often prefetches are used, per document language, and whether one pays.

A prefetch costs one provider call for a suggestion the user sees only if they accept the one
shown. It is *used* when its answer is served to a later request (from the cache, by joining its
flight, or by continuing its stream); it is *wasted* when the document's next answer is another
one (the user typed something else), another document gets an answer first, or the document is
closed first (``prefetch.py`` tells which). Counted here per language (the snapshot's
``language_id``: habits differ between, say, a test file and prose) and overall.

A chance not taken is still measured, for free: ``prefetch.py`` keeps the key the prefetch
would have had (a *measured* chance, no call) and resolves it by the same rule: used when a
request for that very text is answered (the user accepted the suggestion and waited for the
next), so the estimate learns the user's habit without spending calls on it. A request there
that the next key supersedes decides nothing: typing a suggestion through to its end and on
is not accepting it (resolved at arrival, the peers benchmark's burst across lines counted as
a use in Go, and the prefetch that followed was a third call in that burst, for a next line
the stop rule cut to nothing).
Every resolved chance, prefetched or measured, counts alike below.

The estimate follows the user's current habit: each resolved chance first decays its language's
counts by ``DECAY`` (that language's last ~4 chances weigh most), then adds itself. A language's
rate is its decayed counts over a Beta prior worth ``PRIOR_WEIGHT`` chances, centred on the rate
of the user's other languages (their decayed counts over a prior of ``PRIOR_MEAN``, an even
chance) but never above even: a new language of a user who ignores suggestions elsewhere starts
low. (Centred on a high rate, the prior would outweigh a language's own ~4 decayed chances: a
user who accepts everything in Python and nothing in Markdown would have Markdown prefetched
for ever.) Three wasted chances in a row with no use bring a fresh rate from 1/2 to 0.32, not
above ``THRESHOLD``; a long run of waste settles at 2/8.

Prefetch while the rate is above ``THRESHOLD`` (1/3) and the language has at least one
measured use: at most two wasted calls for each wait saved, and none before the user was seen
to accept in that language at all (the prior alone spends no call: issue 16's "prefetch earns
its calls"; before, a session's first language, and any language while the others' rate was
above the threshold, started with real prefetches, and one chance in ten below it was explored
with a call, all wasted for a user who never accepts). A used prefetch is a call the user's next
request would have made anyway, so it costs nothing extra and saves a whole wait (debounce and
first byte, 250-400 ms in the peers benchmark); a wasted one is one extra call, the figure
issue 16 counts against tabby-agent's one call per burst. Local providers only, by default
(``[cache] prefetch = "auto"``): a hosted API bills the wasted calls too.

Below the threshold every chance is measured, so the estimate recovers as soon as the user
starts accepting again (one use brings it back above from the longest run of waste), with no
call spent exploring (``explored`` stays in status, 0). Everything here is counts: no clock, no
randomness, the same answers in tests and in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THRESHOLD = 1 / 3  # prefetch while the expected use rate is above this
DECAY = 0.75  # each resolved prefetch keeps this much of the earlier evidence
PRIOR_MEAN = 0.5  # with no evidence at all: an even chance
PRIOR_WEIGHT = 4.0  # a prior is worth this many prefetches
MAX_LANGUAGES = 64  # languages with counts kept (status and memory stay bounded)


@dataclass(slots=True)
class _Counts:
    """One language's counts (or the totals, whose decayed weights stay 0): decayed for the
    estimate, plain for status."""

    used_weight: float = 0.0  # decayed, by DECAY per resolved prefetch of the language
    resolved_weight: float = 0.0
    started: int = 0
    used: int = 0
    wasted: int = 0
    skipped: int = 0  # chances not taken (measured instead): no use yet, or the rate too low
    measured_used: int = 0  # chances not taken whose text a request was then answered for
    measured_wasted: int = 0

    def resolve(self, used: bool, *, measured: bool) -> None:
        self.used_weight = self.used_weight * DECAY + used
        self.resolved_weight = self.resolved_weight * DECAY + 1
        self.count(used, measured=measured)

    def count(self, used: bool, *, measured: bool) -> None:
        if measured:
            self.measured_used += used
            self.measured_wasted += not used
        elif used:
            self.used += 1
        else:
            self.wasted += 1

    def accepted(self) -> bool:
        """Whether a use was ever measured here (prefetched or not)."""
        return self.used + self.measured_used > 0

    def rate(self, prior_mean: float, prior_weight: float) -> float:
        return (self.used_weight + prior_weight * prior_mean) / (
            self.resolved_weight + prior_weight
        )

    def snapshot(self, rate: float) -> dict[str, Any]:
        resolved = self.used + self.wasted
        return {
            "started": self.started,
            "used": self.used,
            "wasted": self.wasted,
            "skipped": self.skipped,
            "explored": 0,  # a field of status (never renamed); no chance is explored now
            "measured_used": self.measured_used,
            "measured_wasted": self.measured_wasted,
            "hit_rate": round(self.used / resolved, 3) if resolved else None,
            "expected_use": round(rate, 3),
            "prefetching": rate > THRESHOLD and self.accepted(),
        }


class PrefetchUse:
    """The counts, the estimate, and the decision; see the module docstring."""

    def __init__(self) -> None:
        self._overall = _Counts()
        self._languages: dict[str, _Counts] = {}

    def should_prefetch(self, language: str) -> bool:
        """Whether to spend a call on a prefetch for a document in ``language`` now: a use was
        measured there and the rate pays. A chance declined is counted (``skipped``) and should
        be measured (resolved with ``measured=True``); one taken must be followed by
        ``started``."""
        counts = self._language(language)
        if counts.accepted() and self.expected_use(language) > THRESHOLD:
            return True
        counts.skipped += 1
        self._overall.skipped += 1
        return False

    def started(self, language: str) -> None:
        counts = self._language(language)
        counts.started += 1
        self._overall.started += 1

    def resolved(self, language: str, used: bool, *, measured: bool = False) -> None:
        """A started prefetch (or a ``measured`` chance not taken) turned out used (its answer
        served) or wasted."""
        self._language(language).resolve(used, measured=measured)
        self._overall.count(used, measured=measured)

    def expected_use(self, language: str | None = None) -> float:
        """The expected use rate of the next prefetch in ``language``; with None, over every
        language."""
        others = [
            counts
            for name, counts in self._languages.items()
            if language is None or name != language
        ]
        used = sum(counts.used_weight for counts in others)
        resolved = sum(counts.resolved_weight for counts in others)
        others_rate = (used + PRIOR_WEIGHT * PRIOR_MEAN) / (resolved + PRIOR_WEIGHT)
        if language is None:
            return others_rate
        # Other languages' waste lowers a language's start; their use does not raise it past
        # even (it would outweigh this language's own ~5 decayed prefetches).
        prior = min(others_rate, PRIOR_MEAN)
        counts = self._languages.get(language)
        return prior if counts is None else counts.rate(prior, PRIOR_WEIGHT)

    def snapshot(self) -> dict[str, Any]:
        """For crucible/status: the totals, and the same per language."""
        return {
            **self._overall.snapshot(self.expected_use()),
            "languages": {
                language: counts.snapshot(self.expected_use(language))
                for language, counts in self._languages.items()
            },
        }

    def _language(self, language: str) -> _Counts:
        counts = self._languages.get(language)
        if counts is None:
            if len(self._languages) >= MAX_LANGUAGES:
                # The first added goes (the totals keep its plain counts).
                del self._languages[next(iter(self._languages))]
            counts = self._languages[language] = _Counts()
        return counts
