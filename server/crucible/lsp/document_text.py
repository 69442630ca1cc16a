"""The text of open documents: edits spliced in by offset, valid Unicode on the way in.

pygls 2.1.1 applies an incremental edit by splitting the whole document into lines
(``source.splitlines``), converting the range against that tuple, and writing every line
into a new string: measured 222 ms per keystroke on a 50 MB document, all of it on the event
loop, so every other document waited too. Here an open document keeps its text as
``PieceText``, pieces of about 32 K characters with their lengths and line-break counts: an
edit finds its line by summing the counts, converts the column on that line only
(``lsp/convert.py``), and rebuilds one piece. The whole string is joined only when someone
reads ``source`` (a completion or a hover in that document), at most once per change for a
small text, once per read for a large one (kept beside the pieces it would double what the
document holds); a neighbour's excerpt is read from the pieces.

Every text a client sends (``didOpen``, a full or incremental change) passes through
``valid_text`` (``context/snapshot.py``): lone surrogates become U+FFFD, one for one, so a
document's text always encodes, and positions do not move.

pygls builds its ``Workspace`` itself, inside its ``initialize`` handler;
``CrucibleProtocol`` hands the new workspace to ``adopt``, which makes it an
``OpenDocuments`` before any document exists. Line breaks are ``\\n`` (and ``\\r\\n``), as in
``lsp/convert.py``; pygls's ``splitlines`` also broke lines at U+2028, form feeds and others,
which no editor counts as LSP line breaks.

What the open documents hold is ``open_documents_bytes``: each ``PieceText`` counts its
strings as they change (O(1) to read), so the memory supervisor can ask every few seconds.
"""

from __future__ import annotations

import sys

from lsprotocol import types
from pygls.workspace import PositionCodec, TextDocument, Workspace

from crucible.context.snapshot import DocumentSnapshot, valid_text
from crucible.lsp.convert import column_to_index, line_start, snapshot_with

_PIECE = 1 << 15  # characters per piece: an edit copies about this much, whatever the size
# Above this many characters an edited text is not kept joined beside its pieces: the copy
# would double what a large document holds (8 MB for a 1 M-character text with one character
# outside the BMP) for reads that come about once per change anyway (each completion follows
# an edit). Joining 1 M characters (31 pieces) costs 20-90 µs on this machine: less than
# the read that asks for it.
_KEEP_JOINED = 4 * _PIECE
_ALIGN = 1 << 14  # an excerpt starts at the line holding a multiple of this many characters
_ENCODINGS = ("utf-8", "utf-16", "utf-32")
# An OpenDocument's own objects besides its text and names: the object and its attributes (a
# dozen, pygls's) and its PositionCodec. Measured with tracemalloc on
# CPython 3.11.7 / pygls 2.1.1 (this machine): 319 bytes a document, over 2,000 opened empty.
DOCUMENT_OVERHEAD = 320


