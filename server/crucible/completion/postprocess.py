"""Postprocess: the pure filters that turn a model's raw answer into the text to insert.

Each filter is a small public function with one signature, ``(suggestion, window, indent_unit)
-> Suggestion | None`` (None: nothing worth showing), so the pipeline is a plain tuple and each
filter is tested on its own. They only look at the suggestion and the budgeted window, never the
whole document, because they run on every answer on the keystroke path.

Overlap with the text after the cursor is never cut out of the suggestion: the suggestion keeps
what the model wrote and ``replace_suffix`` tells the editor how many characters after the cursor
it replaces (a Copilot-style range), so ``foo(|)`` + ``a, b)`` shows ``a, b`` and keeps one ``)``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise

from crucible.completion.stopping import scan_brackets, suffix_overlap
from crucible.completion.suggestion import Suggestion
from crucible.context.window import ContextWindow

Filter = Callable[[Suggestion, ContextWindow, str], Suggestion | None]

_DEFAULT_UNIT = "    "
_REPEAT_LIMIT = 3  # this many identical lines in a row is a model stuck in a loop
# Control tokens of the FIM families we speak (qwen, starcoder, codellama, deepseek, codestral)
# and of chat templates; a server that does not strip them leaks them into the text.
_SPECIAL = re.compile(
    r"<\|[A-Za-z0-9_]+\|>|<｜[^｜<>]+｜>|<(?:fim_[a-z]+|file_sep|repo_name)>"
    r"|<(?:PRE|SUF|MID|EOT)>|</s>|<(?:start|end)_of_turn>|\[(?:PREFIX|SUFFIX|MIDDLE)\]"
)


def postprocess(
    raw: str, window: ContextWindow, *, indent_unit: str | None = None
) -> Suggestion | None:
    """Run the pipeline on a finished answer; None when nothing useful remains.

    ``indent_unit`` is the document's indentation (``"\\t"``, ``"    "``); by default it is
    detected from the prefix, and left alone when the prefix shows no indentation.
    """
    unit = detect_indent_unit(window.prefix, default="") if indent_unit is None else indent_unit
    suggestion = Suggestion(raw)
    for step in PIPELINE:
        result = step(suggestion, window, unit)
        if result is None:
            return None
        suggestion = result
    return suggestion


def strip_special_tokens(s: Suggestion, window: ContextWindow, indent_unit: str) -> Suggestion:
    """Drop control tokens leaked at the start (an echoed FIM marker); cut at the next one."""
    text = s.text
    while match := _SPECIAL.match(text):
        text = text[match.end() :]
    if match := _SPECIAL.search(text):
        text = text[: match.start()]
    return replace(s, text=text)


def trim_whitespace(s: Suggestion, window: ContextWindow, indent_unit: str) -> Suggestion | None:
    """Trailing whitespace off every line, trailing blank lines off the end; blank → None."""
    lines = [line.rstrip() for line in s.text.split("\n")]
    text = "\n".join(_without_trailing_blanks(lines))
    return replace(s, text=text) if text.strip() else None


def normalize_indentation(s: Suggestion, window: ContextWindow, indent_unit: str) -> Suggestion:
    """Convert continuation lines indented with spaces in a tab document, and vice versa.

    The first line continues the cursor line, so its whitespace is not indentation. Spaces
    become tabs at the suggestion's own step (4 when it shows none); alignment spaces after
    tabs stay. An empty ``indent_unit`` (style unknown) leaves the suggestion alone.
    """
    first, *rest = s.text.split("\n")
    if not indent_unit or not rest:
        return s
    if indent_unit == "\t":
        step = _indent_step(_space_widths(rest)) or len(_DEFAULT_UNIT)
        rest = [_spaces_to_tabs(line, step) for line in rest]
    else:
        rest = [_tabs_to_spaces(line, indent_unit) for line in rest]
    return replace(s, text="\n".join([first, *rest]))


def cut_repeated_lines(s: Suggestion, window: ContextWindow, indent_unit: str) -> Suggestion:
    """Cut at the first line repeated 3+ times in a row, keeping one copy of it.

    What a model writes after looping on a line is not trusted either, so it goes too.
    """
    lines = s.text.split("\n")
    run = 1
    for i in range(1, len(lines)):
        run = run + 1 if lines[i].strip() and lines[i] == lines[i - 1] else 1
        if run == _REPEAT_LIMIT:
            return replace(s, text="\n".join(lines[: i - 1]))
    return s


def drop_echo(s: Suggestion, window: ContextWindow, indent_unit: str) -> Suggestion | None:
    """None when the suggestion only repeats the code around the cursor.

    That is: its non-blank lines (the first one completed by the line prefix) are the same
    lines, indentation included, as those just above the cursor line; or it is one line that,
    completed, is the next non-blank line below.
    """
    first, *rest = s.text.split("\n")
    written = [(window.line_prefix + first).rstrip()] if first.strip() else []
    written += [line.rstrip() for line in rest if line.strip()]
    if _lines_above(window, len(written)) == written:
        return None
    if not rest:
        completed = (window.line_prefix + first + window.line_suffix).rstrip()
        if _lines_below(window, 1) == [completed]:
            return None
    return s


def drop_suffix_repeats(
    s: Suggestion, window: ContextWindow, indent_unit: str
) -> Suggestion | None:
    """Drop trailing lines that repeat the first lines below the cursor line.

    Models often re-generate the code that already follows (a closing ``}``, the next
    statement). Lines compare with their indentation, so an inner ``}`` is not taken for the
    outer one below it.
    """
    first, *rest = s.text.split("\n")
    below = _lines_below(window, len(rest))
    for m in range(min(len(rest), len(below)), 0, -1):
        if [line.rstrip() for line in rest[-m:]] == below[:m]:
            text = "\n".join(_without_trailing_blanks([first, *rest[:-m]]))
            return replace(s, text=text) if text.strip() else None
    return s


def overlap_line_suffix(s: Suggestion, window: ContextWindow, indent_unit: str) -> Suggestion:
    """Set ``replace_suffix`` when the suggestion's end re-types the rest of the cursor line."""
    if not window.line_suffix.strip():
        return s
    open_, unmatched = "", ""
    for line in s.text.split("\n"):
        open_, closed = scan_brackets(line, open_)
        unmatched += closed
    last = s.text.rsplit("\n", 1)[-1]
    return replace(s, replace_suffix=suffix_overlap(last, window.line_suffix, unmatched))


