"""textDocument/didSave: the optional AI review (``review/service.py``), its findings published
as diagnostics (``textDocument/publishDiagnostics``, ``source: "crucible"``).

Each finding covers its line (end in the client's position encoding) and carries its quick
fix in ``data``: ``{"kind": "crucible.review", "replacement": <the corrected line>, "range":
<the range to replace>, "version": <the document version it was computed for>}``. A code
action handler turns it into a "Crucible: apply review fix" quick fix by replacing ``range``
with ``replacement`` when the document is still at ``version`` (the lead wires that at merge).
Registering didSave also advertises ``save`` in ``textDocumentSync``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lsprotocol import types

from crucible.lsp.convert import encoding_of, index_to_column
from crucible.lsp.handlers.hover import hover_document
from crucible.lsp.server import CrucibleLanguageServer
from crucible.review.findings import Finding
from crucible.review.service import ReviewedDocument

SOURCE = "crucible"
FIX_KIND = "crucible.review"


def diagnostics_of(
    findings: Sequence[Finding], text: str, encoding: str, version: int | None
) -> list[types.Diagnostic]:
    lines = text.split("\n")
    found: list[types.Diagnostic] = []
    for finding in findings:
        if not 0 <= finding.line < len(lines):
            continue
        line = lines[finding.line].rstrip("\r")
        end = index_to_column(line, len(line), encoding)
        range_ = types.Range(types.Position(finding.line, 0), types.Position(finding.line, end))
        data: dict[str, Any] | None = None
        if finding.replacement is not None:
            data = {
                "kind": FIX_KIND,
                "replacement": finding.replacement,
                "range": {
                    "start": {"line": finding.line, "character": 0},
                    "end": {"line": finding.line, "character": end},
                },
                "version": version,
            }
        found.append(
            types.Diagnostic(
                range=range_,
                message=finding.message,
                severity=types.DiagnosticSeverity.Warning,
                source=SOURCE,
                code="review",
                data=data,
            )
        )
    return found


def publish(ls: CrucibleLanguageServer, uri: str, diagnostics: list[types.Diagnostic]) -> None:
    ls.text_document_publish_diagnostics(
        types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics)
    )


def register(server: CrucibleLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    async def did_save(ls: CrucibleLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        service = ls.backend.review
        if not service.settings.enabled:
            return
        document = ls.workspace.text_documents.get(params.text_document.uri)
        if document is None:
            return
        text = hover_document(document)
        version = document.version
        findings = await service.saved(
            ReviewedDocument(text.uri, text.path, text.language, text.text)
        )
        if findings is None:
            return
        encoding = encoding_of(document)
        publish(ls, text.uri, diagnostics_of(findings, text.text, encoding, version))
