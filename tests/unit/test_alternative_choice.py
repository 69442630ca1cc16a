"""Which sampled answers are shown beside the first suggestion (completion/alternatives.py)."""

from __future__ import annotations

from crucible.completion.alternatives import Alternative, distinct
from crucible.completion.suggestion import Suggestion


def test_duplicates_of_the_first_and_of_each_other_and_empty_answers_are_dropped() -> None:
    answers = [
        Suggestion("a + b"),
        Suggestion(""),
        Suggestion("b + a"),
        Suggestion("b + a"),
        Suggestion("a - b", 1),
    ]
    assert distinct("a + b", answers, offset=10, limit=5) == (
        Alternative("b + a", 10),
        Alternative("a - b", 11),  # it replaces one character after the cursor
    )


def test_at_most_the_limit_in_order() -> None:
    answers = [Suggestion(f"x{n}") for n in range(5)]
    assert [a.text for a in distinct("y", answers, offset=0, limit=2)] == ["x0", "x1"]
    assert distinct("y", [], offset=0, limit=2) == ()