class PieceText:
    """A string kept as pieces, so that replacing a range costs one piece, not the string.

    The text as it was opened stays one string until its first edit (a document that is only
    read costs its size once); after an edit the joined string is rebuilt on demand, and kept
    until the next edit only while the text is small.
    """

    def __init__(self, text: str = "") -> None:
        self._joined: str | None = text  # the whole text, until the next edit
        self._length = len(text)
        self._pieces: list[str] = []
        self._lengths: list[int] = []  # characters per piece
        self._breaks: list[int] = []  # line breaks per piece
        self._in_pieces = False  # whether the pieces hold the text (else only ``_joined`` does)
        self._piece_bytes = 0  # the pieces' strings and their two counts, kept as they change
        self._memo: tuple[int, int] | None = None  # (line, its start): the last line found
        # (line, column, encoding, offset): the last position converted, or the cursor just
        # after the last insertion (``replace``), when the line is ASCII up to that column
        # (so the position is exact: no clamping, no half character, any encoding).
        self._cursor: tuple[int, int, str, int] | None = None

    def __len__(self) -> int:
        return self._length

    def memory_bytes(self) -> int:
        """The bytes held (O(1)): the pieces (their strings, counts and lists) and the joined
        text when it is kept beside them (up to twice the text after an edit and a read; a
        one-piece text joins to that piece itself, counted once)."""
        held = sys.getsizeof(self) + self._piece_bytes
        held += sys.getsizeof(self._pieces) + sys.getsizeof(self._lengths)
        held += sys.getsizeof(self._breaks)
        joined = self._joined
        if joined is not None and not (len(self._pieces) == 1 and self._pieces[0] is joined):
            held += sys.getsizeof(joined)
        return held

    def value(self) -> str:
        """The whole text: joined once per change and kept while the text is small; a large
        text is joined for each read and not kept (see ``_KEEP_JOINED``)."""
        if self._joined is not None:
            return self._joined
        joined = "".join(self._pieces)
        if self._length <= _KEEP_JOINED:
            self._joined = joined
        return joined

    def head(self, n: int) -> str:
        """The first ``n`` characters, without joining the rest."""
        return self._slice(0, min(max(n, 0), self._length))

    def excerpt(self, cursor: int, before: int, after: int) -> tuple[str, int, int]:
        """(text, start, line): the whole lines holding ``cursor - before`` to ``cursor +
        after`` (the text itself when they are all of it), where they start, and the line
        they start on. The start is taken from ``_ALIGN``-character blocks, so it stays put
        while the user types at the cursor: offsets in consecutive excerpts agree."""
        if cursor <= before and cursor + after >= self._length:
            return self.value(), 0, 0  # a text this short is its own excerpt
        low = max(0, cursor - before) // _ALIGN * _ALIGN
        high = min(self._length, cursor + after)
        start = self._line_start_at(low) if low > 0 else 0
        end = self._line_end_at(high) if high < self._length else self._length
        if start == 0 and end == self._length:
            return self.value(), 0, 0
        return self._slice(start, end), start, self._line_of(start)

    def offset(self, position: types.Position, encoding: str = "utf-16") -> int:
        """``offset_at`` of an lsprotocol position."""
        return self.offset_at(position.line, position.character, encoding)

    def offset_at(self, line_number: int, character: int, encoding: str = "utf-16") -> int:
        """The offset of an LSP position, with ``convert.position_to_offset``'s clamping:
        past the last line is the end, past a line's end is that end (before ``\\r\\n``).

        A user types at one cursor, and each key asks for it three times (the change's start
        and end, then the request at the cursor just after it): the last position converted
        is remembered, and an insertion moves it along (``replace``), so a key converts none."""
        cursor = self._cursor
        if (
            cursor is not None
            and cursor[0] == line_number
            and cursor[1] == character
            and cursor[2] == encoding
        ):
            return cursor[3]
        start = self._line_start(line_number)
        if start is None:
            return self._length
        column = max(character, 0)
        # One code point per code unit is the most the column can need, plus one to see
        # whether a final CR is the first half of the line break; never past the line.
        line = self._slice(start, min(start + column + 1, self._line_end_at(start)))
        newline = line.find("\n")
        if newline != -1:
            line = line[:newline].removesuffix("\r")
        if column <= len(line) and line.isascii():
            # ASCII up to an exact column (the slice holds ``column + 1`` characters, or the
            # line's end): one code unit per character in every encoding.
            self._cursor = (line_number, column, encoding, start + column)
            return start + column
        return start + column_to_index(line, column, encoding)

    def remembers(self, line_number: int, character: int, encoding: str) -> bool:
        """Whether the cursor remembered (``offset_at``) is this exact position."""
        cursor = self._cursor
        return cursor is not None and cursor[:3] == (line_number, character, encoding)

    def replace(self, start: int, end: int, text: str) -> None:
        """Replace the characters ``start:end`` (clamped, in either order) with ``text``."""
        if not 0 <= start <= end <= self._length:  # (typing's never is: no tuple, no sort)
            start, end = sorted((min(max(start, 0), self._length), min(max(end, 0), self._length)))
        cursor, self._cursor = self._cursor, None
        if (
            cursor is not None
            and start == end == cursor[3]
            and text.isascii()
            and "\n" not in text
            and "\r" not in text
        ):
            # Typing at the remembered cursor: the position just after the insertion is the
            # same line, as many columns further as characters were inserted (ASCII: one code
            # unit each), at the offset just after them; the line before it is ASCII still.
            line, column, encoding, offset = cursor
            self._cursor = (line, column + len(text), encoding, offset + len(text))
        if not self._in_pieces:
            self._set_pieces(_split(self.value()))
        if not self._pieces:
            self._set_pieces(_split(text))
            self._length, self._joined = len(text), text
            return
        first, head = self._locate(start)
        if start == end and self._typed(first, head, start, text):
            return
        last, tail = self._locate(end)
        merged = self._pieces[first][:head] + text + self._pieces[last][tail:]
        # The merged piece's line breaks from the counts kept, not by counting it: str.count
        # takes ~7 µs per 12 K characters, and a piece is up to 64 K (the accounting below
        # reuses the kept counts too).
        merged_breaks = sum(self._breaks[first : last + 1]) + text.count("\n")
        merged_breaks -= self._breaks_between(first, head, last, tail)
        if len(merged) < _PIECE // 4 and last + 1 < len(self._pieces):
            last += 1  # a small piece joins the next one: deletions do not leave crumbs
            merged += self._pieces[last]
            merged_breaks += self._breaks[last]
        pieces = _split(merged)
        lengths = [len(piece) for piece in pieces]
        # Split when it grew past two pieces: then each part is counted.
        breaks = [merged_breaks] if len(pieces) == 1 else [piece.count("\n") for piece in pieces]
        replaced = range(first, last + 1)
        self._piece_bytes -= sum(
            _counted_bytes(self._pieces[i], self._lengths[i], self._breaks[i]) for i in replaced
        )
        self._piece_bytes += sum(map(_counted_bytes, pieces, lengths, breaks))
        self._pieces[first : last + 1] = pieces
        self._lengths[first : last + 1] = lengths
        self._breaks[first : last + 1] = breaks
        self._length += len(text) - (end - start)
        self._joined = None
        if self._memo is not None and start < self._memo[1]:
            self._memo = None  # the line may start elsewhere now

    def _typed(self, index: int, at: int, start: int, text: str) -> bool:
        """Insert ``text`` at ``at`` in piece ``index`` (``start`` in the text) when it is
        what typing sends (no line break, the piece neither split nor merged): the general
        path's result, without its lists and sums. False: nothing done, the general path is
        needed."""
        piece = self._pieces[index]
        grown = len(piece) + len(text)
        if "\n" in text or grown >= 2 * _PIECE:
            return False
        if grown < _PIECE // 4 and index + 1 < len(self._pieces):
            return False  # a crumb the general path joins to the next piece
        merged = piece[:at] + text + piece[at:]
        # ``_counted_bytes`` of the new piece less the old one's: the line breaks, and so
        # their count's int, are the same.
        self._piece_bytes += sys.getsizeof(merged) - sys.getsizeof(piece)
        if grown > 256:
            self._piece_bytes += sys.getsizeof(grown) - _int_bytes(len(piece))
        self._pieces[index] = merged
        self._lengths[index] = grown
        self._length += len(text)
        self._joined = None
        if self._memo is not None and start < self._memo[1]:
            self._memo = None  # the line may start elsewhere now
        return True

    def _breaks_between(self, first: int, head: int, last: int, tail: int) -> int:
        """Line breaks from offset ``head`` of piece ``first`` to ``tail`` of piece ``last``."""
        if first == last:
            return self._pieces[first].count("\n", head, tail)
        inner = sum(self._breaks[first + 1 : last])
        return (
            self._pieces[first].count("\n", head) + inner + self._pieces[last].count("\n", 0, tail)
        )

    def _set_pieces(self, pieces: list[str]) -> None:
        self._pieces = pieces
        self._lengths = [len(piece) for piece in pieces]
        self._breaks = [piece.count("\n") for piece in pieces]
        self._piece_bytes = sum(map(_counted_bytes, pieces, self._lengths, self._breaks))
        self._in_pieces = True

    def _locate(self, offset: int) -> tuple[int, int]:
        """(piece, offset in it) of a text offset; the end of the text is the last piece's."""
        for index, length in enumerate(self._lengths):
            if offset <= length:
                return index, offset
            offset -= length
        if not self._pieces:
            return 0, 0
        return len(self._pieces) - 1, self._lengths[-1]

    def _line_start(self, line: int) -> int | None:
        """Offset where ``line`` starts; None past the last line. The last line found is
        remembered until an edit before its start: a user types on one line, and each of
        their keys asks for it twice (the change, then the request)."""
        if line <= 0:
            return 0
        if self._memo is not None and self._memo[0] == line:
            return self._memo[1]
        if self._joined is not None:
            start = line_start(self._joined, line)
        else:
            start = self._piece_line_start(line)
        if start is not None:
            self._memo = (line, start)
        return start

    def _piece_line_start(self, line: int) -> int | None:
        seen = base = 0
        for index, breaks in enumerate(self._breaks):
            if seen + breaks >= line:
                piece, at = self._pieces[index], -1
                for _ in range(line - seen):
                    at = piece.find("\n", at + 1)
                return base + at + 1
            seen += breaks
            base += self._lengths[index]
        return None

    def _line_of(self, offset: int) -> int:
        """The line holding ``offset``: the line breaks before it."""
        if self._joined is not None:
            return self._joined.count("\n", 0, offset)
        index, at = self._locate(offset)
        return sum(self._breaks[:index]) + self._pieces[index].count("\n", 0, at)

    def _line_start_at(self, offset: int) -> int:
        """The start of the line holding ``offset``."""
        if self._joined is not None:
            return self._joined.rfind("\n", 0, offset) + 1
        index, at = self._locate(offset)
        base = offset - at
        while (found := self._pieces[index].rfind("\n", 0, at)) == -1:
            if index == 0:
                return 0
            index -= 1
            at = self._lengths[index]
            base -= at
        return base + found + 1

    def _line_end_at(self, offset: int) -> int:
        """Just past the line break that ends the line holding ``offset`` (the text's end
        when none does)."""
        if self._joined is not None:
            found = self._joined.find("\n", offset)
            return self._length if found == -1 else found + 1
        index, at = self._locate(offset)
        base = offset - at
        while index < len(self._pieces):
            found = self._pieces[index].find("\n", at)
            if found != -1:
                return base + found + 1
            base += self._lengths[index]
            index, at = index + 1, 0
        return self._length

    def _slice(self, start: int, end: int) -> str:
        if self._joined is not None:
            return self._joined[start:end]
        index, at = self._locate(start)
        parts: list[str] = []
        wanted = end - start
        while wanted > 0 and index < len(self._pieces):
            part = self._pieces[index][at : at + wanted]
            parts.append(part)
            wanted -= len(part)
            index, at = index + 1, 0
        return "".join(parts)


