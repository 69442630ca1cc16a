"""Alternatives: other suggestions for the same spot, for editors that cycle through them.

They are samples of the same plan at a higher temperature (at the configured, low one they
would mostly repeat the first suggestion), each its own flight and cache entry under the plan's
key plus ``#sampleN``. When they are asked for (only on an explicit request) is the completion
service's decision; this module names them and picks the ones worth showing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from crucible.completion.plan import Plan
from crucible.completion.suggestion import Suggestion

SAMPLE_TEMPERATURE = 0.8


@dataclass(frozen=True, slots=True)
class Alternative:
    """Another suggestion for the same spot: it replaces ``result.start`` to ``end``."""

    text: str
    end: int


def sample_key(plan: Plan, n: int) -> str:
    """The cache and flight key of the ``n``-th other sample of ``plan`` (1, 2 …)."""
    return f"{plan.key}#sample{n}"


def sample_plan(plan: Plan, n: int) -> Plan:
    """``plan`` asked again, hotter, under its own key."""
    fim = replace(plan.fim, temperature=SAMPLE_TEMPERATURE)
    return replace(plan, fim=fim, key=sample_key(plan, n))


def distinct(
    first: str, suggestions: Iterable[Suggestion], offset: int, limit: int
) -> tuple[Alternative, ...]:
    """At most ``limit`` suggestions that differ from ``first`` and from each other, in order;
    empty ones dropped. ``offset`` is the cursor their ranges start at."""
    found: dict[str, Alternative] = {}
    for other in suggestions:
        if other.text and other.text != first:
            found.setdefault(other.text, Alternative(other.text, offset + other.replace_suffix))
    return tuple(found.values())[:limit]
