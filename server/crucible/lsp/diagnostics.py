"""LSP diagnostics and content changes as the ``DiagnosticsStore``'s values
(``context/diagnostics.py``).

``crucible/didChangeDiagnostics`` is Crucible's own notification, so pygls hands its params
over as namedtuples of the JSON (it knows no type for them); a code action's
``context.diagnostics`` arrive as lsprotocol ``Diagnostic``s. Both are read here, field by
field, and anything malformed (no range, a negative line, an end before the start, no message)
is skipped, not raised: one bad diagnostic from another tool must not cost the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lsprotocol import types

from crucible.context.diagnostics import KnownDiagnostic, LineEdit

MAX_INCOMING = 1000  # diagnostics read from one notification (the store keeps fewer)


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _label(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    return str(value) if isinstance(value, str | int) else None


def known_diagnostic(value: Any) -> KnownDiagnostic | None:
    """One LSP ``Diagnostic`` (an lsprotocol object, a namedtuple or a dict) as a value, or
    None when it is malformed."""
    range_ = _field(value, "range")
    start, end = _field(range_, "start"), _field(range_, "end")
    numbers = [_int(_field(p, n)) for p in (start, end) for n in ("line", "character")]
    message = _field(value, "message")
    if any(n is None for n in numbers) or not isinstance(message, str) or not message:
        return None
    start_line, start_character, end_line, end_character = (int(n or 0) for n in numbers)
    if (end_line, end_character) < (start_line, start_character):
        return None
    severity = _int(_field(value, "severity"))
    return KnownDiagnostic(
        start_line,
        start_character,
        end_line,
        end_character,
        message,
        severity=int(severity) if severity is not None and 1 <= severity <= 4 else None,
        source=_label(_field(value, "source")),
        code=_label(_field(value, "code")),
    )


def known_diagnostics(values: Any) -> list[KnownDiagnostic]:
    if not isinstance(values, list | tuple):
        return []
    found = (known_diagnostic(value) for value in values[:MAX_INCOMING])
    return [d for d in found if d is not None]


def notification_diagnostics(params: Any) -> list[KnownDiagnostic]:
    """The well-formed ``diagnostics`` of a ``crucible/didChangeDiagnostics``."""
    return known_diagnostics(_field(params, "diagnostics"))


def notification_target(params: Any) -> tuple[str, int | None] | None:
    """The ``{textDocument: {uri, version}}`` of a ``crucible/didChangeDiagnostics``."""
    document = _field(params, "textDocument") or _field(params, "text_document")
    uri = _field(document, "uri")
    if not isinstance(uri, str) or not uri:
        return None
    version = _field(document, "version")
    return uri, version if isinstance(version, int) and not isinstance(version, bool) else None


def line_edits(
    changes: Sequence[types.TextDocumentContentChangeEvent],
) -> list[LineEdit | None]:
    """``didChange`` content changes by lines (None: the whole document was replaced)."""
    return [_line_edit(change) for change in changes]


def _line_edit(change: types.TextDocumentContentChangeEvent) -> LineEdit | None:
    range_ = getattr(change, "range", None)
    if range_ is None:
        return None
    return line_edit(range_.start.line, range_.end.line, change.text)


def line_edit(start_line: int, end_line: int, text: str) -> LineEdit:
    """A range's change by lines: ``start_line``..``end_line`` replaced by ``text``."""
    new_lines = text.count("\n") + text.count("\r") - text.count("\r\n")
    return LineEdit(start_line, end_line, new_lines + 1)


def lsp_diagnostics(values: Iterable[types.Diagnostic]) -> list[KnownDiagnostic]:
    """A code action's ``context.diagnostics`` as values (for ``DiagnosticsStore.learn``)."""
    found = (known_diagnostic(value) for value in values)
    return [d for d in found if d is not None]