def _piece_bytes(piece: str) -> int:
    """A piece's string and its two counts (ints past the small-int cache when large)."""
    return _counted_bytes(piece, len(piece), piece.count("\n"))


def _int_bytes(count: int) -> int:
    """A count's int as ``_counted_bytes`` counts it: nothing up to 256 (shared)."""
    return sys.getsizeof(count) if count > 256 else 0


def _counted_bytes(piece: str, length: int, breaks: int) -> int:
    """``_piece_bytes`` from the piece's counts, already known."""
    held = sys.getsizeof(piece)
    if length > 256:
        held += sys.getsizeof(length)
    if breaks > 256:
        held += sys.getsizeof(breaks)
    return held


def _split(text: str) -> list[str]:
    """``text`` in pieces of ``_PIECE`` characters; one piece when it is under two."""
    if len(text) < 2 * _PIECE:
        return [text] if text else []
    return [text[i : i + _PIECE] for i in range(0, len(text), _PIECE)]


class OpenDocument(TextDocument):
    """pygls's document with its text in a ``PieceText``: the same interface, edits by offset."""

    def __init__(
        self,
        uri: str,
        source: str | None = None,
        version: int | None = None,
        language_id: str | None = None,
        local: bool = True,
        sync_kind: types.TextDocumentSyncKind = types.TextDocumentSyncKind.Incremental,
        position_codec: PositionCodec | None = None,
    ) -> None:
        super().__init__(
            uri,
            None,
            version,
            language_id,
            local,
            sync_kind,
            position_codec,
        )
        self._text = PieceText(valid_text(source or ""))

    @property
    def source(self) -> str:
        # Never read from disk (pygls does for a document it was not sent): only what the
        # editor sent is the document.
        return self._text.value()

    # Every text this document took went through ``valid_text`` (``snapshot_of`` relies on it).
    valid_unicode = True

    def head(self, n: int) -> str:
        """The text's first ``n`` characters (a neighbour's excerpt), without joining it."""
        return self._text.head(n)

    def snapshot_near(
        self, position: types.Position, before: int, after: int, encoding: str | None = None
    ) -> tuple[DocumentSnapshot, int]:
        """A snapshot of the lines within ``before`` characters before ``position`` and
        ``after`` after it (``PieceText.excerpt``), and the position's offset in it: what a
        completion reads costs the size of that excerpt, not of the document (a keystroke
        in a 4 MB document copied 4 MB per request, and each request in flight held a copy)."""
        cursor = self._text.offset(position, encoding or self._encoding())
        text, base, line = self._text.excerpt(cursor, before, after)
        return snapshot_with(self, text, base=base, base_line=line), cursor - base

    def converts_exactly(self, position: types.Position, encoding: str | None = None) -> bool:
        """Whether ``position`` was the last one converted (``snapshot_near``, a change) and
        names its offset exactly: on a line ASCII up to it, not past its end. Then the
        offset converts back to this very position, with no counting. (``encoding``: the
        document's, when the caller has it already.)"""
        encoding = encoding or self._encoding()
        return self._text.remembers(position.line, position.character, encoding)

    @property
    def size(self) -> int:
        """Characters in the text, without joining it."""
        return len(self._text)

    def memory_bytes(self) -> int:
        """The bytes this document holds (O(1)): its text (``PieceText.memory_bytes``), its
        URI, path and file name, and ``DOCUMENT_OVERHEAD`` for the object itself."""
        names = sys.getsizeof(self.uri) + sys.getsizeof(self.path)
        names += sys.getsizeof(self.filename) if self.filename is not None else 0
        return DOCUMENT_OVERHEAD + names + self._text.memory_bytes()

    def _encoding(self) -> str:
        value = str(self.position_codec.encoding or "utf-16").lower()
        return value if value in _ENCODINGS else "utf-16"

    def replace_range(
        self, start_line: int, start_character: int, end_line: int, end_character: int, text: str
    ) -> None:
        """An incremental change: the range (in the negotiated encoding's code units, clamped
        as ``PieceText.offset_at`` clamps) replaced by ``text``. What pygls's
        ``apply_change`` does with a ``TextDocumentContentChangePartial``, from plain values
        (``lsp/fast_lane.py`` builds no lsprotocol objects)."""
        encoding = self._encoding()
        start = self._text.offset_at(start_line, start_character, encoding)
        if end_line == start_line and end_character == start_character:
            end = start  # an insertion, as typing sends
        else:
            end = self._text.offset_at(end_line, end_character, encoding)
        self._text.replace(start, end, valid_text(text))

    def _apply_incremental_change(self, change: types.TextDocumentContentChangePartial) -> None:
        start, end = change.range.start, change.range.end
        self.replace_range(start.line, start.character, end.line, end.character, change.text)

    def _apply_full_change(self, change: types.TextDocumentContentChangeEvent) -> None:
        self._text = PieceText(valid_text(change.text))


