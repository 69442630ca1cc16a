"""textDocument/hover: the explanation of the diagnostics under the cursor
(``hover/service.py``), as Markdown.

No diagnostic there (and ``hover.explain_code`` off), a document never opened, or hover off:
``None`` at once, with no provider call. Diagnostics come from ``crucible/didChangeDiagnostics``
(``documents.py``) and, once the lead wires it, from code-action contexts
(``DiagnosticsStore.learn``).
"""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace import TextDocument

from crucible.context.snapshot import valid_text
from crucible.hover.service import HoverDocument
from crucible.lsp.server import CrucibleLanguageServer


def hover_document(document: TextDocument) -> HoverDocument:
    """``document``'s text as it is now, for a hover or a prefetch."""
    checked = getattr(document, "valid_unicode", False)  # see ``convert.snapshot_of``
    text = document.source if checked else valid_text(document.source)
    return HoverDocument(
        document.uri, document.path or document.uri, document.language_id or "plaintext", text
    )


def register(server: CrucibleLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls: CrucibleLanguageServer, params: types.HoverParams) -> types.Hover | None:
        service = ls.backend.hover
        uri, position = params.text_document.uri, params.position
        if not service.settings.enabled:
            return None
        if not service.settings.explain_code and not service.store.at(
            uri, position.line, position.character
        ):
            return None  # the common case: answered without reading the document
        document = ls.workspace.text_documents.get(uri)
        if document is None:
            return None
        text = await service.hover(hover_document(document), position.line, position.character)
        if text is None:
            return None
        # Markdown for every client: plain-text clients (rare for hover) show it as written,
        # which reads well enough.
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))
