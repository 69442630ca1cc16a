"""Neighbour selection: which other open documents a completion prompt carries, and how much.

Models complete better when they see the code the user is working with elsewhere: the module
being imported, the type being implemented. This module picks those documents from what the
editor has open and takes the top of each, where imports and definitions live. It only reads
each chosen document's first ``max_chars`` characters, so a huge open file costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Iterable

from crucible.context.snapshot import ContextFile, DocumentSnapshot


def select_neighbours(
    current: DocumentSnapshot,
    others: Iterable[DocumentSnapshot],
    *,
    max_files: int,
    max_chars: int,
) -> tuple[ContextFile, ...]:
    """Up to ``max_files`` other documents, each cut to at most ``max_chars`` of whole lines.

    Documents in ``current``'s language come first, then the rest, each group in the order
    given (the caller passes most recently used first). The current document and documents
    with nothing but whitespace in their head are skipped.
    """
    if max_files <= 0 or max_chars <= 0:
        return ()
    same: list[ContextFile] = []
    rest: list[ContextFile] = []
    for doc in others:
        if doc.uri == current.uri:
            continue
        group = same if doc.language_id == current.language_id else rest
        if len(group) == max_files:
            continue
        head = _head(doc.text, max_chars)
        if head.strip():
            group.append(ContextFile(doc.path, head))
        if len(same) == max_files:
            break  # same-language files alone fill the quota; the rest could never be used
    return (*same, *rest[: max_files - len(same)])


def _head(text: str, max_chars: int) -> str:
    """The whole lines of ``text`` that fit in ``max_chars``; a longer first line is cut hard."""
    if len(text) <= max_chars or text[max_chars - 1] == "\n":
        return text[:max_chars]
    newline = text.rfind("\n", 0, max_chars)
    # A first line longer than the budget (minified code) still says something: keep its start.
    return text[:max_chars] if newline == -1 else text[: newline + 1]
