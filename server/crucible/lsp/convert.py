"""Conversions between LSP wire values and the domain: positions, documents, results.

LSP positions count *code units* of the negotiated encoding (UTF-16 unless the client offered
something else), while Python strings index code points. A character outside the Basic
Multilingual Plane (most emoji) is one code point but two UTF-16 code units, so every position
crossing the wire goes through ``position_to_offset`` / ``offset_to_position``.
"""

from __future__ import annotations

from dataclasses import replace

from lsprotocol import types
from pygls.workspace import TextDocument

from crucible.actions.edits import TextEdit
from crucible.completion.service import CompletionResult
from crucible.context.snapshot import DocumentSnapshot, valid_text

_ENCODINGS = ("utf-8", "utf-16", "utf-32")


def column_to_index(line: str, column: int, encoding: str = "utf-16") -> int:
    """Index into ``line`` of the code-unit ``column``; past the end clamps to the end.

    A column pointing into the middle of a surrogate pair (or UTF-8 sequence) lands after
    that character, as the LSP specification asks clients to treat it. Negative columns clamp
    to 0. The work is done by the codecs (C speed), not a loop per character, so a position
    on a minified line of megabytes costs milliseconds. Documents hold no surrogate code
    points (``context/snapshot.py`` replaces them on the way in); a string that does is
    counted as its ``surrogatepass`` encoding, which never raises.
    """
    column = max(column, 0)
    if encoding == "utf-32" or line.isascii():
        return min(column, len(line))
    if encoding == "utf-8":
        data = line.encode("utf-8", "surrogatepass")
        if column >= len(data):
            return len(line)
        start = column
        while start and data[start] & 0xC0 == 0x80:  # a continuation byte: mid-character
            start -= 1
        index = len(data[:start].decode("utf-8", "surrogatepass"))
        return index + (start != column)
    data = line.encode("utf-16-le", "surrogatepass")
    if 2 * column >= len(data):
        return len(line)
    start = column
    if 0xDC00 <= int.from_bytes(data[2 * start : 2 * start + 2], "little") <= 0xDFFF and start:
        start -= 1  # the low half of a pair: mid-character
    index = len(data[: 2 * start].decode("utf-16-le", "surrogatepass"))
    return index + (start != column)


def index_to_column(line: str, index: int, encoding: str = "utf-16") -> int:
    """Code-unit column of the code-point ``index`` in ``line``."""
    head = line[: max(index, 0)]
    if encoding == "utf-32" or head.isascii():
        return len(head)
    if encoding == "utf-8":
        return len(head.encode("utf-8", "surrogatepass"))
    return len(head.encode("utf-16-le", "surrogatepass")) // 2


# Characters counted per step when looking for a line: str.count runs at C speed over a block,
# so finding line 1,000,000 of a 50 MB text takes a few milliseconds, not a million find calls.
_BLOCK = 1 << 14


def line_start(text: str, line: int) -> int | None:
    """Offset of the first character of ``line`` (0-based, lines end at ``\\n``); None when the
    text has fewer lines."""
    if line <= 0:
        return 0
    start, remaining = 0, line
    while True:
        found = text.count("\n", start, start + _BLOCK)
        if found >= remaining:
            break
        if start + _BLOCK >= len(text):
            return None
        remaining -= found
        start += _BLOCK
    for _ in range(remaining):
        start = text.find("\n", start) + 1
    return start


def position_to_offset(text: str, position: types.Position, encoding: str = "utf-16") -> int:
    """Offset into ``text`` of an LSP position; lines past the end clamp to the end, columns
    past a line's end to that end (before its ``\\r\\n``), negative values to 0.

    Lines end at ``\\n``; the ``\\r`` of a ``\\r\\n`` belongs to the line break, a lone
    ``\\r`` is an ordinary character (editors normalise old Mac line endings on load)."""
    start = line_start(text, position.line)
    if start is None:
        return len(text)
    # The column needs no more of the line than one code point per code unit, plus one to see
    # whether a final CR is the first half of the line break.
    stop = start + max(position.character, 0) + 1
    end = text.find("\n", start, stop)
    line = text[start:stop] if end == -1 else text[start:end].removesuffix("\r")
    return start + column_to_index(line, position.character, encoding)


