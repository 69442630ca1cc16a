"""ContextWindow: the text around the cursor that a completion prompt is built from.

``cut_window`` takes at most ``max_prefix`` characters before the cursor and ``max_suffix``
after it, cutting on line boundaries so the model sees whole lines. It runs on every keystroke,
so it only ever looks at the budgeted slices of the document: a 5 MB minified file costs the
same as a small one. Offsets are Python string indices (see ``snapshot.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from crucible.context.snapshot import DocumentSnapshot


@dataclass(frozen=True, slots=True)
class ContextWindow:
    """The budgeted text around the cursor.

    ``line_prefix`` and ``line_suffix`` are the cursor line's parts inside the window: on a line
    longer than the budget they are its hard-cut pieces, never the whole multi-megabyte line.
    """

    prefix: str  # text before the cursor, cut at a line start when it has to be cut
    suffix: str  # text after the cursor, cut after a line break when it has to be cut
    line_prefix: str  # the cursor line up to the cursor
    line_suffix: str  # the cursor line after the cursor, without its line break


def cut_window(
    snapshot: DocumentSnapshot, offset: int, *, max_prefix: int, max_suffix: int
) -> ContextWindow:
    """The prefix and suffix around ``offset`` within the budgets.

    Whole lines are kept when a line boundary falls inside the budget; a line longer than the
    budget is cut hard, keeping the part nearest the cursor. Line endings (``\\r\\n`` included)
    are kept as they are: the prefix starts right after a ``\\n`` and the suffix ends with one.
    """
    text = snapshot.text
    # Positions come from the LSP layer, which clamps them to the document; clamping again here
    # keeps a stale position from raising on the keystroke path.
    offset = min(max(offset, 0), len(text))
    prefix = text[_prefix_start(text, offset, max(max_prefix, 0)) : offset]
    suffix = text[offset : _suffix_end(text, offset, max(max_suffix, 0))]
    line_suffix = suffix.split("\n", 1)[0]
    return ContextWindow(
        prefix=prefix,
        suffix=suffix,
        line_prefix=prefix[prefix.rfind("\n") + 1 :],
        # A CRLF document leaves the \r on the line; it is a line ending, not line content.
        line_suffix=line_suffix.removesuffix("\r"),
    )


def _prefix_start(text: str, offset: int, budget: int) -> int:
    """Where the prefix starts: the first line start inside the budget, else a hard cut."""
    start = max(offset - budget, 0)
    if start == 0 or text[start - 1] == "\n":
        return start
    newline = text.find("\n", start, offset)
    # No line break in the window, or only the one right before the cursor (the window is a
    # piece of one over-long line): keeping whole lines would keep nothing, so cut hard.
    if newline == -1 or newline + 1 == offset:
        return start
    return newline + 1


def _suffix_end(text: str, offset: int, budget: int) -> int:
    """Where the suffix ends: after the last line break inside the budget, else a hard cut."""
    end = min(offset + budget, len(text))
    if end in (offset, len(text)) or text[end - 1] == "\n":
        return end
    newline = text.rfind("\n", offset, end)
    # The break is kept with its line so a CRLF pair is never split and the last line is whole.
    return end if newline == -1 else newline + 1
