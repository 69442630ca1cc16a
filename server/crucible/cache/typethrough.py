"""TypeThrough: the rest of a recent suggestion, once the user has typed part of it.

When a suggestion is shown, its *anchor* is recorded: the document, the cursor offset, and the
text the model saw before and after the cursor. A later request in that document is a
type-through of the suggestion when

* the text after the cursor is what it was (the user typed at the cursor, nothing else moved),
* the text before the old cursor is still what the model saw, and
* what was typed since the old cursor is a prefix of the suggestion, shorter than it.

The answer is then the rest of the suggestion, with zero provider calls. Because anchors stay
recorded, this holds across many characters and newlines, after backspacing to any point
between the anchor and the end (a backspace to the anchor itself gives the whole suggestion
again), and after accepting a word or a line (an accept is a typed insertion like any other).
An editor that auto-closes a bracket or quote the user typed (VS Code's default) puts its
closer right after the cursor: when the suggestion closes it too, the hit replaces that closer
(``Typed.closer``), so ``dict[`` typed into ``dict[str, int] = {}`` shows ``str, int] = {}``
over the ``]`` and accepting it leaves one. Any other change after the cursor is a miss.

Each document keeps its ``per_document`` most recent anchors (newest tried first), forgotten
when the document closes or after ``ttl_s``. The window texts are not copied: an anchor keeps
their length, hash and a verbatim tail, so an anchor costs ~500 bytes plus its suggestion
(``memory_bytes``). An expired anchor is skipped, not removed: it goes when its document
closes or 16 newer ones push it out. Per document, the last hit keeps the two texts it was
checked against (the window's before the anchor and after the cursor, ~8 K characters with the
default window): the next key, typed through the same suggestion, compares its texts with
them instead of hashing them again.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

V = TypeVar("V")

_CHECKED = 64  # characters compared verbatim at the cursor, besides the hash of the rest
_PAIRS = {"(": ")", "[": "]", "{": "}", '"': '"', "'": "'", "`": "`"}  # what editors auto-close


@dataclass(frozen=True, slots=True)
class _Fingerprint:
    """A string known by length, hash and the ``_CHECKED`` characters nearest the cursor."""

    length: int
    digest: int
    near: str

    @classmethod
    def before(cls, text: str) -> _Fingerprint:
        return cls(len(text), hash(text), text[-_CHECKED:])

    @classmethod
    def after(cls, text: str) -> _Fingerprint:
        return cls(len(text), hash(text), text[:_CHECKED])

    # The checks a type-through makes on every key, without building a fingerprint to compare
    # (equal to ``before(...) ==`` / ``after(...) ==``; a string keeps its hash, so ``after``
    # hashed once serves every anchor tried).

    def before_is(self, text: str) -> bool:
        """Whether ``text`` is the text this ``before`` fingerprint was taken of."""
        return (
            len(text) == self.length and text[-_CHECKED:] == self.near and hash(text) == self.digest
        )

    def after_is(self, text: str) -> bool:
        """Whether ``text`` is the text this ``after`` fingerprint was taken of."""
        return (
            len(text) == self.length and text[:_CHECKED] == self.near and hash(text) == self.digest
        )


@dataclass(frozen=True, slots=True)
class _Anchor(Generic[V]):
    offset: int
    before: _Fingerprint  # the text the model saw before the cursor
    after: _Fingerprint  # the text the model saw after the cursor
    text: str  # the suggestion
    value: V
    recorded: float


@dataclass(frozen=True, slots=True)
class Typed(Generic[V]):
    """A type-through hit: ``typed`` characters of the suggestion recorded with ``value``;
    ``closer`` is 1 when the editor auto-closed the last typed character and the rest of the
    suggestion must replace that closer."""

    typed: int
    value: V
    closer: int = 0


def _bytes_of(anchor: _Anchor[Any]) -> int:
    """One anchor's objects: itself, its two fingerprints (each with its verbatim tail and the
    hash, an int of 32 bytes), its suggestion text and value (shallow: a ``Suggestion``'s text
    is that text), its time and its offset and lengths when past the small-int cache. Checked
    against tracemalloc in ``tests/unit/test_memory_accounting.py``."""
    size = sys.getsizeof(anchor) + sys.getsizeof(anchor.text) + sys.getsizeof(anchor.value)
    size += sys.getsizeof(anchor.recorded) + _int_bytes(anchor.offset)
    for fingerprint in (anchor.before, anchor.after):
        size += sys.getsizeof(fingerprint) + sys.getsizeof(fingerprint.near)
        size += sys.getsizeof(fingerprint.digest) + _int_bytes(fingerprint.length)
    return size


def _int_bytes(value: int) -> int:
    """An int's own object, or nothing for CPython's shared small ints (-5..256)."""
    return 0 if -5 <= value <= 256 else sys.getsizeof(value)


def _auto_closed(suggestion: str, typed: int, closer: str) -> bool:
    """Whether ``closer`` after the cursor is the editor's auto-close of the character just
    typed, and the rest of the suggestion closes it too (so replacing it loses nothing)."""
    return (
        typed > 0 and _PAIRS.get(suggestion[typed - 1]) == closer and closer in suggestion[typed:]
    )


class TypeThrough(Generic[V]):
    """Recent shown suggestions per document, matched against what was typed since."""

    def __init__(
        self,
        *,
        per_document: int = 16,
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_document = per_document
        self._ttl_s = ttl_s
        self._clock = clock
        self._documents: dict[str, deque[_Anchor[V]]] = {}
        self._held = 0  # the anchors' own bytes (``_bytes_of``), kept as they change
        # Per document, the last hit and the texts it was checked against: the text before its
        # anchor, and the text after the cursor when it matched as it was (no closer). While a
        # user types through a suggestion each key's texts are the last key's: compared
        # (memcmp) instead of hashed again (~8 K characters a key with the default window).
        self._checked: dict[str, tuple[_Anchor[V], str, str | None]] = {}
        self.hits = 0

    def record(
        self, document: str, offset: int, before: str, after: str, text: str, value: V
    ) -> None:
        """``text`` was suggested at ``offset`` (in the document, not in an excerpt of it),
        where the model saw ``before``/``after``; ``value`` is what a hit hands back (with
        the typed length)."""
        if not text:
            return
        anchors = self._documents.get(document)
        if anchors is None:
            anchors = self._documents[document] = deque(maxlen=self._per_document)
        anchor = _Anchor(
            offset,
            _Fingerprint.before(before),
            _Fingerprint.after(after),
            text,
            value,
            self._clock(),
        )
        # The same suggestion at the same spot again replaces its older record.
        for old in list(anchors):
            if old.offset == offset and old.text == text and old.before == anchor.before:
                anchors.remove(old)
                self._held -= _bytes_of(old)
        if len(anchors) == anchors.maxlen:
            self._held -= _bytes_of(anchors[0])  # pushed out by the append
        anchors.append(anchor)
        self._held += _bytes_of(anchor)

    def find(
        self, document: str, text: str, offset: int, after: str, base: int = 0
    ) -> Typed[V] | None:
        """The newest recorded suggestion that ``text`` (the document now from its offset
        ``base``, the whole of it or an excerpt; cursor at ``offset`` in ``text``, ``after``
        the window after the cursor) types through, if any. Anchors are recorded at document
        offsets, so an excerpt that starts elsewhere than the one a suggestion was shown in
        still finds it."""
        anchors = self._documents.get(document)
        if not anchors:
            return None
        now = self._clock()
        # The text after the cursor less one auto-inserted closer, when there may be one.
        closed = after[1:] if after[:1] in _PAIRS.values() else None
        checked = self._checked.get(document)
        for anchor in reversed(anchors):
            if now - anchor.recorded > self._ttl_s:
                continue
            at = anchor.offset - base  # where the anchor is in ``text``
            typed = offset - at
            if at < 0 or typed < 0 or typed >= len(anchor.text):
                continue
            if text[at:offset] != anchor.text[:typed]:
                continue
            last = checked if checked is not None and checked[0] is anchor else None
            closer = 0
            exact = (last is not None and after == last[2]) or anchor.after.after_is(after)
            if not exact:
                if closed is None or not anchor.after.after_is(closed):
                    continue
                if not _auto_closed(anchor.text, typed, after[0]):
                    continue
                closer = 1
            start = at - anchor.before.length
            if start < 0:
                continue
            before = text[start:at]
            if not ((last is not None and before == last[1]) or anchor.before.before_is(before)):
                continue
            self._checked[document] = (anchor, before, after if exact else None)
            self.hits += 1
            return Typed(typed, anchor.value, closer)
        return None

    def forget(self, document: str) -> None:
        self._checked.pop(document, None)
        anchors = self._documents.pop(document, None)
        if anchors is not None:
            self._held -= sum(_bytes_of(anchor) for anchor in anchors)

    def clear(self) -> int:
        count = sum(len(anchors) for anchors in self._documents.values())
        self._documents.clear()
        self._checked.clear()
        self._held = 0
        return count

    def memory_bytes(self) -> int:
        """The bytes held (O(documents)): every anchor as ``_bytes_of`` counts it, and per
        document its name, its deque and its dict slot, and the texts its last hit was
        checked against. A suggestion whose text and value are also in L1 is counted by both
        (an over-estimate)."""
        documents = sys.getsizeof(self._documents) + sys.getsizeof(self._checked)
        for name, anchors in self._documents.items():
            documents += sys.getsizeof(name) + sys.getsizeof(anchors)
        for _, before, after in self._checked.values():
            documents += sys.getsizeof(before) + (sys.getsizeof(after) if after else 0)
        return documents + self._held

    def __len__(self) -> int:
        return sum(len(anchors) for anchors in self._documents.values())
