"""What a save asks the model to review: the document's units, and which of them changed.

A unit is a piece of code reviewed on its own, by content: for Python, each function or method
that is not inside another function (``ast``: its decorators to its last line); for other
languages, and for Python that does not parse, each region of changed lines with
``CONTEXT_LINES`` either side. The lines that changed come from comparing the text with the
text last reviewed (``difflib``, by lines).

A unit is keyed by its text alone (``findings.py``), so an unchanged function is found in the
cache wherever it moved, and only changed units cost a provider call. Pure.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterator
from dataclasses import dataclass

CONTEXT_LINES = 3
MAX_UNIT_LINES = 150  # a longer unit is cut: the model reviews its head
MAX_UNITS = 200  # units looked at per save (cache lookups; calls are bounded apart)


@dataclass(frozen=True, slots=True)
class Unit:
    """Lines ``first``..``last`` (0-based, inclusive) of the document, and their text."""

    first: int
    last: int
    text: str

    def touches(self, lines: frozenset[int]) -> bool:
        return any(self.first <= line <= self.last for line in lines)


def changed_lines(before: str, after: str) -> frozenset[int]:
    """The 0-based lines of ``after`` that are new or different; a deletion marks the line
    where it happened."""
    matcher = difflib.SequenceMatcher(None, before.split("\n"), after.split("\n"), autojunk=False)
    changed: set[int] = set()
    for tag, _, _, start, end in matcher.get_opcodes():
        if tag == "equal":
            continue
        changed.update(range(start, max(end, start + 1)))
    return frozenset(changed)


def units(text: str, language: str, changed: frozenset[int]) -> list[Unit]:
    """The units of ``text``: functions for Python, changed regions otherwise."""
    lines = text.split("\n")
    if language == "python":
        found = _python_functions(text)
        if found is not None:
            return [_unit(lines, first, last) for first, last in found][:MAX_UNITS]
    return [_unit(lines, first, last) for first, last in _regions(changed, len(lines))][:MAX_UNITS]


def _unit(lines: list[str], first: int, last: int) -> Unit:
    last = min(last, first + MAX_UNIT_LINES - 1, len(lines) - 1)
    return Unit(first, last, "\n".join(lines[first : last + 1]))


def _python_functions(text: str) -> list[tuple[int, int]] | None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    return sorted(_outer_functions(tree))


def _outer_functions(node: ast.AST) -> Iterator[tuple[int, int]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
            yield first - 1, (child.end_lineno or child.lineno) - 1
        else:  # classes and blocks: their methods and functions are units too
            yield from _outer_functions(child)


def _regions(changed: frozenset[int], line_count: int) -> list[tuple[int, int]]:
    regions: list[tuple[int, int]] = []
    for line in sorted(changed):
        first = max(0, line - CONTEXT_LINES)
        last = min(line_count - 1, line + CONTEXT_LINES)
        if regions and first <= regions[-1][1] + 1:
            regions[-1] = (regions[-1][0], max(regions[-1][1], last))
        else:
            regions.append((first, last))
    return regions