PIPELINE: tuple[Filter, ...] = (
    strip_special_tokens,
    trim_whitespace,
    normalize_indentation,
    cut_repeated_lines,
    drop_echo,
    drop_suffix_repeats,
    overlap_line_suffix,
)


def detect_indent_unit(text: str, default: str = _DEFAULT_UNIT) -> str:
    """The indentation ``text`` uses: ``"\\t"``, or the most common step of spaces (1–8).

    ``default`` when no line is indented. Blank lines say nothing and are skipped.
    """
    tabs = spaces = 0
    lines = text.split("\n")
    for line in lines:
        if line.startswith("\t") and line.strip():
            tabs += 1
        elif line.startswith(" ") and line.strip():
            spaces += 1
    if tabs > spaces:
        return "\t"
    step = _indent_step(_space_widths(lines))
    return " " * step if step else default


def _indent_step(widths: list[int]) -> int | None:
    """The most common increase between consecutive widths (smallest on a tie), if any."""
    steps = Counter(b - a for a, b in pairwise(widths) if 0 < b - a <= 8)
    return min(steps, key=lambda step: (-steps[step], step)) if steps else None


def _space_widths(lines: list[str]) -> list[int]:
    """Leading-space widths of the non-blank lines not indented with tabs."""
    return [len(line) - len(line.lstrip(" ")) for line in lines if line.strip() and line[0] != "\t"]


def _spaces_to_tabs(line: str, step: int) -> str:
    body = line.lstrip(" ")
    width = len(line) - len(body)
    return "\t" * (width // step) + " " * (width % step) + body


def _tabs_to_spaces(line: str, unit: str) -> str:
    body = line.lstrip(" \t")
    return line[: len(line) - len(body)].replace("\t", unit) + body


def _lines_above(window: ContextWindow, count: int) -> list[str]:
    """The ``count`` non-blank lines right above the cursor line, top first, right-stripped."""
    found: list[str] = []
    end = len(window.prefix) - len(window.line_prefix) - 1  # the newline ending the line above
    while len(found) < count and end > 0:
        start = window.prefix.rfind("\n", 0, end) + 1
        line = window.prefix[start:end].rstrip()
        if line:
            found.append(line)
        end = start - 1
    return found[::-1]


def _lines_below(window: ContextWindow, count: int) -> list[str]:
    """The first ``count`` lines below the cursor line from the first non-blank one, stripped."""
    lines = window.suffix.split("\n")[1:]
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    return [line.rstrip() for line in lines[start : start + count]]


def _without_trailing_blanks(lines: list[str]) -> list[str]:
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    return lines[:end]
