"""cut_window: whole lines within the budget around the cursor, fast on huge one-line files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, SupportsIndex

import pytest

from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import ContextWindow, cut_window

CURSOR = "‸"

MODULE = (
    "import os\n"  # 10 chars with the newline
    "import sys\n"  # 11
    "\n"
    "def main():\n"
    "    path = os.getcwd()‸\n"
    "    print(path)\n"
    "    return 0\n"
)


def window(source: str, *, max_prefix: int = 6000, max_suffix: int = 2000) -> ContextWindow:
    offset = source.index(CURSOR)
    text = source.replace(CURSOR, "")
    snapshot = DocumentSnapshot("file:///w.py", "/w.py", "python", 1, text)
    return cut_window(snapshot, offset, max_prefix=max_prefix, max_suffix=max_suffix)


@pytest.mark.parametrize(
    ("source", "prefix", "suffix", "line_prefix", "line_suffix"),
    [
        pytest.param(
            MODULE,
            MODULE.split(CURSOR)[0],
            MODULE.split(CURSOR)[1],
            "    path = os.getcwd()",
            "",
            id="fits-whole",
        ),
        pytest.param(
            "‸def f():\n    pass\n", "", "def f():\n    pass\n", "", "def f():", id="offset-0"
        ),
        pytest.param("x = 1\ny = 2‸", "x = 1\ny = 2", "", "y = 2", "", id="end-of-text"),
        pytest.param("‸", "", "", "", "", id="empty-document"),
        pytest.param(
            "if x:\n    fo‸o()\n", "if x:\n    fo", "o()\n", "    fo", "o()", id="mid-line"
        ),
        pytest.param(
            "int main() {\r\n    return ‸0;\r\n}\r\n",
            "int main() {\r\n    return ",
            "0;\r\n}\r\n",
            "    return ",
            "0;",
            id="crlf-kept-line-suffix-without-cr",
        ),
    ],
)
def test_window_within_budget(
    source: str, prefix: str, suffix: str, line_prefix: str, line_suffix: str
) -> None:
    assert window(source) == ContextWindow(prefix, suffix, line_prefix, line_suffix)


def test_prefix_is_cut_at_the_first_line_start_inside_the_budget() -> None:
    before = MODULE.split(CURSOR)[0]
    # The budget ends inside "import sys": that line is dropped whole, not split.
    cut = window(MODULE, max_prefix=len(before) - 12)
    assert cut.prefix == "\ndef main():\n    path = os.getcwd()"


def test_prefix_budget_ending_exactly_at_a_line_start_keeps_that_line() -> None:
    before = MODULE.split(CURSOR)[0]
    assert window(MODULE, max_prefix=len(before) - 10).prefix == before.removeprefix("import os\n")


def test_suffix_is_cut_after_the_last_line_break_inside_the_budget() -> None:
    # "\n    print(path)\n" is 17 chars; "    return 0\n" does not fit in 20.
    assert window(MODULE, max_suffix=20).suffix == "\n    print(path)\n"


def test_crlf_lines_are_never_split_when_cut() -> None:
    source = "a = 1\r\nb = 2\r\nc = ‸3\r\nd = 4\r\ne = 5\r\n"
    cut = window(source, max_prefix=12, max_suffix=9)
    # Both budgets end between a \r and its \n: the cut moves to the enclosing line boundary.
    assert cut.prefix == "b = 2\r\nc = "
    assert cut.suffix == "3\r\n"


def test_cursor_line_longer_than_the_budget_is_cut_hard_near_the_cursor() -> None:
    line = "x" * 500 + "‸" + "y" * 500
    cut = window("const a = 1;\n" + line + "\nend\n", max_prefix=100, max_suffix=50)
    assert cut.prefix == "x" * 100
    assert cut.line_prefix == "x" * 100
    assert cut.suffix == "y" * 50
    assert cut.line_suffix == "y" * 50


def test_long_line_above_a_cursor_at_column_0_is_cut_hard_rather_than_dropped() -> None:
    cut = window("z" * 300 + "\n‸tail\n", max_prefix=50)
    assert cut.prefix == "z" * 49 + "\n"
    assert cut.line_prefix == ""


def test_long_line_above_the_cursor_line_is_dropped_when_the_cursor_line_fits() -> None:
    cut = window("z" * 300 + "\n    ret‸urn\n", max_prefix=50)
    assert cut.prefix == "    ret"


def test_zero_budgets_give_an_empty_window() -> None:
    assert window(MODULE, max_prefix=0, max_suffix=0) == ContextWindow("", "", "", "")


def test_offset_outside_the_text_is_clamped() -> None:
    snapshot = DocumentSnapshot("file:///w.py", "/w.py", "python", 1, "ab\ncd")
    assert cut_window(snapshot, 99, max_prefix=10, max_suffix=10).line_prefix == "cd"
    assert cut_window(snapshot, -5, max_prefix=10, max_suffix=10).suffix == "ab\ncd"


class ReadSpans(str):
    """A document text that records the span of every read ``cut_window`` makes of it (an
    index, a slice, a bounded ``find``/``rfind``) and refuses any other use of the whole text,
    which would cost its length on every keystroke. The pieces it hands out are plain ``str``."""

    spans: list[tuple[int, int]]

    def __new__(cls, text: str) -> ReadSpans:
        made = super().__new__(cls, text)
        made.spans = []
        return made

    def __getitem__(self, key: SupportsIndex | slice) -> str:
        if isinstance(key, slice):
            start, stop, _ = key.indices(len(self))
            self.spans.append((start, stop))
        else:
            self.spans.append((int(key), int(key) + 1))
        return str(str.__getitem__(self, key))

    def find(
        self, sub: str, start: SupportsIndex | None = None, end: SupportsIndex | None = None
    ) -> int:
        self.spans.append(slice(start, end).indices(len(self))[:2])
        return str.find(self, sub, start, end)

    def rfind(
        self, sub: str, start: SupportsIndex | None = None, end: SupportsIndex | None = None
    ) -> int:
        self.spans.append(slice(start, end).indices(len(self))[:2])
        return str.rfind(self, sub, start, end)

    def __getattribute__(self, name: str) -> Any:
        if name in {"find", "rfind", "spans", "__class__"}:
            return super().__getattribute__(name)
        raise AssertionError(f"cut_window used the whole text: str.{name}")

    def __contains__(self, item: object) -> bool:
        raise AssertionError("cut_window searched the whole text: `in`")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("cut_window iterated the whole text")


def test_minified_five_megabyte_line_costs_only_the_budget() -> None:
    text = ReadSpans("var a=function(){return 1};" * 200_000)  # 5.4 MB, no line break
    snapshot = DocumentSnapshot("file:///app.min.js", "/app.min.js", "javascript", 1, text)
    offset = len(text) // 2
    cut = cut_window(snapshot, offset, max_prefix=6000, max_suffix=2000)
    assert (len(cut.prefix), len(cut.suffix), len(cut.line_prefix)) == (6000, 2000, 6000)
    # Only the budget around the cursor was read (the character before the prefix included:
    # whether it is a line start), never the rest of the line: a keystroke in a minified file
    # costs the budget, not the file's size.
    assert text.spans
    outside = [(a, b) for a, b in text.spans if not offset - 6000 - 1 <= a <= b <= offset + 2000]
    assert not outside