def document_size(document: TextDocument) -> int:
    """Characters in ``document``'s text, without joining an ``OpenDocument``'s pieces."""
    return document.size if isinstance(document, OpenDocument) else len(document.source)


def open_documents_bytes(workspace: Workspace | None) -> int:
    """What the text of every open document holds, in bytes (O(documents), each O(1)): each
    ``OpenDocument``'s ``memory_bytes`` and the workspace's dict of them. A document of
    another class (never made once ``adopt`` ran) counts its source's string."""
    if workspace is None:
        return 0
    documents = workspace.text_documents
    held = sys.getsizeof(documents)
    for document in documents.values():
        if isinstance(document, OpenDocument):
            held += document.memory_bytes()
        else:
            held += DOCUMENT_OVERHEAD + sys.getsizeof(document.source)
    return held


class OpenDocuments(Workspace):
    """pygls's workspace, creating ``OpenDocument``s; it adds no state of its own."""

    def _create_text_document(
        self,
        doc_uri: str,
        source: str | None = None,
        version: int | None = None,
        language_id: str | None = None,
    ) -> TextDocument:
        return OpenDocument(
            doc_uri,
            source=source,
            version=version,
            language_id=language_id,
            sync_kind=self._sync_kind,
            position_codec=self._position_codec,
        )


def adopt(workspace: Workspace | None) -> Workspace | None:
    """The workspace pygls just built, made an ``OpenDocuments`` (its class swapped: it holds
    no documents yet, and ``OpenDocuments`` changes behaviour, not state)."""
    if workspace is not None and type(workspace) is Workspace:
        workspace.__class__ = OpenDocuments
    return workspace
