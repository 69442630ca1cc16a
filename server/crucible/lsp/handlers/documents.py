"""didOpen / didChange / didClose: pygls keeps the text; we keep which documents are recent.

These are plain functions so they run inline, in arrival order, before any request that
follows them on the wire. pygls applies each change before calling them, through
``lsp/document_text.py``'s ``OpenDocument``. A closed document's memory goes back to the
operating system (``release_free_memory``), not only to the allocator.
"""

from __future__ import annotations

from typing import Any

from lsprotocol import types

from crucible.lsp.server import CrucibleLanguageServer
from crucible.runtime.memory import release_free_memory

# Client -> server: {textDocument: {uri, version}, diagnostics: Diagnostic[]} (the map's contract).
DID_CHANGE_DIAGNOSTICS = "crucible/didChangeDiagnostics"


def register(server: CrucibleLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CrucibleLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.touch(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CrucibleLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.touch(params.text_document.uri)
        ls.backend.completion.document_changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CrucibleLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.forget(params.text_document.uri)
        ls.backend.completion.document_closed(params.text_document.uri)
        release_free_memory()

    @server.feature(DID_CHANGE_DIAGNOSTICS)
    def did_change_diagnostics(ls: CrucibleLanguageServer, params: Any) -> None:
        """Crucible's editor clients forward other servers' diagnostics so that hover can
        explain them; accepted (part of the wire contract) and not kept until hover uses
        them."""
