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

from crucible.completion.service import CompletionResult
from crucible.context.snapshot import DocumentSnapshot

_ENCODINGS = ("utf-8", "utf-16", "utf-32")


def _units(char: str, encoding: str) -> int:
    """Code units one code point takes in ``encoding``."""
    code = ord(char)
    if encoding == "utf-32":
        return 1
    if encoding == "utf-8":
        return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    return 2 if code >= 0x10000 else 1


def column_to_index(line: str, column: int, encoding: str = "utf-16") -> int:
    """Index into ``line`` of the code-unit ``column``; past the end clamps to the end.

    A column pointing into the middle of a surrogate pair (or UTF-8 sequence) lands after
    that character, as the LSP specification asks clients to treat it.
    """
    if encoding == "utf-32":
        return min(column, len(line))
    if line.isascii():
        return min(column, len(line))
    units = 0
    for index, char in enumerate(line):
        if units >= column:
            return index
        units += _units(char, encoding)
    return len(line)


def index_to_column(line: str, index: int, encoding: str = "utf-16") -> int:
    """Code-unit column of the code-point ``index`` in ``line``."""
    head = line[:index]
    if encoding == "utf-32" or head.isascii():
        return len(head)
    return sum(_units(char, encoding) for char in head)


def position_to_offset(text: str, position: types.Position, encoding: str = "utf-16") -> int:
    """Offset into ``text`` of an LSP position; lines past the end clamp to the end."""
    start = 0
    for _ in range(position.line):
        newline = text.find("\n", start)
        if newline == -1:
            return len(text)
        start = newline + 1
    end = text.find("\n", start)
    line = text[start : len(text) if end == -1 else end].removesuffix("\r")
    return start + column_to_index(line, position.character, encoding)


def offset_to_position(text: str, offset: int, encoding: str = "utf-16") -> types.Position:
    """LSP position of an offset into ``text``."""
    line = text.count("\n", 0, offset)
    line_start = text.rfind("\n", 0, offset) + 1
    return types.Position(
        line, index_to_column(text[line_start:offset], offset - line_start, encoding)
    )


def encoding_of(document: TextDocument) -> str:
    """The negotiated position encoding, as one of our three names."""
    value = str(document.position_codec.encoding or "utf-16").lower()
    return value if value in _ENCODINGS else "utf-16"


def snapshot_of(document: TextDocument) -> DocumentSnapshot:
    """An immutable copy of pygls's live document (the text string is shared, not copied)."""
    return DocumentSnapshot(
        uri=document.uri,
        path=document.path or document.uri,
        language_id=document.language_id or "plaintext",
        version=document.version or 0,
        text=document.source,
    )


def result_range(
    snapshot: DocumentSnapshot, result: CompletionResult, encoding: str
) -> types.Range:
    """The range an editor replaces with the suggestion, in the client's encoding."""
    return types.Range(
        start=offset_to_position(snapshot.text, result.start, encoding),
        end=offset_to_position(snapshot.text, result.end, encoding),
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