def offset_to_position(text: str, offset: int, encoding: str = "utf-16") -> types.Position:
    """LSP position of an offset into ``text`` (clamped to the text)."""
    offset = min(max(offset, 0), len(text))
    line = text.count("\n", 0, offset)
    first = text.rfind("\n", 0, offset) + 1
    return types.Position(line, index_to_column(text[first:offset], offset - first, encoding))


def encoding_of(document: TextDocument) -> str:
    """The negotiated position encoding, as one of our three names."""
    value = str(document.position_codec.encoding or "utf-16").lower()
    return value if value in _ENCODINGS else "utf-16"


def snapshot_of(document: TextDocument) -> DocumentSnapshot:
    """An immutable copy of pygls's live document (the text string is shared, not copied).

    The text is valid Unicode: an ``OpenDocument`` (``lsp/document_text.py``) replaced any
    surrogate as it arrived; any other document is checked here, so a snapshot never holds
    text a provider request could fail to encode.
    """
    text = document.source
    return snapshot_with(
        document, text if getattr(document, "valid_unicode", False) else valid_text(text)
    )


def snapshot_with(
    document: TextDocument, text: str, *, base: int = 0, base_line: int = 0
) -> DocumentSnapshot:
    """A snapshot of ``document`` holding ``text`` (valid Unicode): its whole text, or an
    excerpt starting at offset ``base`` on line ``base_line``."""
    return DocumentSnapshot(
        uri=document.uri,
        path=document.path or document.uri,
        language_id=document.language_id or "plaintext",
        version=document.version or 0,
        text=text,
        base=base,
        base_line=base_line,
    )


def snapshot_position(snapshot: DocumentSnapshot, offset: int, encoding: str) -> types.Position:
    """The document position of an offset into ``snapshot.text`` (an excerpt's lines are
    counted from its ``base_line``; it starts at a line start, so columns need no change)."""
    position = offset_to_position(snapshot.text, offset, encoding)
    return types.Position(position.line + snapshot.base_line, position.character)


def result_range(
    snapshot: DocumentSnapshot, result: CompletionResult, encoding: str
) -> types.Range:
    """The range an editor replaces with the suggestion, in the client's encoding."""
    return types.Range(
        start=snapshot_position(snapshot, result.start, encoding),
        end=snapshot_position(snapshot, result.end, encoding),
    )


def inline_completion_list(
    snapshot: DocumentSnapshot, result: CompletionResult | None, encoding: str
) -> types.InlineCompletionList:
    if result is None:
        return types.InlineCompletionList(items=[])
    line_before = snapshot.text[snapshot.line_bounds(result.start)[0] : result.start]
    choices = [(result.text, result.end)] + [(a.text, a.end) for a in result.alternatives]
    items = [
        types.InlineCompletionItem(
            insert_text=text,
            range=result_range(snapshot, replace(result, end=end), encoding),
            filter_text=line_before + text,
        )
        for text, end in choices
    ]
    return types.InlineCompletionList(items=items)


def workspace_edit(
    text: str,
    uri: str,
    version: int,
    edits: tuple[TextEdit, ...],
    encoding: str,
    *,
    versioned: bool,
) -> types.WorkspaceEdit:
    """Edits computed on ``text`` (version ``version``) as a WorkspaceEdit: pinned to that
    version (``documentChanges``) for clients that take one, else plain ``changes``."""
    lsp_edits = [
        types.TextEdit(
            range=types.Range(
                start=offset_to_position(text, edit.start, encoding),
                end=offset_to_position(text, edit.end, encoding),
            ),
            new_text=edit.new_text,
        )
        for edit in edits
    ]
    if versioned:
        document = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
        return types.WorkspaceEdit(
            document_changes=[types.TextDocumentEdit(text_document=document, edits=[*lsp_edits])]
        )
    return types.WorkspaceEdit(changes={uri: lsp_edits})
