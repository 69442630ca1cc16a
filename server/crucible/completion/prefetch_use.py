"""PrefetchUse: how often prefetches are used, per document language, and whether one pays.

A prefetch costs one provider call for a suggestion the user sees only if they accept the one
shown. It is *used* when its answer is served to a later request (from the cache, by joining its
flight, or by continuing its stream); it is *wasted* when the document's next answer is another
one (the user typed something else), another document gets an answer first, or the document is
closed first (``prefetch.py`` tells which). Counted here per language (the snapshot's
``language_id``: habits differ between, say, a test file and prose) and overall.

The estimate follows the user's current habit: each resolved prefetch first decays its
language's counts by ``DECAY`` (that language's last ~4 prefetches weigh most), then adds
itself. A language's rate is its decayed counts over a Beta prior worth ``PRIOR_WEIGHT``
prefetches, centred on the rate of the user's other languages (their decayed counts over a
prior of ``PRIOR_MEAN``, an even chance) but never above even: a new language of a user who
ignores prefetches elsewhere starts low, and a session's first language starts by
prefetching. (Centred on a high rate, the prior would outweigh a language's own ~4 decayed
prefetches: a user who accepts everything in Python and nothing in Markdown would have
Markdown prefetched for ever.) Three wasted prefetches in a row with no use bring a fresh
rate from 1/2 to 0.32, not above ``THRESHOLD``; a long run of waste settles at 2/8.

Prefetch while the rate is above ``THRESHOLD`` (1/3): at most two wasted calls for each
wait saved. A used prefetch is a call the user's next request would have made anyway, so it
costs nothing extra and saves a whole wait (debounce and first byte, 250-400 ms in the peers
benchmark); a wasted one is one extra call, the figure issue 16 counts against tabby-agent's
one call per burst. Local providers only, by default (``[cache] prefetch = "auto"``): a hosted
API bills the wasted calls too.

Below the threshold a prefetch still goes out once in ``EXPLORE_EVERY`` chances of that
language (counted, ``explored``), so the estimate recovers when the user starts accepting
again: one explored prefetch used brings it back above (to 3/8 from the longest run of
waste), and the next wasted ones stop it again. Everything here is counts: no clock, no
randomness, the same answers in tests and in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THRESHOLD = 1 / 3  # prefetch while the expected use rate is above this
DECAY = 0.75  # each resolved prefetch keeps this much of the earlier evidence
PRIOR_MEAN = 0.5  # with no evidence at all: an even chance
PRIOR_WEIGHT = 4.0  # a prior is worth this many prefetches
EXPLORE_EVERY = 10  # below the threshold, one chance in this many still prefetches
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
    skipped: int = 0  # chances not taken: the rate was too low
    explored: int = 0  # prefetches started although the rate was too low
    chances_skipped: int = 0  # skipped in a row since the last prefetch (for exploring)

    def resolve(self, used: bool) -> None:
        self.used_weight = self.used_weight * DECAY + used
        self.resolved_weight = self.resolved_weight * DECAY + 1
        if used:
            self.used += 1
        else:
            self.wasted += 1

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
            "explored": self.explored,
            "hit_rate": round(self.used / resolved, 3) if resolved else None,
            "expected_use": round(rate, 3),
            "prefetching": rate > THRESHOLD,
        }


class PrefetchUse:
    """The counts, the estimate, and the decision; see the module docstring."""

    def __init__(self) -> None:
        self._overall = _Counts()
        self._languages: dict[str, _Counts] = {}

    def should_prefetch(self, language: str) -> bool:
        """Whether to spend a call on a prefetch for a document in ``language`` now; a chance
        declined is counted (``skipped``), one taken must be followed by ``started``."""
        counts = self._language(language)
        if self.expected_use(language) > THRESHOLD:
            return True
        if counts.chances_skipped + 1 >= EXPLORE_EVERY:
            counts.explored += 1
            self._overall.explored += 1
            return True
        counts.chances_skipped += 1
        counts.skipped += 1
        self._overall.skipped += 1
        return False

    def started(self, language: str) -> None:
        counts = self._language(language)
        counts.chances_skipped = 0
        counts.started += 1
        self._overall.started += 1

    def resolved(self, language: str, used: bool) -> None:
        """A started prefetch turned out used (its answer served) or wasted."""
        self._language(language).resolve(used)
        if used:
            self._overall.used += 1
        else:
            self._overall.wasted += 1

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
