"""Neighbour selection: which other open documents a completion prompt carries, and how much.

Models complete better when they see the code the user is working with elsewhere: the module
being imported, the type being implemented. This module picks those documents from what the
editor has open and takes the top of each, where imports and definitions live.

The candidates are every open document the recency list (``context/recent.py``) remembers,
most recent first, so a file in the current language is found however many files of other
languages were touched after it. They cost little until chosen: an ``OpenFile`` is known by its
name and language, and its text is read only when selection gets to it, and then only its
first ``max_chars`` characters, so hundreds of open files, or a huge one, cost nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from crucible.context.snapshot import ContextFile, DocumentSnapshot


class OpenFile:
    """Another document open in the editor, as a neighbour candidate.

    ``size`` is its length in characters; ``read(n)`` gives the first ``n`` characters of its
    text (all of it when shorter). The head is read once and kept: every plan made for one
    request (the first, and those for alternatives and prefetch made later) sees the same
    text, as a snapshot would.
    """

    __slots__ = ("_head", "_read", "language_id", "path", "size", "uri")

    def __init__(
        self, uri: str, path: str, language_id: str, size: int, read: Callable[[int], str]
    ):
        self.uri = uri
        self.path = path  # file-system path, or the URI when it has none
        self.language_id = language_id
        self.size = size
        self._read = read
        self._head: tuple[int, str] | None = None  # (max_chars, the head read for it)

    def head(self, max_chars: int) -> str:
        """The whole lines of the text that fit in ``max_chars``; a longer first line is cut
        hard."""
        if self._head is None or self._head[0] != max_chars:
            # One character more than the budget says whether the text goes on past it.
            self._head = (max_chars, _head(self._read(max_chars + 1), max_chars))
        return self._head[1]

    def __repr__(self) -> str:
        return f"OpenFile({self.uri!r}, {self.language_id!r})"


def select_neighbours(
    current: DocumentSnapshot,
    others: Iterable[OpenFile],
    *,
    max_files: int,
    max_chars: int,
    excluded: Callable[[str], bool] | None = None,
) -> tuple[ContextFile, ...]:
    """Up to ``max_files`` other documents, each cut to at most ``max_chars`` of whole lines.

    Documents in ``current``'s language come first, then the rest, each group in the order
    given (the caller passes most recently used first). The current document, documents
    whose path ``excluded`` names, and documents with nothing but whitespace in their head are
    skipped. A document's text is read only when its group still has room.
    """
    if max_files <= 0 or max_chars <= 0:
        return ()
    same: list[ContextFile] = []
    rest: list[ContextFile] = []
    for doc in others:
        if doc.uri == current.uri:
            continue
        group = same if doc.language_id == current.language_id else rest
        if len(group) == max_files or (excluded is not None and excluded(doc.path)):
            continue
        head = doc.head(max_chars)
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
