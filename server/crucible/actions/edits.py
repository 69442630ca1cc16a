"""From the model's code to the edits a careful user would accept.

``fit_to_target`` makes the code look like the lines it replaces: their indentation (the
least-indented line's leading whitespace, tabs or spaces, and the file's indentation style for
the lines inside), the document's line endings (CRLF stays CRLF) and whether the target ended
with a line break. ``minimal_edits`` diffs the target's lines against the replacement's and
returns only the changed runs of lines, so marks, folds and breakpoints on unchanged lines
survive the edit.
"""

from __future__ import annotations

import difflib
import math
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TextEdit:
    """Replace ``text[start:end]`` (offsets into the document the edit was computed for)."""

    start: int
    end: int
    new_text: str


def line_ending(text: str) -> str:
    """The document's line break: that of its first line (``\\n`` when it has one line)."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def _leading(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _indent_unit(lines: list[str]) -> int:
    """The indentation step of space-indented lines (the gcd of their depths); 4 when none."""
    widths = {len(_leading(line)) for line in lines if line.strip() and line.startswith(" ")}
    return math.gcd(*widths) if widths else 4


def _restyle(line: str, use_tabs: bool, unit: int) -> str:
    """Re-express a line's leading whitespace as tabs (``use_tabs``) or spaces (``unit`` per
    tab), keeping its depth."""
    lead = _leading(line)
    if not lead:
        return line
    width = sum(unit if c == "\t" else 1 for c in lead)
    new = "\t" * (width // unit) + " " * (width % unit) if use_tabs else " " * width
    return new + line[len(lead) :]


def fit_to_target(code: str, target: str, eol: str) -> str:
    """``code`` with the target's base indentation, indentation style, line endings and
    final line break."""
    lines = code.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    target_lines = [line for line in target.replace("\r\n", "\n").split("\n") if line.strip()]
    bases = [_leading(line) for line in target_lines]
    base = min(bases, key=len) if bases else ""
    use_tabs = any(b.startswith("\t") for b in bases)
    tab_unit = _indent_unit(lines) if use_tabs else _indent_unit(target_lines)
    lines = textwrap.dedent("\n".join(_restyle(line, False, tab_unit) for line in lines)).split(
        "\n"
    )
    unit = _indent_unit(lines)
    fitted = [base + _restyle(line, use_tabs, unit) if line.strip() else "" for line in lines]
    text = eol.join(fitted)
    if target.endswith("\n") and text:
        text += eol
    return text


_ECHO_LINES = 200  # lines each side of the target searched for an echo


def widen_to_echo(text: str, start: int, end: int, code: str) -> tuple[int, int]:
    """The target widened over the lines the model repeated around it.

    Asked for a replacement of one line, models often answer the whole function: the lines
    before and after the target, then the fixed line. When the code's first non-blank lines
    equal the non-blank lines just before the target (stripped), and likewise at its end, the
    target takes them in; the diff then leaves them untouched, where cutting them out of the
    answer would have needed a guess about which lines are which. A run of closing brackets
    alone proves nothing and is not taken.
    """
    lines = [line.strip() for line in code.replace("\r\n", "\n").split("\n") if line.strip()]
    before = _nonblank_lines(text, lines_back(text, start, _ECHO_LINES), start, starts=True)
    k = next(
        (
            k
            for k in range(min(len(before), len(lines) - 1), 0, -1)
            if [s for _, s in before[-k:]] == lines[:k] and _telling(lines[:k])
        ),
        0,
    )
    if k:
        start = before[-k][0]
    after = _nonblank_lines(text, end, lines_forward(text, end, _ECHO_LINES), starts=False)
    m = next(
        (
            m
            for m in range(min(len(after), len(lines) - k - 1), 0, -1)
            if [s for _, s in after[:m]] == lines[-m:] and _telling(lines[-m:])
        ),
        0,
    )
    if m:
        end = after[m - 1][0]
    return start, end


def _telling(lines: list[str]) -> bool:
    """Whether matched lines say which lines they are: a lone ``}`` or ``end`` could close
    the model's own block as well as the one around the target."""
    return any(sum(c.isalnum() for c in line) >= 4 for line in lines)


def _nonblank_lines(text: str, start: int, end: int, *, starts: bool) -> list[tuple[int, str]]:
    """The non-blank lines of ``text[start:end]`` (whole lines), stripped, each with the offset
    of its start (``starts``) or of the end of its line break."""
    found, at = [], start
    for line in text[start:end].splitlines(keepends=True):
        if line.strip():
            found.append((at if starts else at + len(line), line.strip()))
        at += len(line)
    return found


def lines_back(text: str, offset: int, lines: int) -> int:
    """The start of the line ``lines`` lines above the one starting at ``offset``."""
    start = offset
    for _ in range(lines):
        if start <= 0:
            return 0
        start = text.rfind("\n", 0, start - 1) + 1
    return start


def lines_forward(text: str, offset: int, lines: int) -> int:
    """The end of the ``lines``-th line from ``offset`` (after its line break)."""
    end = offset
    for _ in range(lines):
        found = text.find("\n", end)
        if found == -1:
            return len(text)
        end = found + 1
    return end


def minimal_edits(text: str, start: int, end: int, replacement: str) -> tuple[TextEdit, ...]:
    """The changed runs of lines between ``text[start:end]`` and ``replacement``."""
    old = text[start:end].splitlines(keepends=True)
    new = replacement.splitlines(keepends=True)
    offsets = [start]
    for line in old:
        offsets.append(offsets[-1] + len(line))
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return tuple(
        TextEdit(offsets[i1], offsets[i2], "".join(new[j1:j2]))
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    )


def apply_edits(text: str, edits: tuple[TextEdit, ...]) -> str:
    """``text`` with ``edits`` (sorted, disjoint) applied; for checks and tests."""
    parts, at = [], 0
    for edit in edits:
        parts += [text[at : edit.start], edit.new_text]
        at = edit.end
    return "".join(parts) + text[at:]
