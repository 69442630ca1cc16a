"""DiagnosticsStore: the diagnostics other servers reported for each open document.

Crucible does not lint; it explains (hover) and fixes (code actions) what other tools report.
It learns their diagnostics from two sources, both given to it by ``lsp/``:

- ``crucible/didChangeDiagnostics`` ``{textDocument: {uri, version}, diagnostics}``, which
  Crucible's own editor clients send whenever the editor's diagnostics for a document change:
  ``replace`` (the document's whole list becomes this one, an empty list clears it);
- the ``context.diagnostics`` of a code-action request, which every editor sends for the range
  it asks about: ``learn`` (below), for editors without Crucible's client.

A diagnostic is kept as long as it describes the text: it is dropped when an edit touches a
line it covers, and the ones below an edit are moved by the number of lines the edit added or
removed (``edited``); a change replacing the whole document drops them all. A document's
diagnostics are forgotten when it closes. Positions stay in the client's encoding, as the
client sent them: the store compares them only with the client's own positions (a hover),
and edits move them by whole lines, which needs no encoding.

A list for an older version of the document than the store has seen edited is stale (its
ranges were computed for text that is gone): it is ignored and counted.

Bounded: at most ``MAX_DOCUMENTS`` documents (the least recently updated is forgotten),
``MAX_PER_DOCUMENT`` diagnostics each (errors kept first), messages cut to
``MAX_MESSAGE_CHARS`` and source and code to ``MAX_LABEL_CHARS``. What it holds is counted as
it changes (``memory_bytes``).

Pure and synchronous: no I/O, no event loop; errors: none raised.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

MAX_DOCUMENTS = 256
MAX_PER_DOCUMENT = 200
MAX_MESSAGE_CHARS = 2000
MAX_LABEL_CHARS = 100

ERROR = 1  # LSP DiagnosticSeverity.Error; 2 warning, 3 information, 4 hint
_SEVERITY_NAMES = {1: "error", 2: "warning", 3: "information", 4: "hint"}


@dataclass(frozen=True, slots=True)
class KnownDiagnostic:
    """One diagnostic as a value: its range (lines 0-based, characters in the client's
    encoding, end exclusive), what it says and who said it."""

    start_line: int
    start_character: int
    end_line: int
    end_character: int
    message: str
    severity: int | None = None
    source: str | None = None
    code: str | None = None

    @property
    def severity_name(self) -> str:
        return _SEVERITY_NAMES.get(self.severity or 0, "problem")

    def covers(self, line: int, character: int) -> bool:
        """Whether the position is inside the range; an empty range (a point) covers its own
        position, and a range ending at column 0 of a line still covers nothing there."""
        after_start = (line, character) >= (self.start_line, self.start_character)
        if (self.start_line, self.start_character) == (self.end_line, self.end_character):
            return after_start and (line, character) <= (self.end_line, self.end_character)
        return after_start and (line, character) < (self.end_line, self.end_character)

    def bounded(self) -> KnownDiagnostic:
        """This diagnostic with its texts cut to the store's bounds."""
        return replace(
            self,
            message=self.message[:MAX_MESSAGE_CHARS],
            source=self.source[:MAX_LABEL_CHARS] if self.source is not None else None,
            code=self.code[:MAX_LABEL_CHARS] if self.code is not None else None,
        )


@dataclass(frozen=True, slots=True)
class LineEdit:
    """One content change, by lines: lines ``start_line``..``end_line`` (inclusive, the lines
    the replaced range touches) became ``new_line_count`` lines. ``None`` for the whole
    document (a change without a range)."""

    start_line: int
    end_line: int
    new_line_count: int


@dataclass(slots=True)
class _Document:
    version: int | None
    diagnostics: tuple[KnownDiagnostic, ...] = ()
    bytes: int = 0  # what this entry holds (``_entry_bytes``), set by the store


