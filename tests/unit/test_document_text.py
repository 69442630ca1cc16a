"""Property tests: arbitrary Unicode, edits and positions through the pure text functions.

What must hold for any text a client sends and any position it names (UTF-8, UTF-16, UTF-32,
past a line's end, past the last line, up to the protocol's 2**31 - 1):

- ``valid_text`` never raises, keeps every code point but surrogates, one for one;
- ``position_to_offset`` / ``offset_to_position`` never raise, agree with a plain reading of
  the LSP rules, and round-trip every offset that is a position;
- ``PieceText`` (the open document's text) gives the same offsets and the same text after any
  sequence of edits as one string spliced by those offsets, with pieces of any size;
- an ``OpenDocument`` ends with the same text as pygls's own document after the same edits,
  wherever pygls's line splitting agrees with the LSP's line breaks.
"""

from __future__ import annotations

import os
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.workspace import PositionCodec, TextDocument

from crucible.context.snapshot import valid_text
from crucible.lsp import document_text
from crucible.lsp.convert import (
    offset_to_position,
    position_to_offset,
    snapshot_of,
    snapshot_position,
)
from crucible.lsp.document_text import OpenDocument, PieceText

# A longer run on demand: CRUCIBLE_FUZZ_EXAMPLES=5000 pytest tests/unit/test_document_text.py
EXAMPLES = int(os.environ.get("CRUCIBLE_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENCODINGS = st.sampled_from(["utf-16", "utf-8", "utf-32"])
MAX_UINT = 2**31 - 1

# Line breaks and the characters around them are drawn often, astral characters (two UTF-16
# units, four UTF-8 bytes) and lone surrogates too, so that short texts still hit every case.
SPECIAL = st.sampled_from(
    ["\n", "\r", "\r\n", "😀", "𝔘", "é", "\u2028", "\x0c", "\ud800", "\udfff"]
)
ANY_CHAR = st.characters(exclude_categories=())
RAW_TEXT = st.lists(st.one_of(SPECIAL, ANY_CHAR), max_size=40).map("".join)
TEXT = RAW_TEXT.map(valid_text)  # what a document holds: surrogates already replaced


def positions(text: str) -> st.SearchStrategy[types.Position]:
    lines = text.count("\n") + 1
    return st.builds(
        types.Position,
        line=st.one_of(st.integers(0, lines + 2), st.just(MAX_UINT)),
        character=st.one_of(st.integers(0, 50), st.just(MAX_UINT)),
    )


def reference_offset(text: str, position: types.Position, encoding: str) -> int:
    """The LSP rules read plainly: lines end at \\n; a line's \\r\\n is not part of it (a lone
    \\r is an ordinary character); a column counts code units; a column inside a character
    lands after it; past the end clamps."""
    lines = text.split("\n")
    if position.line >= len(lines):
        return len(text)
    start = sum(len(line) + 1 for line in lines[: position.line])
    line = lines[position.line]
    if position.line < len(lines) - 1:  # a CR before LF is the line break's; a lone CR is not
        line = line.removesuffix("\r")
    units = 0
    for index, char in enumerate(line):
        if units >= position.character:
            return start + index
        units += _width(char, encoding)
    return start + len(line)


def _width(char: str, encoding: str) -> int:
    if encoding == "utf-32":
        return 1
    if encoding == "utf-8":
        return len(char.encode("utf-8", "surrogatepass"))
    return len(char.encode("utf-16-le", "surrogatepass")) // 2


# -- valid text ----------------------------------------------------------------------------


@FUZZ
@given(RAW_TEXT)
def test_valid_text_replaces_surrogates_one_for_one_and_always_encodes(text: str) -> None:
    clean = valid_text(text)
    assert len(clean) == len(text)
    clean.encode("utf-8")  # what httpx does with a request body: must not raise
    for before, after in zip(text, clean, strict=True):
        assert after == ("\ufffd" if 0xD800 <= ord(before) <= 0xDFFF else before)


# -- positions -----------------------------------------------------------------------------


@FUZZ
@given(st.data(), TEXT, ENCODINGS)
def test_position_to_offset_follows_the_lsp_rules(
    data: st.DataObject, text: str, encoding: str
) -> None:
    position = data.draw(positions(text))
    assert position_to_offset(text, position, encoding) == reference_offset(
        text, position, encoding
    )


@FUZZ
@given(st.data(), TEXT, ENCODINGS)
def test_every_offset_that_is_a_position_round_trips(
    data: st.DataObject, text: str, encoding: str
) -> None:
    offset = data.draw(st.integers(0, len(text)))
    position = offset_to_position(text, offset, encoding)
    if text[offset - 1 : offset + 1] == "\r\n":
        # Between the halves of a line break is no position: it reads as the line's end.
        assert position_to_offset(text, position, encoding) == offset - 1
    else:
        assert position_to_offset(text, position, encoding) == offset


@FUZZ
@given(st.data(), TEXT, ENCODINGS)
def test_offset_to_position_never_raises_for_any_offset(
    data: st.DataObject, text: str, encoding: str
) -> None:
    offset = data.draw(st.one_of(st.integers(-5, len(text) + 5), st.just(MAX_UINT)))
    position = offset_to_position(text, offset, encoding)
    clamped = min(max(offset, 0), len(text))
    assert position == offset_to_position(text, clamped, encoding)


# -- edits ---------------------------------------------------------------------------------

EDIT_TEXT = st.lists(st.one_of(SPECIAL, ANY_CHAR), max_size=8).map("".join)


@FUZZ
@given(st.data(), TEXT, ENCODINGS, st.sampled_from([1, 2, 3, 8, 1 << 15]))
def test_piece_text_edits_like_one_spliced_string(
    data: st.DataObject, text: str, encoding: str, piece: int
) -> None:
    keep = data.draw(st.sampled_from([0, 1 << 30]))  # never / always kept joined after a read
    with (
        patch.object(document_text, "_PIECE", piece),
        patch.object(document_text, "_KEEP_JOINED", keep),
    ):
        pieces = PieceText(text)
        expected = text
        for _ in range(data.draw(st.integers(1, 12))):
            start = data.draw(positions(expected))
            end = data.draw(positions(expected))
            new = valid_text(data.draw(EDIT_TEXT))
            a = position_to_offset(expected, start, encoding)
            b = position_to_offset(expected, end, encoding)
            assert pieces.offset(start, encoding) == a
            assert pieces.offset(end, encoding) == b
            pieces.replace(a, b, new)
            a, b = sorted((a, b))
            expected = expected[:a] + new + expected[b:]
            assert len(pieces) == len(expected)
            # The line-break counts kept per piece (an edit derives them) are the pieces' own.
            assert pieces._breaks == [part.count("\n") for part in pieces._pieces]
            if data.draw(st.booleans()):  # sometimes read it (joined), sometimes keep editing
                assert pieces.value() == expected
            n = data.draw(st.integers(-1, len(expected) + 1))
            assert pieces.head(n) == expected[: max(n, 0)]
        assert pieces.value() == expected


TYPED = st.lists(
    st.one_of(st.sampled_from(["a", "_", " ", "(", "é", "😀", "\n", "\r"]), ANY_CHAR), max_size=3
).map("".join)


@FUZZ
@given(st.data(), TEXT, ENCODINGS, st.sampled_from([1, 3, 8, 1 << 15]))
def test_typing_at_the_cursor_converts_positions_as_one_spliced_string(
    data: st.DataObject, text: str, encoding: str, piece: int
) -> None:
    """What a user's keys send: an insertion at the cursor, then the position just after it
    asked for (the request), then the next insertion there; now and then an edit elsewhere.
    The cursor ``PieceText.offset`` remembers, and the one an insertion leaves, must give
    ``position_to_offset``'s answer every time, and the pieces' counts stay their own."""
    with patch.object(document_text, "_PIECE", piece):
        pieces = PieceText(text)
        expected = text
        cursor = data.draw(positions(expected))
        for _ in range(data.draw(st.integers(1, 20))):
            if data.draw(st.integers(0, 5)) == 0:  # a jump: the cursor elsewhere
                cursor = data.draw(positions(expected))
            at = position_to_offset(expected, cursor, encoding)
            assert pieces.offset(cursor, encoding) == at
            assert pieces.offset(cursor, encoding) == at  # asked twice (a change's end)
            typed = valid_text(data.draw(TYPED))
            pieces.replace(at, at, typed)
            expected = expected[:at] + typed + expected[at:]
            after = at + len(typed)
            line_start = expected.rfind("\n", 0, after) + 1
            column = _columns(expected[line_start:after], encoding)
            line = expected.count("\n", 0, after)
            for near in range(max(0, column - 4), column + 5):  # the cursor and around it
                at_near = types.Position(line, near)
                assert pieces.offset(at_near, encoding) == position_to_offset(
                    expected, at_near, encoding
                )
            cursor = types.Position(line, column)
            assert pieces._breaks == [part.count("\n") for part in pieces._pieces]
            assert pieces._lengths == [len(part) for part in pieces._pieces]
            assert pieces._piece_bytes == sum(map(document_text._piece_bytes, pieces._pieces))
        assert pieces.value() == expected


def _columns(head: str, encoding: str) -> int:
    return sum(_width(char, encoding) for char in head)


@FUZZ
@given(
    st.data(),
    st.lists(st.one_of(SPECIAL, ANY_CHAR, st.just("ab\n")), max_size=120).map("".join),
    st.integers(1, 8),
    st.integers(1, 8),
)
def test_an_excerpt_is_the_whole_lines_around_the_cursor_and_maps_back(
    data: st.DataObject, raw: str, piece: int, align: int
) -> None:
    text = valid_text(raw)
    edited = data.draw(st.booleans())  # in pieces (edited) or one string (as opened)
    with patch.object(document_text, "_PIECE", piece), patch.object(document_text, "_ALIGN", align):
        pieces = PieceText(text)
        if edited:
            pieces.replace(0, 0, "x")
            pieces.replace(0, 1, "")
        cursor = data.draw(st.integers(0, len(text)))
        before, after = data.draw(st.integers(0, 30)), data.draw(st.integers(0, 30))
        excerpt, start, line = pieces.excerpt(cursor, before, after)
    end = start + len(excerpt)
    assert excerpt == text[start:end]
    assert start == 0 or text[start - 1] == "\n"  # whole lines
    assert end == len(text) or text[end - 1] == "\n"
    assert start <= max(0, cursor - before) and end >= min(len(text), cursor + after)
    assert line == text.count("\n", 0, start)


@FUZZ
@given(st.data(), TEXT, ENCODINGS)
def test_a_snapshot_near_a_position_converts_as_the_whole_document_does(
    data: st.DataObject, text: str, encoding: str
) -> None:
    document = OpenDocument(
        "file:///a.py", text, version=3, position_codec=PositionCodec(encoding=encoding)
    )
    position = data.draw(positions(text))
    with patch.object(document_text, "_ALIGN", 4):
        snapshot, offset = document.snapshot_near(position, 5, 5)
    whole = position_to_offset(text, position, encoding)
    assert snapshot.base + offset == whole
    assert snapshot.text == text[snapshot.base : snapshot.base + len(snapshot.text)]
    assert snapshot_position(snapshot, offset, encoding) == offset_to_position(
        text, whole, encoding
    )


@pytest.mark.parametrize("piece", [4, 1 << 15])
def test_the_line_found_last_is_forgotten_when_an_edit_moves_its_start(piece: int) -> None:
    at = types.Position(3, 2)
    with patch.object(document_text, "_PIECE", piece):
        text = "#zero\none\ntwo\nthree\nfour\n"
        pieces = PieceText(text[1:])
        pieces.replace(0, 0, "#")  # in pieces
        assert pieces.offset(at) == text.index("three") + 2
        for start, end, new in [
            (text.index("three") + 1, text.index("three") + 1, "X"),  # after the line's start
            (5, 6, ""),  # the first line break deleted: line 3 is "four" now
            (0, 0, "\n\n"),  # two lines before it: line 3 is "two"
        ]:
            pieces.replace(start, end, new)
            text = text[:start] + new + text[end:]
            assert pieces.offset(at) == position_to_offset(text, at)


def test_a_large_edited_text_is_not_kept_joined_beside_its_pieces() -> None:
    """The held bytes of a 1 M-character document with one astral character (4 bytes a
    character): read after an edit, a small text keeps its joined copy, a large one does not."""
    text = "😀" + "x = compute(alpha, beta)\n" * 40_000
    small, large = PieceText(text[:100_000]), PieceText(text)  # 3 pieces, 31
    for pieces in (small, large):
        pieces.replace(5, 5, "y")
        before = pieces.memory_bytes()
        assert pieces.value() == pieces.value()
        kept = pieces.memory_bytes() - before
        if pieces is small:
            assert kept > 4 * 100_000  # the joined copy is kept: reads share it
        else:
            assert kept == 0, kept  # 4 MB not doubled
    assert large.head(3) == text[:3]


# pygls breaks lines at every str.splitlines boundary; the LSP only at \n, \r\n and \r. Where
# the two agree (no \r, no U+2028 and the like), pygls's slow editing is the reference.
PYGLS_SAFE = st.characters(
    exclude_categories=("Cs",), exclude_characters="\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
)
PYGLS_TEXT = st.lists(st.one_of(st.sampled_from(["\n", "😀", "é"]), PYGLS_SAFE), max_size=40)


@FUZZ
@given(st.data(), PYGLS_TEXT.map("".join), st.sampled_from(["utf-16", "utf-8", "utf-32"]))
def test_open_document_ends_with_the_text_pygls_computes(
    data: st.DataObject, text: str, encoding: str
) -> None:
    codec = PositionCodec(encoding=encoding)
    ours = OpenDocument("file:///a.py", text, 1, "python", position_codec=codec)
    theirs = TextDocument("file:///a.py", text, 1, "python", position_codec=codec)
    for _ in range(data.draw(st.integers(1, 8))):
        current = theirs.source
        lines = current.split("\n")
        start_line = data.draw(st.integers(0, len(lines) - 1))
        end_line = data.draw(st.integers(start_line, len(lines) - 1))
        start = _position_in(data, lines, start_line, encoding)
        end = _position_in(data, lines, end_line, encoding)
        if end_line == start_line and end.character < start.character:
            start, end = end, start
        new = data.draw(PYGLS_TEXT.map("".join))
        change = types.TextDocumentContentChangePartial(types.Range(start, end), new)
        ours.apply_change(change)
        theirs.apply_change(change)
        assert ours.source == theirs.source


def _position_in(data: st.DataObject, lines: list[str], line: int, encoding: str) -> types.Position:
    """A position on ``line`` at a character boundary (pygls splits pairs otherwise)."""
    index = data.draw(st.integers(0, len(lines[line])))
    width = sum(_width(char, encoding) for char in lines[line][:index])
    return types.Position(line, width)


def test_surrogates_sent_by_the_client_never_reach_the_document() -> None:
    document = OpenDocument("file:///a.py", "x = '\ud800'\n", 1, "python")
    assert document.source == "x = '\ufffd'\n"
    change = types.TextDocumentContentChangePartial(
        types.Range(types.Position(0, 4), types.Position(0, 4)), "\udc00"
    )
    document.apply_change(change)
    assert document.source == "x = \ufffd'\ufffd'\n"
    document.apply_change(types.TextDocumentContentChangeWholeDocument("\ud83d!"))
    assert document.source == "\ufffd!"


def test_an_open_document_never_reads_the_disk() -> None:
    # pygls's own document reads its path when it has no text; a document is what was sent.
    document = OpenDocument("file:///etc/hostname")
    assert document.source == ""


@FUZZ
@given(RAW_TEXT)
def test_a_snapshot_always_holds_text_that_encodes(text: str) -> None:
    # Whether the document replaced surrogates on the way in (ours) or not (pygls's own).
    for document in (
        OpenDocument("file:///a.py", text, 1, "python"),
        TextDocument("file:///a.py", text, 1, "python"),
    ):
        snapshot = snapshot_of(document)
        snapshot.text.encode("utf-8")
        assert len(snapshot.text) == len(text)
