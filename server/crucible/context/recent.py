"""RecentDocuments: which open documents were opened or edited most recently.

The order is what neighbour selection (``context/neighbours.py``) walks, most recent first,
to find context for a completion: it looks at every document here, so that a file in the
current language is found however many files of other languages were touched after it.

Each entry is an ``OpenFile`` made when the document was opened or last edited: its name,
language and size, and a way to read its head, no text. So a completion request takes the
candidates as they are (no per-document work on the keystroke path), and a document that was
not edited since keeps the head it had read.

The list is bounded by count, and candidates by size: a document over ``max_size`` characters
is never offered (one too large to complete in is no context either). A document pushed out
of the list is forgotten as if closed: ``touch`` returns it, so the caller drops what it keeps
per document (debounce rhythm, type-through anchors, newest prefix); it stays open, and its
next edit starts that state afresh. So a client that opens thousands of files and never closes
them costs a bounded amount besides their text, which the LSP layer keeps.

Each entry also carries when it was last touched (an injected clock, ``time.monotonic`` by
default): ``drop_idle`` drops the candidates untouched for a while (the memory supervisor's
"elevated" tier); a dropped document comes back on its next edit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from crucible.context.neighbours import OpenFile

MAX_RECENT = 256  # documents remembered: neighbour candidates, and per-document state


class RecentDocuments:
    """Open documents, most recently opened or edited first, at most ``limit`` of them."""

    def __init__(
        self, limit: int = MAX_RECENT, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._clock = clock
        # Insertion order is recency order, oldest first: touching moves a document to the
        # end (O(1) in a dict: delete and re-insert), and the oldest is the first key. The
        # value is the file and when it was touched, so the oldest touch is the first too.
        self._files: dict[str, tuple[OpenFile, float]] = {}

    def touch(self, file: OpenFile) -> tuple[str, ...]:
        """``file`` was opened or edited: it is now the most recent, as given. Returns the
        URIs of the documents pushed out by it (oldest first), to be forgotten as if closed."""
        self._files.pop(file.uri, None)
        self._files[file.uri] = (file, self._clock())
        evicted: list[str] = []
        while len(self._files) > self._limit:
            oldest = next(iter(self._files))
            del self._files[oldest]
            evicted.append(oldest)
        return tuple(evicted)

    def forget(self, uri: str) -> None:
        """``uri`` was closed."""
        self._files.pop(uri, None)

    def drop_idle(self, idle_s: float) -> list[str]:
        """Drop the documents not touched for ``idle_s`` seconds (no longer neighbour
        candidates until their next edit); returns their URIs, oldest first."""
        cutoff = self._clock() - idle_s
        dropped: list[str] = []
        for uri, (_, touched) in self._files.items():
            if touched > cutoff:
                break  # recency order: every later one was touched later still
            dropped.append(uri)
        for uri in dropped:
            del self._files[uri]
        return dropped

    def candidates(self, current: str, *, max_size: int) -> tuple[OpenFile, ...]:
        """The neighbour candidates for a completion in ``current``: every other document
        here of at most ``max_size`` characters, most recent first. No text is read."""
        return tuple(
            file
            for file, _ in reversed(self._files.values())
            if file.size <= max_size and file.uri != current
        )

    def __iter__(self) -> Iterator[str]:
        """URIs, most recent first."""
        return reversed(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, uri: object) -> bool:
        return uri in self._files