class DiagnosticsStore:
    """Per document, the diagnostics that still describe its text; see the module
    docstring."""

    def __init__(
        self, *, max_documents: int = MAX_DOCUMENTS, max_per_document: int = MAX_PER_DOCUMENT
    ) -> None:
        self._documents: OrderedDict[str, _Document] = OrderedDict()
        self._max_documents = max_documents
        self._max_per_document = max_per_document
        self._bytes = 0  # the sum of the documents' ``bytes``
        self.stale = 0  # lists ignored because the document had been edited since
        self.dropped = 0  # diagnostics dropped because an edit touched their lines

    # -- sources --------------------------------------------------------------------------

    def replace(
        self, uri: str, version: int | None, diagnostics: Iterable[KnownDiagnostic]
    ) -> bool:
        """The document's diagnostics are now ``diagnostics`` (``crucible/didChangeDiagnostics``).
        False, and nothing changed, when ``version`` is older than the document's last edit."""
        document = self._documents.get(uri)
        if _stale(document, version):
            self.stale += 1
            return False
        kept = self._bounded(diagnostics)
        self._put(uri, _Document(_newest(document, version), kept))
        return True

    def learn(self, uri: str, version: int | None, diagnostics: Iterable[KnownDiagnostic]) -> bool:
        """Diagnostics seen in a code-action request's ``context.diagnostics``: MERGED into
        what the document has (that context carries only the diagnostics of the requested
        range, so it must not erase the others). A diagnostic already known (same range,
        message, source and code) is kept once. Stale versions are ignored as in
        ``replace``; returns whether the list was taken."""
        document = self._documents.get(uri)
        if _stale(document, version):
            self.stale += 1
            return False
        known = document.diagnostics if document is not None else ()
        merged = self._bounded(dict.fromkeys((*known, *diagnostics)))
        self._put(uri, _Document(_newest(document, version), merged))
        return True

    def edited(self, uri: str, version: int | None, edits: Sequence[LineEdit | None]) -> None:
        """The document changed by ``edits``, in order (one ``didChange``): diagnostics on
        touched lines are dropped, the ones below move."""
        document = self._documents.get(uri)
        if document is None:
            if version is not None:
                # Remember the version: a list computed for older text must be refused.
                self._put(uri, _Document(version))
            return
        diagnostics = document.diagnostics
        if not diagnostics:
            # Nothing to move or drop (the usual keystroke): only the version, and the bytes
            # its int takes, change; ``_entry_bytes`` would count the same otherwise.
            before = _int_bytes(document.version)
            document.version = _newest(document, version)
            grown = _int_bytes(document.version) - before
            document.bytes += grown
            self._bytes += grown
            return
        for edit in edits:
            before = len(diagnostics)
            diagnostics = _after_edit(diagnostics, edit)
            self.dropped += before - len(diagnostics)
        document.diagnostics = diagnostics
        document.version = _newest(document, version)
        self._bytes -= document.bytes
        document.bytes = _entry_bytes(uri, document)
        self._bytes += document.bytes

    def forget(self, uri: str) -> None:
        """The document closed."""
        document = self._documents.pop(uri, None)
        if document is not None:
            self._bytes -= document.bytes

    def memory_bytes(self) -> int:
        """The bytes held (O(1), kept as documents change): per document its entry, its URI,
        its tuple of diagnostics and their objects (each diagnostic, its message, source and
        code, its line numbers past the small-int cache), plus the dict of documents."""
        return sys.getsizeof(self._documents) + self._bytes

    # -- reading --------------------------------------------------------------------------

    def at(self, uri: str, line: int, character: int) -> tuple[KnownDiagnostic, ...]:
        """The diagnostics covering the position, most severe first."""
        document = self._documents.get(uri)
        if document is None:
            return ()
        found = [d for d in document.diagnostics if d.covers(line, character)]
        return tuple(sorted(found, key=_severity_rank))

    def of(self, uri: str) -> tuple[KnownDiagnostic, ...]:
        document = self._documents.get(uri)
        return document.diagnostics if document is not None else ()

    def version(self, uri: str) -> int | None:
        document = self._documents.get(uri)
        return document.version if document is not None else None

    def __len__(self) -> int:
        return len(self._documents)

    def snapshot(self) -> dict[str, int]:
        return {
            "documents": len(self._documents),
            "diagnostics": sum(len(d.diagnostics) for d in self._documents.values()),
            "stale": self.stale,
            "dropped_by_edits": self.dropped,
        }

    # -- inside ---------------------------------------------------------------------------

    def _bounded(self, diagnostics: Iterable[KnownDiagnostic]) -> tuple[KnownDiagnostic, ...]:
        ordered = sorted((d.bounded() for d in diagnostics), key=_severity_rank)
        return tuple(ordered[: self._max_per_document])

    def _put(self, uri: str, document: _Document) -> None:
        old = self._documents.get(uri)
        if old is not None:
            self._bytes -= old.bytes
        document.bytes = _entry_bytes(uri, document)
        self._bytes += document.bytes
        self._documents[uri] = document
        self._documents.move_to_end(uri)
        while len(self._documents) > self._max_documents:
            _, evicted = self._documents.popitem(last=False)
            self._bytes -= evicted.bytes


def _entry_bytes(uri: str, document: _Document) -> int:
    """One document's entry: itself, its URI, its version, its diagnostics (``_bytes_of``)."""
    held = sys.getsizeof(document) + sys.getsizeof(uri) + _int_bytes(document.version)
    held += sys.getsizeof(document.diagnostics)
    return held + sum(_bytes_of(diagnostic) for diagnostic in document.diagnostics)


def _bytes_of(diagnostic: KnownDiagnostic) -> int:
    """A diagnostic's objects; its texts counted each (a client's JSON gives every diagnostic
    its own strings), its line and character numbers when past the small-int cache."""
    held = sys.getsizeof(diagnostic) + sys.getsizeof(diagnostic.message)
    for label in (diagnostic.source, diagnostic.code):
        held += sys.getsizeof(label) if label is not None else 0
    for number in (
        diagnostic.start_line,
        diagnostic.start_character,
        diagnostic.end_line,
        diagnostic.end_character,
        diagnostic.severity,
    ):
        held += _int_bytes(number)
    return held


def _int_bytes(value: int | None) -> int:
    """An int's own object, or nothing for None and CPython's shared small ints (-5..256)."""
    return 0 if value is None or -5 <= value <= 256 else sys.getsizeof(value)


def _severity_rank(diagnostic: KnownDiagnostic) -> int:
    return diagnostic.severity or 5  # no severity: after hints (the client decides)


def _stale(document: _Document | None, version: int | None) -> bool:
    return (
        document is not None
        and document.version is not None
        and version is not None
        and version < document.version
    )


def _newest(document: _Document | None, version: int | None) -> int | None:
    known = document.version if document is not None else None
    if known is None or version is None:
        return version if version is not None else known
    return max(known, version)


def _after_edit(
    diagnostics: tuple[KnownDiagnostic, ...], edit: LineEdit | None
) -> tuple[KnownDiagnostic, ...]:
    if edit is None:
        return ()
    shift = edit.new_line_count - (edit.end_line - edit.start_line + 1)
    kept: list[KnownDiagnostic] = []
    for diagnostic in diagnostics:
        if diagnostic.end_line < edit.start_line:
            kept.append(diagnostic)
        elif diagnostic.start_line > edit.end_line:
            kept.append(
                replace(
                    diagnostic,
                    start_line=diagnostic.start_line + shift,
                    end_line=diagnostic.end_line + shift,
                )
            )
        # else: the edit touched a line it covers: it may no longer be true
    return tuple(kept)
