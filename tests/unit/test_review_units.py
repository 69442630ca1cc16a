"""The AI review's pure parts: units and changed lines, reading findings, the cache key."""

from __future__ import annotations

from crucible.review.findings import (
    Finding,
    decode,
    encode,
    key,
    prompt,
    read_findings,
)
from crucible.review.units import Unit, changed_lines, units

SOURCE = """import os


@decorated
def first(a):
    return a + 1


class Shop:
    def total(self, lines):
        def inner(x):
            return x
        return sum(lines)
"""


def test_changed_lines_are_the_new_or_different_lines_of_the_new_text() -> None:
    assert changed_lines("a\nb\nc", "a\nB\nc") == {1}
    assert changed_lines("a\nb\nc", "a\nb\nx\nc") == {2}
    assert changed_lines("a\nb\nc", "a\nc") == {1}  # a deletion marks where it happened
    assert changed_lines("same", "same") == frozenset()


def test_python_units_are_outer_functions_and_methods_with_decorators() -> None:
    found = units(SOURCE, "python", frozenset())
    assert [(u.first, u.last) for u in found] == [(3, 5), (9, 12)]
    assert found[0].text.startswith("@decorated\ndef first")


def test_other_languages_and_broken_python_review_changed_regions() -> None:
    text = "\n".join(f"line {i}" for i in range(20))
    regions = units(text, "go", frozenset({5, 7, 15}))
    assert [(u.first, u.last) for u in regions] == [(2, 10), (12, 18)]
    assert [(u.first, u.last) for u in units("def (:\n" + text, "python", frozenset({0}))] == [
        (0, 3)
    ]


def test_findings_are_read_from_the_first_json_array_and_kept_inside_the_unit() -> None:
    unit = Unit(9, 12, "a\nb\nc\nd")
    answer = (
        "Here you go:\n```json\n"
        '[{"line": 11, "message": " off by one ", "replacement": "    return x - 1"},'
        ' {"line": 3, "message": "outside"}, {"line": 12, "message": ""}, "junk",'
        ' {"line": 13, "message": "no fix", "replacement": 7}]\n```'
    )
    assert read_findings(answer, unit) == [
        Finding(1, "off by one", "    return x - 1"),
        Finding(3, "no fix", None),
    ]
    assert read_findings("Looks fine to me.", unit) == []
    assert read_findings("[not json] then []", unit) == []


def test_findings_survive_the_cache_and_the_key_is_the_content() -> None:
    found = [Finding(1, "m", "r"), Finding(2, "n", None)]
    assert decode(encode(found)) == found
    assert decode("garbage") is None
    here, there = Unit(1, 2, "def f():\n    pass"), Unit(40, 41, "def f():\n    pass")
    assert key(here, "python", ["p"]) == key(there, "python", ["p"])
    assert key(here, "python", ["p"]) != key(Unit(1, 2, "def g():\n    pass"), "python", ["p"])
    assert key(here, "python", ["p"]).startswith("review:")


def test_the_prompt_numbers_the_lines_as_the_file_does() -> None:
    request = prompt(Unit(9, 10, "def f():\n    pass"), "go", "src/a.go")
    assert "   10 | def f():" in request.messages[-1].content
    assert "src/a.go (go)" in request.messages[-1].content
