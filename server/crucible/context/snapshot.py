"""DocumentSnapshot: the immutable view of one document that services work on.

The LSP layer copies pygls's live document into a snapshot at the start of a request, so a
``didChange`` arriving while a completion streams never changes the text it was computed for.
Offsets here are Python string indices (code points); UTF-16 lives only in ``lsp/convert.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DocumentSnapshot:
    uri: str
    path: str  # file-system path or the URI when it has none; shown to models as the file name
    language_id: str
    version: int
    text: str

    def line_bounds(self, offset: int) -> tuple[int, int]:
        """Start and end offsets (end excludes the newline) of the line holding ``offset``."""
        start = self.text.rfind("\n", 0, offset) + 1
        end = self.text.find("\n", offset)
        return start, len(self.text) if end == -1 else end


@dataclass(frozen=True, slots=True)
class ContextFile:
    """Another document offered to the model as context (a neighbour open in the editor)."""

    path: str
    text: str
