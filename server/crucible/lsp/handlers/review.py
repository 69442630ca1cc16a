"""textDocument/didSave: the optional AI review (``review/service.py``), its findings published
as diagnostics (``textDocument/publishDiagnostics``, ``source: "crucible"``).

Each finding covers its line (end in the client's position encoding) and carries its quick
fix in ``data``: ``{"kind": "crucible.review", "replacement": <the corrected line>, "range":
<the range to replace>, "version": <the document version it was computed for>}``.
``review_fixes`` turns it into a "Crucible: apply review fix" quick fix (listed by the
code-action handler, with its edit: no model call) while the document is still at ``version``;
once the text moved on, the finding's line may say something else, and no fix is offered.
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


def review_fixes(
    document_uri: str,
    document_version: int | None,
    diagnostics: Sequence[types.Diagnostic],
    *,
    versioned: bool,
) -> list[types.CodeAction]:
    """The quick fix of each of Crucible's own review findings among ``diagnostics`` (a
    code-action request's context), for the version it was computed for only."""
    fixes: list[types.CodeAction] = []
    for diagnostic in diagnostics:
        fix = _fix_of(diagnostic, document_version)
        if fix is None:
            continue
        range_, replacement = fix
        edit = types.TextEdit(range=range_, new_text=replacement)
        if versioned and document_version is not None:
            pinned = types.OptionalVersionedTextDocumentIdentifier(
                uri=document_uri, version=document_version
            )
            workspace_edit = types.WorkspaceEdit(
                document_changes=[types.TextDocumentEdit(text_document=pinned, edits=[edit])]
            )
        else:
            workspace_edit = types.WorkspaceEdit(changes={document_uri: [edit]})
        fixes.append(
            types.CodeAction(
                title=f"Crucible: apply review fix ({diagnostic.message[:60]})",
                kind=types.CodeActionKind.QuickFix,
                diagnostics=[diagnostic],
                edit=workspace_edit,
            )
        )
    return fixes


def _fix_of(diagnostic: types.Diagnostic, version: int | None) -> tuple[types.Range, str] | None:
    """The range and replacement a finding's ``data`` carries, if it is ours, well formed and
    computed for ``version``. ``data`` comes back from the client: read it field by field."""
    data = diagnostic.data
    if diagnostic.source != SOURCE or not isinstance(data, dict):
        return None
    replacement, where = data.get("replacement"), data.get("range")
    if data.get("kind") != FIX_KIND or not isinstance(replacement, str):
        return None
    if version is None or data.get("version") != version or "\n" in replacement:
        return None
    if not isinstance(where, dict):
        return None
    try:
        start, end = where["start"], where["end"]
        numbers = [start["line"], start["character"], end["line"], end["character"]]
    except (KeyError, TypeError):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        return None
    return types.Range(types.Position(*numbers[:2]), types.Position(*numbers[2:])), replacement


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
