"""didOpen / didChange / didClose: pygls keeps the text; ``context/recent.py`` keeps which
documents are recent; ``context/diagnostics.py`` keeps the diagnostics other tools reported
(``crucible/didChangeDiagnostics``), moved or dropped as edits arrive and forgotten on close;
the review (``review/``) keeps each document's text at open, and its findings go on close.

These are plain functions so they run inline, in arrival order, before any request that
follows them on the wire. pygls applies each change before calling them, through
``lsp/document_text.py``'s ``OpenDocument``; each opened or edited document then becomes the
most recent ``OpenFile``, a neighbour candidate whose text is read only if a completion chooses
it. A closed document's memory goes back to the operating system (``release_free_memory``),
not only to the allocator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lsprotocol import types
from pygls.workspace import TextDocument

from crucible.context.diagnostics import LineEdit
from crucible.context.neighbours import OpenFile
from crucible.context.snapshot import valid_text
from crucible.lsp.diagnostics import line_edits, notification_diagnostics, notification_target
from crucible.lsp.document_text import OpenDocument, document_size
from crucible.lsp.handlers.hover import hover_document
from crucible.lsp.handlers.review import publish
from crucible.lsp.server import CrucibleLanguageServer
from crucible.runtime.memory import release_free_memory

# Client -> server: {textDocument: {uri, version}, diagnostics: Diagnostic[]} (the map's contract).
DID_CHANGE_DIAGNOSTICS = "crucible/didChangeDiagnostics"


def open_file(document: TextDocument) -> OpenFile:
    """``document`` as it is now, as a neighbour candidate: its size without joining its
    pieces, its text read only if a completion chooses it (then joined once per change)."""
    checked = getattr(document, "valid_unicode", False)  # see ``convert.snapshot_of``

    def read(n: int) -> str:
        head = document.head(n) if isinstance(document, OpenDocument) else document.source[:n]
        return head if checked else valid_text(head)

    return OpenFile(
        document.uri,
        document.path or document.uri,
        document.language_id or "plaintext",
        document_size(document),
        read,
    )


def _touch(ls: CrucibleLanguageServer, uri: str) -> None:
    document = ls.workspace.text_documents.get(uri)
    if document is not None:
        ls.touch(open_file(document))


def changed(ls: CrucibleLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    """After a change is applied to the document by pygls."""
    document = params.text_document
    edited(ls, document.uri, document.version, line_edits(params.content_changes))


def edited(
    ls: CrucibleLanguageServer, uri: str, version: int, edits: Sequence[LineEdit | None]
) -> None:
    """After a change is applied to the document (``changed``, or ``lsp/fast_lane.py`` from
    the JSON without lsprotocol objects): ``edits`` are its content changes by lines."""
    _touch(ls, uri)
    ls.backend.completion.document_changed(uri)
    ls.backend.hover.store.edited(uri, version, edits)


def register(server: CrucibleLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CrucibleLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        _touch(ls, params.text_document.uri)
        ls.backend.review.opened(params.text_document.uri, params.text_document.text)

    server.feature(types.TEXT_DOCUMENT_DID_CHANGE)(changed)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CrucibleLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.forget(params.text_document.uri)
        ls.backend.completion.document_closed(params.text_document.uri)
        ls.backend.hover.store.forget(params.text_document.uri)
        ls.backend.hover.document_closed(params.text_document.uri)
        if ls.backend.review.closed(params.text_document.uri):
            publish(ls, params.text_document.uri, [])  # its review findings go with it
        release_free_memory()

    @server.feature(DID_CHANGE_DIAGNOSTICS)
    def did_change_diagnostics(ls: CrucibleLanguageServer, params: Any) -> None:
        """Crucible's editor clients forward other servers' diagnostics so that hover can
        explain them: they replace what the store had for the document; then, if on, its
        errors are explained ahead (``hover.prefetch``)."""
        target = notification_target(params)
        if target is None:
            return
        uri, version = target
        diagnostics = notification_diagnostics(params)
        if not ls.backend.hover.store.replace(uri, version, diagnostics):
            return
        document = ls.workspace.text_documents.get(uri)
        if document is not None and diagnostics:
            ls.backend.hover.diagnostics_changed(hover_document(document))
